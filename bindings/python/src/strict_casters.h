// Argument conversions that never run Python code.
//
// pybind11 converts an int argument with PyLong_AsLongLong and a float with PyFloat_AsDouble,
// which call the object's __index__ / __float__ when it is not an int or a float. Code running
// there runs inside the native call, and if it switches greenlets (gevent.sleep, any cooperative
// I/O), another greenlet can enter a bound call and unwind pybind11's per-thread stack of argument
// loaders out of order: the process aborts ("loader_life_support: internal error"). The same
// rule as sluice/_cooperative.py: nothing inside a native call may switch greenlets.
//
// So int64 and double arguments accept what converts without Python code: int and float (and
// their subclasses, whose value is read directly), and objects of types implemented in C that
// define __index__ / __float__ (numpy's scalars: their conversion cannot switch greenlets). A
// class defined in Python that merely defines __index__ or __float__ is a TypeError.
//
// Included by bindings.h before any binding, so every conversion of the module uses these.
#ifndef SLUICE_BINDINGS_PYTHON_STRICT_CASTERS_H_
#define SLUICE_BINDINGS_PYTHON_STRICT_CASTERS_H_

#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <type_traits>

namespace sluice_python {

// A type implemented in C (not a class statement): its number slots run no Python code.
inline bool IsNativeType(PyObject* object) {
  return (Py_TYPE(object)->tp_flags & Py_TPFLAGS_HEAPTYPE) == 0;
}

}  // namespace sluice_python

namespace pybind11 {
namespace detail {

// int and float arguments; see the file comment.
template <typename T>
class StrictIntCaster {
 public:
  PYBIND11_TYPE_CASTER(T, const_name("int"));

  bool load(handle src, bool /*convert*/) {
    PyObject* o = src.ptr();
    if (o == nullptr || PyFloat_Check(o)) return false;  // 1.9 is not an int
    if (!PyLong_Check(o) && !(PyIndex_Check(o) && sluice_python::IsNativeType(o))) return false;
    object number = reinterpret_steal<object>(PyNumber_Index(o));  // no Python code: see above
    if (!number) {
      PyErr_Clear();
      return false;
    }
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(number.ptr(), &overflow);
    if (overflow != 0 || (v == -1 && PyErr_Occurred())) {
      PyErr_Clear();
      return UnsignedBeyondSigned(number);
    }
    if (v < static_cast<long long>(std::numeric_limits<T>::min()) ||
        (v > 0 && static_cast<unsigned long long>(v) >
                      static_cast<unsigned long long>(std::numeric_limits<T>::max()))) {
      return false;
    }
    value = static_cast<T>(v);
    return true;
  }
  static handle cast(T v, return_value_policy, handle) {
    if constexpr (std::is_signed_v<T>) return PyLong_FromLongLong(v);
    return PyLong_FromUnsignedLongLong(v);
  }

 private:
  // An unsigned 64-bit value above the signed range (a seed of 2^63).
  bool UnsignedBeyondSigned(const object& number) {
    if constexpr (std::is_signed_v<T> || sizeof(T) < sizeof(long long)) {
      return false;
    } else {
      const unsigned long long v = PyLong_AsUnsignedLongLong(number.ptr());
      if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
        PyErr_Clear();
        return false;
      }
      value = static_cast<T>(v);
      return true;
    }
  }
};

template <>
class type_caster<int> : public StrictIntCaster<int> {};
template <>
class type_caster<long> : public StrictIntCaster<long> {};  // int64_t
template <>
class type_caster<unsigned long> : public StrictIntCaster<unsigned long> {};  // uint64_t

template <>
class type_caster<double> {
 public:
  PYBIND11_TYPE_CASTER(double, const_name("float"));

  bool load(handle src, bool /*convert*/) {
    PyObject* o = src.ptr();
    if (o == nullptr) return false;
    const bool native_number = sluice_python::IsNativeType(o) &&
                               Py_TYPE(o)->tp_as_number != nullptr &&
                               (Py_TYPE(o)->tp_as_number->nb_float != nullptr ||
                                Py_TYPE(o)->tp_as_number->nb_index != nullptr);
    if (!PyFloat_Check(o) && !PyLong_Check(o) && !native_number) return false;
    const double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {  // an int too large for a double, or a failing slot
      PyErr_Clear();
      return false;
    }
    value = v;
    return true;
  }
  static handle cast(double v, return_value_policy, handle) { return PyFloat_FromDouble(v); }
};

}  // namespace detail
}  // namespace pybind11

#endif  // SLUICE_BINDINGS_PYTHON_STRICT_CASTERS_H_
