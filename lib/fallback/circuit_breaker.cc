#include "sluice/circuit_breaker.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "sluice/internal/mutex.h"
#include "base/time_arithmetic.h"

namespace sluice {
inline namespace v1 {
namespace {

absl::Status Invalid(std::string_view prefix, std::string_view field, std::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat("sluice.CircuitBreaker: ", std::string(prefix),
                                                 std::string(field), " ", std::string(rule)));
}

}  // namespace

absl::Status CircuitBreaker::Validate(const Options& o, std::string_view prefix) {
  if (o.consecutive_failures < 0) return Invalid(prefix, "consecutive_failures", "must be >= 0");
  if (!(o.failure_ratio >= 0 && o.failure_ratio <= 1)) {
    return Invalid(prefix, "failure_ratio", "must be in [0, 1]");
  }
  if (!(o.slow_call_ratio >= 0 && o.slow_call_ratio <= 1)) {
    return Invalid(prefix, "slow_call_ratio", "must be in [0, 1]");
  }
  if (o.slow_call_duration <= absl::ZeroDuration()) {
    return Invalid(prefix, "slow_call_duration", "must be > 0");
  }
  if (o.window < absl::Nanoseconds(kBuckets)) return Invalid(prefix, "window", "must be >= 10 ns");
  if (o.minimum_calls < 1) return Invalid(prefix, "minimum_calls", "must be >= 1");
  if (o.open_time <= absl::ZeroDuration()) return Invalid(prefix, "open_time", "must be > 0");
  if (!(o.open_time_multiplier >= 1) || !std::isfinite(o.open_time_multiplier)) {
    return Invalid(prefix, "open_time_multiplier", "must be >= 1");
  }
  if (o.max_open_time < o.open_time) {
    return Invalid(prefix, "max_open_time", "must be >= open_time");
  }
  if (o.half_open_probes < 1) return Invalid(prefix, "half_open_probes", "must be >= 1");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CircuitBreaker>> CircuitBreaker::Create(Options options,
                                                                       const Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("sluice.CircuitBreaker: clock is null");
  if (absl::Status s = Validate(options); !s.ok()) return s;
  return std::unique_ptr<CircuitBreaker>(new CircuitBreaker(std::move(options), clock));
}

CircuitBreaker::CircuitBreaker(Options options, const Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      bucket_width_(absl::ToInt64Nanoseconds(options_.window) / kBuckets) {}

CircuitBreaker::Bucket& CircuitBreaker::BucketAt(int64_t now) {
  const int64_t index = now / bucket_width_;
  auto slot = [](int64_t i) { return static_cast<size_t>(((i % kBuckets) + kBuckets) % kBuckets); };
  if (index > head_) {
    // Slide: every bucket between the old head and the new one leaves the window.
    const int64_t first = std::max(head_ + 1, index - kBuckets + 1);
    for (int64_t i = first; i <= index; ++i) {
      Bucket& b = buckets_[slot(i)];
      window_calls_ -= b.calls, window_failures_ -= b.failures, window_slow_ -= b.slow;
      b = Bucket{.index = i};
    }
    if (index - head_ >= kBuckets) window_calls_ = window_failures_ = window_slow_ = 0;
    head_ = index;
  }
  // A time behind the head (a clock set back) counts in the head bucket: never lost.
  return buckets_[slot(head_)];
}

void CircuitBreaker::Totals(int64_t now, int64_t& calls, int64_t& failures, int64_t& slow) const {
  const int64_t current = now / bucket_width_;
  calls = failures = slow = 0;
  for (const Bucket& b : buckets_) {
    if (b.index > current - kBuckets && b.index <= current) {
      calls += b.calls, failures += b.failures, slow += b.slow;
    }
  }
}

CircuitBreaker::Transition CircuitBreaker::MoveTo(State to, int64_t now, std::string_view reason) {
  Transition t{.from = state_, .to = to, .at_nanos = now, .reason = reason, .trips = 0,
               .open_for = absl::ZeroDuration()};
  state_ = to;
  ++generation_;
  closed_generation_.store(to == State::kClosed ? generation_ : -1, std::memory_order_release);
  probes_out_ = probes_succeeded_ = 0;
  consecutive_failures_ = 0;
  if (to == State::kOpen) {
    ++trips_;
    // open_time x multiplier^(trips - 1), capped; computed in double to survive many trips.
    const double nanos = absl::ToDoubleNanoseconds(options_.open_time) *
                         std::pow(options_.open_time_multiplier, static_cast<double>(trips_ - 1));
    const absl::Duration open_for =
        std::min(options_.max_open_time, absl::Nanoseconds(std::min(nanos, 9e18)));
    open_until_ = internal::AddDuration(now, open_for);
    t.open_for = open_for;
    buckets_.fill(Bucket{});  // the next closed period starts with a clean window
    head_ = -1;
    window_calls_ = window_failures_ = window_slow_ = 0;
  } else {
    open_until_ = 0;
    if (to == State::kClosed) trips_ = 0;
  }
  t.trips = trips_;
  return t;
}

void CircuitBreaker::Publish(const Transition& t) const {
  if (options_.on_transition) options_.on_transition(t);
}

CircuitBreaker::Permission CircuitBreaker::TryAcquire() {
  if (const int64_t g = closed_generation_.load(std::memory_order_acquire); g >= 0) {
    Permission p;
    p.allowed = true;
    p.generation = g;
    return p;
  }
  const int64_t now = clock_->NowNanos();
  std::optional<Transition> change;
  Permission p;
  {
    internal::MutexLock lock(&mu_);
    if (state_ == State::kOpen && now >= open_until_) {
      change = MoveTo(State::kHalfOpen, now, "open time elapsed");
    }
    switch (state_) {
      case State::kClosed:
        p.allowed = true;
        break;
      case State::kOpen:
        p.retry_after = absl::Nanoseconds(open_until_ - now);
        break;
      case State::kHalfOpen:
        if (probes_out_ + probes_succeeded_ < options_.half_open_probes) {
          ++probes_out_;
          p.allowed = p.probe = true;
        }
        break;
    }
    if (!p.allowed) ++refused_;
    p.generation = generation_;
  }
  if (change) Publish(*change);
  return p;
}

void CircuitBreaker::Record(const Permission& permission, Result result, absl::Duration latency) {
  if (!permission.allowed) return;
  RecordAt(permission, result, latency, clock_->NowNanos());
}

void CircuitBreaker::RecordAt(const Permission& permission, Result result,
                              absl::Duration latency, int64_t now) {
  if (!permission.allowed) return;
  std::optional<Transition> change;
  {
    internal::MutexLock lock(&mu_);
    if (permission.generation != generation_) return;  // granted before a state change
    if (state_ == State::kHalfOpen) {
      if (!permission.probe) return;
      --probes_out_;
      if (result == Result::kFailure) {
        change = MoveTo(State::kOpen, now, "probe failed");
      } else if (result == Result::kSuccess &&
                 ++probes_succeeded_ >= options_.half_open_probes) {
        change = MoveTo(State::kClosed, now, "probes succeeded");
      }
    } else if (state_ == State::kClosed && result != Result::kIgnored) {
      const bool failed = result == Result::kFailure;
      const bool slow_call = latency >= options_.slow_call_duration;
      Bucket& b = BucketAt(now);
      ++b.calls, ++window_calls_;
      if (failed) ++b.failures, ++window_failures_;
      if (slow_call) ++b.slow, ++window_slow_;
      consecutive_failures_ = failed ? consecutive_failures_ + 1 : 0;
      const int64_t calls = window_calls_, failures = window_failures_, slow = window_slow_;
      const double n = static_cast<double>(calls);
      if (options_.consecutive_failures > 0 &&
          consecutive_failures_ >= options_.consecutive_failures) {
        change = MoveTo(State::kOpen, now, "consecutive failures");
      } else if (calls >= options_.minimum_calls && options_.failure_ratio > 0 &&
                 static_cast<double>(failures) >= options_.failure_ratio * n) {
        change = MoveTo(State::kOpen, now, "failure ratio");
      } else if (calls >= options_.minimum_calls && options_.slow_call_ratio > 0 &&
                 static_cast<double>(slow) >= options_.slow_call_ratio * n) {
        change = MoveTo(State::kOpen, now, "slow-call ratio");
      }
    }
  }
  if (change) Publish(*change);
}

CircuitBreaker::State CircuitBreaker::state() const {
  const int64_t now = clock_->NowNanos();
  internal::MutexLock lock(&mu_);
  // Open moves to half-open lazily, on the next TryAcquire; report what that call would see.
  return state_ == State::kOpen && now >= open_until_ ? State::kHalfOpen : state_;
}

CircuitBreaker::Stats CircuitBreaker::stats() const {
  const int64_t now = clock_->NowNanos();
  internal::MutexLock lock(&mu_);
  Stats s{.state = state_ == State::kOpen && now >= open_until_ ? State::kHalfOpen : state_,
          .consecutive_failures = consecutive_failures_,
          .trips = trips_,
          .open_until_nanos = state_ == State::kOpen ? open_until_ : 0,
          .refused = refused_};
  Totals(now, s.calls, s.failures, s.slow_calls);
  return s;
}

}  // namespace v1
}  // namespace sluice
