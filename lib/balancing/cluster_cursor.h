// Cluster scope for round robin (Options::redis): the hosts take the endpoints in turn together,
// as a host's processes do through the shared region's cursor.
//
// Redis keeps one counter per name, `<prefix>:{lb:<redis_name>}:cursor`. Each balancer keeps
// one turn drawn from it ahead (an INCR, never waited for): a pick takes the turn drawn since the
// previous pick and draws the next. So every turn is taken by one pick of the fleet, and the
// endpoints are taken in the order of the turns: with H balancers drawing, any endpoint's share
// of the picks that took a turn is within H + 1 of any other's (each balancer holds at most one
// turn drawn and not yet taken; a reply later than the draw's patience, when a second draw
// replaces it, loses one more). A pick that finds no turn drawn (the first one, one right after
// another before the reply came, or Redis unreachable) takes the local cursor instead (the
// host's in host scope), as without cluster scope. Hosts that pick now and then, each alone on
// its own cursor, would all start at the first endpoint; here they take the endpoints in turn.
#ifndef SLUICE_LIB_BALANCING_CLUSTER_CURSOR_H_
#define SLUICE_LIB_BALANCING_CLUSTER_CURSOR_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "sluice/internal/mutex.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Thread-safe. A draw's reply holds only the Drawn cell (no store, no balancer).
class ClusterCursor {
 public:
  ClusterCursor(std::shared_ptr<RedisStore> store, const std::string& redis_name);

  // The turn drawn since the last call, if its reply has come; starts the next draw unless one
  // is under way. `now` (the balancer's clock) bounds how long a draw without a reply blocks the
  // next. Never blocks on Redis.
  std::optional<uint64_t> Take(int64_t now);

 private:
  struct Drawn {
    Mutex mu;
    std::optional<uint64_t> turn ABSL_GUARDED_BY(mu);
    int64_t drawing_until ABSL_GUARDED_BY(mu) = 0;  // a draw under way until then (0: none)
  };

  const std::shared_ptr<RedisStore> store_;
  const std::string key_;  // "<prefix>:{lb:<redis_name>}:cursor"
  const int64_t patience_nanos_;
  const std::shared_ptr<Drawn> drawn_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_BALANCING_CLUSTER_CURSOR_H_
