#include "balancing/balancer_endpoint.h"

#include "sluice/internal/mutex.h"
#include "base/time_arithmetic.h"

#include <algorithm>

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

void Fold(double& average, double sample, double weight, bool first) {
  average = first ? sample : average + weight * (sample - average);
}

absl::Duration CooldownOf(const CompletionPolicy& p, Failure f) {
  switch (f) {
    case Failure::kRateLimited: return p.cooldown_rate_limited;
    case Failure::kAuth: return p.cooldown_auth;
    case Failure::kConnect:
    case Failure::kReset: return p.cooldown_connection;
    case Failure::kTimeout: return p.cooldown_timeout;
    case Failure::kServer: return p.cooldown_server;
    default: return absl::ZeroDuration();
  }
}

// Failures that count towards outlier ejection (Envoy's consecutive 5xx / gateway failures).
bool CountsAsOutlier(Failure f) {
  return f == Failure::kServer || f == Failure::kConnect || f == Failure::kReset ||
         f == Failure::kTimeout;
}

}  // namespace

Failure ClassifyCompletion(const AttemptOutcome& outcome) {
  if (outcome.failure != Failure::kNone) return outcome.failure;
  if (outcome.transport == TransportError::kNone && outcome.http_status < 400) {
    return Failure::kNone;  // a completion reports its failures; status 0 alone reports none
  }
  return Classify(outcome);
}

void EndpointState::Complete(const AttemptOutcome& outcome) {
  in_flight.fetch_sub(1, std::memory_order_relaxed);
  const Failure error = ClassifyCompletion(outcome);
  const CompletionPolicy& p = *policy;
  if (CountsAsOutlier(error)) {
    const int64_t run = outlier_failures.fetch_add(1, std::memory_order_relaxed) + 1;
    if (p.outlier_consecutive_failures > 0 && run >= p.outlier_consecutive_failures) {
      p.outlier_hint.fetch_add(1, std::memory_order_release);
    }
  } else if (error == Failure::kNone) {
    outlier_failures.store(0, std::memory_order_relaxed);
    // A healthy base ejection time after returning takes one ejection off the count, so a
    // recovered endpoint's next ejection is short again.
    int64_t times = times_ejected.load(std::memory_order_relaxed);
    int64_t until = ejected_until.load(std::memory_order_relaxed);
    const int64_t now = times > 0 ? p.clock->NowNanos() : 0;
    if (times > 0 && now >= until + p.outlier_base_ejection_nanos &&
        times_ejected.compare_exchange_strong(times, times - 1, std::memory_order_relaxed)) {
      // Restart the stretch; a CAS, so a concurrent new ejection is never undone.
      ejected_until.compare_exchange_strong(until, now, std::memory_order_relaxed);
    }
  }
  MutexLock lock(&mu);
  const bool first = completions == 0;
  ++completions;
  if (error != Failure::kNone) {
    ++errors;
    last_failure = error;
    last_failure_at = p.clock->NowNanos();
  }
  // A client error is the request's fault, not the endpoint's.
  if (error != Failure::kClient && error != Failure::kContextLength &&
      error != Failure::kContentFilter) {
    Fold(ewma_error_rate, error == Failure::kNone ? 0.0 : 1.0, p.ewma_weight, first);
  }
  if (outcome.latency > absl::ZeroDuration()) {
    Fold(ewma_latency_s, absl::ToDoubleSeconds(outcome.latency), p.ewma_weight,
         ewma_latency_s == 0);
  }
  if (outcome.ttft > absl::ZeroDuration()) {
    Fold(ewma_ttft_s, absl::ToDoubleSeconds(outcome.ttft), p.ewma_weight, ewma_ttft_s == 0);
  }
  if (error == Failure::kNone) {
    consecutive_failures = 0;
    return;
  }
  const absl::Duration cooldown = CooldownOf(p, error);
  if (cooldown <= absl::ZeroDuration()) return;
  consecutive_failures = failing_class == error ? consecutive_failures + 1 : 1;
  failing_class = error;
  if (consecutive_failures < p.failures_before_cooldown) return;
  consecutive_failures = 0;
  ExtendCooldownLocked(AddDuration(last_failure_at, cooldown), error);
}

int64_t EndpointState::CooldownUntil() const {
  return host ? host->cooldown_until() : cooldown_until.load(std::memory_order_relaxed);
}

int64_t EndpointState::EjectedUntil() const {
  return host ? host->ejected_until() : ejected_until.load(std::memory_order_relaxed);
}

void EndpointState::ExtendCooldown(int64_t until, Failure reason) {
  MutexLock lock(&mu);
  ExtendCooldownLocked(until, reason);
}

void EndpointState::ExtendCooldownLocked(int64_t until, Failure reason) {
  bool raised;
  if (host) {
    raised = host->ExtendCooldown(until, reason);
  } else {
    int64_t current = cooldown_until.load(std::memory_order_relaxed);
    while (current < until &&
           !cooldown_until.compare_exchange_weak(current, until, std::memory_order_relaxed)) {
    }
    raised = current < until;  // the CAS succeeded: this cooldown is the one
    if (raised) cooldown_reason = reason;
  }
  if (raised && cluster) cluster->SendCooldown(cluster_field, until, reason);
}

void EndpointState::ExtendEjection(int64_t until) {
  int64_t current = ejected_until.load(std::memory_order_relaxed);
  while (current < until &&
         !ejected_until.compare_exchange_weak(current, until, std::memory_order_relaxed)) {
  }
  if (host) host->ExtendEjection(until);
  if (current < until && cluster) cluster->SendEjection(cluster_field, until);
}

void EndpointState::Restore(int64_t now) {
  MutexLock lock(&mu);
  cooldown_until.store(0, std::memory_order_relaxed);
  cooldown_reason = Failure::kNone;
  consecutive_failures = 0;
  failing_class = Failure::kNone;
  outlier_failures.store(0, std::memory_order_relaxed);
  // The ejection ends now: the healthy stretch that shortens the next one starts here.
  int64_t ejected = ejected_until.load(std::memory_order_relaxed);
  while (ejected > now &&
         !ejected_until.compare_exchange_weak(ejected, now, std::memory_order_relaxed)) {
  }
  if (host) host->Clear();
  if (cluster) cluster->SendClear(cluster_field);
}

void EndpointState::MirrorHolds(const Holds& holds, bool exact, int64_t now) {
  MutexLock lock(&mu);
  if (host) {
    // Shortening a host-region hold means clearing it and raising it again.
    if (exact && (host->cooldown_until() > holds.cooldown_until ||
                  host->ejected_until() > holds.ejected_until)) {
      host->Clear();
    }
    if (holds.cooldown_until > 0) host->ExtendCooldown(holds.cooldown_until, holds.cooldown_reason);
    if (holds.ejected_until > 0) host->ExtendEjection(holds.ejected_until);
  } else {
    int64_t current = cooldown_until.load(std::memory_order_relaxed);
    if (exact ? current != holds.cooldown_until : current < holds.cooldown_until) {
      cooldown_until.store(holds.cooldown_until, std::memory_order_relaxed);
      cooldown_reason = holds.cooldown_reason;
    }
  }
  // This process's ejection end also marks where a healthy stretch starts: an ejection ended
  // elsewhere ends here now.
  int64_t ejected = ejected_until.load(std::memory_order_relaxed);
  if (holds.ejected_until > ejected) {
    ejected_until.store(holds.ejected_until, std::memory_order_relaxed);
  } else if (exact && ejected > now && holds.ejected_until < ejected) {
    ejected_until.store(std::max(holds.ejected_until, now), std::memory_order_relaxed);
  }
}

EndpointStats EndpointState::Stats() const {
  EndpointStats s;
  s.id = spec->id;
  s.in_flight = in_flight.load(std::memory_order_relaxed);
  s.picks = picks.load(std::memory_order_relaxed);
  const int64_t now = policy->clock->NowNanos();
  const int64_t until = CooldownUntil();
  s.cooldown_until_nanos = until > now ? until : 0;
  const int64_t ejected = EjectedUntil();
  s.ejected_until_nanos = ejected > now ? ejected : 0;
  s.times_ejected = times_ejected.load(std::memory_order_relaxed);
  MutexLock lock(&mu);
  if (s.cooldown_until_nanos > 0) s.cooldown_reason = host ? host->cooldown_reason() : cooldown_reason;
  s.last_failure = last_failure;
  s.last_failure_at_nanos = last_failure_at;
  s.completions = completions;
  s.errors = errors;
  s.ewma_latency = absl::Seconds(ewma_latency_s);
  s.ewma_ttft = absl::Seconds(ewma_ttft_s);
  s.ewma_error_rate = ewma_error_rate;
  s.metrics = metrics;
  s.metrics_at_nanos = metrics_at;
  return s;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
