// Host scope for the prefix strategies: a ring of recent routing decisions in a third shared
// region, "<shared_region>.routes", that every process on the host appends its picks to and
// replays the others' from, into its own prefix index and KV estimate. So a conversation's next
// turn, landing on another Gunicorn worker, still goes to the replica that holds it, and a
// restarted worker relearns the host's recent routing from the ring instead of starting cold.
//
// Why a log and not one shared index: the index's rules (branch points, LRU bounded per
// endpoint, each conversation's resident tokens) stay exactly the process-scope ones, with no
// lock or pointer in shared memory; the price is that every process inserts every pick (its
// own and the others'), and the sharing is approximate:
//  * a process that falls more than the ring behind loses the oldest routes (counted in lost());
//  * a route whose record is overwritten, or is being written, while it is read is skipped (a
//    checksum catches a torn record);
//  * a record holds at most kMaxRecordBlocks block hashes (its prompt's first 128 KiB with the
//    default 128-byte blocks).
// Nothing is locked: a process killed mid-append leaves one record that fails its checksum.
//
// Thread-compatible: the Balancer's mutex guards each instance; instances in any number of
// processes (and in one process) share the region safely.
#ifndef SLUICE_LIB_SHARED_ROUTE_LOG_H_
#define SLUICE_LIB_SHARED_ROUTE_LOG_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "sluice/llm_request.h"
#include "stores/shm_region.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// A writer id for routes: distinct for each `nonce` (one per balancer) and each process (a
// fork()ed child gets another), so a balancer recognises, and skips, exactly its own routes.
uint64_t RouteWriterId(uint64_t nonce);

class SharedRouteLog {
 public:
  // Block hashes a record keeps (more are cut off: the replayed index holds the prefix only).
  static constexpr int64_t kMaxRecordBlocks = 1024;
  // The ring's size in words (2 MiB), split into records of the configured size (at most 4096,
  // at least 64).
  static constexpr int64_t kRingWords = int64_t{1} << 18;
  // Routes a process replays in one pick at most; the rest wait for its next picks.
  static constexpr int64_t kMaxReplayPerCall = 64;

  // A route as replayed: valid only during the callback.
  struct Route {
    uint64_t endpoint = 0;  // EndpointKey of its id
    double tokens = 0;      // the request's prompt tokens
    int64_t at = 0;         // when it was routed, on the writer's clock (nanoseconds)
    absl::Span<const uint64_t> blocks;
  };

  // The region's name for a balancer's `shared_region`.
  static std::string RegionNameFor(std::string_view shared_region);
  // An endpoint id's key in records (ids never reach the region).
  static uint64_t EndpointKey(std::string_view id);

  // Opens (or creates) the log for `shared_region`, sized for `hash.max_blocks`.
  // FailedPrecondition when the region holds another layout (a balancer hashing prompts with
  // other PrefixHashOptions: their hashes could never match).
  static absl::StatusOr<std::unique_ptr<SharedRouteLog>> Open(std::string_view shared_region,
                                                              const PrefixHashOptions& hash);

  // Appends a route this balancer took at `at` (its clock's nanoseconds). Blocks beyond
  // min(max_blocks, kMaxRecordBlocks) are cut off.
  void Append(uint64_t endpoint, absl::Span<const uint64_t> blocks, double tokens, int64_t at);

  // Calls `apply` on up to kMaxReplayPerCall routes that other balancers (in this process or
  // others) appended since the last call, oldest first. Returns how many it applied.
  int64_t ReplayNew(absl::FunctionRef<void(const Route&)> apply);

  // Routes this instance could not replay (overwritten before it read them, or torn).
  uint64_t lost() const { return lost_; }
  int64_t records() const { return records_; }

 private:
  SharedRouteLog(std::unique_ptr<SharedRegion> region, int64_t record_words, int64_t records,
                 int64_t max_blocks);
  int64_t* RecordAt(uint64_t seq) const;

  const std::unique_ptr<SharedRegion> region_;
  const int64_t record_words_;
  const int64_t records_;
  const int64_t max_blocks_;
  const uint64_t nonce_;
  uint64_t next_ = 0;  // the next sequence number to replay
  uint64_t lost_ = 0;
  std::vector<uint64_t> scratch_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_SHARED_ROUTE_LOG_H_
