#include "balancing/cluster_cursor.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/time_arithmetic.h"
#include "stores/redis_keys.h"
#include "stores/redis_scripts.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// KEYS[1]: the name's cursor. Returns the next turn (1, 2, ...). An idle name's counter goes
// after a day; starting again from 1 only shifts the order.
const std::string kDrawScript = R"lua(
local turn = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 86400000)
return turn
)lua";

}  // namespace

ClusterCursor::ClusterCursor(std::shared_ptr<RedisStore> store, const std::string& redis_name)
    : store_(std::move(store)),
      key_(absl::StrCat(store_->options().key_prefix, ":{lb:", redis_name, "}:cursor")),
      patience_nanos_(ReadPatienceNanos(*store_)),
      drawn_(std::make_shared<Drawn>()) {}

std::optional<uint64_t> ClusterCursor::Take(int64_t now) {
  std::optional<uint64_t> turn;
  {
    MutexLock lock(&drawn_->mu);
    turn = std::exchange(drawn_->turn, std::nullopt);
    // A draw under way (its reply due) is not doubled: the turns drawn ahead stay one.
    if (drawn_->drawing_until != 0 && now < drawn_->drawing_until) return turn;
    drawn_->drawing_until = AddDuration(now, absl::Nanoseconds(patience_nanos_));
  }
  RedisScripts::RunThen(*store_, kDrawScript, {key_}, {}, [drawn = drawn_](PendingReply& reply) {
    absl::StatusOr<std::vector<int64_t>> values = reply.Wait(absl::ZeroDuration());
    MutexLock lock(&drawn->mu);
    drawn->drawing_until = 0;
    // Unreachable, or not a positive count: no turn; the next pick takes the local cursor.
    if (values.ok() && values->size() == 1 && (*values)[0] > 0) {
      drawn->turn = static_cast<uint64_t>((*values)[0]);
    }
  });
  return turn;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
