// Metrics (sluice/metrics.h): MetricsRegistry and its Counter, Gauge and Histogram handles.
// The facade's PrometheusCollector (sluice/_metrics.py) hands render() to prometheus_client.
//
// Strings: names and help are str; label values are str or bytes, any of them: a str with lone
// surrogates (os.fsdecode's surrogateescape) keeps its bytes, and Render replaces what is not
// UTF-8 with U+FFFD. So a label value never fails to convert.
#include <cmath>
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

MetricLabels LabelsFrom(const py::object& labels, const char* method) {
  MetricLabels out;
  if (labels.is_none()) return out;
  const std::string field = std::string("sluice.MetricsRegistry.") + method + ": labels";
  if (!py::isinstance<py::dict>(labels)) throw WrongType(field, "a dict of str to str", labels);
  for (auto [key, value] : py::reinterpret_borrow<py::dict>(labels)) {
    out.emplace_back(TextBytes(key, field + " (a name)", /*bytes_too=*/false),
                     TextBytes(value, field + " (a value)", /*bytes_too=*/true));
  }
  return out;
}

std::vector<double> BoundsFrom(const py::object& bounds) {
  std::vector<double> out;
  if (bounds.is_none()) return out;
  const std::string field = "sluice.MetricsRegistry.histogram: bounds";
  if (!py::isinstance<py::list>(bounds) && !py::isinstance<py::tuple>(bounds)) {
    throw WrongType(field, "a list of numbers", bounds);
  }
  for (py::handle item : bounds) out.push_back(FieldAs<double>(item, field, "a list of numbers"));
  if (out.empty()) {
    RaisePython("InvalidArgument", field + " must hold 1 to 256 bounds (or be None), got none");
  }
  return out;
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
          [](MetricsRegistry& r, const std::string& name, py::object help, py::object labels) {
            const std::string help_bytes =
                TextBytes(help, "sluice.MetricsRegistry.counter: help", false);
            return ValueOrThrow(r.GetCounter(name, help_bytes, LabelsFrom(labels, "counter")));
          },
          py::arg("name"), py::arg("help"), py::arg("labels") = py::none(),
          "The counter of series name{labels} (a dict of str to str), made on first use.")
      .def(
          "gauge",
          [](MetricsRegistry& r, const std::string& name, py::object help, py::object labels) {
            const std::string help_bytes =
                TextBytes(help, "sluice.MetricsRegistry.gauge: help", false);
            return ValueOrThrow(r.GetGauge(name, help_bytes, LabelsFrom(labels, "gauge")));
          },
          py::arg("name"), py::arg("help"), py::arg("labels") = py::none(),
          "The gauge of series name{labels}, made on first use.")
      .def(
          "histogram",
          [](MetricsRegistry& r, const std::string& name, py::object help, py::object labels,
             py::object bounds) {
            const std::string help_bytes =
                TextBytes(help, "sluice.MetricsRegistry.histogram: help", false);
            return ValueOrThrow(r.GetHistogram(name, help_bytes, LabelsFrom(labels, "histogram"),
                                               BoundsFrom(bounds)));
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
