#include "stores/shm_region.h"

#include "sluice/shared_region.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sluice/clock.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
constexpr uint64_t kMagic = 0x4543494c53554c53;  // "SLUSLICE" little-endian: a sluice region
constexpr size_t kMaxDescription = 1024;
constexpr char kShmDir[] = "/dev/shm";  // where glibc's shm_open keeps its files on Linux
// Pages are reserved in steps of this size, so that a signal interrupting fallocate (which tmpfs
// then undoes) costs one step, and a steady stream of signals cannot stop a large region forming.
constexpr int64_t kReserveStep = int64_t{8} << 20;

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 200) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return name != "." && name != "..";
}

std::string ShmName(const std::string& name) { return "/sluice." + name; }  // for shm_open
std::string FilePath(const std::string& name) { return kShmDir + ShmName(name); }

std::string Quoted(const std::string& name) { return absl::StrCat("shared_region \"", name, "\""); }

absl::Status SysError(const std::string& name, const char* call, int err) {
  return absl::UnavailableError(
      absl::StrCat(Quoted(name), ": ", call, " failed: ", std::strerror(err)));
}

// The first 16 bytes of a region, at the same place in every layout.
struct Prefix {
  uint64_t magic = 0;
  uint32_t layout_version = 0;
  uint32_t ready = 0;
};

// Read with pread, not through a mapping: a file shorter than this reads as not ready, where a
// mapping would fault.
Prefix ReadPrefix(int fd) {
  Prefix prefix;
  if (pread(fd, &prefix, sizeof(prefix), 0) != static_cast<ssize_t>(sizeof(prefix))) return {};
  return prefix;
}

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() { close(fd_); }  // also drops this process's creation lock, if it held it
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;

 private:
  const int fd_;
};

int WriteZeros(int fd, int64_t offset, int64_t bytes) {
  static const char kZeros[64 * 1024] = {};
  while (offset < bytes) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(sizeof(kZeros), bytes - offset));
    const ssize_t written = pwrite(fd, kZeros, n, offset);
    if (written < 0 && errno != EINTR) return errno;
    if (written == 0) return EIO;
    if (written > 0) offset += written;
  }
  return 0;
}

// Allocates the pages of the file's first `bytes` now and sizes the file. tmpfs otherwise
// allocates a page on its first touch and, when /dev/shm is full, answers that touch with SIGBUS.
// tmpfs's fallocate really allocates (Linux mm/shmem.c, shmem_fallocate) and undoes a step that
// fails or is interrupted. fallocate(2) is called directly rather than posix_fallocate(3), whose
// fallback for file systems without fallocate writes a byte per block and is not atomic with
// concurrent writes (see its NOTES). Ours writes zeros, which is safe because no other process
// writes an unfinished region. Returns 0 or the errno.
int Reserve(int fd, int64_t bytes) {
  for (int64_t offset = 0; offset < bytes;) {
    const int64_t step = std::min(kReserveStep, bytes - offset);
    if (fallocate(fd, 0, offset, step) == 0) {
      offset += step;
    } else if (errno == EOPNOTSUPP || errno == ENOSYS) {  // e.g. ramfs
      return WriteZeros(fd, offset, bytes);
    } else if (errno != EINTR) {  // an interrupted step is undone by tmpfs: try it again
      return errno;
    }
  }
  return 0;
}

struct Space {
  int64_t free = -1;
  int64_t total = -1;
};

Space ShmSpace() {
  struct statvfs v {};
  if (statvfs(kShmDir, &v) != 0) return {};
  return {static_cast<int64_t>(v.f_bavail) * static_cast<int64_t>(v.f_frsize),
          static_cast<int64_t>(v.f_blocks) * static_cast<int64_t>(v.f_frsize)};
}

// Removes `name` if it still names `fd`'s file, never a newer region made under the name since.
void UnlinkIfStillNamed(int fd, const std::string& name) {
  struct stat mine {}, named {};
  if (fstat(fd, &mine) != 0 || stat(FilePath(name).c_str(), &named) != 0) return;
  if (mine.st_dev == named.st_dev && mine.st_ino == named.st_ino) {
    shm_unlink(ShmName(name).c_str());
  }
}

bool Unlinked(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 && st.st_nlink == 0;
}

}  // namespace

struct SharedRegion::Header {
  uint64_t magic;
  uint32_t layout_version;
  std::atomic<uint32_t> ready;  // 0 while the creator initialises, 1 after
  int64_t word_count;
  int64_t epoch_nanos;
  std::atomic<int64_t> claimed;
  char kind[64];
  char description[kMaxDescription];
};

// One OpenOrCreate call.
class SharedRegion::Opener {
 public:
  using InitialiseFn = absl::FunctionRef<void(int64_t* words, int64_t count)>;
  Opener(const std::string& name, const RegionSpec& spec, int64_t bytes, InitialiseFn initialise,
         absl::Duration creation_wait)
      : name_(name),
        spec_(spec),
        bytes_(bytes),
        initialise_(initialise),
        creation_wait_(creation_wait) {}

  absl::StatusOr<std::unique_ptr<SharedRegion>> Run() {
    const std::string shm_name = ShmName(name_);
    // Another attempt follows only when the file was removed while this process waited for it
    // (a creation that failed): bounded, in case something keeps removing it.
    for (int attempt = 0;; ++attempt) {
      if (attempt == kMaxAttempts) {
        return absl::UnavailableError(absl::StrCat(
            Quoted(name_), ": its file was removed ", attempt,
            " times while this process was opening it (failing creations?); retry"));
      }
      int fd = shm_open(shm_name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
      const bool created = fd >= 0;
      if (!created) {
        if (errno != EEXIST) return SysError(name_, "shm_open", errno);
        fd = shm_open(shm_name.c_str(), O_RDWR, 0600);
        if (fd < 0 && errno == ENOENT) continue;  // removed since: create it
        if (fd < 0) return SysError(name_, "shm_open", errno);
      }
      FileDescriptor file(fd);
      if (!created && ReadPrefix(fd).ready != 0) return Map(fd, /*initialised_here=*/false);
      // Unfinished: wait for whoever is creating it, or create it ourselves.
      absl::StatusOr<bool> locked = LockCreation(fd);
      if (!locked.ok()) return locked.status();
      if (!*locked) return StuckCreator();
      if (Unlinked(fd)) continue;  // its creator failed and removed it: start again
      const Prefix prefix = ReadPrefix(fd);
      if (prefix.ready != 0) {
        (void)flock(fd, LOCK_UN);  // if taken: the mapping would keep it (see Initialise)
        return Map(fd, /*initialised_here=*/false);
      }
      const bool ours = prefix.magic == kMagic && prefix.layout_version == kLayoutVersion;
      if (prefix.magic != 0 && !ours) {  // never take over what another layout or program made
        return Incompatible(prefix.magic == kMagic ? prefix.layout_version : 0);
      }
      // We hold the lock of a file nobody finished: it is ours, or its creator died or gave up.
      return Initialise(fd);
    }
  }

 private:
  static constexpr int kMaxAttempts = 16;

  // Takes the creation lock, waiting up to creation_wait for a live creator (false: timed out).
  // It is an flock: the kernel drops it when its holder exits, however it exits. True without
  // the lock once the region is ready (a creator of an older sluice kept its lock while mapped).
  absl::StatusOr<bool> LockCreation(int fd) {
    const auto deadline =
        std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(creation_wait_);
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
      if (flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
      if (errno != EWOULDBLOCK && errno != EINTR) return SysError(name_, "flock", errno);
      if (ReadPrefix(fd).ready != 0) return true;  // Run() maps it
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(20));
    }
  }

  absl::StatusOr<std::unique_ptr<SharedRegion>> Initialise(int fd) {
    // Start from an empty file: the words must be zero-filled, whatever a dead creator wrote.
    if (ftruncate(fd, 0) != 0) return Abandon(fd, SysError(name_, "ftruncate", errno));
    const Space space = ShmSpace();
    if (const int err = Reserve(fd, bytes_); err != 0) {
      if (err != ENOSPC && err != ENOMEM && err != EFBIG && err != EDQUOT) {
        return Abandon(fd, SysError(name_, "fallocate", err));
      }
      return Abandon(fd, absl::ResourceExhaustedError(absl::StrCat(
                             Quoted(name_), " needs ", bytes_,
                             " bytes of shared memory and could not reserve them (",
                             std::strerror(err), "): ", kShmDir, " has ", space.free,
                             " bytes free of ", space.total,
                             ". Lower max_keys, remove regions no longer used "
                             "(RemoveSharedRegion), or give ", kShmDir,
                             " more room (Docker: shm_size); sluice's docs/deployment.md has "
                             "the sizes and settings")));
    }
    void* base = mmap(nullptr, static_cast<size_t>(bytes_), PROT_READ | PROT_WRITE, MAP_SHARED,
                      fd, 0);
    if (base == MAP_FAILED) return Abandon(fd, SysError(name_, "mmap", errno));
    std::unique_ptr<SharedRegion> region(
        new SharedRegion(base, static_cast<size_t>(bytes_), /*created=*/true));
    Header* h = static_cast<Header*>(base);
    h->magic = kMagic;
    h->layout_version = kLayoutVersion;
    h->word_count = spec_.words;
    h->epoch_nanos = Clock::Steady()->NowNanos();
    std::strncpy(h->kind, spec_.kind.c_str(), sizeof(h->kind) - 1);
    std::strncpy(h->description, spec_.description.c_str(), sizeof(h->description) - 1);
    initialise_(region->words(), spec_.words);
    h->ready.store(1, std::memory_order_release);
    // Released here, not by closing the file: the mapping keeps the file (and so its flock)
    // open for as long as this process uses the region, and the waiters would time out.
    (void)flock(fd, LOCK_UN);
    return region;
  }

  // A creation that failed leaves nothing behind: its pages are freed at once (even while other
  // openers still hold the file) and its name removed, so those openers start again.
  absl::Status Abandon(int fd, absl::Status status) {
    (void)ftruncate(fd, 0);
    UnlinkIfStillNamed(fd, name_);
    return status;
  }

  absl::StatusOr<std::unique_ptr<SharedRegion>> Map(int fd, bool initialised_here) {
    struct stat st {};
    if (fstat(fd, &st) != 0) return SysError(name_, "fstat", errno);
    if (st.st_size < kHeaderBytes) {
      return absl::FailedPreconditionError(absl::StrCat(
          Quoted(name_), " is only ", st.st_size, " bytes long though marked ready (truncated by ",
          "something other than sluice?); remove ", FilePath(name_), " once no process uses it"));
    }
    const size_t mapped = static_cast<size_t>(st.st_size);
    void* base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) return SysError(name_, "mmap", errno);
    std::unique_ptr<SharedRegion> region(new SharedRegion(base, mapped, initialised_here));
    Header* h = static_cast<Header*>(base);
    if (h->magic != kMagic || h->layout_version != kLayoutVersion) {
      return Incompatible(h->magic == kMagic ? h->layout_version : 0);
    }
    if (h->ready.load(std::memory_order_acquire) == 0) {  // pairs with the creator's release
      return absl::FailedPreconditionError(
          absl::StrCat(Quoted(name_), " was never finished by its creator; remove ",
                       FilePath(name_), " (sluice::RemoveSharedRegion)"));
    }
    const std::string their_kind(h->kind, strnlen(h->kind, sizeof(h->kind)));
    const std::string theirs(h->description, strnlen(h->description, sizeof(h->description)));
    if (their_kind != spec_.kind || theirs != spec_.description || h->word_count != spec_.words ||
        static_cast<int64_t>(mapped) != bytes_) {
      return absl::FailedPreconditionError(absl::StrCat(
          Quoted(name_), " holds a ", their_kind, " with ", theirs, "; this process asked for a ",
          spec_.kind, " with ", spec_.description,
          ". Every process sharing a region must configure it identically"));
    }
    return region;
  }

  absl::Status Incompatible(uint32_t their_layout) const {
    return absl::FailedPreconditionError(absl::StrCat(
        Quoted(name_), " was made by an incompatible version of sluice (layout ", their_layout,
        ", this is layout ", kLayoutVersion, "); remove ", FilePath(name_),
        " once no process uses it"));
  }

  absl::Status StuckCreator() const {
    return absl::FailedPreconditionError(absl::StrCat(
        Quoted(name_), " is being created by another process that has not finished in ",
        absl::FormatDuration(creation_wait_), " (it holds ", FilePath(name_),
        " locked). If that process is stuck, stop it (the next process to open the name then "
        "creates the region) or remove the region (sluice::RemoveSharedRegion) and retry"));
  }

  const std::string& name_;
  const RegionSpec& spec_;
  const int64_t bytes_;
  const InitialiseFn initialise_;
  const absl::Duration creation_wait_;
};

SharedRegion::SharedRegion(void* base, size_t bytes, bool created)
    : base_(base),
      mapped_bytes_(bytes),
      words_(reinterpret_cast<int64_t*>(static_cast<char*>(base) + kHeaderBytes)),
      word_count_(static_cast<int64_t>((bytes - kHeaderBytes) / sizeof(int64_t))),
      created_here_(created) {
  static_assert(sizeof(Header) <= kHeaderBytes);
  static_assert(offsetof(Header, magic) == offsetof(Prefix, magic) &&
                    offsetof(Header, layout_version) == offsetof(Prefix, layout_version) &&
                    offsetof(Header, ready) == offsetof(Prefix, ready),
                "the first 16 bytes keep their place in every layout");
  static_assert(std::atomic<uint32_t>::is_always_lock_free &&
                    std::atomic<int64_t>::is_always_lock_free,
                "shared-memory atomics must be lock-free to work across processes");
}

SharedRegion::~SharedRegion() { munmap(base_, mapped_bytes_); }

int64_t SharedRegion::epoch_nanos() const { return static_cast<Header*>(base_)->epoch_nanos; }
std::atomic<int64_t>& SharedRegion::claimed() const { return static_cast<Header*>(base_)->claimed; }

absl::StatusOr<int64_t> SharedRegion::BytesFor(int64_t words) {
  constexpr int64_t kMaxWords =
      (std::numeric_limits<int64_t>::max() - kHeaderBytes) / int64_t{sizeof(int64_t)};
  if (words < 0 || words > kMaxWords) {
    return absl::InvalidArgumentError(
        absl::StrCat("a shared region of ", words, " words does not fit a 64-bit size"));
  }
  return kHeaderBytes + words * int64_t{sizeof(int64_t)};
}

absl::StatusOr<std::unique_ptr<SharedRegion>> SharedRegion::OpenOrCreate(
    const std::string& name, const RegionSpec& spec,
    absl::FunctionRef<void(int64_t* words, int64_t count)> initialise,
    absl::Duration creation_wait) {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shared_region must be 1 to 200 characters of [A-Za-z0-9._-], got \"", name, "\""));
  }
  absl::StatusOr<int64_t> bytes = BytesFor(spec.words);
  if (!bytes.ok()) return bytes.status();
  return Opener(name, spec, *bytes, initialise, creation_wait).Run();
}

absl::Status SharedRegion::Remove(const std::string& name) {
  if (!ValidName(name)) return absl::InvalidArgumentError("invalid shared_region name");
  if (shm_unlink(ShmName(name).c_str()) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no ", Quoted(name)));
    return SysError(name, "shm_unlink", errno);
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice

namespace sluice {
inline namespace v1 {

absl::Status RemoveSharedRegion(const std::string& name) {
  return internal::SharedRegion::Remove(name);
}

}  // namespace v1
}  // namespace sluice
