#include "balancing/cluster_holds.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "balancing/balancer_endpoint.h"
#include "base/log.h"
#include "base/time_arithmetic.h"
#include "sluice/internal/key_digest.h"
#include "stores/redis_keys.h"
#include "stores/redis_scripts.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// A field's value: "<cooldown until> <reason> <ejected until>" (us on the server's clock).
// KEYS[1]: the hash. ARGV[1]: field; ARGV[2]: 0 cooldown, 1 ejection; ARGV[3]: the hold's length
// from now in us; ARGV[4]: the cooldown's reason; ARGV[5]: now for sluice_now. Lengthens only.
const std::string kExtendScript = WithScriptNow(R"lua(
local now = sluice_now(ARGV[5])
local c, r, e = 0, 0, 0
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  local a, b, d = string.match(v, '^(%d+) (%d+) (%d+)$')
  c, r, e = tonumber(a) or 0, tonumber(b) or 0, tonumber(d) or 0
end
local hold_end = now + tonumber(ARGV[3])
if ARGV[2] == '0' then
  if hold_end > c then c, r = hold_end, tonumber(ARGV[4]) end
elseif hold_end > e then
  e = hold_end
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f %d %.0f', c, r, e))
local keep = math.ceil((math.max(c, e) - now) / 1000) + 60000
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return 1
)lua");

// KEYS[1]: the hash. ARGV[1]: field. A restore: both holds end.
const std::string kClearScript = R"lua(
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
)lua";

// KEYS[1]: the hash. ARGV[1]: now for sluice_now. Returns {now, then per live field: field,
// cooldown until, reason, ejected until}; fields whose holds have both ended are deleted.
const std::string kReadScript = WithScriptNow(R"lua(
local now = sluice_now(ARGV[1])
local out = {now}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local a, b, d = string.match(all[i + 1], '^(%d+) (%d+) (%d+)$')
  local c, r, e = tonumber(a) or 0, tonumber(b) or 0, tonumber(d) or 0
  if math.max(c, e) <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i]
    out[#out + 1] = c
    out[#out + 1] = r
    out[#out + 1] = e
  end
end
return out
)lua");

constexpr int kCooldown = 0;
constexpr int kEjection = 1;

}  // namespace

absl::Status ClusterHolds::Validate(const std::string& redis_name, absl::Duration refresh) {
  if (!IsRedisName(redis_name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sluice.Balancer: redis_name must be 1 to 100 characters of [A-Za-z0-9._-] with "
        "redis, got '", redis_name.substr(0, 100), "'"));
  }
  if (refresh < absl::Milliseconds(1) || refresh > absl::Minutes(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sluice.Balancer: redis_refresh must be in [1ms, 1m], got ", absl::FormatDuration(refresh)));
  }
  return absl::OkStatus();
}

ClusterHolds::ClusterHolds(std::shared_ptr<RedisStore> store, const std::string& redis_name,
                           absl::Duration refresh, const Clock* clock)
    : store_(std::move(store)),
      key_(absl::StrCat(store_->options().key_prefix, ":{lb:", redis_name, "}:holds")),
      refresh_nanos_(absl::ToInt64Nanoseconds(refresh)),
      read_patience_nanos_(ReadPatienceNanos(*store_)),
      clock_(clock),
      mirror_(std::make_shared<Mirror>(clock)) {}

std::string ClusterHolds::FieldOf(std::string_view id) {
  const KeyDigest d = DigestKey(id);
  return absl::StrFormat("%016x%016x", d.hi, d.lo);
}

void ClusterHolds::Track(std::string_view id, const std::shared_ptr<EndpointState>& state) {
  {
    MutexLock lock(&mirror_->mu);
    mirror_->tracked[FieldOf(id)] = state;
  }
  next_read_at_.store(0, std::memory_order_relaxed);  // the next pick reads its holds
}

void ClusterHolds::Untrack(std::string_view id) {
  MutexLock lock(&mirror_->mu);
  mirror_->tracked.erase(FieldOf(id));
}

void ClusterHolds::SendHold(const std::string& field, int kind, int64_t until, Failure reason) {
  const int64_t now = clock_->NowNanos();
  if (until <= now) return;
  mirror_->writes.fetch_add(1, std::memory_order_relaxed);
  // Kept across an outage until the hold would have ended: delivered later, it would start late.
  Delivery delivery;
  delivery.retry_until_nanos =
      AddDuration(Clock::Steady()->NowNanos(), absl::Nanoseconds(until - now));
  const int64_t length_us = std::max<int64_t>(1, (until - now + 999) / 1000);
  RedisScripts::Run(*store_,
                    {&kExtendScript,
                     {key_},
                     {field, absl::StrCat(kind), absl::StrCat(length_us),
                      absl::StrCat(static_cast<int>(reason)), RedisScripts::ScriptNow(*store_)}},
                    /*want_fd=*/false, std::move(delivery));
}

void ClusterHolds::SendCooldown(const std::string& field, int64_t until, Failure reason) {
  SendHold(field, kCooldown, until, reason);
}

void ClusterHolds::SendEjection(const std::string& field, int64_t until) {
  SendHold(field, kEjection, until, Failure::kNone);
}

void ClusterHolds::SendClear(const std::string& field) {
  mirror_->writes.fetch_add(1, std::memory_order_relaxed);
  // A restore is kept across an outage for as long as the longest hold it may end (one day).
  Delivery delivery;
  delivery.retry_until_nanos = AddDuration(Clock::Steady()->NowNanos(), absl::Hours(24));
  RedisScripts::Run(*store_, {&kClearScript, {key_}, {field}}, /*want_fd=*/false,
                    std::move(delivery));
}

void ClusterHolds::MaybeRefresh(int64_t now) {
  if (now < next_read_at_.load(std::memory_order_relaxed)) return;
  int64_t busy_until = mirror_->reading_until.load(std::memory_order_acquire);
  if (now < busy_until) return;  // a read under way
  const int64_t patience = AddDuration(now, absl::Nanoseconds(read_patience_nanos_));
  if (!mirror_->reading_until.compare_exchange_strong(busy_until, patience,
                                                      std::memory_order_acq_rel)) {
    return;  // another thread starts it
  }
  next_read_at_.store(AddDuration(now, absl::Nanoseconds(refresh_nanos_)),
                      std::memory_order_relaxed);
  const uint64_t writes_then = mirror_->writes.load(std::memory_order_relaxed);
  RedisScripts::RunThen(*store_, kReadScript, {key_}, {RedisScripts::ScriptNow(*store_)},
                        [mirror = mirror_, writes_then](PendingReply& reply) {
                          mirror->Apply(reply, writes_then);
                          mirror->reading_until.store(0, std::memory_order_release);
                        });
}

void ClusterHolds::Detach() {
  MutexLock lock(&mirror_->mu);
  mirror_->clock = nullptr;
}

void ClusterHolds::Mirror::Apply(PendingReply& reply, uint64_t writes_then) {
  absl::StatusOr<std::vector<int64_t>> values = reply.Wait(absl::ZeroDuration());
  // Unavailable: the mirror stays (and the next pick past the interval asks again). Anything
  // else is a configuration error the store has logged and counted (RedisStats).
  if (!values.ok()) return;
  const std::vector<std::string>& fields = reply.strings();
  if (values->empty() || values->size() != 1 + 3 * fields.size()) {
    Log(LogLevel::kError, absl::StrCat("sluice.Balancer: an impossible reply to the holds read (",
                                       values->size(), " integers, ", fields.size(),
                                       " strings); please report it"));
    return;
  }
  absl::flat_hash_map<std::string, std::shared_ptr<EndpointState>> states;
  int64_t now = 0;
  {
    MutexLock lock(&mu);
    if (clock == nullptr) return;  // the balancer is gone (and maybe its clock)
    now = clock->NowNanos();
    for (auto& [field, weak] : tracked) {
      if (std::shared_ptr<EndpointState> s = weak.lock()) states.emplace(field, std::move(s));
    }
  }
  if (states.empty()) return;
  // A write sent after this read was: the read may predate it, so it may only lengthen holds.
  const bool exact = writes.load(std::memory_order_relaxed) == writes_then;
  const int64_t server_now_us = (*values)[0];
  auto local = [&](int64_t server_us) -> int64_t {
    if (server_us <= server_now_us) return 0;
    // At most the longest hold (a day) ahead: a corrupt field cannot overflow.
    const int64_t ahead_us = std::min<int64_t>(server_us - server_now_us, int64_t{86400} * 1000000);
    return AddDuration(now, absl::Microseconds(ahead_us));
  };
  absl::flat_hash_map<std::string, EndpointState::Holds> held;
  for (size_t i = 0; i < fields.size(); ++i) {
    const int64_t reason = (*values)[2 + 3 * i];
    EndpointState::Holds h;
    h.cooldown_until = local((*values)[1 + 3 * i]);
    h.cooldown_reason = reason >= 0 && reason < kFailureCount ? static_cast<Failure>(reason)
                                                             : Failure::kNone;
    h.ejected_until = local((*values)[3 + 3 * i]);
    held.emplace(fields[i], h);
  }
  for (auto& [field, state] : states) {
    auto it = held.find(field);
    state->MirrorHolds(it == held.end() ? EndpointState::Holds{} : it->second, exact, now);
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
