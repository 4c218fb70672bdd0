#include "balancing/cluster_loads.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "balancing/shared_route_log.h"
#include "base/time_arithmetic.h"
#include "sluice/clock.h"
#include "stores/redis_keys.h"
#include "stores/redis_scripts.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// KEYS[1]: an endpoint's set. ARGV[1]: the member; ARGV[2]: its lease in us; ARGV[3]: now for
// sluice_now. Scores are lease ends in us on the server's clock.
const std::string kAcquireScript = WithScriptNow(R"lua(
local now = sluice_now(ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000) + 60000)
return 1
)lua");

// KEYS[1]: an endpoint's set. ARGV[1]: the member.
const std::string kReleaseScript = R"lua(
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
)lua";

// KEYS: the endpoints' sets. ARGV[1]: this counter's tag; ARGV[2]: now for sluice_now. Drops
// expired members and returns, per key in order, the live members of every other counter.
const std::string kReadScript = WithScriptNow(R"lua(
local now = sluice_now(ARGV[2])
local mine = ARGV[1] .. ':'
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  local others = 0
  for _, member in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do
    if string.sub(member, 1, #mine) ~= mine then others = others + 1 end
  end
  out[i] = others
end
return out
)lua");

}  // namespace

ClusterLoads::ClusterLoads(std::shared_ptr<RedisStore> store, const std::string& redis_name,
                           absl::Duration refresh, absl::Duration lease, uint64_t host_tag)
    : store_(std::move(store)),
      key_prefix_(absl::StrCat(store_->options().key_prefix, ":{lb:", redis_name, "}:inflight:")),
      host_tag_(host_tag),
      nonce_(std::random_device{}() | 1),
      lease_(lease),
      refresh_nanos_(absl::ToInt64Nanoseconds(refresh)),
      patience_nanos_(ReadPatienceNanos(*store_)),
      sums_(std::make_shared<Sums>()) {}

std::string ClusterLoads::Tag() const {
  return absl::StrFormat("%016x", host_tag_ != 0 ? host_tag_ : RouteWriterId(nonce_));
}

std::shared_ptr<std::atomic<int64_t>> ClusterLoads::Track(const std::string& field) {
  MutexLock lock(&sums_->mu);
  std::shared_ptr<std::atomic<int64_t>>& cell = sums_->cells[field];
  if (cell == nullptr) cell = std::make_shared<std::atomic<int64_t>>(0);
  next_read_at_.store(0, std::memory_order_relaxed);  // the next pick reads it
  return cell;
}

void ClusterLoads::Untrack(const std::string& field) {
  MutexLock lock(&sums_->mu);
  sums_->cells.erase(field);
}

std::string ClusterLoads::Acquire(const std::string& field) {
  std::string member =
      absl::StrCat(Tag(), ":", picks_.fetch_add(1, std::memory_order_relaxed));
  // Not kept across an outage (sent late, it could outlive its release); when its outcome is
  // unknown (written, then the connection failed) the store removes the member again.
  Delivery delivery;
  delivery.undo = ScriptCall{&kReleaseScript, {KeyOf(field)}, {member}};
  RedisScripts::Run(*store_,
                    {&kAcquireScript,
                     {KeyOf(field)},
                     {member, absl::StrCat(absl::ToInt64Microseconds(lease_)),
                      RedisScripts::ScriptNow(*store_)}},
                    /*want_fd=*/false, std::move(delivery));
  return member;
}

void ClusterLoads::Release(const std::string& field, const std::string& member) {
  Delivery delivery;  // a completion during an outage still ends the member (before its lease)
  delivery.retry_until_nanos = AddDuration(Clock::Steady()->NowNanos(), lease_);
  RedisScripts::Run(*store_, {&kReleaseScript, {KeyOf(field)}, {member}}, /*want_fd=*/false,
                    std::move(delivery));
}

void ClusterLoads::MaybeRefresh(int64_t now) {
  if (now < next_read_at_.load(std::memory_order_relaxed)) return;
  int64_t busy_until = sums_->reading_until.load(std::memory_order_acquire);
  if (now < busy_until) return;  // a read under way
  if (!sums_->reading_until.compare_exchange_strong(
          busy_until, AddDuration(now, absl::Nanoseconds(patience_nanos_)),
          std::memory_order_acq_rel)) {
    return;  // another thread starts it
  }
  next_read_at_.store(AddDuration(now, absl::Nanoseconds(refresh_nanos_)), std::memory_order_relaxed);
  std::vector<std::string> fields, keys;
  {
    MutexLock lock(&sums_->mu);
    for (const auto& [field, cell] : sums_->cells) fields.push_back(field);
  }
  if (fields.empty()) {
    sums_->reading_until.store(0, std::memory_order_release);
    return;
  }
  for (const std::string& field : fields) keys.push_back(KeyOf(field));
  RedisScripts::RunThen(
      *store_, kReadScript, std::move(keys), {Tag(), RedisScripts::ScriptNow(*store_)},
      [sums = sums_, fields = std::move(fields)](PendingReply& reply) {
        absl::StatusOr<std::vector<int64_t>> values = reply.Wait(absl::ZeroDuration());
        // Unreachable (or a malformed reply): no other host's count is known, so none counts.
        const bool known = values.ok() && values->size() == fields.size();
        MutexLock lock(&sums->mu);
        for (size_t i = 0; i < fields.size(); ++i) {
          auto it = sums->cells.find(fields[i]);
          if (it == sums->cells.end()) continue;  // untracked meanwhile
          it->second->store(known ? std::max<int64_t>(0, (*values)[i]) : 0,
                            std::memory_order_relaxed);
        }
        sums->reading_until.store(0, std::memory_order_release);
      });
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
