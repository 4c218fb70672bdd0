#include "stores/redis_scripts.h"
#include "admission/redis_gcra.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "absl/numeric/int128.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "admission/admission_options.h"
#include "stores/redis_keys.h"
#include "stores/redis_errors.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

constexpr int64_t kMaxScale = 16;
constexpr int64_t kMaxTolerance = int64_t{1} << 50;

// KEYS[i]: window i's TAT. ARGV[1]: cost; ARGV[2]: "now" for sluice_now (empty: the server's
// TIME); then per window i (1-based) ARGV[3i], ARGV[3i+1], ARGV[3i+2]: scale (units per us), unit
// (emission interval), tolerance. All windows or none. Returns {allowed, binding window
// (1-based), remaining, retry_after_us, reset_after_us, now_us (for Refund)}.
const std::string kAdmitScript = WithScriptNow(R"lua(
local now_us = sluice_now(ARGV[2])
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
  return {0, i, math.floor((tol - used) / unit), math.max(longest, 1), math.ceil(used / scale), now_us}
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
return {1, binding, least, 0, math.ceil((nexts[binding] - nows[binding]) / tonumber(ARGV[3*binding])), now_us}
)lua");

// Refund. KEYS, ARGV[2] and the window triples as in kAdmitScript; ARGV[1]: cost; ARGV[3n+3]:
// the admission's now_us. Per window, gives back what is left of that charge (its cost minus
// what drained since: see GcraState::Refund in gcra.h for why that is safe). Returns {1}.
const std::string kRefundScript = WithScriptNow(R"lua(
local now_us = sluice_now(ARGV[2])
local cost = tonumber(ARGV[1])
local n = #KEYS
local at_us = tonumber(ARGV[3*n + 3])
for i = 1, n do
  local scale, unit = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local now = now_us * scale
  local give = cost * unit - math.max(0, (now_us - at_us) * scale)
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if give > 0 and tat > now then
    local next = math.max(tat - give, now)
    if next > now then
      redis.call('SET', KEYS[i], string.format('%.0f', next), 'PX', math.ceil((next - now) / scale / 1000) + 1)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return {1}
)lua");

// Leased mode. KEYS, ARGV[2] and the window triples as in kAdmitScript; ARGV[1]: units wanted
// (0: only give back). ARGV[3n+3], ARGV[3n+4], ARGV[3n+5]: the previous lease's unused units, its
// grant time (ms since the epoch) and how many it granted. The give-back first (only the part of
// the returned units still ahead of now: see leased_gcra.h), then as many units as every window
// has room for, up to the number wanted, charged now. Returns {granted, binding window,
// remaining, retry_after_us (when none granted), reset_after_us, grant time (ms)}.
const std::string kLeaseScript = WithScriptNow(R"lua(
local now_us = sluice_now(ARGV[2])
local want = tonumber(ARGV[1])
local n = #KEYS
local back = tonumber(ARGV[3*n + 3])
local back_us = tonumber(ARGV[3*n + 4]) * 1000
local back_granted = tonumber(ARGV[3*n + 5])
local nows, tats = {}, {}
local grant, binding = want, 1
for i = 1, n do
  local scale, unit, tol = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1]), tonumber(ARGV[3*i+2])
  local now = now_us * scale
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if back > 0 and tat > now then
    local lease_end = back_us * scale + back_granted * unit
    local credit = math.min(back * unit, math.max(lease_end - now, 0))
    tat = math.max(tat - credit, now)
  end
  if tat < now then tat = now end
  nows[i], tats[i] = now, tat
  local room = math.floor((tol - (tat - now)) / unit)
  if room < grant then grant, binding = math.max(room, 0), i end
end
local scale, unit, tol = tonumber(ARGV[3*binding]), tonumber(ARGV[3*binding+1]), tonumber(ARGV[3*binding+2])
local grant_ms = math.floor(now_us / 1000)
if grant == 0 then
  for i = 1, n do
    if back > 0 then
      local sc = tonumber(ARGV[3*i])
      if tats[i] > nows[i] then
        redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - nows[i]) / sc / 1000) + 1)
      else
        redis.call('DEL', KEYS[i])
      end
    end
  end
  local used = tats[binding] - nows[binding]
  return {0, binding, math.floor((tol - used) / unit), math.max(math.ceil((tats[binding] + unit - tol - nows[binding]) / scale), 1), math.ceil(used / scale), grant_ms}
end
for i = 1, n do
  local sc, un = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local nt = tats[i] + grant * un
  tats[i] = nt
  redis.call('SET', KEYS[i], string.format('%.0f', nt), 'PX', math.ceil((nt - nows[i]) / sc / 1000) + 1)
end
local used = tats[binding] - nows[binding]
return {grant, binding, math.floor((tol - used) / unit), 0, math.ceil(used / scale), grant_ms}
)lua");

// LeakyBucket (one window). KEYS, ARGV[2] and the window triple as in kAdmitScript; ARGV[1]: cost;
// ARGV[6]: max wait, in the window's units. Books the slot unless the wait would exceed the max.
// Returns {allowed, 1, remaining, retry_after_us, reset_after_us, delay_us, now_us}.
const std::string kQueueScript = WithScriptNow(R"lua(
local now_us = sluice_now(ARGV[2])
local cost = tonumber(ARGV[1])
local scale, unit, tol, max_wait = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_us * scale
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local next = tat + cost * unit
local wait = next - tol - now
if wait > max_wait then
  local used = tat - now
  return {0, 1, math.max(math.floor((tol - used) / unit), 0), math.max(math.ceil((wait - max_wait) / scale), 1), math.ceil(used / scale), 0, now_us}
end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / scale / 1000) + 1)
local used = next - now
return {1, 1, math.max(math.floor((tol - used) / unit), 0), 0, math.ceil(used / scale), math.max(math.ceil(wait / scale), 0), now_us}
)lua");

// TokenBudget settle/charge. KEYS, ARGV[2] and the window triples as in kAdmitScript; ARGV[1]: the
// change in units of cost, negative for a refund (a refund never fills a window past whole, a
// charge may leave it in debt). Returns {in_budget, binding window, remaining (negative: debt),
// retry_after_us (until the debt is repaid), reset_after_us}.
const std::string kAdjustScript = WithScriptNow(R"lua(
local now_us = sluice_now(ARGV[2])
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
)lua");

// Peek (read-only). KEYS, ARGV[2] and the window triples as in kAdmitScript. Allowed iff one unit
// would pass every window; the binding window is the one that makes a unit wait longest, or else
// the one with the least left. Returns {allowed, binding window, remaining (negative: debt),
// retry_after_us (until one unit passes), reset_after_us}.
const std::string kPeekScript = WithScriptNow(R"lua(
local now_us = sluice_now(ARGV[2])
local allowed, binding, least, longest = 1, 1, nil, 0
local tats, nows = {}, {}
for i = 1, #KEYS do
  local scale, unit, tol = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1]), tonumber(ARGV[3*i+2])
  local now = now_us * scale
  local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or '0'), now)
  tats[i], nows[i] = tat, now
  local left = math.floor((tol - (tat - now)) / unit)
  local wait = math.max(math.ceil((tat + unit - tol - now) / scale), 0)
  if wait > 0 then
    if allowed == 1 or wait > longest then longest, binding = wait, i end
    allowed = 0
  elseif allowed == 1 and (least == nil or left < least) then
    least, binding = left, i
  end
end
local scale, unit, tol = tonumber(ARGV[3*binding]), tonumber(ARGV[3*binding+1]), tonumber(ARGV[3*binding+2])
local used = tats[binding] - nows[binding]
return {allowed, binding, math.floor((tol - used) / unit), longest, math.ceil(used / scale)}
)lua");

// Replies carry microseconds that Decode turns into nanoseconds: anything beyond this is
// impossible (and would overflow).
constexpr int64_t kMaxReplyMicros = std::numeric_limits<int64_t>::max() / 1000;

}  // namespace

absl::StatusOr<ClusterGcra::RemoteWindow> ClusterGcra::CompileRemote(absl::string_view object,
                                                                     size_t i, const Window& w,
                                                                     int64_t scale) {
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
  RemoteWindow r{w.limit, period_nanos, w.effective_burst(), 0, 0, 0};
  const int64_t gcd = std::gcd(w.limit, period_us);
  if (scale > 0) {  // per-key limits: at the object's scale, rounded up
    r.scale = scale;
    r.unit = static_cast<int64_t>(
        (static_cast<absl::int128>(period_us) * scale + w.limit - 1) / w.limit);
  } else if (w.limit / gcd <= kMaxScale) {
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
  return r;
}

void ClusterGcra::AppendArgs(const RemoteWindow& r, std::vector<std::string>* args) {
  absl::StrAppend(&args->emplace_back(), r.scale);
  absl::StrAppend(&args->emplace_back(), r.unit);
  absl::StrAppend(&args->emplace_back(), r.tolerance);
}

absl::Status ClusterGcra::CompileArgs(absl::string_view object, const std::vector<Window>& windows,
                                      std::vector<std::string>* args) const {
  for (size_t i = 0; i < windows.size(); ++i) {
    absl::StatusOr<RemoteWindow> r = CompileRemote(object, i, windows[i], windows_[i].scale);
    if (!r.ok()) return r.status();
    AppendArgs(*r, args);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ClusterGcra>> ClusterGcra::Create(absl::string_view object,
                                                                 const ClusterOptions& cluster,
                                                                 const std::vector<Window>& windows,
                                                                 const Clock* clock) {
  if (absl::Status s = CheckClusterOptions(object, cluster); !s.ok()) return s;
  std::unique_ptr<ClusterGcra> g(new ClusterGcra);
  g->object_ = std::string(object);
  g->cluster_ = cluster;
  g->failure_mode_ = std::make_unique<FailureModePolicy>(cluster);
  std::vector<GcraWindow> local;
  for (size_t i = 0; i < windows.size(); ++i) {
    const Window& w = windows[i];
    absl::StatusOr<RemoteWindow> r = CompileRemote(object, i, w, 0);
    if (!r.ok()) return r.status();
    g->windows_.push_back(*r);
    AppendArgs(*r, &g->window_args_);
    if (cluster.on_failure != FailureMode::kLocal) continue;
    // The local stand-in while Redis is down: this process's share of the window.
    Window share{g->failure_mode_->LocalShare(w.limit), w.period,
                 g->failure_mode_->LocalShare(w.effective_burst())};
    absl::StatusOr<GcraWindow> compiled = CompileWindow(share, absl::StrCat(object, ": "));
    if (!compiled.ok()) return compiled.status();
    local.push_back(*compiled);
  }
  if (cluster.on_failure == FailureMode::kLocal) {
    const int cells = static_cast<int>(local.size());
    g->local_ = std::make_unique<ProcessGcra>(
        std::move(local), clock, std::make_unique<ProcessCells>(cells, int64_t{1} << 20, *clock));
  }
  g->reply_timeout_ = ReplyTimeout(*cluster.store);
  return g;
}

std::vector<std::string> ClusterGcra::Keys(const KeyDigest& d) const {
  const std::string tag = absl::StrCat(KeyTag(*cluster_.store, cluster_.redis_name, d), ":w");
  std::vector<std::string> keys;
  for (size_t i = 0; i < windows_.size(); ++i) keys.push_back(absl::StrCat(tag, i));
  return keys;
}

std::vector<std::string> ClusterGcra::Args(int64_t first, const WindowArgs* window_args) const {
  const WindowArgs& windows = window_args != nullptr ? *window_args : window_args_;
  std::vector<std::string> args = {absl::StrCat(first), RedisScripts::ScriptNow(*cluster_.store)};
  args.insert(args.end(), windows.begin(), windows.end());
  return args;
}

std::shared_ptr<PendingReply> ClusterGcra::Start(const KeyDigest& d, int64_t cost, bool want_fd,
                                                 const WindowArgs* window_args) {
  return RedisScripts::Run(*cluster_.store, kAdmitScript, Keys(d), Args(cost, window_args),
                           want_fd);
}

std::shared_ptr<PendingReply> ClusterGcra::StartRefund(const KeyDigest& d, int64_t cost,
                                                       int64_t charged_at_nanos, bool want_fd,
                                                       const WindowArgs* window_args) {
  std::vector<std::string> args = Args(cost, window_args);
  args.push_back(absl::StrCat(charged_at_nanos / 1000));
  return RedisScripts::Run(*cluster_.store, kRefundScript, Keys(d), std::move(args), want_fd);
}

absl::Status ClusterGcra::FinishRefund(const absl::StatusOr<std::vector<int64_t>>& reply) {
  // A refund Redis did not receive is lost: the charge stays, which only refuses more.
  if (!reply.ok() && IsTransportError(reply.status())) return absl::OkStatus();
  return reply.status();
}

std::shared_ptr<PendingReply> ClusterGcra::StartLease(const KeyDigest& d, int64_t want,
                                                      const GiveBack& back, bool want_fd) {
  std::vector<std::string> args = Args(want);
  args.push_back(absl::StrCat(back.units));
  args.push_back(absl::StrCat(back.grant_ms));
  args.push_back(absl::StrCat(back.granted));
  return RedisScripts::Run(*cluster_.store, kLeaseScript, Keys(d), std::move(args), want_fd);
}

std::shared_ptr<PendingReply> ClusterGcra::StartQueue(const KeyDigest& d, int64_t cost,
                                                      int64_t max_wait_nanos, bool want_fd) {
  std::vector<std::string> args = Args(cost);
  args.push_back(absl::StrCat(max_wait_nanos / 1000 * windows_[0].scale));
  return RedisScripts::Run(*cluster_.store, kQueueScript, Keys(d), std::move(args), want_fd);
}

std::shared_ptr<PendingReply> ClusterGcra::StartAdjust(const KeyDigest& d, int64_t delta,
                                                       bool want_fd,
                                                       const WindowArgs* window_args) {
  // Lua numbers are exact below 2^53: keep delta * unit within kMaxTolerance.
  int64_t bound = kMaxTolerance;
  for (const RemoteWindow& w : windows_) bound = std::min(bound, kMaxTolerance / w.unit);
  if (window_args != nullptr) {  // per-key windows: their units, from the triples
    for (size_t i = 1; i < window_args->size(); i += 3) {
      int64_t unit = 1;
      if (absl::SimpleAtoi((*window_args)[i], &unit) && unit > 0) {
        bound = std::min(bound, kMaxTolerance / unit);
      }
    }
  }
  return RedisScripts::Run(*cluster_.store, kAdjustScript, Keys(d),
                           Args(std::clamp(delta, -bound, bound), window_args), want_fd);
}

std::shared_ptr<PendingReply> ClusterGcra::StartPeek(const KeyDigest& d, bool want_fd,
                                                     const WindowArgs* window_args) {
  return RedisScripts::Run(*cluster_.store, kPeekScript, Keys(d), Args(0, window_args), want_fd);
}

absl::StatusOr<Decision> ClusterGcra::Decode(const std::vector<int64_t>& reply, size_t size,
                                             bool stamped, const GcraWindow* key) const {
  auto impossible = [&](absl::string_view what) {
    absl::Status s = absl::InternalError(absl::StrCat(
        object_, ": impossible reply from Redis (", what, "): a protocol error or a foreign script"));
    RedisScripts::NoteError(*cluster_.store, s);
    return s;
  };
  if (reply.size() != size) return impossible(absl::StrCat(reply.size(), " values"));
  if (reply[0] != 0 && reply[0] != 1) return impossible("allowed is neither 0 nor 1");
  if (reply[1] < 1 || reply[1] > static_cast<int64_t>(windows_.size())) {
    return impossible("no such window");
  }
  // The binding window: the call's per-key window when it had some, else the object's.
  const RemoteWindow& object_window = windows_[reply[1] - 1];
  const GcraWindow* k = key != nullptr ? &key[reply[1] - 1] : nullptr;
  const RemoteWindow w = k == nullptr ? object_window
                                      : RemoteWindow{k->limit, k->period_nanos, k->burst, 0, 0, 0};
  // Remaining is at most the burst, and a debt is a Lua number (exact below 2^53).
  if (reply[2] > w.burst || reply[2] < -(int64_t{1} << 53)) {
    return impossible("remaining out of range");
  }
  for (size_t i = 3; i < size; ++i) {
    if (reply[i] < 0 || reply[i] > kMaxReplyMicros) return impossible("a time out of range");
  }
  Decision out;
  out.allowed = reply[0] == 1;
  out.limit = w.limit;
  out.remaining = reply[2];
  out.retry_after_nanos = reply[3] * 1000;
  out.reset_after_nanos = reply[4] * 1000;
  out.window_nanos = w.period_nanos;
  if (size > (stamped ? 6 : 5)) out.delay_nanos = reply[5] * 1000;
  if (stamped && out.allowed) out.charged_at_nanos = reply[size - 1] * 1000;
  return out;
}

absl::Status ClusterGcra::CheckLeaseReply(const std::vector<int64_t>& reply, int64_t want) const {
  if (reply.size() != 6 || reply[0] < 0 || reply[0] > want || reply[5] < 0) {
    absl::Status s = absl::InternalError(absl::StrCat(
        object_, ": impossible lease reply from Redis: a protocol error or a foreign script"));
    RedisScripts::NoteError(*cluster_.store, s);
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<Decision> ClusterGcra::Failed(const absl::Status& status,
                                             absl::FunctionRef<void(Decision*)> decide_locally) {
  absl::StatusOr<Decision> d = failure_mode_->Decide(status, windows_[0].limit,
                                                     windows_[0].period_nanos, decide_locally);
  // Redis recorded nothing: there is nothing Refund could give back there.
  if (d.ok()) d->charged_at_nanos = Decision::kNoCharge;
  return d;
}

Decision ClusterGcra::OrRefusal(absl::StatusOr<Decision> d, absl::Status* error) const {
  return failure_mode_->OrRefusal(std::move(d), windows_[0].limit, windows_[0].period_nanos,
                                  error);
}

absl::StatusOr<Decision> ClusterGcra::FinishQueue(
    const KeyDigest& d, int64_t cost, int64_t max_wait_nanos,
    const absl::StatusOr<std::vector<int64_t>>& reply) {
  if (reply.ok()) return Decode(*reply, 7, /*stamped=*/true);
  return Failed(reply.status(), [&](Decision* local) {
    // Clamped to the local burst, the cost always fits Queue's precondition.
    if (!local_->Queue(d, std::min(cost, local_->min_burst()), max_wait_nanos,
                       local_->clock().NowNanos(), local)
             .ok()) {
      local->allowed = false;
    }
  });
}

absl::StatusOr<Decision> ClusterGcra::FinishAdjust(
    const KeyDigest& d, int64_t delta, const absl::StatusOr<std::vector<int64_t>>& reply,
    const GcraWindow* key) {
  if (reply.ok()) return Decode(*reply, 5, false, key);
  return Failed(reply.status(), [&](Decision* local) {
    if (!local_->Adjust(d, delta, local_->clock().NowNanos(), local).ok()) local->allowed = false;
  });
}

absl::StatusOr<Decision> ClusterGcra::FinishPeek(
    const KeyDigest& d, const absl::StatusOr<std::vector<int64_t>>& reply,
    const GcraWindow* key) {
  if (reply.ok()) return Decode(*reply, 5, false, key);
  return Failed(reply.status(), [&](Decision* local) {
    *local = local_->Peek(d, local_->clock().NowNanos());
  });
}

absl::StatusOr<Decision> ClusterGcra::Finish(const KeyDigest& d, int64_t cost,
                                             const absl::StatusOr<std::vector<int64_t>>& reply,
                                             const GcraWindow* key) {
  if (reply.ok()) return Decode(*reply, 6, /*stamped=*/true, key);
  return Failed(reply.status(), [&](Decision* local) {
    if (!local_->Admit(d, std::min(cost, local_->min_burst()), local_->clock().NowNanos(), local)
             .ok()) {
      local->allowed = false;
    }
  });
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
