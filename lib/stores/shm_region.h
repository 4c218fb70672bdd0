// Internal: a named shared-memory region (a file in /dev/shm) holding one object's state, so that
// every process on the host that opens the same name shares it ("host scope").
//
// Layout: a 4 KiB header, then `words` int64 words. The header is versioned and carries a
// fingerprint of what the region was created for (object kind, windows, capacity): a process that
// opens it with another configuration, or a region made by an incompatible layout, gets a clear
// FailedPrecondition instead of misreading it. Its first 16 bytes (magic, layout version, ready)
// keep their place in every layout, so any version can tell a foreign region from a stale one.
//
// Creation (see OpenOrCreate):
//  * Every page is reserved (fallocate) before the region is touched, so a /dev/shm without room
//    is a ResourceExhausted naming the bytes needed and free, never a SIGBUS on first touch.
//  * The process that initialises a region holds an flock(2) on its file until it publishes
//    `ready`. The kernel drops that lock when its holder exits however it exits, so the file of a
//    creator that died (or gave up) is taken over by the next process to open the name, at once,
//    instead of bricking the name.
//  * No process maps a region before it is ready (readiness is read with pread), so truncating an
//    unfinished file can never fault a reader; a creation that fails removes its file.
// Nothing in a ready region is ever locked, so a process killed at any instant leaves it usable.

#ifndef SLUICE_LIB_SHARED_REGION_H_
#define SLUICE_LIB_SHARED_REGION_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// What a region is for; two processes share a region only if these match exactly.
struct RegionSpec {
  std::string kind;         // "RateLimiter", "ConcurrencyLimiter", ...
  std::string description;  // the configuration in words, for error messages
  int64_t words = 0;        // int64 words after the header
};

class SharedRegion {
 public:
  static constexpr uint32_t kLayoutVersion = 1;
  static constexpr int64_t kHeaderBytes = 4096;
  // How long an opener waits for another process that is creating the region.
  static constexpr absl::Duration kCreationWait = absl::Seconds(10);

  // The bytes of a region of `words` words (header included); InvalidArgument if that does not
  // fit an int64.
  static absl::StatusOr<int64_t> BytesFor(int64_t words);

  // Opens region `name`, creating it with `initialise(words, count)` (on zero-filled words) if it
  // does not exist or was left unfinished by a creator that died. `name` must match
  // [A-Za-z0-9._-]{1,200}. Waits up to `creation_wait` for another process that is creating it.
  // Errors: InvalidArgument (name, size); ResourceExhausted when /dev/shm has no room, naming the
  // bytes needed and free; FailedPrecondition when the region holds another configuration or
  // layout, or its creator is alive but has not finished within `creation_wait`; Unavailable for
  // system call failures.
  static absl::StatusOr<std::unique_ptr<SharedRegion>> OpenOrCreate(
      const std::string& name, const RegionSpec& spec,
      absl::FunctionRef<void(int64_t* words, int64_t count)> initialise,
      absl::Duration creation_wait = kCreationWait);

  // Removes region `name` from /dev/shm (processes that have it mapped keep their mapping).
  // NotFound if there is no such region.
  static absl::Status Remove(const std::string& name);

  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  int64_t* words() const { return words_; }
  int64_t word_count() const { return word_count_; }
  // CLOCK_MONOTONIC (steady clock) nanoseconds when the region was created: the shared origin of
  // every process's time units.
  int64_t epoch_nanos() const;
  // Keys claimed in the region, shared by all processes.
  std::atomic<int64_t>& claimed() const;
  int64_t mapped_bytes() const { return static_cast<int64_t>(mapped_bytes_); }
  bool created_here() const { return created_here_; }

 private:
  struct Header;
  class Opener;
  SharedRegion(void* base, size_t bytes, bool created);

  void* base_;
  size_t mapped_bytes_;
  int64_t* words_;
  int64_t word_count_;
  bool created_here_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_SHARED_REGION_H_
