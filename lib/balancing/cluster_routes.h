// Cluster scope for the prefix strategies (Options::redis with kPrefixAffinity, or kScored with a
// prefix weight): the routes every host's balancers took under the same `redis_name`, so a
// conversation's next turn, landing on another host, still goes to the replica that holds it.
//
// The host ring (shared_route_log.h) over Redis: one stream, `<prefix>:{lb:<redis_name>}:routes`
// (one Cluster slot, beside the holds' hash), capped at about kStreamLength entries and expiring an
// hour after its last route. Each entry is one binary field: writer, endpoint key, tokens, then
// the block hashes (at most kMaxBlocks). A pick appends its route (one XADD, never waited for,
// dropped when Redis is unreachable), and, like the holds' mirror, a pick that finds the last
// read older than `redis_refresh` starts one read (at most one under way) of the entries after the
// last one this process read (the newest kMaxRead on its first read); the reply is queued, and
// the next picks replay it into their own prefix index and KV estimate (at most 64 a pick).
// So another host's route reaches this process within redis_refresh plus a round trip: a
// conversation's next turn, seconds later, finds it. What it loses: routes past kMaxRead per read
// (a fleet routing more than kMaxRead per redis_refresh), routes sent while Redis was down, and
// blocks past kMaxBlocks. Entry times are the Redis server's (the stream ids), so hosts' clocks
// need not agree.
#ifndef SLUICE_LIB_BALANCING_CLUSTER_ROUTES_H_
#define SLUICE_LIB_BALANCING_CLUSTER_ROUTES_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/types/span.h"
#include "sluice/internal/mutex.h"
#include "sluice/redis_store.h"
#include "balancing/shared_route_log.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class PendingReply;

// A route as one stream entry's field: writer, endpoint key, tokens (a double's bits), then the
// blocks; 8 bytes each in this machine's byte order (a fleet's hosts are all x86-64 or all not).
struct RouteEntry {
  uint64_t writer = 0;
  uint64_t endpoint = 0;
  double tokens = 0;
  std::vector<uint64_t> blocks;
};
std::string EncodeRouteEntry(uint64_t writer, uint64_t endpoint, double tokens,
                             absl::Span<const uint64_t> blocks);
// Decodes what Redis returned (untrusted: another application may write the key); false when
// it is not an entry EncodeRouteEntry wrote (its size, or more than kMaxBlocks blocks).
bool DecodeRouteEntry(std::string_view entry, RouteEntry* out);

// Thread-safe. A read's callback holds only the Inbox (no store, no balancer), so a balancer let
// go while its read is under way goes at once.
class ClusterRoutes {
 public:
  static constexpr int64_t kMaxBlocks = 1024;
  static constexpr int64_t kStreamLength = 4096;
  static constexpr int64_t kMaxRead = 512;

  ClusterRoutes(std::shared_ptr<RedisStore> store, const std::string& redis_name,
                absl::Duration refresh);

  // Sends a route this balancer took.
  void Send(uint64_t endpoint, absl::Span<const uint64_t> blocks, double tokens);
  // Starts a read when the last one is older than the refresh interval and none is under way.
  // Never blocks.
  void MaybeRefresh(int64_t now);
  // Calls `apply` on up to SharedRouteLog::kMaxReplayPerCall routes read since the last call,
  // oldest first (Route::at on the balancer's clock). Returns how many.
  int64_t ReplayNew(int64_t now, absl::FunctionRef<void(const SharedRouteLog::Route&)> apply);

 private:
  struct Received {
    uint64_t endpoint = 0;
    double tokens = 0;
    int64_t age_nanos = 0;  // on the Redis server's clock when read
    std::vector<uint64_t> blocks;
  };
  // What a read's reply fills.
  struct Inbox {
    // A read under way until this time (0: none); a deadline, as the holds' mirror's.
    std::atomic<int64_t> reading_until{0};
    Mutex mu;
    std::string last_id ABSL_GUARDED_BY(mu);  // the newest stream id read ("": none yet)
    std::deque<Received> routes ABSL_GUARDED_BY(mu);
  };

  const std::shared_ptr<RedisStore> store_;
  const std::string key_;
  const int64_t refresh_nanos_;
  const int64_t read_patience_nanos_;
  const uint64_t nonce_;
  const std::shared_ptr<Inbox> inbox_;
  std::atomic<int64_t> next_read_at_{0};
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_BALANCING_CLUSTER_ROUTES_H_
