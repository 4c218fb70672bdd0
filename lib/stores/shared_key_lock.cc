#include "stores/shared_key_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

inline std::atomic_ref<int64_t> Word(int64_t* p) { return std::atomic_ref<int64_t>(*p); }

// This process's id, cached (getpid() is a system call); a fork()ed child forgets it.
std::atomic<int64_t> cached_pid{0};
int64_t Self() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, [] { cached_pid.store(0, std::memory_order_relaxed); });
    return true;
  }();
  (void)registered;
  int64_t pid = cached_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    pid = getpid();
    cached_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
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

SharedKeyLock::Taken SharedKeyLock::Lock(int64_t* word) {
  const int64_t me = Self();
  for (int64_t rounds = 1;; ++rounds) {
    int64_t holder = 0;
    if (Word(word).compare_exchange_weak(holder, me, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      return Taken::kFree;
    }
    if (holder != 0 && holder != me && rounds % kCheckEvery == 0 && IsDead(holder)) {
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
