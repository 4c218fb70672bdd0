#include "fallback_drill.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <queue>
#include <random>

#include "sluice/fallback_policy.h"

namespace harness {
namespace {

using sluice::FallbackPolicy;
using Kind = FallbackPolicy::Step::Kind;

constexpr int64_t kNanos = 1'000'000'000;

int64_t ToNanos(double seconds) { return static_cast<int64_t>(seconds * 1e9); }

const char* StateName(sluice::CircuitBreaker::State s) {
  switch (s) {
    case sluice::CircuitBreaker::State::kClosed: return "closed";
    case sluice::CircuitBreaker::State::kOpen: return "open";
    case sluice::CircuitBreaker::State::kHalfOpen: return "half-open";
  }
  return "?";
}

// One request in flight: its call, and when it arrived.
struct Request {
  std::unique_ptr<FallbackPolicy::Call> call;
  int64_t arrived = 0;
};

// An upstream attempt that completes at `at`.
struct Completion {
  int64_t at;
  size_t request;
  bool failed;  // the primary was down when the attempt started
  bool operator>(const Completion& o) const { return at > o.at; }
};

}  // namespace

DrillOutcome RunFallbackDrill(const DrillScenario& s) {
  sluice::ManualClock clock;
  DrillOutcome out;
  out.buckets.resize(static_cast<size_t>(s.seconds / s.bucket) + 1);
  const double outage_end = s.outage_end;  // for the transition callback

  FallbackPolicy::Options o;
  o.targets = {{.name = "primary", .model = "gpt-4o"}, {.name = "backup", .model = "qwen-turbo"}};
  o.breaker.max_open_time = absl::Seconds(s.max_open_time);
  o.on_breaker_transition = [&](std::string_view target, const sluice::CircuitBreaker::Transition& t) {
    char line[160];
    std::snprintf(line, sizeof(line), "t=%6.1f s  %s: %s -> %s (%s%s)",
                  static_cast<double>(t.at_nanos) / kNanos, std::string(target).c_str(),
                  StateName(t.from), StateName(t.to), std::string(t.reason).c_str(),
                  t.to == sluice::CircuitBreaker::State::kOpen
                      ? (", for " + std::to_string(absl::ToInt64Seconds(t.open_for)) + " s").c_str()
                      : "");
    out.transitions.push_back(line);
    const double at = static_cast<double>(t.at_nanos) / kNanos;
    if (target == "primary" && t.to == sluice::CircuitBreaker::State::kClosed &&
        at >= outage_end && out.recovered_at < 0) {
      out.recovered_at = at;
    }
  };
  auto policy = FallbackPolicy::Create(std::move(o), &clock).value();

  std::mt19937_64 rng(s.seed);
  std::exponential_distribution<double> gap(s.rps);
  std::vector<Request> requests;
  std::priority_queue<Completion, std::vector<Completion>, std::greater<>> upstream;
  auto bucket_of = [&](int64_t t) -> DrillBucket& {
    return out.buckets[std::min(out.buckets.size() - 1,
                                static_cast<size_t>(static_cast<double>(t) / kNanos / s.bucket))];
  };
  // Schedules the call's current attempt, or records how the request ended.
  auto advance = [&](size_t id) {
    Request& r = requests[id];
    const FallbackPolicy::Step& step = r.call->step();
    const int64_t now = clock.NowNanos();
    if (step.kind != Kind::kAttempt) {
      DrillBucket& b = bucket_of(r.arrived);
      (step.kind == Kind::kSucceeded ? b.succeeded : b.failed)++;
      b.latencies.push_back(static_cast<double>(now - r.arrived) / kNanos);
      out.succeeded += step.kind == Kind::kSucceeded;
      r.call.reset();
      return;
    }
    const int64_t start = now + absl::ToInt64Nanoseconds(step.delay);
    const double t = static_cast<double>(start) / kNanos;
    const bool primary = step.target == "primary";
    const bool down = primary && t >= s.outage_start && t < s.outage_end;
    (primary ? bucket_of(start).primary_calls : bucket_of(start).backup_calls)++;
    ++out.upstream_calls;
    const double latency = down ? s.failure_latency : primary ? s.primary_latency : s.backup_latency;
    upstream.push({start + ToNanos(latency), id, down});
  };

  double next_arrival = gap(rng);
  while (true) {
    const int64_t arrival = next_arrival < s.seconds ? ToNanos(next_arrival) : INT64_MAX;
    const int64_t completion = upstream.empty() ? INT64_MAX : upstream.top().at;
    if (arrival == INT64_MAX && completion == INT64_MAX) break;
    if (arrival <= completion) {
      clock.SetNanos(arrival);
      requests.push_back({std::make_unique<FallbackPolicy::Call>(policy->Begin()), arrival});
      ++bucket_of(arrival).requests;
      ++out.requests;
      advance(requests.size() - 1);
      next_arrival += gap(rng);
    } else {
      const Completion c = upstream.top();
      upstream.pop();
      clock.SetNanos(c.at);
      requests[c.request].call->Next({.http_status = c.failed ? 503 : 200});
      advance(c.request);
    }
  }
  return out;
}

void PrintDrillReport(const DrillScenario& s, DrillOutcome& out, std::ostream& os) {
  char line[256];
  std::snprintf(line, sizeof(line),
                "\nsluice harness: fallback drill, primary -> backup, %.0f req/s for %.0f s; the "
                "primary answers 503 from %.0f s to %.0f s\n(FallbackPolicy defaults; breaker "
                "open time capped at %.0f s; virtual time)\n\n",
                s.rps, s.seconds, s.outage_start, s.outage_end, s.max_open_time);
  os << line;
  os << "  window      requests  succeeded  to primary  to backup  calls/request  p99 latency\n";
  for (size_t i = 0; i < out.buckets.size(); ++i) {
    DrillBucket& b = out.buckets[i];
    if (b.requests == 0) continue;
    std::sort(b.latencies.begin(), b.latencies.end());
    const double p99 =
        b.latencies.empty() ? 0 : b.latencies[std::min(b.latencies.size() - 1,
                                                       b.latencies.size() * 99 / 100)];
    std::snprintf(line, sizeof(line),
                  "  %3.0f-%3.0f s  %8lld  %8.1f%%  %10lld  %9lld  %13.2f  %9.2f s\n",
                  i * s.bucket, (i + 1) * s.bucket, static_cast<long long>(b.requests),
                  100.0 * static_cast<double>(b.succeeded) / static_cast<double>(b.requests),
                  static_cast<long long>(b.primary_calls), static_cast<long long>(b.backup_calls),
                  static_cast<double>(b.primary_calls + b.backup_calls) /
                      static_cast<double>(b.requests),
                  p99);
    os << line;
  }
  os << "\n  breaker transitions:\n";
  for (const auto& t : out.transitions) os << "    " << t << "\n";
  std::snprintf(line, sizeof(line),
                "\n  %lld requests, %.2f%% succeeded, %.3f upstream calls per request; the primary "
                "was back at %.0f s and took traffic again at %.1f s\n",
                static_cast<long long>(out.requests),
                100.0 * static_cast<double>(out.succeeded) / static_cast<double>(out.requests),
                static_cast<double>(out.upstream_calls) / static_cast<double>(out.requests),
                s.outage_end, out.recovered_at);
  os << line;
}

}  // namespace harness
