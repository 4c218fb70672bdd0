#include "stores/shared_key_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <cstring>

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

inline std::atomic_ref<int64_t> Word(int64_t* p) { return std::atomic_ref<int64_t>(*p); }

// The pid namespace this process lives in, as 31 bits of its inode (never 0). Containers that
// share a region through `ipc:` but not their pids (Docker's default) see each other's pids as
// numbers of another namespace: a holder is only ever judged dead by a process of its own.
int64_t NamespaceTag() {
  struct stat st;
  if (stat("/proc/self/ns/pid", &st) != 0) return 1;  // unknown: every such process shares tag 1
  const int64_t tag = static_cast<int64_t>(st.st_ino & 0x7fffffff);
  return tag == 0 ? 1 : tag;
}

// This process's lock word: namespace tag << 32 | pid, cached (getpid() is a system call); a
// fork()ed child forgets it.
std::atomic<int64_t> cached_word{0};
int64_t Self() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, [] { cached_word.store(0, std::memory_order_relaxed); });
    return true;
  }();
  (void)registered;
  int64_t word = cached_word.load(std::memory_order_relaxed);
  if (word == 0) {
    word = NamespaceTag() << 32 | getpid();
    cached_word.store(word, std::memory_order_relaxed);
  }
  return word;
}

inline void Relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

bool SharedKeyLock::IsDead(int64_t pid) {
  if (pid <= 0 || pid > INT32_MAX) return true;  // not a pid: a torn or foreign word
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return true;
  // kill() succeeds on a zombie: read its state from /proc/<pid>/stat ("pid (comm) S ...").
  char path[40];
  std::snprintf(path, sizeof(path), "/proc/%lld/stat", static_cast<long long>(pid));
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT;
  char buf[512];
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* paren = std::strrchr(buf, ')');  // comm may itself hold spaces and parentheses
  return paren != nullptr && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

int64_t SharedKeyLock::WordOf(int64_t pid) { return (Self() >> 32) << 32 | pid; }

bool SharedKeyLock::MayTakeOver(int64_t holder) {
  // Only a holder of this pid namespace can be judged: another namespace's pid means nothing
  // here (it may be alive in its container), so its word is waited out, never stolen.
  return (holder >> 32) == (Self() >> 32) && IsDead(holder & 0xffffffff);
}

SharedKeyLock::Taken SharedKeyLock::Lock(int64_t* word) {
  const int64_t me = Self();
  for (int64_t rounds = 1;; ++rounds) {
    int64_t holder = 0;
    if (Word(word).compare_exchange_weak(holder, me, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      return Taken::kFree;
    }
    if (holder != 0 && holder != me && rounds % kCheckEvery == 0 && MayTakeOver(holder)) {
      if (Word(word).compare_exchange_strong(holder, me, std::memory_order_acquire,
                                             std::memory_order_relaxed)) {
        return Taken::kTookOver;
      }
    }
    if (rounds % 64 == 0) {
      sched_yield();
    } else {
      Relax();
    }
  }
}

void SharedKeyLock::Unlock(int64_t* word) { Word(word).store(0, std::memory_order_release); }

}  // namespace internal
}  // namespace v1
}  // namespace sluice
