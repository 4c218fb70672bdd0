// sluice._core: the thin pybind11 layer. The Python package `sluice` (sluice/__init__.py) wraps
// it with waiting helpers (gevent, asyncio), exceptions and context managers.
#include "absl/synchronization/mutex.h"
#include "bindings.h"
#include "sluice/version.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "sluice native core: admission objects (see the `sluice` package for the facade).";
  m.attr("__version__") = SLUICE_VERSION_STRING;
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex lock runs the deadlock
  // detector (a graph lookup per lock: it doubles the cost of an uncontended lock). sluice takes
  // its locks in one fixed order, and a Python process has no other Abseil user to protect.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  sluice_python::RegisterErrorTranslator();
  sluice_python::BindErrors(m);
  sluice_python::BindBasics(m);
  sluice_python::BindCluster(m);
  sluice_python::BindGcraObjects(m);
  sluice_python::BindConcurrency(m);
  sluice_python::BindBalancer(m);
  sluice_python::BindFallback(m);
  sluice_python::BindCache(m);
  sluice_python::BindUsage(m);
  sluice_python::BindLog(m);
  sluice_python::BindGovernor(m);
  sluice_python::BindMetrics(m);
}
