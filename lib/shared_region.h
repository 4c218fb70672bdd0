// Internal: a named shared-memory region (a file in /dev/shm) holding one object's state, so that
// every process on the host that opens the same name shares it ("host scope").
//
// Layout: a 4 KiB header, then `words` int64 words. The header is versioned and carries a
// fingerprint of what the region was created for (object kind, windows, capacity): a process that
// opens it with another configuration, or a region made by an incompatible layout, gets a clear
// FailedPrecondition instead of misreading it.
//
// Creation is race-free between processes: the creator (O_CREAT|O_EXCL) sizes and initialises the
// region and then publishes `ready`; openers wait (briefly, bounded) for that. Nothing in the
// region is ever locked, so a process killed at any instant leaves it usable.

#ifndef SLUICE_LIB_SHARED_REGION_H_
#define SLUICE_LIB_SHARED_REGION_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

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

  // Opens region `name`, creating it with `initialise(words)` if it does not exist.
  // `name` must match [A-Za-z0-9._-]{1,200}.
  static absl::StatusOr<std::unique_ptr<SharedRegion>> OpenOrCreate(
      const std::string& name, const RegionSpec& spec,
      absl::FunctionRef<void(int64_t* words, int64_t count)> initialise);

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
