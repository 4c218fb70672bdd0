// FallbackPolicy, its Call, failure classification and Retry-After parsing. The Python facade
// (sluice/_fallback.py) drives calls through user functions for threads, gevent and asyncio.
#include <pybind11/stl.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bindings.h"
#include "sluice/fallback_policy.h"
#include "sluice/provider_error.h"

namespace sluice_python {
namespace {

using sluice::CircuitBreaker;
using sluice::Failure;
using sluice::FallbackPolicy;
using sluice::TransportError;
using Call = FallbackPolicy::Call;
using Kind = FallbackPolicy::Step::Kind;

constexpr const char* kFailureNames =
    "connect, timeout, reset, rate_limited, server, auth, context_length, content_filter, client";

Failure FailureFromName(const std::string& name, const char* field) {
  for (int f = 1; f < sluice::kFailureCount; ++f) {
    if (sluice::FailureName(static_cast<Failure>(f)) == name) return static_cast<Failure>(f);
  }
  RaisePython("InvalidArgument", std::string(field) + ": '" + name + "' is not a failure class (" +
                                     kFailureNames + ")");
}

FallbackPolicy::Action ActionFromName(const std::string& name, const std::string& field) {
  if (name == "retry_same") return FallbackPolicy::Action::kRetrySame;
  if (name == "next_target") return FallbackPolicy::Action::kNextTarget;
  if (name == "fatal") return FallbackPolicy::Action::kFatal;
  RaisePython("InvalidArgument", field + " must be 'retry_same', 'next_target' or 'fatal', got '" +
                                     name + "'");
}

TransportError TransportFromName(const std::optional<std::string>& name) {
  if (!name) return TransportError::kNone;
  if (*name == "connect") return TransportError::kConnect;
  if (*name == "timeout") return TransportError::kTimeout;
  if (*name == "reset") return TransportError::kReset;
  RaisePython("InvalidArgument",
              "transport must be None, 'connect', 'timeout' or 'reset', got '" + *name + "'");
}

const char* StateName(CircuitBreaker::State s) {
  switch (s) {
    case CircuitBreaker::State::kClosed: return "closed";
    case CircuitBreaker::State::kOpen: return "open";
    case CircuitBreaker::State::kHalfOpen: return "half_open";
  }
  return "closed";
}

// Breaker options from a dict of seconds and numbers; unknown keys are named.
CircuitBreaker::Options BreakerFromDict(const py::dict& d, const std::string& field) {
  CircuitBreaker::Options o;
  for (auto [key, value] : d) {
    const std::string k = py::str(key);
    const std::string name = field + "." + k;
    auto count = [&] { return FieldAs<int64_t>(value, name, "an int"); };
    auto number = [&] { return FieldAs<double>(value, name, "a number"); };
    auto seconds = [&] { return SecondsToDuration(number(), name.c_str()); };
    if (k == "consecutive_failures") o.consecutive_failures = count();
    else if (k == "failure_ratio") o.failure_ratio = number();
    else if (k == "slow_call_ratio") o.slow_call_ratio = number();
    else if (k == "slow_call_duration") o.slow_call_duration = seconds();
    else if (k == "window") o.window = seconds();
    else if (k == "minimum_calls") o.minimum_calls = count();
    else if (k == "open_time") o.open_time = seconds();
    else if (k == "open_time_multiplier") o.open_time_multiplier = number();
    else if (k == "max_open_time") o.max_open_time = seconds();
    else if (k == "half_open_probes") o.half_open_probes = count();
    else RaisePython("InvalidArgument", "sluice.FallbackPolicy: " + field + " has no '" + k + "'");
  }
  return o;
}

// Breaker transitions wait here until the facade drains them: a Python callback must never run
// inside a bound call (it could switch greenlets there; see bindings.h).
struct TransitionQueue {
  struct Event {
    std::string target;
    CircuitBreaker::Transition t;
  };
  absl::Mutex mu;
  std::vector<Event> events ABSL_GUARDED_BY(mu);
  std::atomic<bool> pending{false};
};

// The policy plus its transition queue, and the Python clock it reads (kept alive by every call
// as well: a reference is cheaper than pybind11's keep_alive on each begin()).
// The clock comes first: members are destroyed in reverse order, and a call's destructor still
// reads the clock (it releases its retry-budget slot and records an abandoned attempt).
struct PyPolicy {
  std::shared_ptr<py::object> clock;
  std::unique_ptr<FallbackPolicy> policy;
  std::shared_ptr<TransitionQueue> transitions;
};

py::object StepFailure(const FallbackPolicy::Step& s) {
  if (s.failure == Failure::kNone) return py::none();
  return py::str(std::string(sluice::FailureName(s.failure)));
}

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kAttempt: return "attempt";
    case Kind::kSucceeded: return "succeeded";
    case Kind::kFailed: return "failed";
  }
  return "failed";
}

const char* StatusName(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk: return "ok";
    case absl::StatusCode::kUnavailable: return "unavailable";
    case absl::StatusCode::kDeadlineExceeded: return "deadline_exceeded";
    case absl::StatusCode::kFailedPrecondition: return "fatal";
    case absl::StatusCode::kAborted: return "stream_broken";
    default: return "in_progress";
  }
}

const FallbackPolicy::Step& StepOf(const PyCall& pc) { return pc.call.step(); }

}  // namespace

void BindFallback(py::module_& m) {
  m.def(
      "classify",
      [](int status, std::optional<std::string> transport, py::bytes error_body) -> py::object {
        std::string_view body = error_body;
        const Failure f = sluice::Classify(
            {.http_status = status, .transport = TransportFromName(transport), .error_body = body});
        if (f == Failure::kNone) return py::none();
        return py::str(std::string(sluice::FailureName(f)));
      },
      py::arg("status") = 0, py::kw_only(), py::arg("transport") = py::none(),
      py::arg("error_body") = py::bytes(),
      "The failure class of an attempt's outcome (None for a success): 'connect', 'timeout',\n"
      "'reset', 'rate_limited', 'server', 'auth', 'context_length', 'content_filter' or\n"
      "'client'. error_body (bytes) is the provider's error JSON.");
  m.def(
      "parse_retry_after",
      [](const std::string& value) -> std::optional<double> {
        std::optional<absl::Duration> d = sluice::ParseRetryAfter(value, absl::Now());
        if (!d) return std::nullopt;
        return absl::ToDoubleSeconds(*d);
      },
      py::arg("value"),
      "A Retry-After header value ('120', '1.5' or an HTTP-date) in seconds from now; None if\n"
      "it is malformed.");

  py::class_<PyCall>(m, "FallbackCall", R"doc(
One call's walk through a FallbackPolicy's chain (see FallbackPolicy.begin). While ``kind`` is
"attempt", wait ``delay`` seconds, send to ``target`` (``endpoint_id`` for a balanced target)
within ``timeout``, and report with ``next(...)``. Functions run by ``FallbackPolicy.call`` and
``stream`` receive it as their ``attempt`` (``sluice.Attempt``): they read ``target``, ``model``,
``endpoint_id``, ``labels``, ``timeout``, ``number``, ``retry``. Used by one thread (or greenlet)
at a time.)doc")
      .def_property_readonly("kind", [](const PyCall& pc) { return KindName(StepOf(pc).kind); },
                             "'attempt', 'succeeded' or 'failed'.")
      .def_property_readonly("attempt", [](const PyCall& pc) { return StepOf(pc).attempt; })
      .def_property_readonly("number", [](const PyCall& pc) { return StepOf(pc).attempt; },
                             "The same as ``attempt``: 1 for the call's first attempt, 2 next, ...")
      .def_property_readonly("target", [](const PyCall& pc) { return std::string(StepOf(pc).target); })
      .def_property_readonly("target_index", [](const PyCall& pc) { return StepOf(pc).target_index; })
      .def_property_readonly("model", [](const PyCall& pc) { return std::string(StepOf(pc).model); })
      .def_property_readonly("endpoint_id",
                             [](const PyCall& pc) { return std::string(StepOf(pc).endpoint_id); })
      .def_property_readonly("labels",
                             [](const PyCall& pc) {
                               py::dict d;
                               if (const auto* pick = pc.call.pick()) {
                                 for (const auto& [k, v] : pick->endpoint().labels) d[py::str(k)] = v;
                               }
                               return d;
                             },
                             "The picked endpoint's labels (balanced targets); {} otherwise.")
      .def_property_readonly("delay", [](const PyCall& pc) { return absl::ToDoubleSeconds(StepOf(pc).delay); })
      .def_property_readonly("timeout",
                             [](const PyCall& pc) -> std::optional<double> {
                               if (StepOf(pc).timeout == absl::InfiniteDuration()) return std::nullopt;
                               return absl::ToDoubleSeconds(StepOf(pc).timeout);
                             },
                             "Seconds the attempt may take after its delay; None: unbounded.")
      .def_property_readonly("retry", [](const PyCall& pc) { return StepOf(pc).retry; })
      .def_property_readonly("failure", [](const PyCall& pc) { return StepFailure(StepOf(pc)); },
                             "The previous attempt's failure class, or None.")
      .def_property_readonly("status", [](const PyCall& pc) { return StatusName(pc.call.status()); },
                             "'ok', 'in_progress', 'unavailable', 'deadline_exceeded', 'fatal' or\n"
                             "'stream_broken'.")
      .def_property_readonly("message", [](const PyCall& pc) { return std::string(pc.call.status().message()); })
      .def_property_readonly("code", [](const PyCall& pc) { return static_cast<int>(pc.call.status().code()); },
                             "The absl status code of ``status`` (sluice.status_table() maps it to\n"
                             "its exception): 0 ok, 2 in progress.")
      .def_property_readonly("retry_after",
                             [](const PyCall& pc) { return absl::ToDoubleSeconds(StepOf(pc).retry_after); },
                             "After an 'unavailable' failure: seconds until a target is usable.")
      .def_property_readonly("first_byte_marked",
                             [](const PyCall& pc) { return pc.call.first_byte_marked(); })
      .def("_next_delay",
           [](const PyCall& pc) {
             return pc.call.step().kind == Kind::kAttempt
                        ? absl::ToDoubleSeconds(pc.call.step().delay)
                        : -1.0;
           },
           "The facade's fast path: the delay before the attempt, or -1 when the call ended.")
      .def("_succeed",
           [](PyCall& pc) {
             if (pc.call.step().kind == Kind::kAttempt) pc.call.Next({.http_status = 200});
           },
           "The facade's fast path: the attempt succeeded.")
      .def(
          "next",
          [](PyCall& self, int status, std::optional<std::string> transport, py::bytes error_body,
             double retry_after, double latency, double ttft) -> PyCall& {
            Call& c = self.call;
            if (c.step().kind != Kind::kAttempt) {
              RaisePython("FailedPrecondition",
                          "sluice.FallbackCall.next: the call has ended; there is no attempt");
            }
            std::string_view body = error_body;
            c.Next({.http_status = status,
                    .transport = TransportFromName(transport),
                    .error_body = body,
                    .retry_after = SecondsToDuration(retry_after, "retry_after"),
                    .latency = SecondsToDuration(latency, "latency"),
                    .ttft = SecondsToDuration(ttft, "ttft")});
            return self;
          },
          py::arg("status") = 0, py::kw_only(), py::arg("transport") = py::none(),
          py::arg("error_body") = py::bytes(), py::arg("retry_after") = 0.0,
          py::arg("latency") = 0.0, py::arg("ttft") = 0.0, py::return_value_policy::reference,
          "Reports the attempt: an HTTP status (0 when no response came) or a transport error\n"
          "('connect', 'timeout', 'reset'), the provider's error body (bytes), its Retry-After\n"
          "(seconds), and the latency and TTFT in seconds (0: measured / unknown). Returns self,\n"
          "moved to its next step.")
      .def("mark_first_byte", [](PyCall& pc) { pc.call.MarkFirstByte(); },
           "Streaming: the attempt's first byte reached the client; no fallback from now on.");

  py::class_<PyPolicy>(m, "FallbackPolicy", R"doc(
An ordered chain of targets with a circuit breaker each, a shared retry budget, full-jitter
backoff honouring Retry-After, and a deadline per call (include/sluice/fallback_policy.h has
every rule). Thread-safe; nothing in it blocks. Use the ``sluice.FallbackPolicy`` facade's
``call`` / ``call_async`` / ``stream`` / ``stream_async`` helpers, or drive ``begin()`` yourself.)doc")
      .def(py::init([](const py::list& targets, int64_t max_retries_per_target, double deadline,
                       double attempt_timeout, double backoff_base, double backoff_max,
                       double retry_budget_ratio, int64_t retry_budget_min,
                       std::optional<std::string> context_length_target,
                       std::optional<py::dict> breaker, std::map<std::string, std::string> actions,
                       py::object clock_object) {
             const sluice::Clock* clock =
                 clock_object.is_none()
                     ? nullptr
                     : FieldAs<const sluice::Clock*>(clock_object, "clock", "a sluice.Clock");
             FallbackPolicy::Options o;
             for (size_t i = 0; i < targets.size(); ++i) {
               const std::string field = "targets[" + std::to_string(i) + "]";
               py::dict t = FieldAs<py::dict>(targets[i], field, "a dict");
               FallbackPolicy::Target target;
               for (auto [key, value] : t) {
                 const std::string k = py::str(key);
                 const std::string name = field + "." + k;
                 if (k == "name") {
                   target.name = FieldAs<std::string>(value, name, "a str");
                 } else if (k == "model") {
                   target.model = FieldAs<std::string>(value, name, "a str");
                 } else if (k == "balancer") {
                   if (!value.is_none()) {
                     target.balancer = FieldAs<std::shared_ptr<sluice::Balancer>>(
                         value, name, "a sluice.Balancer");
                   }
                 } else if (k == "breaker") {
                   if (!value.is_none()) {
                     target.breaker = BreakerFromDict(FieldAs<py::dict>(value, name, "a dict"), name);
                   }
                 } else {
                   RaisePython("InvalidArgument", "sluice.FallbackPolicy: " + field + " has no '" + k +
                                                      "' (name, model, balancer, breaker)");
                 }
               }
               o.targets.push_back(std::move(target));
             }
             o.max_retries_per_target = max_retries_per_target;
             o.deadline = SecondsToDuration(deadline, "deadline");
             o.attempt_timeout = SecondsToDuration(attempt_timeout, "attempt_timeout");
             o.backoff_base = SecondsToDuration(backoff_base, "backoff_base");
             o.backoff_max = SecondsToDuration(backoff_max, "backoff_max");
             o.retry_budget = {.ratio = retry_budget_ratio, .min_retries = retry_budget_min};
             o.context_length_target = context_length_target.value_or("");
             if (breaker) o.breaker = BreakerFromDict(*breaker, "breaker");
             for (const auto& [failure, action] : actions) {
               o.actions.Set(FailureFromName(failure, "actions"),
                             ActionFromName(action, "actions['" + failure + "']"));
             }
             auto queue = std::make_shared<TransitionQueue>();
             o.on_breaker_transition = [queue](std::string_view target,
                                               const CircuitBreaker::Transition& t) {
               absl::MutexLock lock(&queue->mu);
               if (queue->events.size() < 10000) queue->events.push_back({std::string(target), t});
               queue->pending.store(true, std::memory_order_release);
             };
             return PyPolicy{std::make_shared<py::object>(clock_object),
                             ValueOrThrow(FallbackPolicy::Create(std::move(o), ClockOrDefault(clock))),
                             std::move(queue)};
           }),
           py::arg("targets"), py::kw_only(), py::arg("max_retries_per_target") = 1,
           py::arg("deadline") = 120.0, py::arg("attempt_timeout") = 0.0,
           py::arg("backoff_base") = 0.025, py::arg("backoff_max") = 0.25,
           py::arg("retry_budget_ratio") = 0.2, py::arg("retry_budget_min") = 3,
           py::arg("context_length_target") = py::none(), py::arg("breaker") = py::none(),
           py::arg("actions") = std::map<std::string, std::string>{}, py::arg("clock") = py::none())
      .def("begin",
           [](PyPolicy& p, double deadline) {
             FallbackPolicy::CallOptions options;
             options.deadline = SecondsToDuration(deadline, "deadline");
             return PyCall{p.clock, p.policy->Begin(options)};
           },
           py::arg("deadline") = 0.0,
           "Starts a call (deadline 0: the policy's); its first step is ready.")
      .def("_drain_transitions",
           [](PyPolicy& p) {
             py::list out;
             TransitionQueue& q = *p.transitions;
             if (!q.pending.load(std::memory_order_acquire)) return out;
             std::vector<TransitionQueue::Event> events;
             {
               absl::MutexLock lock(&q.mu);
               events.swap(q.events);
               q.pending.store(false, std::memory_order_relaxed);
             }
             for (const auto& e : events) {
               py::dict d;
               d["target"] = e.target;
               d["from"] = StateName(e.t.from);
               d["to"] = StateName(e.t.to);
               d["reason"] = std::string(e.t.reason);
               d["trips"] = e.t.trips;
               d["open_for"] = absl::ToDoubleSeconds(e.t.open_for);
               d["at"] = NanosToSeconds(e.t.at_nanos);
               out.append(d);
             }
             return out;
           })
      .def("targets",
           [](const PyPolicy& p) {
             py::list out;
             for (const auto& t : p.policy->Targets()) {
               py::dict d;
               d["name"] = t.name;
               d["state"] = StateName(t.breaker.state);
               d["attempts"] = t.attempts;
               d["successes"] = t.successes;
               d["failures"] = t.failures;
               d["skipped"] = t.skipped;
               d["trips"] = t.breaker.trips;
               d["window_calls"] = t.breaker.calls;
               d["window_failures"] = t.breaker.failures;
               d["rate_limited_until"] = t.rate_limited_until_nanos == 0
                                             ? py::object(py::none())
                                             : py::float_(NanosToSeconds(t.rate_limited_until_nanos));
               out.append(d);
             }
             return out;
           },
           "A dict per target: name, state ('closed', 'open', 'half_open'), attempts,\n"
           "successes, failures, skipped, trips, window_calls, window_failures,\n"
           "rate_limited_until.")
      .def_property_readonly("retries_refused",
                             [](const PyPolicy& p) { return p.policy->retries_refused(); })
      .def_property_readonly("calls_in_flight",
                             [](const PyPolicy& p) { return p.policy->calls_in_flight(); })
      .def_property_readonly("retries_in_flight",
                             [](const PyPolicy& p) { return p.policy->retries_in_flight(); });
}

}  // namespace sluice_python
