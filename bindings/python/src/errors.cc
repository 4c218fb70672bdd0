#include <cmath>
#include <string>

#include "bindings.h"

namespace sluice_python {
namespace {

// Raises `type` with `message`. Messages quote what the caller passed (a rule, an endpoint id),
// which may be any bytes: undecodable ones are escaped, where PyErr_SetString would raise a
// UnicodeDecodeError instead of the error it was asked to.
void SetError(PyObject* type, const std::string& message) {
  py::object text = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(
      message.data(), static_cast<Py_ssize_t>(message.size()), "backslashreplace"));
  if (!text) return;  // out of memory: that error is already set
  PyErr_SetObject(type, text.ptr());
}

}  // namespace

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
        case absl::StatusCode::kPermissionDenied: name = "PermissionDenied"; break;
        case absl::StatusCode::kDeadlineExceeded: name = "DeadlineExceeded"; break;
        default: break;
      }
      py::object type = errors.attr(name);
      SetError(type.ptr(), std::string(e.status.message()));
    } catch (const py::cast_error& e) {
      // A value inside a container argument that pybind11 could not convert: a wrong type.
      SetError(PyExc_TypeError, e.what());
    }
  });
}

void RaisePython(const char* class_name, const std::string& message) {
  py::object type = py::module_::import("sluice._errors").attr(class_name);
  SetError(type.ptr(), message);
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
