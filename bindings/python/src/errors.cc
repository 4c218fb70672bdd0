#include <cmath>
#include <string>

#include "bindings.h"
#include "sluice/internal/status_table.h"

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

// The exception class sluice._errors names for `code` in the status table.
py::object ErrorClassOf(absl::StatusCode code) {
  const char* name = sluice::internal::StatusEntryOf(code).python;
  return py::module_::import("sluice._errors").attr(name != nullptr ? name : "Error");
}

}  // namespace

void BindErrors(py::module_& m) {
  m.def(
      "status_table",
      [] {
        py::list rows;
        for (const sluice::internal::StatusEntry& e : sluice::internal::kStatusTable) {
          rows.append(py::make_tuple(
              static_cast<int>(e.code), absl::StatusCodeToString(e.code), e.c_code, e.c_name,
              e.python == nullptr ? py::object(py::none()) : py::object(py::str(e.python))));
        }
        return rows;
      },
      "The one table of how sluice reports an error in each language\n"
      "(sluice/internal/status_table.h): (absl code, its name, C code, C name, Python class in\n"
      "sluice._errors or None for OK), a tuple per code. Codes not listed raise sluice.Error.");
  m.def(
      "_raise_status",
      [](int code, const std::string& message) {
        ThrowIfError(absl::Status(static_cast<absl::StatusCode>(code), message));
      },
      py::arg("code"), py::arg("message"),
      "Raises what a C++ call failing with absl code `code` raises (tests the translator).");
}

void RegisterErrorTranslator() {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      // The hierarchy lives in Python (sluice/_errors.py) so users can subclass and pickle it;
      // which class a code raises is the one status table (sluice/internal/status_table.h).
      SetError(ErrorClassOf(e.status.code()).ptr(), std::string(e.status.message()));
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
