#include "admission/redis_sliding.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "admission/admission_options.h"
#include "admission/sliding_log_backend.h"
#include "stores/redis_errors.h"
#include "stores/redis_keys.h"
#include "stores/redis_pending.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// Shared by both scripts. KEYS[1]: the key's counter (member names); KEYS[i + 1]: window i's
// sorted set. ARGV[2]: "now" for sluice_now; per window i, ARGV[2i + 1], ARGV[2i + 2]: its limit
// and period (us). Every number that reaches Redis as text is formatted with %.0f: Lua's own
// tostring (%.14g) would round a microsecond time past 10^14.
//
// The key's "now": at least the newest admission of any window (a key's times never go back).
constexpr absl::string_view kKeyNow = R"lua(
local now = sluice_now(ARGV[2])
local n = #KEYS - 1
for i = 1, n do
  local last = redis.call('ZRANGE', KEYS[i + 1], -1, -1, 'WITHSCORES')
  if #last == 2 and tonumber(last[2]) > now then now = tonumber(last[2]) end
end
)lua";

// ARGV[1]: cost. Admits `cost` into every window or none. Returns {allowed, binding window
// (1-based), remaining, retry_after_us, reset_after_us, the time the members got (us)}.
const std::string kAdmitScript = WithScriptNow(absl::StrCat(kKeyNow, R"lua(
local cost = tonumber(ARGV[1])
local counts, binding, longest = {}, 1, 0
for i = 1, n do
  local limit, period = tonumber(ARGV[2*i + 1]), tonumber(ARGV[2*i + 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', string.format('%.0f', now - period))
  counts[i] = redis.call('ZCARD', KEYS[i + 1])
  if counts[i] + cost > limit then
    -- the (count + cost - limit)-th oldest must leave first
    local j = counts[i] + cost - limit - 1
    local t = redis.call('ZRANGE', KEYS[i + 1], j, j, 'WITHSCORES')
    local wait = tonumber(t[2]) + period - now
    if wait > longest then longest, binding = wait, i end
  end
end
if longest > 0 then
  local limit, period = tonumber(ARGV[2*binding + 1]), tonumber(ARGV[2*binding + 2])
  local last = redis.call('ZRANGE', KEYS[binding + 1], -1, -1, 'WITHSCORES')
  return {0, binding, math.max(limit - counts[binding], 0), longest, tonumber(last[2]) + period - now, now}
end
local seq = redis.call('INCRBY', KEYS[1], cost)
local least, longest_period = nil, 0
local members = {}
for m = seq - cost + 1, seq do
  members[#members + 1] = string.format('%.0f', now)
  members[#members + 1] = string.format('%.0f', m)
end
for i = 1, n do
  local limit, period = tonumber(ARGV[2*i + 1]), tonumber(ARGV[2*i + 2])
  redis.call('ZADD', KEYS[i + 1], unpack(members))
  redis.call('PEXPIRE', KEYS[i + 1], math.ceil(period / 1000) + 1)
  if period > longest_period then longest_period = period end
  local left = limit - counts[i] - cost
  if least == nil or left < least then least, binding = left, i end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(longest_period / 1000) + 1)
return {1, binding, least, 0, tonumber(ARGV[2*binding + 2]), now}
)lua"));

// Refund. KEYS, ARGV[2] as above; ARGV[1]: cost; ARGV[3]: the admission's time (us, its
// members' score). Removes `cost` members of that score from every window: members of one score
// are interchangeable (the count of any interval is the same whichever of them goes), so this
// removes exactly that admission's. A member already gone (out of its window) needs nothing.
const std::string kRefundScript = WithScriptNow(R"lua(
local cost = tonumber(ARGV[1])
local at = ARGV[3]
for i = 2, #KEYS do
  local members = redis.call('ZRANGEBYSCORE', KEYS[i], at, at, 'LIMIT', 0, cost)
  if #members > 0 then redis.call('ZREM', KEYS[i], unpack(members)) end
end
return {1}
)lua");

// Read-only. Allowed iff one more admission would pass every window; the binding window is the
// one that makes it wait longest, or else the one with the least left. Returns as kAdmitScript.
const std::string kPeekScript = WithScriptNow(absl::StrCat(kKeyNow, R"lua(
local allowed, binding, least, longest = 1, 1, nil, 0
local counts = {}
for i = 1, n do
  local limit, period = tonumber(ARGV[2*i + 1]), tonumber(ARGV[2*i + 2])
  local after = string.format('(%.0f', now - period)
  counts[i] = redis.call('ZCOUNT', KEYS[i + 1], after, '+inf')
  if counts[i] + 1 > limit then
    local t = redis.call('ZRANGEBYSCORE', KEYS[i + 1], after, '+inf', 'WITHSCORES', 'LIMIT',
                         counts[i] - limit, 1)
    local wait = tonumber(t[2]) + period - now
    if allowed == 1 or wait > longest then longest, binding = wait, i end
    allowed = 0
  elseif allowed == 1 and (least == nil or limit - counts[i] < least) then
    least, binding = limit - counts[i], i
  end
end
local limit, period = tonumber(ARGV[2*binding + 1]), tonumber(ARGV[2*binding + 2])
local last = redis.call('ZRANGE', KEYS[binding + 1], -1, -1, 'WITHSCORES')
local reset = 0
if #last == 2 and tonumber(last[2]) > now - period then reset = tonumber(last[2]) + period - now end
return {allowed, binding, math.max(limit - counts[binding], 0), longest, reset}
)lua"));

constexpr int64_t kMaxReplyMicros = std::numeric_limits<int64_t>::max() / 1000;

class RedisSlidingBackend final : public SlidingBackendBase {
 public:
  RedisSlidingBackend(std::vector<GcraWindow> compiled, const Clock* clock,
                      std::unique_ptr<ClusterSliding> redis)
      : SlidingBackendBase(std::move(compiled), clock), redis_(std::move(redis)) {}

  absl::StatusOr<Decision> Admit(const KeyDigest& d, int64_t cost, int64_t,
                                 const KeyWindows* limits) override {
    return redis_->Finish(
        d, cost, redis_->Start(d, cost, /*want_fd=*/false, Args(limits))->Wait(timeout()),
        Key(limits));
  }
  absl::StatusOr<PendingDecision> StartAdmit(const KeyDigest& d, int64_t cost, int64_t,
                                             const KeyWindows* limits) override {
    ClusterSliding* redis = redis_.get();
    return WaitForReply<Decision>(
        redis->Start(d, cost, /*want_fd=*/true, Args(limits)), timeout(),
        [redis, d, cost, key = Copy(limits)](const auto& reply, absl::Status* error) {
          return redis->OrRefusal(redis->Finish(d, cost, reply, Key(key)), error);
        });
  }
  bool Allow(const KeyDigest& d, int64_t cost, int64_t now_nanos,
             const KeyWindows* limits) override {
    absl::StatusOr<Decision> decision = Admit(d, cost, now_nanos, limits);
    return decision.ok() && decision->allowed;
  }
  std::optional<bool> AllowWithoutWaiting(const KeyDigest&, int64_t, int64_t,
                                          const KeyWindows*) override {
    return std::nullopt;
  }
  absl::Status Refund(const KeyDigest& d, int64_t cost, int64_t charged_at_nanos, int64_t,
                      const KeyWindows*) override {
    return redis_->FinishRefund(
        redis_->StartRefund(d, cost, charged_at_nanos, /*want_fd=*/false)->Wait(timeout()));
  }
  PendingDecision StartPeek(const KeyDigest& d, int64_t, const KeyWindows* limits) override {
    ClusterSliding* redis = redis_.get();
    return WaitForReply<Decision>(
        redis->StartPeek(d, /*want_fd=*/true, Args(limits)), timeout(),
        [redis, d, key = Copy(limits)](const auto& reply, absl::Status* error) {
          return redis->OrRefusal(redis->FinishPeek(d, reply, Key(key)), error);
        });
  }

  // Nothing is kept here: the keys live in Redis, with their own expiry.
  int64_t DropIdle(int64_t) override { return 0; }
  int64_t key_count() const override { return 0; }
  int64_t memory_bytes() const override { return 0; }
  int64_t failure_mode_decisions() const override { return redis_->failure_decisions(); }

 protected:
  absl::Status CompileForScope(absl::string_view object, KeyWindows* k) const override {
    return redis_->CompileArgs(object, k->sliding, &k->redis_args);
  }

 private:
  static const std::vector<std::string>* Args(const KeyWindows* limits) {
    return limits != nullptr ? &limits->redis_args : nullptr;
  }
  // The per-key windows a reply describes (a copy for replies decoded later); see
  // RedisStrictGcraBackend.
  static const SlidingWindow* Key(const KeyWindows* limits) {
    return limits != nullptr ? limits->sliding.data() : nullptr;
  }
  static std::vector<SlidingWindow> Copy(const KeyWindows* limits) {
    return limits != nullptr ? limits->sliding : std::vector<SlidingWindow>();
  }
  static const SlidingWindow* Key(const std::vector<SlidingWindow>& copy) {
    return copy.empty() ? nullptr : copy.data();
  }
  absl::Duration timeout() const { return redis_->reply_timeout(); }

  const std::unique_ptr<ClusterSliding> redis_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterSliding>> ClusterSliding::Create(
    absl::string_view object, const ClusterOptions& cluster,
    const std::vector<SlidingWindow>& windows, const Clock* clock) {
  if (absl::Status s = CheckClusterOptions(object, cluster); !s.ok()) return s;
  std::unique_ptr<ClusterSliding> c(new ClusterSliding);
  c->object_ = std::string(object);
  c->cluster_ = cluster;
  c->windows_ = windows;
  c->clock_ = clock;
  c->failure_mode_ = std::make_unique<FailureModePolicy>(cluster);
  std::vector<SlidingWindow> local;
  std::vector<GcraWindow> local_compiled;
  for (size_t i = 0; i < windows.size(); ++i) {
    const SlidingWindow& w = windows[i];
    if (w.period_nanos % 1000 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          object, ": windows[", i, "].period must be a whole number of microseconds in cluster ",
          "scope (Redis's clock), got ", absl::FormatDuration(absl::Nanoseconds(w.period_nanos))));
    }
    absl::StrAppend(&c->window_args_.emplace_back(), w.limit);
    absl::StrAppend(&c->window_args_.emplace_back(), w.period_nanos / 1000);
    if (cluster.on_failure != FailureMode::kLocal) continue;
    // The local stand-in while Redis is down: this process's share of each window.
    const SlidingWindow share{c->failure_mode_->LocalShare(w.limit), w.period_nanos};
    absl::StatusOr<GcraWindow> compiled = CompileWindow(
        Window::Sliding(share.limit, absl::Nanoseconds(share.period_nanos)),
        absl::StrCat(object, ": "));
    if (!compiled.ok()) return compiled.status();
    local.push_back(share);
    local_compiled.push_back(*compiled);
  }
  if (cluster.on_failure == FailureMode::kLocal) {
    c->local_ = NewProcessSlidingBackend(std::move(local), std::move(local_compiled),
                                         int64_t{1} << 20, clock);
  }
  c->reply_timeout_ = ReplyTimeout(*cluster.store);
  return c;
}

std::vector<std::string> ClusterSliding::Keys(const KeyDigest& d) const {
  const std::string tag = KeyTag(*cluster_.store, cluster_.redis_name, d);
  std::vector<std::string> keys = {absl::StrCat(tag, ":n")};
  for (size_t i = 0; i < windows_.size(); ++i) keys.push_back(absl::StrCat(tag, ":z", i));
  return keys;
}

absl::Status ClusterSliding::CompileArgs(absl::string_view object,
                                         const std::vector<SlidingWindow>& windows,
                                         std::vector<std::string>* args) {
  for (size_t i = 0; i < windows.size(); ++i) {
    const SlidingWindow& w = windows[i];
    if (w.period_nanos % 1000 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          object, ": windows[", i, "].period must be a whole number of microseconds in cluster ",
          "scope (Redis's clock), got ", absl::FormatDuration(absl::Nanoseconds(w.period_nanos))));
    }
    absl::StrAppend(&args->emplace_back(), w.limit);
    absl::StrAppend(&args->emplace_back(), w.period_nanos / 1000);
  }
  return absl::OkStatus();
}

std::vector<std::string> ClusterSliding::Args(int64_t cost,
                                              const std::vector<std::string>* window_args) const {
  const std::vector<std::string>& windows = window_args != nullptr ? *window_args : window_args_;
  std::vector<std::string> args = {absl::StrCat(cost), RedisScripts::ScriptNow(*cluster_.store)};
  args.insert(args.end(), windows.begin(), windows.end());
  return args;
}

std::shared_ptr<PendingReply> ClusterSliding::Start(const KeyDigest& d, int64_t cost,
                                                    bool want_fd,
                                                    const std::vector<std::string>* window_args) {
  return RedisScripts::Run(*cluster_.store, kAdmitScript, Keys(d), Args(cost, window_args),
                           want_fd);
}

std::shared_ptr<PendingReply> ClusterSliding::StartPeek(
    const KeyDigest& d, bool want_fd, const std::vector<std::string>* window_args) {
  return RedisScripts::Run(*cluster_.store, kPeekScript, Keys(d), Args(1, window_args), want_fd);
}

std::shared_ptr<PendingReply> ClusterSliding::StartRefund(const KeyDigest& d, int64_t cost,
                                                          int64_t charged_at_nanos,
                                                          bool want_fd) {
  std::vector<std::string> args = {absl::StrCat(cost), RedisScripts::ScriptNow(*cluster_.store),
                                   absl::StrCat(charged_at_nanos / 1000)};
  return RedisScripts::Run(*cluster_.store, kRefundScript, Keys(d), std::move(args), want_fd);
}

absl::Status ClusterSliding::FinishRefund(const absl::StatusOr<std::vector<int64_t>>& reply) {
  // A refund Redis did not receive is lost: the members stay, which only refuses more.
  if (!reply.ok() && IsTransportError(reply.status())) return absl::OkStatus();
  return reply.status();
}

absl::StatusOr<Decision> ClusterSliding::Decode(const std::vector<int64_t>& reply,
                                                bool stamped, const SlidingWindow* key) const {
  auto impossible = [&](absl::string_view what) {
    absl::Status s = absl::InternalError(
        absl::StrCat(object_, ": impossible reply from Redis (", what,
                     "): a protocol error or a foreign script"));
    RedisScripts::NoteError(*cluster_.store, s);
    return s;
  };
  if (reply.size() != (stamped ? 6u : 5u)) {
    return impossible(absl::StrCat(reply.size(), " values"));
  }
  if (reply[0] != 0 && reply[0] != 1) return impossible("allowed is neither 0 nor 1");
  if (reply[1] < 1 || reply[1] > static_cast<int64_t>(windows_.size())) {
    return impossible("no such window");
  }
  if (reply[2] < 0 || reply[2] > kMaxSlidingLimit) return impossible("remaining out of range");
  for (size_t i = 3; i < reply.size(); ++i) {
    if (reply[i] < 0 || reply[i] > kMaxReplyMicros) return impossible("a time out of range");
  }
  Decision out;
  out.allowed = reply[0] == 1;
  // The binding window: the call's per-key window when it had some, else the object's.
  const SlidingWindow& w = key != nullptr ? key[reply[1] - 1] : windows_[reply[1] - 1];
  out.limit = w.limit;
  out.remaining = reply[2];
  out.retry_after_nanos = reply[3] * 1000;
  out.reset_after_nanos = reply[4] * 1000;
  out.window_nanos = w.period_nanos;
  if (stamped && out.allowed) out.charged_at_nanos = reply[5] * 1000;
  return out;
}

absl::StatusOr<Decision> ClusterSliding::Failed(const absl::Status& status, const KeyDigest& d,
                                                int64_t cost, bool peek) {
  absl::StatusOr<Decision> decided = failure_mode_->Decide(
      status, windows_[0].limit, windows_[0].period_nanos, [&](Decision* out) {
        const int64_t now = clock_->NowNanos();
        if (peek) {
          *out = local_->StartPeek(d, now).Get();
          return;
        }
        // Clamped to the local share, the cost always fits the local log's precondition.
        absl::StatusOr<Decision> local =
            local_->Admit(d, std::min(cost, local_->min_burst()), now);
        if (local.ok()) *out = *local;  // else the local table is full: refused
      });
  // Redis recorded nothing: there is nothing Refund could give back there.
  if (decided.ok()) decided->charged_at_nanos = Decision::kNoCharge;
  return decided;
}

Decision ClusterSliding::OrRefusal(absl::StatusOr<Decision> d, absl::Status* error) const {
  return failure_mode_->OrRefusal(std::move(d), windows_[0].limit, windows_[0].period_nanos,
                                  error);
}

absl::StatusOr<Decision> ClusterSliding::Finish(const KeyDigest& d, int64_t cost,
                                                const absl::StatusOr<std::vector<int64_t>>& reply,
                                                const SlidingWindow* key) {
  if (reply.ok()) return Decode(*reply, /*stamped=*/true, key);
  return Failed(reply.status(), d, cost, /*peek=*/false);
}

absl::StatusOr<Decision> ClusterSliding::FinishPeek(
    const KeyDigest& d, const absl::StatusOr<std::vector<int64_t>>& reply,
    const SlidingWindow* key) {
  if (reply.ok()) return Decode(*reply, /*stamped=*/false, key);
  return Failed(reply.status(), d, 1, /*peek=*/true);
}

absl::StatusOr<std::unique_ptr<GcraBackend>> NewRedisSlidingBackend(
    const GcraSpec& spec, std::vector<SlidingWindow> windows) {
  absl::StatusOr<std::unique_ptr<ClusterSliding>> redis =
      ClusterSliding::Create(spec.object, spec.scope->cluster, windows, spec.clock);
  if (!redis.ok()) return redis.status();
  return std::unique_ptr<GcraBackend>(
      std::make_unique<RedisSlidingBackend>(spec.compiled, spec.clock, *std::move(redis)));
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
