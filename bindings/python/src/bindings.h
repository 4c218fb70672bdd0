// Shared declarations of the pybind11 extension `sluice._core`: one Bind* function per file.
#ifndef SLUICE_BINDINGS_PYTHON_BINDINGS_H_
#define SLUICE_BINDINGS_PYTHON_BINDINGS_H_

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/clock.h"

namespace sluice_python {

namespace py = pybind11;

// Carries a non-OK absl::Status to the translator registered in errors.cc, which raises the
// matching exception of sluice._errors (InvalidArgument is also a ValueError).
struct StatusError {
  absl::Status status;
};

void RegisterErrorTranslator();

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

// Python durations are float seconds. NaN and infinities are rejected naming `field`.
absl::Duration SecondsToDuration(double seconds, const char* field);
int64_t SecondsToNanos(double seconds, const char* field);
inline double NanosToSeconds(int64_t nanos) { return static_cast<double>(nanos) / 1e9; }

// `clock` may be None: the process's steady clock.
inline const sluice::Clock* ClockOrDefault(const sluice::Clock* clock) {
  return clock == nullptr ? sluice::Clock::Steady() : clock;
}

void BindBasics(py::module_& m);         // Clock, ManualClock, Window, Decision
void BindGcraObjects(py::module_& m);    // RateLimiter, LeakyBucket, TokenBudget, Reservation
void BindConcurrency(py::module_& m);    // ConcurrencyLimiter, Permit
void BindCluster(py::module_& m);        // RedisStore, PendingDecision

}  // namespace sluice_python

#endif  // SLUICE_BINDINGS_PYTHON_BINDINGS_H_
