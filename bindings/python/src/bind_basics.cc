// Clock, ManualClock, Window and Decision.
#include <pybind11/stl.h>

#include "bindings.h"
#include "sluice/clock.h"
#include "sluice/decision.h"
#include "sluice/shared_region.h"
#include "sluice/window.h"

namespace sluice_python {
namespace {

// A reading of a clock: seconds in [0, 2^62 ns], or InvalidArgument naming `field`.
int64_t ClockReading(double seconds, const char* field) {
  const int64_t nanos = SecondsToNanos(seconds, field);
  if (nanos < 0 || nanos > sluice::kMaxClockNanos) {
    RaisePython("InvalidArgument", std::string(field) +
                                       " must be in [0, 4.6e9] seconds (a clock reads from 0 to "
                                       "2^62 ns), got " + py::repr(py::float_(seconds)).cast<std::string>());
  }
  return nanos;
}

}  // namespace

void BindBasics(py::module_& m) {
  py::class_<sluice::Clock>(m, "Clock", R"doc(
A monotonic time source. Every sluice object reads time through one; pass ``clock=None`` (the
default) for the process's steady clock, or a ``ManualClock`` to drive time by hand in tests.)doc")
      .def("now", [](const sluice::Clock& c) { return NanosToSeconds(c.NowNanos()); },
           "Seconds since the clock's origin.")
      .def("now_nanos", &sluice::Clock::NowNanos, "Nanoseconds since the clock's origin.");

  m.def(
      "remove_shared_region",
      [](const std::string& name) { ThrowIfError(sluice::RemoveSharedRegion(name)); },
      py::arg("name"),
      "Removes a host-scope shared-memory region (processes using it keep their mapping).\n"
      "Raises sluice.NotFound if there is none by that name.");
  m.def("steady_clock", &sluice::Clock::Steady, py::return_value_policy::reference,
        "The process-wide steady clock (the default).");
  m.def("coarse_steady_clock", &sluice::Clock::CoarseSteady, py::return_value_policy::reference,
        "A cheaper steady clock that moves once per kernel tick (1-4 ms).");
  m.def("tsc_clock", &sluice::Clock::Tsc, py::return_value_policy::reference,
        "The CPU timestamp counter calibrated on CLOCK_MONOTONIC: as fine as steady_clock() and\n"
        "cheaper to read, on the same timeline (it may share a host-scope region with processes\n"
        "on steady_clock(), to within microseconds). The first call calibrates for about 4 ms.\n"
        "Where the counter is absent or unreliable it reads CLOCK_MONOTONIC:\n"
        "tsc_clock_status() says which.");
  m.def(
      "tsc_clock_status",
      [] {
        const sluice::TscClockStatus s = sluice::Clock::TscStatus();
        py::dict d;
        d["uses_tsc"] = s.uses_tsc;
        d["reason"] = std::string(s.reason);
        d["ticks_per_second"] = s.ticks_per_second;
        d["last_offset_nanos"] = s.last_offset_nanos;
        d["max_half_bracket_nanos"] = s.max_half_bracket_nanos;
        d["anchors"] = s.anchors;
        return d;
      },
      "How tsc_clock() reads time: {'uses_tsc': bool, 'reason': str (why not; '' when it does),\n"
      "'ticks_per_second': float, 'last_offset_nanos': int (CLOCK_MONOTONIC minus the clock at the\n"
      "last re-anchoring), 'max_half_bracket_nanos': int, 'anchors': int}.");

  py::class_<sluice::ManualClock, sluice::Clock>(m, "ManualClock", R"doc(
A clock that moves only when told to. Thread-safe.

    clock = sluice.ManualClock()
    limiter = sluice.RateLimiter([sluice.Window.per_second(1)], clock=clock)
    clock.advance(1.0)   # the next unit is due; nothing sleeps)doc")
      .def(py::init([](double start) {
             return new sluice::ManualClock(ClockReading(start, "start"));
           }),
           py::arg("start") = 0.0, "Starts at `start` seconds, in [0, 2^62 ns] (146 years).")
      .def("advance",
           [](sluice::ManualClock& c, double seconds) {
             c.AdvanceNanos(SecondsToNanos(seconds, "seconds"));
           },
           py::arg("seconds"),
           "Moves the clock by `seconds` (negative moves it back); it stops at 0 and at 2^62 ns.")
      .def("advance_nanos", &sluice::ManualClock::AdvanceNanos, py::arg("nanos"))
      .def("set",
           [](sluice::ManualClock& c, double seconds) {
             c.SetNanos(ClockReading(seconds, "seconds"));
           },
           py::arg("seconds"), "Sets the clock to `seconds` since its origin, in [0, 2^62 ns].");

  py::class_<sluice::Window>(m, "Window", R"doc(
One rate: ``limit`` units per ``period`` seconds, of which up to ``burst`` (0 = ``limit``) may be
taken at once. Over any interval of t seconds a key gets at most ``burst + floor(t * limit /
period)`` units (GCRA); a request is refused only when admitting it would break that.)doc")
      .def(py::init([](int64_t limit, double period, int64_t burst) {
             return sluice::Window{limit, SecondsToDuration(period, "period"), burst};
           }),
           py::arg("limit"), py::arg("period"), py::arg("burst") = 0)
      .def_static("per_second", &sluice::Window::PerSecond, py::arg("limit"), py::arg("burst") = 0)
      .def_static("per_minute", &sluice::Window::PerMinute, py::arg("limit"), py::arg("burst") = 0)
      .def_static("per_hour", &sluice::Window::PerHour, py::arg("limit"), py::arg("burst") = 0)
      .def_static("per_day", &sluice::Window::PerDay, py::arg("limit"), py::arg("burst") = 0)
      .def_static(
          "sliding",
          [](int64_t limit, double period) {
            return sluice::Window::Sliding(limit, SecondsToDuration(period, "period"));
          },
          py::arg("limit"), py::arg("period"),
          "An exact sliding window: at most ``limit`` admissions in any interval of ``period``\n"
          "seconds (a log of the last ``limit`` admission times per key; limit at most\n"
          "SLIDING_MAX_LIMIT). RateLimiter only; every window of a limiter has the same kind.")
      .def_readonly("limit", &sluice::Window::limit)
      .def_property_readonly(
          "kind",
          [](const sluice::Window& w) {
            return w.kind == sluice::WindowKind::kSliding ? "sliding" : "gcra";
          },
          "'gcra' (the default) or 'sliding'.")
      .def_property_readonly(
          "period", [](const sluice::Window& w) { return absl::ToDoubleSeconds(w.period); })
      .def_readonly("burst", &sluice::Window::burst)
      .def("__repr__", [](const sluice::Window& w) {
        if (w.kind == sluice::WindowKind::kSliding) {
          return "Window.sliding(limit=" + std::to_string(w.limit) +
                 ", period=" + std::to_string(absl::ToDoubleSeconds(w.period)) + ")";
        }
        return "Window(limit=" + std::to_string(w.limit) +
               ", period=" + std::to_string(absl::ToDoubleSeconds(w.period)) +
               ", burst=" + std::to_string(w.burst) + ")";
      });
  m.attr("SLIDING_MAX_LIMIT") = sluice::kMaxSlidingLimit;

  py::class_<sluice::Decision>(m, "Decision", R"doc(
The answer of every admission object. Truthy when allowed. Durations are float seconds.)doc")
      .def_readonly("allowed", &sluice::Decision::allowed)
      .def_readonly("limit", &sluice::Decision::limit)
      .def_readonly("remaining", &sluice::Decision::remaining)
      .def_property_readonly("retry_after",
                             [](const sluice::Decision& d) { return NanosToSeconds(d.retry_after_nanos); },
                             "Refused: seconds until the same request could be allowed.")
      .def_property_readonly("reset_after",
                             [](const sluice::Decision& d) { return NanosToSeconds(d.reset_after_nanos); },
                             "Seconds until the binding window is whole again.")
      .def_property_readonly("delay",
                             [](const sluice::Decision& d) { return NanosToSeconds(d.delay_nanos); },
                             "LeakyBucket: seconds to wait before proceeding.")
      .def_property_readonly("window",
                             [](const sluice::Decision& d) { return NanosToSeconds(d.window_nanos); },
                             "The binding window's period in seconds (0 if none).")
      .def_readonly("retry_after_nanos", &sluice::Decision::retry_after_nanos)
      .def_readonly("reset_after_nanos", &sluice::Decision::reset_after_nanos)
      .def_readonly("delay_nanos", &sluice::Decision::delay_nanos)
      .def_readonly("window_nanos", &sluice::Decision::window_nanos)
      .def("__bool__", [](const sluice::Decision& d) { return d.allowed; })
      .def(
          "headers",
          [](const sluice::Decision& d, bool ietf, bool x_ratelimit, bool retry_after,
             std::string_view policy_name) {
            unsigned styles = (ietf ? sluice::kIetfHeaders : 0u) |
                              (x_ratelimit ? sluice::kXRateLimitHeaders : 0u) |
                              (retry_after ? sluice::kRetryAfterHeader : 0u);
            return sluice::RateLimitHeaders(d, styles, policy_name);
          },
          py::arg("ietf") = true, py::arg("x_ratelimit") = true, py::arg("retry_after") = true,
          py::arg("policy_name") = "sluice",
          "HTTP headers for this decision as (name, value) pairs: RateLimit-Policy and RateLimit\n"
          "(IETF draft), X-RateLimit-Limit/-Remaining/-Reset, and Retry-After on refusals.")
      .def("__repr__", [](const sluice::Decision& d) {
        return std::string("Decision(allowed=") + (d.allowed ? "True" : "False") +
               ", limit=" + std::to_string(d.limit) + ", remaining=" + std::to_string(d.remaining) +
               ", retry_after=" + std::to_string(NanosToSeconds(d.retry_after_nanos)) +
               ", delay=" + std::to_string(NanosToSeconds(d.delay_nanos)) + ")";
      });
}

}  // namespace sluice_python
