#include "sluice/fallback_policy.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <random>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sluice/provider_error.h"
#include "base/time_arithmetic.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct FallbackTarget {
  std::string name;
  std::string model;
  std::shared_ptr<Balancer> balancer;
  std::unique_ptr<CircuitBreaker> breaker;
  std::atomic<int64_t> blocked_until{0};  // a provider's Retry-After window ends
  std::atomic<int64_t> attempts{0}, successes{0}, failures{0}, skipped{0};
};

struct FallbackCore {
  FallbackCore(FallbackPolicy::Options o, const Clock* c)
      : options(std::move(o)), clock(c), budget(options.retry_budget) {}
  const FallbackPolicy::Options options;
  const Clock* const clock;
  std::vector<std::unique_ptr<FallbackTarget>> targets;
  RetryBudget budget;
  int context_length_target = -1;
};

}  // namespace internal

namespace {

using Kind = FallbackPolicy::Step::Kind;

absl::Status Invalid(std::string_view field, std::string_view rule) {
  return absl::InvalidArgumentError(
      absl::StrCat("sluice.FallbackPolicy: ", std::string(field), " ", std::string(rule)));
}

// Whether a failure says the target is unwell (the breaker counts it) or only that this request
// cannot be served as asked (it counts for nothing).
CircuitBreaker::Result BreakerResult(Failure f) {
  switch (f) {
    case Failure::kNone: return CircuitBreaker::Result::kSuccess;
    case Failure::kContextLength:
    case Failure::kContentFilter:
    case Failure::kClient: return CircuitBreaker::Result::kIgnored;
    default: return CircuitBreaker::Result::kFailure;
  }
}

double UnitRandom() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0, 1)(rng);
}

std::string Seconds(int64_t nanos) { return absl::StrFormat("%.3f s", nanos / 1e9); }

}  // namespace

FallbackPolicy::Action FallbackPolicy::Actions::For(Failure f) const {
  switch (f) {
    case Failure::kConnect: return connect;
    case Failure::kTimeout: return timeout;
    case Failure::kReset: return reset;
    case Failure::kRateLimited: return rate_limited;
    case Failure::kServer: return server;
    case Failure::kAuth: return auth;
    case Failure::kContextLength: return context_length;
    case Failure::kContentFilter: return content_filter;
    case Failure::kClient: return client;
    case Failure::kNone:
    case Failure::kAbandoned:  // the caller gave up: nothing to fall back for
      break;
  }
  return Action::kFatal;
}

void FallbackPolicy::Actions::Set(Failure f, Action a) {
  switch (f) {
    case Failure::kConnect: connect = a; break;
    case Failure::kTimeout: timeout = a; break;
    case Failure::kReset: reset = a; break;
    case Failure::kRateLimited: rate_limited = a; break;
    case Failure::kServer: server = a; break;
    case Failure::kAuth: auth = a; break;
    case Failure::kContextLength: context_length = a; break;
    case Failure::kContentFilter: content_filter = a; break;
    case Failure::kClient: client = a; break;
    case Failure::kNone:
    case Failure::kAbandoned:  // no action: For() stops there
      break;
  }
}

absl::StatusOr<std::unique_ptr<FallbackPolicy>> FallbackPolicy::Create(Options options,
                                                                       const Clock* clock) {
  if (clock == nullptr) return Invalid("clock", "is null");
  if (options.targets.empty() || options.targets.size() > 64) {
    return Invalid("targets", "must hold 1 to 64 targets");
  }
  if (options.max_retries_per_target < 0 || options.max_retries_per_target > 100) {
    return Invalid("max_retries_per_target", "must be in [0, 100]");
  }
  if (options.backoff_base <= absl::ZeroDuration()) return Invalid("backoff_base", "must be > 0");
  if (options.backoff_max < options.backoff_base) {
    return Invalid("backoff_max", "must be >= backoff_base");
  }
  if (options.deadline <= absl::ZeroDuration()) return Invalid("deadline", "must be > 0");
  if (options.attempt_timeout < absl::ZeroDuration()) {
    return Invalid("attempt_timeout", "must be >= 0");
  }
  if (absl::Status s = RetryBudget::Validate(options.retry_budget, "retry_budget."); !s.ok()) {
    return s;
  }
  if (absl::Status s = CircuitBreaker::Validate(options.breaker, "breaker."); !s.ok()) return s;
  absl::flat_hash_set<std::string> names;
  for (size_t i = 0; i < options.targets.size(); ++i) {
    const Target& t = options.targets[i];
    const std::string field = absl::StrCat("targets[", i, "]");
    if (t.name.empty()) return Invalid(field + ".name", "is empty");
    if (!names.insert(t.name).second) {
      return Invalid(field + ".name", absl::StrCat("'", t.name, "' is used twice"));
    }
    if (t.breaker) {
      if (absl::Status s = CircuitBreaker::Validate(*t.breaker, field + ".breaker."); !s.ok()) {
        return s;
      }
    }
  }

  auto core = std::make_shared<internal::FallbackCore>(std::move(options), clock);
  const Options& o = core->options;
  for (size_t i = 0; i < o.targets.size(); ++i) {
    const Target& t = o.targets[i];
    auto target = std::make_unique<internal::FallbackTarget>();
    target->name = t.name;
    target->model = t.model;
    target->balancer = t.balancer;
    CircuitBreaker::Options breaker = t.breaker.value_or(o.breaker);
    if (o.on_breaker_transition) {
      breaker.on_transition = [name = t.name, inner = breaker.on_transition,
                               outer = o.on_breaker_transition](
                                  const CircuitBreaker::Transition& transition) {
        if (inner) inner(transition);
        outer(name, transition);
      };
    }
    target->breaker = CircuitBreaker::Create(std::move(breaker), clock).value();  // validated
    if (t.name == o.context_length_target) core->context_length_target = static_cast<int>(i);
    core->targets.push_back(std::move(target));
  }
  if (!o.context_length_target.empty() && core->context_length_target < 0) {
    return Invalid("context_length_target",
                   absl::StrCat("'", o.context_length_target, "' names no target"));
  }
  return std::unique_ptr<FallbackPolicy>(new FallbackPolicy(std::move(core)));
}

FallbackPolicy::FallbackPolicy(std::shared_ptr<internal::FallbackCore> core)
    : core_(std::move(core)) {}
FallbackPolicy::~FallbackPolicy() = default;

const FallbackPolicy::Options& FallbackPolicy::options() const { return core_->options; }
int64_t FallbackPolicy::retries_refused() const { return core_->budget.refused(); }
int64_t FallbackPolicy::calls_in_flight() const { return core_->budget.requests_in_flight(); }
int64_t FallbackPolicy::retries_in_flight() const { return core_->budget.retries_in_flight(); }

std::vector<FallbackPolicy::TargetStats> FallbackPolicy::Targets() const {
  const int64_t now = core_->clock->NowNanos();
  std::vector<TargetStats> out;
  for (const auto& t : core_->targets) {
    const int64_t until = t->blocked_until.load(std::memory_order_relaxed);
    out.push_back({.name = t->name,
                   .breaker = t->breaker->stats(),
                   .attempts = t->attempts.load(std::memory_order_relaxed),
                   .successes = t->successes.load(std::memory_order_relaxed),
                   .failures = t->failures.load(std::memory_order_relaxed),
                   .skipped = t->skipped.load(std::memory_order_relaxed),
                   .rate_limited_until_nanos = until > now ? until : 0});
  }
  return out;
}

FallbackPolicy::Call FallbackPolicy::Begin() { return Begin(CallOptions()); }

FallbackPolicy::Call FallbackPolicy::Begin(const CallOptions& options) {
  const int64_t now = core_->clock->NowNanos();
  Call call(core_, options, now);
  if (!call.TryFrom(0, now)) {
    call.FinishUnavailable();
  }
  return call;
}

// ---- Call -------------------------------------------------------------------------------------

FallbackPolicy::Call::Call(std::shared_ptr<internal::FallbackCore> core,
                           const CallOptions& options, int64_t now)
    : core_(std::move(core)),
      request_(core_->budget),
      prefix_blocks_(options.prefix_blocks),
      affinity_key_(options.affinity_key) {
  const absl::Duration d =
      options.deadline > absl::ZeroDuration() ? options.deadline : core_->options.deadline;
  const int64_t span = absl::ToInt64Nanoseconds(d);
  deadline_ = span > std::numeric_limits<int64_t>::max() - now
                  ? std::numeric_limits<int64_t>::max()
                  : now + span;
}

FallbackPolicy::Call::Call(Call&&) noexcept = default;

FallbackPolicy::Call::~Call() {
  if (core_ != nullptr && step_.kind == Kind::kAttempt) {
    core_->targets[step_.target_index]->breaker->Record(permission_,
                                                        CircuitBreaker::Result::kIgnored);
  }
}

absl::Status FallbackPolicy::Call::status() const {
  switch (step_.kind) {
    case Kind::kSucceeded: return absl::OkStatus();
    case Kind::kFailed: return step_.status;
    case Kind::kAttempt: break;
  }
  return absl::UnknownError("sluice.FallbackPolicy: the call is in progress");
}

void FallbackPolicy::Call::Note(std::string_view target, std::string_view why) {
  absl::StrAppend(&notes_, notes_.empty() ? "" : "; ", std::string(target), ": ", std::string(why));
}

bool FallbackPolicy::Call::TryTarget(size_t index, int64_t now, absl::Duration delay,
                                     RetryBudget::Retry retry) {
  internal::FallbackTarget& t = *core_->targets[index];
  const bool is_retry = static_cast<bool>(retry);
  const int64_t start = internal::AddDuration(now, delay);
  if (start >= deadline_) {
    Note(t.name, "no time left before the deadline");
    return false;
  }
  if (!is_retry) {  // a retry's delay already covers the Retry-After
    const int64_t until = t.blocked_until.load(std::memory_order_relaxed);
    if (until > now) {
      t.skipped.fetch_add(1, std::memory_order_relaxed);
      Note(t.name, "rate limited for " + Seconds(until - now) + " more");
      if (soonest_back_ == 0 || until < soonest_back_) soonest_back_ = until;
      return false;
    }
  }
  CircuitBreaker::Permission permission = t.breaker->TryAcquire();
  if (!permission.allowed) {
    t.skipped.fetch_add(1, std::memory_order_relaxed);
    const int64_t back = internal::AddDuration(now, permission.retry_after);
    Note(t.name, "circuit open, half-opens in " + Seconds(back - now));
    if (soonest_back_ == 0 || back < soonest_back_) soonest_back_ = back;
    return false;
  }
  std::optional<Balancer::Pick> pick;
  if (t.balancer != nullptr) {
    absl::StatusOr<Balancer::Pick> picked = t.balancer->PickEndpoint(
        PickRequest{.model = t.model, .prefix_blocks = prefix_blocks_, .affinity_key = affinity_key_});
    if (!picked.ok()) {
      t.breaker->Record(permission, CircuitBreaker::Result::kIgnored);
      t.skipped.fetch_add(1, std::memory_order_relaxed);
      Note(t.name, std::string(picked.status().message()));
      return false;
    }
    pick.emplace(*std::move(picked));
  }
  const Failure previous = step_.attempt > 0 ? step_.failure : Failure::kNone;
  Step next;
  next.kind = Kind::kAttempt;
  next.attempt = step_.attempt + 1;
  next.target_index = index;
  next.target = t.name;
  next.model = t.model;
  next.delay = delay;
  next.retry = is_retry;
  next.failure = previous;
  absl::Duration timeout = deadline_ == std::numeric_limits<int64_t>::max()
                               ? absl::InfiniteDuration()
                               : absl::Nanoseconds(deadline_ - start);
  if (core_->options.attempt_timeout > absl::ZeroDuration()) {
    timeout = std::min(timeout, core_->options.attempt_timeout);
  }
  next.timeout = timeout;
  step_ = std::move(next);
  pick_ = std::move(pick);
  if (pick_) step_.endpoint_id = pick_->endpoint_id();
  permission_ = permission;
  retry_ = std::move(retry);
  attempt_start_ = start;
  tried_ |= uint64_t{1} << index;
  if (is_retry) ++retries_[index];
  t.attempts.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool FallbackPolicy::Call::TryFrom(size_t first, int64_t now) {
  for (size_t i = first; i < core_->targets.size(); ++i) {
    if (TryTarget(i, now, absl::ZeroDuration(), RetryBudget::Retry())) return true;
  }
  return false;
}

const FallbackPolicy::Step& FallbackPolicy::Call::Finish(Kind kind, absl::Status status) {
  step_.kind = kind;
  step_.status = std::move(status);
  step_.endpoint_id = {};
  pick_.reset();
  retry_.Release();
  request_.Release();
  return step_;
}

const FallbackPolicy::Step& FallbackPolicy::Call::FinishUnavailable() {
  const int64_t now = core_->clock->NowNanos();
  step_.retry_after =
      soonest_back_ > now ? absl::Nanoseconds(soonest_back_ - now) : absl::ZeroDuration();
  return Finish(Kind::kFailed, absl::UnavailableError(absl::StrCat(
                                   "sluice.FallbackPolicy: no target could take the call (",
                                   notes_, ")")));
}

const FallbackPolicy::Step& FallbackPolicy::Call::Next(const AttemptOutcome& outcome) {
  if (step_.kind != Kind::kAttempt) return step_;
  const int64_t now = core_->clock->NowNanos();
  const size_t index = step_.target_index;
  internal::FallbackTarget& t = *core_->targets[index];
  const Failure failure = Classify(outcome);
  const absl::Duration latency = outcome.latency > absl::ZeroDuration()
                                     ? outcome.latency
                                     : absl::Nanoseconds(std::max<int64_t>(0, now - attempt_start_));

  // Report before deciding, so the next step's breaker and pick already count this outcome.
  t.breaker->RecordAt(permission_, BreakerResult(failure), latency, now);
  if (pick_) {
    AttemptOutcome completed = outcome;
    completed.failure = failure;  // classified once, for the breaker and the pick alike
    completed.latency = latency;
    pick_->Complete(completed);
    pick_.reset();
  }
  retry_.Release();
  step_.failure = failure;
  if (failure == Failure::kNone) {
    t.successes.fetch_add(1, std::memory_order_relaxed);
    return Finish(Kind::kSucceeded, absl::OkStatus());
  }
  t.failures.fetch_add(1, std::memory_order_relaxed);
  if (failure == Failure::kRateLimited && outcome.retry_after > absl::ZeroDuration()) {
    const int64_t until = internal::AddDuration(now, outcome.retry_after);
    int64_t current = t.blocked_until.load(std::memory_order_relaxed);
    while (current < until &&
           !t.blocked_until.compare_exchange_weak(current, until, std::memory_order_relaxed)) {
    }
    if (soonest_back_ == 0 || until < soonest_back_) soonest_back_ = until;
  }
  std::string what(FailureName(failure));
  if (outcome.http_status > 0) what = absl::StrCat("HTTP ", outcome.http_status, " (", what, ")");
  Note(t.name, what);

  if (first_byte_) {
    return Finish(Kind::kFailed,
                  absl::AbortedError(absl::StrCat(
                      "sluice.FallbackPolicy: the stream from '", t.name, "' broke after its first "
                      "byte reached the client (", what, "); not retried, not replayed")));
  }
  // A context-length failure goes to the larger-context target, if there is one left to try.
  const int ctx = core_->context_length_target;
  if (failure == Failure::kContextLength && ctx >= 0 && (tried_ >> ctx & 1) == 0) {
    if (TryTarget(static_cast<size_t>(ctx), now, absl::ZeroDuration(), RetryBudget::Retry()) ||
        TryFrom(static_cast<size_t>(ctx) + 1, now)) {
      return step_;
    }
    return FinishUnavailable();
  }
  const Action action = core_->options.actions.For(failure);
  if (action == Action::kFatal) {
    return Finish(Kind::kFailed,
                  absl::FailedPreconditionError(absl::StrCat(
                      "sluice.FallbackPolicy: '", t.name, "' refused the request: ", what,
                      "; another target would too, so it is not retried")));
  }
  if (now >= deadline_) {
    return Finish(Kind::kFailed,
                  absl::DeadlineExceededError(absl::StrCat(
                      "sluice.FallbackPolicy: the call's deadline passed (", notes_, ")")));
  }
  if (action == Action::kRetrySame && retries_[index] < core_->options.max_retries_per_target) {
    if (RetryBudget::Retry retry = core_->budget.TryRetry()) {
      const absl::Duration delay =
          FullJitterBackoff(retries_[index], core_->options.backoff_base,
                            core_->options.backoff_max, outcome.retry_after, UnitRandom());
      if (TryTarget(index, now, delay, std::move(retry))) return step_;
    } else {
      Note(t.name, "retry budget exhausted");
    }
  }
  if (TryFrom(index + 1, now)) return step_;
  return FinishUnavailable();
}

}  // namespace v1
}  // namespace sluice
