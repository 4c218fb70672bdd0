// Metrics (sluice/metrics.h): MetricsRegistry and its Counter, Gauge and Histogram handles.
// The facade's PrometheusCollector (sluice/_metrics.py) hands render() to prometheus_client.
//
// Strings: names and help are str; label values are str or bytes, any of them: a str with lone
// surrogates (os.fsdecode's surrogateescape) keeps its bytes, and Render replaces what is not
// UTF-8 with U+FFFD. So a label value never fails to convert.
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "sluice/metrics.h"

namespace sluice_python {
namespace {

using sluice::Counter;
using sluice::Gauge;
using sluice::Histogram;
using sluice::MetricLabels;
using sluice::MetricsRegistry;

py::type_error WrongType(const std::string& field, const char* expected, py::handle value) {
  return py::type_error(field + " must be " + expected + ", got " +
                        py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>());
}

// The bytes of a str (UTF-8; lone surrogates kept as surrogateescape or surrogatepass bytes)
// or of bytes; TypeError naming `field` otherwise.
std::string TextBytes(py::handle value, const std::string& field, bool bytes_too) {
  if (bytes_too && PyBytes_Check(value.ptr())) {
    return std::string(py::reinterpret_borrow<py::bytes>(value));
  }
  if (!PyUnicode_Check(value.ptr())) {
    throw WrongType(field, bytes_too ? "a str or bytes" : "a str", value);
  }
  for (const char* errors : {"surrogateescape", "surrogatepass"}) {
    PyObject* encoded = PyUnicode_AsEncodedString(value.ptr(), "utf-8", errors);
    if (encoded != nullptr) {
      std::string out(PyBytes_AS_STRING(encoded), static_cast<size_t>(PyBytes_GET_SIZE(encoded)));
      Py_DECREF(encoded);
      return out;
    }
    PyErr_Clear();
  }
  throw WrongType(field, "an encodable str", value);
}

MetricLabels LabelsFrom(const std::optional<py::dict>& labels, const char* method) {
  MetricLabels out;
  if (!labels) return out;
  const std::string field = std::string("sluice.MetricsRegistry.") + method + ": labels";
  for (auto [key, value] : *labels) {
    out.emplace_back(TextBytes(key, field + " (a name)", /*bytes_too=*/false),
                     TextBytes(value, field + " (a value)", /*bytes_too=*/true));
  }
  return out;
}

std::string HelpFrom(const py::str& help, const char* method) {
  return TextBytes(help, std::string("sluice.MetricsRegistry.") + method + ": help", false);
}

}  // namespace

void BindMetrics(py::module_& m) {
  py::class_<Counter>(m, "Counter", R"doc(
A monotonic count of a MetricsRegistry (``registry.counter(...)``). ``add(n)`` is one atomic
add; a counter of a series that did not fit the registry (``bool(counter)`` is False) ignores
it.)doc")
      .def(
          "add",
          [](const Counter& c, int64_t n) {
            if (n < 0) {
              RaisePython("InvalidArgument",
                          "sluice.Counter.add: n must be >= 0 (a counter never goes down), got " +
                              std::to_string(n));
            }
            c.Add(n);
          },
          py::arg("n") = 1, "Adds n (>= 0; wraps after 2**63 - 1).")
      .def_property_readonly("value", &Counter::value)
      .def("__bool__", [](const Counter& c) { return static_cast<bool>(c); });

  py::class_<Gauge>(m, "Gauge", R"doc(
A value that goes up and down (``registry.gauge(...)``). In host scope it is one value for the
whole host: ``add`` from every process sums, ``set`` sets it for all.)doc")
      .def("set", &Gauge::Set, py::arg("value"), "Sets the value.")
      .def("add", &Gauge::Add, py::arg("n"), "Adds n (negative to subtract).")
      .def_property_readonly("value", &Gauge::value)
      .def("__bool__", [](const Gauge& g) { return static_cast<bool>(g); });

  py::class_<Histogram>(m, "Histogram", R"doc(
Observations counted in fixed buckets (``registry.histogram(...)``), with their sum.
``observe(v)`` counts v in the first bucket whose bound is >= v; NaN is ignored.)doc")
      .def("observe", &Histogram::Observe, py::arg("value"),
           "Counts value, in the unit of the bounds (seconds by default).")
      .def_property_readonly("count", &Histogram::count)
      .def_property_readonly("sum", &Histogram::sum)
      .def("__bool__", [](const Histogram& h) { return static_cast<bool>(h); });

  py::class_<MetricsRegistry, std::shared_ptr<MetricsRegistry>>(m, "MetricsRegistry", R"doc(
Counters, gauges and histograms rendered in the Prometheus text format (``render()``). With
``shared_region``, the series live in /dev/shm and every process that opens the same name adds
into them: any one worker renders the host's totals. At most ``max_series`` series; a new one
beyond (or beyond the string space) gets a handle that ignores updates and is counted in
sluice_metrics_dropped_series_total. Register it with prometheus_client through
``sluice.PrometheusCollector(registry)``.)doc")
      .def(py::init([](const std::string& shared_region, int64_t max_series) {
             MetricsRegistry::Options options;
             options.shared_region = shared_region;
             options.max_series = max_series;
             return ValueOrThrow(MetricsRegistry::Create(options));
           }),
           py::arg("shared_region") = "",
           py::arg("max_series") = MetricsRegistry::Options{}.max_series)
      .def(
          "counter",
          [](MetricsRegistry& r, const std::string& name, const py::str& help,
             const std::optional<py::dict>& labels) {
            return ValueOrThrow(
                r.GetCounter(name, HelpFrom(help, "counter"), LabelsFrom(labels, "counter")));
          },
          py::arg("name"), py::arg("help"), py::arg("labels") = py::none(),
          "The counter of series name{labels} (a dict of str to str), made on first use.")
      .def(
          "gauge",
          [](MetricsRegistry& r, const std::string& name, const py::str& help,
             const std::optional<py::dict>& labels) {
            return ValueOrThrow(
                r.GetGauge(name, HelpFrom(help, "gauge"), LabelsFrom(labels, "gauge")));
          },
          py::arg("name"), py::arg("help"), py::arg("labels") = py::none(),
          "The gauge of series name{labels}, made on first use.")
      .def(
          "histogram",
          [](MetricsRegistry& r, const std::string& name, const py::str& help,
             const std::optional<py::dict>& labels, std::optional<std::vector<double>> bounds) {
            if (bounds && bounds->empty()) {  // C++ reads empty as "the default": say None
              RaisePython("InvalidArgument",
                          "sluice.MetricsRegistry.histogram: bounds must hold 1 to 256 upper "
                          "bounds (or be None for the default), got none");
            }
            std::vector<double> upper_bounds;  // empty: C++'s default
            if (bounds) upper_bounds = *std::move(bounds);
            return ValueOrThrow(r.GetHistogram(name, HelpFrom(help, "histogram"),
                                               LabelsFrom(labels, "histogram"),
                                               std::move(upper_bounds)));
          },
          py::arg("name"), py::arg("help"), py::arg("labels") = py::none(),
          py::arg("bounds") = py::none(),
          "The histogram of series name{labels}: bounds are increasing finite upper bounds\n"
          "(+Inf added); None: 100 ns to 10 ms in seconds.")
      .def(
          "render",
          [](const MetricsRegistry& r) {
            std::string text;
            {
              py::gil_scoped_release release;  // no Python collectors: nothing here needs it
              text = r.Render();
            }
            return text;  // valid UTF-8: Render replaces what is not
          },
          "The Prometheus text exposition (format 0.0.4) of every series.")
      .def_property_readonly("series_count", &MetricsRegistry::series_count)
      .def_property_readonly("dropped_series", &MetricsRegistry::dropped_series)
      .def_property_readonly("memory_bytes", &MetricsRegistry::memory_bytes);
}

}  // namespace sluice_python
