// Shared declarations of the pybind11 extension `sluice._core`: one Bind* function per file.
#ifndef SLUICE_BINDINGS_PYTHON_BINDINGS_H_
#define SLUICE_BINDINGS_PYTHON_BINDINGS_H_

#include <pybind11/pybind11.h>

#include "strict_casters.h"  // before any binding: every int and float argument uses them

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/clock.h"
#include "sluice/cluster.h"
#include "sluice/fallback_policy.h"
#include "sluice/response_cache.h"
#include "sluice/pending.h"

namespace sluice_python {

namespace py = pybind11;

// Carries a non-OK absl::Status to the translator registered in errors.cc, which raises the
// matching exception of sluice._errors (InvalidArgument is also a ValueError).
struct StatusError {
  absl::Status status;
};

void RegisterErrorTranslator();
// status_table() and the translator's test hook _raise_status.
void BindErrors(py::module_& m);

// Raises sluice._errors.<class_name>(message) in Python.
[[noreturn]] void RaisePython(const char* class_name, const std::string& message);

inline void ThrowIfError(const absl::Status& status) {
  if (!status.ok()) throw StatusError{status};
}
template <typename T>
T ValueOrThrow(absl::StatusOr<T> v) {
  if (!v.ok()) throw StatusError{v.status()};
  return *std::move(v);
}

// `value` (an entry of a dict or list argument) as a T, or TypeError naming `field` and the type
// it got (pybind11's own cast error names neither, and surfaces as a RuntimeError).
// A Python type (py::dict, py::str) must be an instance: casting would convert (dict('ab')
// raises ValueError), and a std::string would also take bytes.
template <typename T>
T FieldAs(py::handle value, const std::string& field, const char* expected) {
  auto wrong_type = [&] {
    return py::type_error(field + " must be " + expected + ", got " +
                          py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>());
  };
  if constexpr (std::is_base_of_v<py::object, T>) {
    if (!py::isinstance<T>(value)) throw wrong_type();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!py::isinstance<py::str>(value)) throw wrong_type();
  }
  try {
    return value.cast<T>();
  } catch (const py::cast_error&) {
    throw wrong_type();
  }
}

// Python durations are float seconds. NaN and infinities are rejected naming `field`.
absl::Duration SecondsToDuration(double seconds, const char* field);
int64_t SecondsToNanos(double seconds, const char* field);
inline double NanosToSeconds(int64_t nanos) { return static_cast<double>(nanos) / 1e9; }

// `clock` may be None: the process's steady clock.
inline const sluice::Clock* ClockOrDefault(const sluice::Clock* clock) {
  return clock == nullptr ? sluice::Clock::Steady() : clock;
}

// The cluster options of `object` from the constructor's keyword arguments; `on_failure` is
// "allow", "deny" or "local" (InvalidArgument naming the field otherwise); `local_share` None is
// unset (C++ then refuses "local" without it).
sluice::ClusterOptions ClusterFromPython(const char* object,
                                         std::shared_ptr<sluice::RedisStore> redis,
                                         std::optional<std::string> redis_name,
                                         const std::string& on_failure,
                                         std::optional<int64_t> local_share);
// The Python names of the cluster enums ("allow", "deny", "local"; "strict", "leased"), used as
// the constructors' defaults so that they are ClusterOptions{}'s.
const char* FailureModeName(sluice::FailureMode mode);
const char* ClusterModeName(sluice::ClusterMode mode);
// `mode` parsed, or InvalidArgument naming `object` and the field.
sluice::ClusterMode ClusterModeFromName(const char* object, const std::string& mode);

// The result of `pending`, waiting with the GIL released if the reply is not in yet (at most the
// store's timeouts). Bound methods never wait cooperatively themselves: a greenlet switch inside a
// bound call would interleave pybind11's per-thread argument-loader stack between greenlets and
// abort the process. The facade waits in Python on `fileno()` of a `start*` result instead.
//
// A configuration error of the Redis deployment (a wrong password, a replica: see
// sluice/redis_store.h, "Errors") is raised, never handed over as a plain refusal.
template <typename T>
T GetReleasingGil(sluice::Pending<T>& pending) {
  std::optional<T> result;
  if (pending.done()) {
    result.emplace(pending.Get());
  } else {
    py::gil_scoped_release release;
    result.emplace(pending.Get());
  }
  ThrowIfError(pending.status());
  return *std::move(result);
}

// `result` as a Python object that keeps `owner` alive for as long as it lives: a Permit keeps
// its limiter, a Pick its balancer. This is what py::keep_alive<0, 1> promises, but that policy
// also runs after argument conversion failed and then dereferences pybind11's "try the next
// overload" sentinel (pybind11 PR #6154): `try_acquire(None)` killed the interpreter. So no
// binding of sluice uses keep_alive on a return value; they all come through here.
template <typename T>
py::object KeepingAlive(T&& result, py::handle owner) {
  py::object out = py::cast(std::forward<T>(result), py::return_value_policy::move);
  py::detail::keep_alive_impl(out, owner);  // the owner is released after `out`'s C++ value
  return out;
}

// The C++ object behind a bound method's `self`, taken as a py::object so that results can be
// tied to it with KeepingAlive.
template <typename T>
T& Self(const py::object& self) {
  return self.cast<T&>();
}

// Binds sluice::Pending<T> as `name`: fileno(), done(), result(). The pending result keeps the
// object that started it alive (it is made with KeepingAlive); a result that refers to that
// object (a Permit, a Reservation) keeps the pending result, and so the object, alive in turn.
template <typename T>
void BindPending(py::module_& m, const char* name, const char* doc) {
  py::class_<sluice::Pending<T>>(m, name, doc)
      .def("fileno", &sluice::Pending<T>::fd,
           "Readable once the reply is in; -1 when it was decided on the spot.")
      .def("done", &sluice::Pending<T>::done, "True once result() returns without waiting.")
      .def(
          "result",
          [](const py::object& self) -> py::object {
            T result = GetReleasingGil(Self<sluice::Pending<T>>(self));
            if constexpr (std::is_copy_constructible_v<T>) {
              return py::cast(std::move(result));  // a value (a Decision): refers to nothing
            } else {
              return KeepingAlive(std::move(result), self);
            }
          },
          "The result. Blocks (GIL released) only if the reply is not in yet, at most the\n"
          "store's timeouts; a reply that never comes is decided by the failure mode.");
}

// A FallbackPolicy::Call as Python holds it (sluice.FallbackCall). The clock comes first:
// members are destroyed in reverse order, and a call's destructor still reads the clock.
struct PyCall {
  std::shared_ptr<py::object> clock;
  sluice::FallbackPolicy::Call call;
};

// A cached answer as Python sees it (bytes, or a list of bytes chunks for a stream), and back;
// anything else is a TypeError (bind_cache.cc).
py::object CachedResponseToPython(const sluice::CachedResponse& r);
sluice::CachedResponse CachedResponseFromPython(const py::object& answer);

void BindBasics(py::module_& m);         // Clock, ManualClock, Window, Decision
void BindGcraObjects(py::module_& m);    // RateLimiter, LeakyBucket, TokenBudget, Reservation
void BindConcurrency(py::module_& m);    // ConcurrencyLimiter, Permit
void BindBalancer(py::module_& m);       // Balancer, Pick, parse_request, parse_engine_metrics
void BindCluster(py::module_& m);        // RedisStore, PendingDecision, PendingPermit, ...
void BindFallback(py::module_& m);       // FallbackPolicy, FallbackCall, classify, parse_retry_after
void BindCache(py::module_& m);          // CacheKey, cache_key, canonical_json, ResponseCache
void BindUsage(py::module_& m);          // Usage, UsageReader, read_usage, estimates
void BindLog(py::module_& m);            // sluice's log messages, delivered to `logging`
void BindMetrics(py::module_& m);        // MetricsRegistry, Counter, Gauge, Histogram
void BindGovernor(py::module_& m);       // Governor, Admission

}  // namespace sluice_python

#endif  // SLUICE_BINDINGS_PYTHON_BINDINGS_H_
