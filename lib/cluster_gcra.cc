#include "cluster_gcra.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "cluster_keys.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

constexpr int64_t kMaxScale = 16;
constexpr int64_t kMaxTolerance = int64_t{1} << 50;

// KEYS[i]: window i's TAT. ARGV[1]: cost; ARGV[2]: epoch (unix s); then per window i (1-based)
// ARGV[3i], ARGV[3i+1], ARGV[3i+2]: scale (units per us), unit (emission interval), tolerance.
// All windows or none. Returns {allowed, binding window (1-based), remaining, retry_after_us,
// reset_after_us}.
const std::string kAdmitScript = R"lua(
local t = redis.call('TIME')
local now_us = (tonumber(t[1]) - tonumber(ARGV[2])) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local n = #KEYS
local nows, tats, nexts = {}, {}, {}
local refused, binding, longest = false, 1, -1
for i = 1, n do
  local scale, unit, tol = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1]), tonumber(ARGV[3*i+2])
  local now = now_us * scale
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  nows[i], tats[i], nexts[i] = now, tat, tat + cost * unit
  if nexts[i] - now > tol then
    refused = true
    local wait = math.ceil((nexts[i] - tol - now) / scale)
    if wait > longest then longest, binding = wait, i end
  end
end
if refused then
  local i = binding
  local scale, unit, tol = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1]), tonumber(ARGV[3*i+2])
  local used = tats[i] - nows[i]
  return {0, i, math.floor((tol - used) / unit), math.max(longest, 1), math.ceil(used / scale)}
end
local least = nil
for i = 1, n do
  local scale, unit, tol = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1]), tonumber(ARGV[3*i+2])
  local used = nexts[i] - nows[i]
  if used > 0 then
    redis.call('SET', KEYS[i], string.format('%.0f', nexts[i]), 'PX', math.ceil(used / scale / 1000) + 1)
  end
  local left = math.floor((tol - used) / unit)
  if least == nil or left < least then least, binding = left, i end
end
return {1, binding, least, 0, math.ceil((nexts[binding] - nows[binding]) / tonumber(ARGV[3*binding]))}
)lua";

// Leased mode. KEYS, ARGV[2] and the window triples as in kAdmitScript; ARGV[1]: units wanted;
// ARGV[3n+3]: units given back from the previous lease (charged earlier, never used). Gives back
// first, then grants as many units as every window has room for, up to the number wanted, charging
// them now. Returns {granted, binding window, remaining, retry_after_us (when none granted),
// reset_after_us}.
const std::string kLeaseScript = R"lua(
local t = redis.call('TIME')
local now_us = (tonumber(t[1]) - tonumber(ARGV[2])) * 1000000 + tonumber(t[2])
local want = tonumber(ARGV[1])
local n = #KEYS
local back = tonumber(ARGV[3*n + 3])
local nows, tats = {}, {}
local grant, binding = want, 1
for i = 1, n do
  local scale, unit, tol = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1]), tonumber(ARGV[3*i+2])
  local now = now_us * scale
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if back > 0 then tat = math.max(tat - back * unit, now) end
  if tat < now then tat = now end
  nows[i], tats[i] = now, tat
  local room = math.floor((tol - (tat - now)) / unit)
  if room < grant then grant, binding = math.max(room, 0), i end
end
local scale, unit, tol = tonumber(ARGV[3*binding]), tonumber(ARGV[3*binding+1]), tonumber(ARGV[3*binding+2])
if grant == 0 then
  for i = 1, n do
    if back > 0 then
      local sc = tonumber(ARGV[3*i])
      redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - nows[i]) / sc / 1000) + 1)
    end
  end
  local used = tats[binding] - nows[binding]
  return {0, binding, math.floor((tol - used) / unit), math.max(math.ceil((tats[binding] + unit - tol - nows[binding]) / scale), 1), math.ceil(used / scale)}
end
for i = 1, n do
  local sc, un = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local nt = tats[i] + grant * un
  tats[i] = nt
  redis.call('SET', KEYS[i], string.format('%.0f', nt), 'PX', math.ceil((nt - nows[i]) / sc / 1000) + 1)
end
local used = tats[binding] - nows[binding]
return {grant, binding, math.floor((tol - used) / unit), 0, math.ceil(used / scale)}
)lua";

// LeakyBucket (one window). KEYS, ARGV[2] and the window triple as in kAdmitScript; ARGV[1]: cost;
// ARGV[6]: max wait, in the window's units. Books the slot unless the wait would exceed the max.
// Returns {allowed, 1, remaining, retry_after_us, reset_after_us, delay_us}.
const std::string kQueueScript = R"lua(
local t = redis.call('TIME')
local now_us = (tonumber(t[1]) - tonumber(ARGV[2])) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local scale, unit, tol, max_wait = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_us * scale
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local next = tat + cost * unit
local wait = next - tol - now
if wait > max_wait then
  local used = tat - now
  return {0, 1, math.max(math.floor((tol - used) / unit), 0), math.max(math.ceil((wait - max_wait) / scale), 1), math.ceil(used / scale), 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / scale / 1000) + 1)
local used = next - now
return {1, 1, math.max(math.floor((tol - used) / unit), 0), 0, math.ceil(used / scale), math.max(math.ceil(wait / scale), 0)}
)lua";

// TokenBudget settle/charge. KEYS, ARGV[2] and the window triples as in kAdmitScript; ARGV[1]: the
// change in units of cost, negative for a refund (a refund never fills a window past whole, a
// charge may leave it in debt). Returns {in_budget, binding window, remaining (negative: debt),
// retry_after_us (until the debt is repaid), reset_after_us}.
const std::string kAdjustScript = R"lua(
local t = redis.call('TIME')
local now_us = (tonumber(t[1]) - tonumber(ARGV[2])) * 1000000 + tonumber(t[2])
local delta = tonumber(ARGV[1])
local least, binding, btat, bnow = nil, 1, 0, 0
for i = 1, #KEYS do
  local scale, unit, tol = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1]), tonumber(ARGV[3*i+2])
  local now = now_us * scale
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local change = delta * unit
  local next = tat
  if change >= 0 then next = math.max(tat, now) + change
  elseif tat > now then next = math.max(tat + change, now) end
  if next > now then
    redis.call('SET', KEYS[i], string.format('%.0f', next), 'PX', math.ceil((next - now) / scale / 1000) + 1)
  elseif tat > now then
    redis.call('DEL', KEYS[i])
  end
  local left = math.floor((tol - (math.max(next, now) - now)) / unit)
  if least == nil or left < least then least, binding, btat, bnow = left, i, math.max(next, now), now end
end
local scale, tol = tonumber(ARGV[3*binding]), tonumber(ARGV[3*binding+2])
local retry = 0
if least < 0 then retry = math.max(math.ceil((btat - tol - bnow) / scale), 1) end
local ok = 0
if least >= 0 then ok = 1 end
return {ok, binding, least, retry, math.ceil((btat - bnow) / scale)}
)lua";

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterGcra>> ClusterGcra::Create(absl::string_view object,
                                                                 const ClusterOptions& cluster,
                                                                 const std::vector<Window>& windows,
                                                                 const Clock* clock) {
  if (absl::Status s = CheckClusterOptions(object, cluster); !s.ok()) return s;
  std::unique_ptr<ClusterGcra> g(new ClusterGcra);
  g->cluster_ = cluster;
  std::vector<GcraWindow> local;
  for (size_t i = 0; i < windows.size(); ++i) {
    const Window& w = windows[i];
    const int64_t period_nanos = absl::ToInt64Nanoseconds(w.period);
    if (period_nanos % 1000 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          object, ": windows[", i, "].period must be a whole number of microseconds in cluster ",
          "scope (Redis's clock), got ", absl::FormatDuration(w.period)));
    }
    const int64_t period_us = period_nanos / 1000;
    if (w.limit > period_us) {
      return absl::InvalidArgumentError(absl::StrCat(
          object, ": windows[", i, "].limit must be at most one per microsecond in cluster scope"));
    }
    RemoteWindow r{w.limit, period_nanos, 0, 0, 0};
    const int64_t gcd = std::gcd(w.limit, period_us);
    if (w.limit / gcd <= kMaxScale) {
      r.scale = w.limit / gcd;
      r.unit = period_us / gcd;
    } else {
      r.scale = kMaxScale;
      r.unit = (period_us * kMaxScale + w.limit - 1) / w.limit;
    }
    if (__builtin_mul_overflow(w.effective_burst(), r.unit, &r.tolerance) ||
        r.tolerance > kMaxTolerance) {
      return absl::InvalidArgumentError(
          absl::StrCat(object, ": windows[", i, "].burst is too large for cluster scope"));
    }
    g->windows_.push_back(r);
    absl::StrAppend(&g->window_args_.emplace_back(), r.scale);
    absl::StrAppend(&g->window_args_.emplace_back(), r.unit);
    absl::StrAppend(&g->window_args_.emplace_back(), r.tolerance);
    // The local stand-in while Redis is down: this process's share of the window.
    Window share{std::max<int64_t>(1, w.limit / cluster.local_share), w.period,
                 std::max<int64_t>(1, w.effective_burst() / cluster.local_share)};
    absl::StatusOr<GcraWindow> compiled = CompileWindow(share, absl::StrCat(object, ": "));
    if (!compiled.ok()) return compiled.status();
    local.push_back(*compiled);
  }
  if (cluster.on_failure == FailureMode::kLocal) {
    g->local_ = std::make_unique<GcraKeyedState>(std::move(local), int64_t{1} << 20, clock);
  }
  g->reply_timeout_ = ReplyTimeout(cluster);
  return g;
}

std::vector<std::string> ClusterGcra::Keys(const KeyDigest& d) const {
  const std::string tag = absl::StrCat(KeyTag(cluster_, d), ":w");
  std::vector<std::string> keys;
  for (size_t i = 0; i < windows_.size(); ++i) keys.push_back(absl::StrCat(tag, i));
  return keys;
}

std::vector<std::string> ClusterGcra::Args(int64_t first) const {
  std::vector<std::string> args = {absl::StrCat(first), absl::StrCat(kRedisEpochUnixSeconds)};
  args.insert(args.end(), window_args_.begin(), window_args_.end());
  return args;
}

std::shared_ptr<PendingReply> ClusterGcra::Start(const KeyDigest& d, int64_t cost, bool want_fd) {
  return cluster_.store->RunScript(kAdmitScript, Keys(d), Args(cost), want_fd);
}

std::shared_ptr<PendingReply> ClusterGcra::StartLease(const KeyDigest& d, int64_t want,
                                                      int64_t give_back, bool want_fd) {
  std::vector<std::string> args = Args(want);
  args.push_back(absl::StrCat(give_back));
  return cluster_.store->RunScript(kLeaseScript, Keys(d), std::move(args), want_fd);
}

std::shared_ptr<PendingReply> ClusterGcra::StartQueue(const KeyDigest& d, int64_t cost,
                                                      int64_t max_wait_nanos, bool want_fd) {
  std::vector<std::string> args = Args(cost);
  args.push_back(absl::StrCat(max_wait_nanos / 1000 * windows_[0].scale));
  return cluster_.store->RunScript(kQueueScript, Keys(d), std::move(args), want_fd);
}

std::shared_ptr<PendingReply> ClusterGcra::StartAdjust(const KeyDigest& d, int64_t delta,
                                                       bool want_fd) {
  // Lua numbers are exact below 2^53: keep delta * unit within kMaxTolerance.
  int64_t bound = kMaxTolerance;
  for (const RemoteWindow& w : windows_) bound = std::min(bound, kMaxTolerance / w.unit);
  return cluster_.store->RunScript(kAdjustScript, Keys(d), Args(std::clamp(delta, -bound, bound)),
                                   want_fd);
}

bool ClusterGcra::Decode(const absl::StatusOr<std::vector<int64_t>>& reply, size_t size,
                         Decision* out) const {
  if (!reply.ok() || reply->size() != size || (*reply)[1] < 1 ||
      (*reply)[1] > static_cast<int64_t>(windows_.size())) {
    return false;
  }
  const RemoteWindow& w = windows_[(*reply)[1] - 1];
  out->allowed = (*reply)[0] == 1;
  out->limit = w.limit;
  out->remaining = (*reply)[2];
  out->retry_after_nanos = (*reply)[3] * 1000;
  out->reset_after_nanos = (*reply)[4] * 1000;
  out->window_nanos = w.period_nanos;
  if (size > 5) out->delay_nanos = (*reply)[5] * 1000;
  return true;
}

Decision ClusterGcra::Failed(const std::function<void(Decision*)>& decide_locally) {
  failure_decisions_.fetch_add(1, std::memory_order_relaxed);
  Decision out;
  out.limit = windows_[0].limit;
  out.window_nanos = windows_[0].period_nanos;
  switch (cluster_.on_failure) {
    case FailureMode::kAllow:
      out.allowed = true;
      break;
    case FailureMode::kDeny:
      out.retry_after_nanos = absl::ToInt64Nanoseconds(cluster_.store->options().reconnect_interval);
      break;
    case FailureMode::kLocal:
      decide_locally(&out);
      break;
  }
  return out;
}

Decision ClusterGcra::FinishQueue(const KeyDigest& d, int64_t cost, int64_t max_wait_nanos,
                                  const absl::StatusOr<std::vector<int64_t>>& reply) {
  Decision out;
  if (Decode(reply, 6, &out)) return out;
  return Failed([&](Decision* local) {
    // Clamped to the local burst, the cost always fits Queue's precondition.
    if (!local_->Queue(d, std::min(cost, local_->min_burst()), max_wait_nanos,
                       local_->clock().NowNanos(), local)
             .ok()) {
      local->allowed = false;
    }
  });
}

Decision ClusterGcra::FinishAdjust(const KeyDigest& d, int64_t delta,
                                   const absl::StatusOr<std::vector<int64_t>>& reply) {
  Decision out;
  if (Decode(reply, 5, &out)) return out;
  return Failed([&](Decision* local) {
    if (!local_->Adjust(d, delta, local_->clock().NowNanos(), local).ok()) local->allowed = false;
  });
}

Decision ClusterGcra::Finish(const KeyDigest& d, int64_t cost,
                             const absl::StatusOr<std::vector<int64_t>>& reply) {
  Decision out;
  if (Decode(reply, 5, &out)) return out;
  return Failed([&](Decision* local) {
    if (!local_->Admit(d, std::min(cost, local_->min_burst()), local_->clock().NowNanos(), local)
             .ok()) {
      local->allowed = false;
    }
  });
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
