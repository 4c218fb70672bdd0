#include <cmath>
#include <string>

#include "bindings.h"

namespace sluice_python {

void RegisterErrorTranslator() {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      // The hierarchy lives in Python (sluice/_errors.py) so users can subclass and pickle it.
      py::module_ errors = py::module_::import("sluice._errors");
      const char* name = "Error";
      switch (e.status.code()) {
        case absl::StatusCode::kInvalidArgument: name = "InvalidArgument"; break;
        case absl::StatusCode::kResourceExhausted: name = "CapacityError"; break;
        case absl::StatusCode::kFailedPrecondition: name = "FailedPrecondition"; break;
        case absl::StatusCode::kNotFound: name = "NotFound"; break;
        case absl::StatusCode::kUnavailable: name = "Unavailable"; break;
        default: break;
      }
      py::object type = errors.attr(name);
      PyErr_SetString(type.ptr(), std::string(e.status.message()).c_str());
    } catch (const py::cast_error& e) {
      // A value inside a container argument that pybind11 could not convert: a wrong type.
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
}

void RaisePython(const char* class_name, const std::string& message) {
  py::object type = py::module_::import("sluice._errors").attr(class_name);
  PyErr_SetString(type.ptr(), message.c_str());
  throw py::error_already_set();
}

absl::Duration SecondsToDuration(double seconds, const char* field) {
  return absl::Nanoseconds(SecondsToNanos(seconds, field));
}

int64_t SecondsToNanos(double seconds, const char* field) {
  // 9.2e9 s is the int64 nanosecond range; anything near it is a mistake, not a duration.
  if (!std::isfinite(seconds) || std::fabs(seconds) > 9.0e9) {
    RaisePython("InvalidArgument", std::string(field) +
                                       " must be a finite number of seconds (at most 9e9), got " +
                                       py::repr(py::float_(seconds)).cast<std::string>());
  }
  return std::llround(seconds * 1e9);
}

}  // namespace sluice_python
