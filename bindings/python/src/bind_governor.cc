// Governor and Admission (sluice/governor.h): the policy-driven call path. The facade
// (sluice/_governor.py) adds the cooperative wait for cluster-scope rules and the one-call helper.
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "sluice/governor.h"
#include "sluice/policy.h"
#include "sluice/usage.h"

namespace sluice_python {

using sluice::Admission;
using sluice::Governor;

namespace {

// The Governor and the clock object it reads (a Python ManualClock must outlive it). The clock
// comes first: members are destroyed in reverse order.
struct PyGovernor {
  std::shared_ptr<py::object> clock;
  std::unique_ptr<Governor> governor;
};

// An Admission with the clock its fallback calls read.
struct PyAdmission {
  std::shared_ptr<py::object> clock;
  Admission admission;
};

sluice::Policy PolicyFrom(const std::optional<std::string>& text,
                          const std::optional<std::string>& path, const std::string& source) {
  if (text && path) {
    RaisePython("InvalidArgument", "sluice.Governor: give the policy text or path=, not both");
  }
  if (text) return ValueOrThrow(sluice::ParsePolicy(*text, source));
  // The file is opened by its C string: a NUL would silently open another file.
  if (path && path->find('\0') != std::string::npos) {
    RaisePython("InvalidArgument", "sluice.Governor: path must not contain a NUL character");
  }
  return ValueOrThrow(sluice::LoadPolicyFile(path.value_or("")));
}

// The request's attributes, copied out of Python: strings only, header names in lower case.
struct Attributes {
  std::vector<std::string> storage;
  std::vector<sluice::Attribute> views;

  void Add(const py::handle& name, const py::handle& value, const std::string& prefix,
           const char* argument) {
    std::string n = FieldAs<std::string>(name, std::string(argument) + " keys", "a str");
    std::string field = std::string(argument) + "['" + n + "']";
    if (!prefix.empty()) {
      for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      n = prefix + n;
    }
    storage.push_back(std::move(n));
    storage.push_back(FieldAs<std::string>(value, field, "a str"));
  }
  void Finish() {
    for (size_t i = 0; i + 1 < storage.size(); i += 2) {
      views.push_back({storage[i], storage[i + 1]});
    }
  }
};

sluice::RuleLimits LimitsFrom(const std::vector<sluice::Window>& requests,
                              const std::vector<sluice::Window>& tokens, int64_t concurrency) {
  sluice::RuleLimits limits;
  limits.requests = requests;
  limits.tokens = tokens;
  limits.concurrency = concurrency;
  return limits;
}

}  // namespace

void BindGovernor(py::module_& m) {
  py::class_<PyAdmission>(m, "Admission", R"doc(
One request's admission by a Governor: whether it may go (``allowed``, truthy), the binding
rule's ``decision`` and ``headers()``, the shaping ``delay``, the response cache
(``cached_answer`` / ``store_answer``), the fallback call for its model (``begin_call``), and
``settle(usage)``. It holds the request's concurrency permits and token reservations:
``release()``, the end of a ``with`` block or collection gives the permits back (unsettled
reservations stay charged as estimated); ``cancel()`` gives the tokens back too.)doc")
      .def("__bool__", [](const PyAdmission& a) { return a.admission.allowed(); })
      .def_property_readonly("allowed", [](const PyAdmission& a) { return a.admission.allowed(); })
      .def_property_readonly("decision",
                             [](const PyAdmission& a) { return a.admission.decision(); })
      .def_property_readonly("rule",
                             [](const PyAdmission& a) { return std::string(a.admission.rule()); },
                             "The binding rule's name ('' when no rule matched).")
      .def_property_readonly(
          "delay", [](const PyAdmission& a) { return absl::ToDoubleSeconds(a.admission.delay()); },
          "Seconds to wait before sending (shaping); 0 without a shaping rule.")
      .def_property_readonly("matched_rules",
                             [](const PyAdmission& a) {
                               std::vector<std::string> out;
                               for (std::string_view r : a.admission.matched_rules()) {
                                 out.emplace_back(r);
                               }
                               return out;
                             })
      .def_property_readonly("token_estimate",
                             [](const PyAdmission& a) { return a.admission.token_estimate(); })
      .def(
          "headers",
          [](const PyAdmission& a) {
            std::vector<std::pair<std::string, std::string>> out = a.admission.Headers();
            return out;
          },
          "The binding decision as HTTP headers: RateLimit-Policy, RateLimit, X-RateLimit-*,\n"
          "and Retry-After on refusals, as (name, value) pairs.")
      .def(
          "cached_answer",
          [](PyAdmission& a) -> py::object {
            std::shared_ptr<const sluice::CachedResponse> hit;
            {
              py::gil_scoped_release release;
              hit = a.admission.CachedAnswer();
            }
            if (!hit) return py::none();
            return CachedResponseToPython(*hit);
          },
          "The cached answer (bytes, or a list of bytes chunks for a stream), or None.")
      .def(
          "store_answer",
          [](PyAdmission& a, const py::object& answer) {
            return a.admission.StoreAnswer(CachedResponseFromPython(answer));
          },
          py::arg("answer"),
          "Stores the answer (bytes, or a list of bytes chunks) under this request's key, in\n"
          "its namespace; False when not stored (no cache, refused, a body that is not JSON).")
      .def(
          "begin_call",
          [](PyAdmission& a, double deadline) {
            sluice::FallbackPolicy::CallOptions options;
            options.deadline = SecondsToDuration(deadline, "deadline");
            return PyCall{a.clock, ValueOrThrow(a.admission.BeginCall(options))};
          },
          py::arg("deadline") = 0.0,
          "The fallback call for the request's model (a sluice.FallbackCall); NotFound when\n"
          "the policy has no chain for it.")
      .def(
          "settle",
          [](PyAdmission& a, const py::object& usage) {
            int64_t tokens = 0;
            if (py::isinstance<sluice::Usage>(usage)) {
              tokens = usage.cast<const sluice::Usage&>().total_tokens;
            } else {
              tokens = FieldAs<int64_t>(usage, "usage", "a sluice.Usage or an int");
            }
            absl::Status s;
            {
              py::gil_scoped_release release;
              s = a.admission.Settle(tokens);
            }
            ThrowIfError(s);
          },
          py::arg("usage"),
          "Settles the token reservations with the call's usage (a sluice.Usage: its\n"
          "total_tokens, or an int) and releases the permits. Only the first call counts.")
      .def(
          "cancel",
          [](PyAdmission& a) {
            py::gil_scoped_release release;
            a.admission.Cancel();
          },
          "The call never reached a provider: tokens back, permits released.")
      .def(
          "release",
          [](PyAdmission& a) {
            py::gil_scoped_release release;
            a.admission.Release();
          },
          "Releases the permits (unsettled reservations stay charged as estimated).")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyAdmission& a, py::object, py::object, py::object) {
        py::gil_scoped_release release;
        a.admission.Release();
        return false;
      });

  py::class_<PyGovernor>(m, "Governor", R"doc(
Runs a sluice policy (YAML or JSON; docs/policy.md): every rule's limiters, the upstream
balancers, the fallback chains and the response cache, with one ``admit`` per request. Give the
policy's text, or ``path=`` a file; with neither, the file named by $SLUICE_CONFIG. Thread-safe.)doc")
      .def(py::init([](std::optional<std::string> text, std::optional<std::string> path,
                       const std::string& source, py::object clock_object) {
             const sluice::Clock* clock =
                 clock_object.is_none()
                     ? nullptr
                     : FieldAs<const sluice::Clock*>(clock_object, "clock", "a sluice.Clock");
             sluice::Policy policy = PolicyFrom(text, path, source);
             return PyGovernor{std::make_shared<py::object>(clock_object),
                               ValueOrThrow(Governor::Create(std::move(policy),
                                                             ClockOrDefault(clock)))};
           }),
           py::arg("policy") = py::none(), py::kw_only(), py::arg("path") = py::none(),
           py::arg("source") = "<string>", py::arg("clock") = py::none())
      .def(
          "admit",
          [](PyGovernor& g, std::optional<py::dict> attributes, std::optional<py::dict> headers,
             std::optional<std::string> ip, std::optional<py::object> body,
             int64_t token_estimate) {
            Attributes a;
            if (attributes) {
              for (auto [name, value] : *attributes) a.Add(name, value, "", "attributes");
            }
            if (headers) {
              for (auto [name, value] : *headers) a.Add(name, value, "header.", "headers");
            }
            if (ip) {
              a.storage.push_back("ip");
              a.storage.push_back(*ip);
            }
            a.Finish();
            std::string body_bytes;
            if (body && !body->is_none()) {
              if (py::isinstance<py::bytes>(*body)) {
                body_bytes = body->cast<std::string>();
              } else {
                body_bytes = FieldAs<std::string>(*body, "body", "a str or bytes");
              }
            }
            PyAdmission out{g.clock, Admission()};
            {
              py::gil_scoped_release release;
              out.admission = g.governor->Admit(
                  {.attributes = a.views, .body = body_bytes, .token_estimate = token_estimate});
            }
            ThrowIfError(out.admission.status());
            return out;
          },
          py::arg("attributes") = py::none(), py::kw_only(), py::arg("headers") = py::none(),
          py::arg("ip") = py::none(), py::arg("body") = py::none(),
          py::arg("token_estimate") = -1,
          "Decides a request against every rule that matches (see sluice.Governor). `attributes`:\n"
          "tenant, app, api_key, end_user, model, provider, route or your own; `headers` are\n"
          "matched as header.<lower-case name>; `ip` is the client's address; `body` the\n"
          "request's JSON (cache key, token estimate). Raises for a Redis configuration error\n"
          "or a full key table; a refusal is a falsy Admission. Waits for Redis in cluster scope\n"
          "(the facade runs it off the event loop then).")
      .def(
          "reload",
          [](PyGovernor& g, std::optional<std::string> text, std::optional<std::string> path,
             const std::string& source) {
            sluice::Policy policy = PolicyFrom(text, path, source);
            absl::Status s;
            {
              py::gil_scoped_release release;
              s = g.governor->Reload(std::move(policy));
            }
            ThrowIfError(s);
          },
          py::arg("policy") = py::none(), py::kw_only(), py::arg("path") = py::none(),
          py::arg("source") = "<string>",
          "Swaps in a new policy; unchanged rules keep their state. An invalid policy raises\n"
          "and the running one stays.")
      .def(
          "set_key_limits",
          [](PyGovernor& g, const std::string& rule, const std::string& key,
             const std::vector<sluice::Window>& requests, const std::vector<sluice::Window>& tokens,
             int64_t concurrency) {
            ThrowIfError(g.governor->SetKeyLimits(rule, key, LimitsFrom(requests, tokens, concurrency)));
          },
          py::arg("rule"), py::arg("key"), py::kw_only(),
          py::arg("requests") = std::vector<sluice::Window>{},
          py::arg("tokens") = std::vector<sluice::Window>{}, py::arg("concurrency") = 0,
          "Sets one key's limits of `rule` in this process (plans, per-app caps).")
      .def(
          "clear_key_limits",
          [](PyGovernor& g, const std::string& rule, const std::string& key) {
            ThrowIfError(g.governor->ClearKeyLimits(rule, key));
          },
          py::arg("rule"), py::arg("key"),
          "Clears what set_key_limits gave one key of `rule`: the policy's limits apply again.")
      .def("metrics_text", [](PyGovernor& g) { return g.governor->MetricsText(); },
           "Prometheus text exposition of every object the Governor owns.")
      .def_property_readonly("waits_for_redis",
                             [](PyGovernor& g) { return g.governor->waits_for_redis(); },
                             "Whether a rule is in cluster scope, so admit may wait for Redis.")
      .def_property_readonly(
          "rule_names",
          [](PyGovernor& g) {
            std::vector<std::string> out;
            for (const sluice::RuleSpec& r : g.governor->policy()->rules) out.push_back(r.name);
            return out;
          },
          "The running policy's rule names, in policy order.");
}

}  // namespace sluice_python
