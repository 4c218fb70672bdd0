#include "shared_region.h"

#include "sluice/shared_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sluice/clock.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
constexpr uint64_t kMagic = 0x4543494c53554c53;  // "SLUSLICE" little-endian: a sluice region
constexpr size_t kHeaderBytes = 4096;
constexpr size_t kMaxDescription = 1024;
constexpr auto kOpenWait = std::chrono::seconds(2);  // for a creator still initialising

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 200) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return name != "." && name != "..";
}

std::string ShmPath(const std::string& name) { return "/sluice." + name; }

absl::Status Errno(const std::string& what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
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

SharedRegion::SharedRegion(void* base, size_t bytes, bool created)
    : base_(base),
      mapped_bytes_(bytes),
      words_(reinterpret_cast<int64_t*>(static_cast<char*>(base) + kHeaderBytes)),
      word_count_(static_cast<int64_t>((bytes - kHeaderBytes) / sizeof(int64_t))),
      created_here_(created) {
  static_assert(sizeof(Header) <= kHeaderBytes);
  static_assert(std::atomic<uint32_t>::is_always_lock_free &&
                    std::atomic<int64_t>::is_always_lock_free,
                "shared-memory atomics must be lock-free to work across processes");
}

SharedRegion::~SharedRegion() { munmap(base_, mapped_bytes_); }

int64_t SharedRegion::epoch_nanos() const { return static_cast<Header*>(base_)->epoch_nanos; }
std::atomic<int64_t>& SharedRegion::claimed() const { return static_cast<Header*>(base_)->claimed; }

absl::StatusOr<std::unique_ptr<SharedRegion>> SharedRegion::OpenOrCreate(
    const std::string& name, const RegionSpec& spec,
    absl::FunctionRef<void(int64_t* words, int64_t count)> initialise) {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shared_region must be 1 to 200 characters of [A-Za-z0-9._-], got \"", name, "\""));
  }
  const size_t bytes = kHeaderBytes + static_cast<size_t>(spec.words) * sizeof(int64_t);
  const std::string path = ShmPath(name);

  // Create it, or learn that another process did.
  int fd = shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  const bool created = fd >= 0;
  if (!created) {
    if (errno != EEXIST) return Errno(absl::StrCat("shared_region \"", name, "\": shm_open"));
    fd = shm_open(path.c_str(), O_RDWR, 0600);
    if (fd < 0) return Errno(absl::StrCat("shared_region \"", name, "\": shm_open"));
  } else if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    absl::Status s = Errno(absl::StrCat("shared_region \"", name, "\": ftruncate"));
    close(fd);
    shm_unlink(path.c_str());
    return s;
  }
  // An opener may get here before the creator has sized the file: wait for the size.
  struct stat st {};
  const auto deadline = std::chrono::steady_clock::now() + kOpenWait;
  while (fstat(fd, &st) == 0 && st.st_size < static_cast<off_t>(kHeaderBytes) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (st.st_size < static_cast<off_t>(kHeaderBytes)) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat(
        "shared_region \"", name, "\" exists but was never initialised (its creator died?); remove ",
        "/dev/shm", path, " and retry"));
  }
  const size_t mapped = static_cast<size_t>(st.st_size);
  void* base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) return Errno(absl::StrCat("shared_region \"", name, "\": mmap"));
  std::unique_ptr<SharedRegion> region(new SharedRegion(base, mapped, created));
  Header* h = static_cast<Header*>(base);

  if (created) {  // the file is zero-filled: initialise, then publish
    h->magic = kMagic;
    h->layout_version = kLayoutVersion;
    h->word_count = spec.words;
    h->epoch_nanos = Clock::Steady()->NowNanos();
    std::strncpy(h->kind, spec.kind.c_str(), sizeof(h->kind) - 1);
    std::strncpy(h->description, spec.description.c_str(), sizeof(h->description) - 1);
    initialise(region->words(), spec.words);
    h->ready.store(1, std::memory_order_release);
    return region;
  }
  while (h->ready.load(std::memory_order_acquire) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (h->magic != kMagic || h->layout_version != kLayoutVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shared_region \"", name, "\" was made by an incompatible version of sluice (layout ",
        h->magic == kMagic ? h->layout_version : 0, ", this is layout ", kLayoutVersion,
        "); remove /dev/shm", path, " once no process uses it"));
  }
  if (h->ready.load(std::memory_order_acquire) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shared_region \"", name, "\" was never finished by its creator; remove /dev/shm", path));
  }
  const std::string their_kind(h->kind, strnlen(h->kind, sizeof(h->kind)));
  const std::string theirs(h->description, strnlen(h->description, sizeof(h->description)));
  if (their_kind != spec.kind || theirs != spec.description || h->word_count != spec.words ||
      mapped != bytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shared_region \"", name, "\" holds a ", their_kind, " with ", theirs,
        "; this process asked for a ", spec.kind, " with ", spec.description,
        ". Every process sharing a region must configure it identically"));
  }
  return region;
}

absl::Status SharedRegion::Remove(const std::string& name) {
  if (!ValidName(name)) return absl::InvalidArgumentError("invalid shared_region name");
  if (shm_unlink(ShmPath(name).c_str()) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no shared_region \"", name, "\""));
    return Errno(absl::StrCat("shared_region \"", name, "\": shm_unlink"));
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
