// Balancer, its Pick, and the request and engine-metrics parsers.
#include <pybind11/stl.h>

#include <map>
#include <optional>
#include <string>

#include "bindings.h"
#include "sluice/balancer.h"
#include "sluice/engine_metrics.h"
#include "sluice/llm_request.h"
#include "sluice/redis_store.h"

namespace sluice_python {
namespace {

using sluice::Balancer;
using sluice::EndpointSpec;
using sluice::AttemptOutcome;
using Pick = Balancer::Pick;

Balancer::Strategy StrategyFromName(const std::string& name) {
  static const std::map<std::string, Balancer::Strategy> kNames = {
      {"round_robin", Balancer::Strategy::kRoundRobin},
      {"weighted_round_robin", Balancer::Strategy::kWeightedRoundRobin},
      {"least_request", Balancer::Strategy::kLeastRequest},
      {"prefix_affinity", Balancer::Strategy::kPrefixAffinity},
      {"scored", Balancer::Strategy::kScored},
      {"consistent_hash", Balancer::Strategy::kConsistentHash},
  };
  auto it = kNames.find(name);
  if (it == kNames.end()) {
    RaisePython("InvalidArgument",
                "sluice.Balancer: strategy must be one of round_robin, weighted_round_robin, "
                "least_request, prefix_affinity, scored, consistent_hash; got '" + name + "'");
  }
  return it->second;
}

sluice::Failure ErrorFromName(const std::optional<std::string>& name) {
  if (!name) return sluice::Failure::kNone;
  if (*name == "connection") return sluice::Failure::kConnect;  // the name before 0.2
  const std::optional<sluice::Failure> failure = sluice::FailureFromName(*name);
  if (!failure || *failure == sluice::Failure::kNone) {
    RaisePython("InvalidArgument",
                "sluice.Pick.complete: error must be None or a failure class (rate_limited, "
                "auth, connect, reset, timeout, server, client, context_length, content_filter, "
                "abandoned); got '" + *name + "'");
  }
  return *failure;
}

// add_endpoint and update_endpoint: the same keyword arguments, into one EndpointSpec.
auto EndpointSetter(absl::Status (Balancer::*method)(const EndpointSpec&)) {
  // The id and labels come back as str (endpoints(), Pick.label), so they must be str: bytes
  // would be stored and then fail to decode on the way out.
  return [method](Balancer& b, const py::str& id, int64_t weight, int64_t max_concurrency,
                  int64_t kv_capacity_blocks, const py::dict& labels) {
    EndpointSpec e;
    e.id = id.cast<std::string>();
    e.weight = weight;
    e.max_concurrency = max_concurrency;
    e.kv_capacity_blocks = kv_capacity_blocks;
    for (auto [k, v] : labels) {
      const std::string name = FieldAs<std::string>(k, "labels key", "a str");
      e.labels.emplace(name, FieldAs<std::string>(v, "labels['" + name + "']", "a str"));
    }
    ThrowIfError((b.*method)(e));
  };
}

py::dict StatsToDict(const sluice::EndpointStats& s, int64_t now_nanos) {
  py::dict d;
  d["id"] = s.id;
  d["in_flight"] = s.in_flight;
  d["picks"] = s.picks;
  d["completions"] = s.completions;
  d["errors"] = s.errors;
  d["ewma_latency"] = absl::ToDoubleSeconds(s.ewma_latency);
  d["ewma_ttft"] = absl::ToDoubleSeconds(s.ewma_ttft);
  d["ewma_error_rate"] = s.ewma_error_rate;
  d["cooldown_until"] = s.cooldown_until_nanos == 0 ? py::object(py::none())
                                                    : py::float_(NanosToSeconds(s.cooldown_until_nanos));
  d["prefix_blocks"] = s.prefix_blocks;
  // The administration fields (issue 17: a console shows a cooldown's remaining time).
  auto seconds_or_none = [](int64_t nanos) {
    return nanos == 0 ? py::object(py::none()) : py::object(py::float_(NanosToSeconds(nanos)));
  };
  auto failure_or_none = [](sluice::Failure f) {
    return f == sluice::Failure::kNone ? py::object(py::none())
                                       : py::object(py::str(std::string(sluice::FailureName(f))));
  };
  d["host_in_flight"] = s.host_in_flight;
  d["fleet_in_flight"] = s.fleet_in_flight;
  d["cooldown_remaining"] =
      s.cooldown_until_nanos == 0 ? 0.0 : NanosToSeconds(s.cooldown_until_nanos - now_nanos);
  d["cooldown_reason"] = failure_or_none(s.cooldown_reason);
  d["ejected_until"] = seconds_or_none(s.ejected_until_nanos);
  d["ejected_remaining"] =
      s.ejected_until_nanos == 0 ? 0.0 : NanosToSeconds(s.ejected_until_nanos - now_nanos);
  d["times_ejected"] = s.times_ejected;
  d["last_failure"] = failure_or_none(s.last_failure);
  d["last_failure_at"] = seconds_or_none(s.last_failure_at_nanos);
  if (s.metrics) {
    py::dict m;
    m["waiting"] = s.metrics->waiting;
    m["running"] = s.metrics->running;
    m["kv_usage"] = s.metrics->kv_usage;
    d["metrics"] = m;
  } else {
    d["metrics"] = py::none();
  }
  return d;
}

// A cooldown's or ejection's length from Python seconds: finite, > 0, at most a day.
absl::Duration HoldDuration(const char* method, double seconds) {
  const double max_seconds = absl::ToDoubleSeconds(Balancer::kMaxHoldDuration);
  if (!(seconds > 0 && seconds <= max_seconds)) {  // NaN fails both comparisons
    RaisePython("InvalidArgument",
                std::string(method) + ": seconds must be > 0 and at most " +
                    std::to_string(static_cast<int64_t>(max_seconds)) + ", got " +
                    py::repr(py::float_(seconds)).cast<std::string>());
  }
  return absl::Nanoseconds(SecondsToNanos(seconds, "seconds"));
}

}  // namespace

void BindBalancer(py::module_& m) {
  const Balancer::Options kDefaults;
  py::class_<sluice::ChatMessage>(m, "ChatMessage", R"doc(
One message of a parsed request: its role, and its content as text (text parts joined; other
parts as their minified JSON).)doc")
      .def_readonly("role", &sluice::ChatMessage::role)
      .def_readonly("content", &sluice::ChatMessage::content)
      .def("__repr__", [](const sluice::ChatMessage& c) {
        return "ChatMessage(role=" + py::repr(py::str(c.role)).cast<std::string>() + ", " +
               std::to_string(c.content.size()) + " bytes)";
      });

  py::class_<sluice::LlmRequest>(m, "LlmRequest", R"doc(
What sluice reads from an OpenAI-style request body (``parse_request``).)doc")
      .def_readonly("model", &sluice::LlmRequest::model)
      .def_readonly("messages", &sluice::LlmRequest::messages)
      .def_readonly("stream", &sluice::LlmRequest::stream)
      .def_readonly("prompt_chars", &sluice::LlmRequest::prompt_chars)
      .def_property_readonly("estimated_prompt_tokens", &sluice::LlmRequest::EstimatedPromptTokens);

  m.def(
      "parse_request",
      [](py::bytes body) {
        std::string_view view = body;
        py::gil_scoped_release release;
        return ValueOrThrow(sluice::ParseLlmRequest(view));
      },
      py::arg("body"),
      "Parses an OpenAI-style chat or completion body (bytes). Raises sluice.InvalidArgument\n"
      "naming the field at fault.");
  m.def(
      "prefix_block_hashes",
      [](const sluice::LlmRequest& r, int64_t block_chars, int64_t max_blocks) {
        return sluice::PrefixBlockHashes(r, {block_chars, max_blocks});
      },
      py::arg("request"), py::arg("block_chars") = sluice::PrefixHashOptions{}.block_chars,
      py::arg("max_blocks") = sluice::PrefixHashOptions{}.max_blocks,
      "The request's chained XXH3 block hashes, as the Balancer's prefix index sees them.");

  py::class_<sluice::EngineMetrics>(m, "EngineMetrics", R"doc(
A replica's load from its metrics text: waiting and running requests, KV-cache use (0..1);
None for a series the text did not have.)doc")
      .def_readonly("waiting", &sluice::EngineMetrics::waiting)
      .def_readonly("running", &sluice::EngineMetrics::running)
      .def_readonly("kv_usage", &sluice::EngineMetrics::kv_usage);
  m.def(
      "parse_engine_metrics",
      [](const std::string& text) { return ValueOrThrow(sluice::ParseEngineMetrics(text)); },
      py::arg("text"),
      "Reads queue depth, running requests and KV-cache use from vLLM / SGLang Prometheus\n"
      "text. Raises sluice.InvalidArgument naming the line at fault.");

  py::class_<Pick>(m, "Pick", R"doc(
A chosen endpoint, counted in flight until ``complete()``. As a context manager it completes as
successful when the block ends normally and as abandoned when it raises (unless completed
inside); a Pick collected without completion counts as abandoned.)doc")
      .def_property_readonly("endpoint_id", &Pick::endpoint_id)
      .def_property_readonly("labels",
                             [](const Pick& p) {
                               py::dict d;
                               for (const auto& [k, v] : p.endpoint().labels) d[py::str(k)] = v;
                               return d;
                             })
      .def("label", [](const Pick& p, const std::string& name) { return std::string(p.label(name)); },
           py::arg("name"), "The endpoint's label, or '' if it has none by that name.")
      .def_property_readonly("matched_blocks", &Pick::matched_blocks,
                             "Leading prefix blocks the endpoint was believed to hold (prefix\n"
                             "strategies): a multiple of 4, as the index keys groups of 4 blocks,\n"
                             "or all of the request's blocks.")
      .def_property_readonly("completed", &Pick::completed)
      .def(
          "complete",
          [](Pick& p, int status, std::optional<std::string> error, double ttft, double latency,
             int64_t prompt_tokens, int64_t completion_tokens) {
            AttemptOutcome o;
            o.http_status = status;
            o.failure = ErrorFromName(error);
            o.ttft = SecondsToDuration(ttft, "ttft");
            o.latency = SecondsToDuration(latency, "latency");
            o.prompt_tokens = prompt_tokens;
            o.completion_tokens = completion_tokens;
            p.Complete(o);
          },
          py::kw_only(), py::arg("status") = 0, py::arg("error") = py::none(),
          py::arg("ttft") = 0.0, py::arg("latency") = 0.0, py::arg("prompt_tokens") = 0,
          py::arg("completion_tokens") = 0,
          "Reports how the request went: an HTTP status (429, 401/403 and 5xx are classified)\n"
          "or an error class, and the TTFT and latency in seconds (0: unknown). Only the first\n"
          "call counts.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](Pick& p, py::object exc_type, py::object, py::object) {
        if (!p.completed()) {
          AttemptOutcome o;
          if (!exc_type.is_none()) o.failure = sluice::Failure::kAbandoned;
          p.Complete(o);
        }
        return false;
      });

  py::class_<Balancer, std::shared_ptr<Balancer>>(m, "Balancer", R"doc(
Picks one of N LLM endpoints per request (see include/sluice/balancer.h for every rule):
strategy "round_robin", "weighted_round_robin", "least_request" (default), "prefix_affinity",
"scored" (weights: prefix, queue, kv_cache, in_flight) or "consistent_hash". Cooldowns by error
class (rate limited 60 s, auth and connection 10 s) make round robin over API keys a credential
rotation. With ``shared_region="name"`` the in-flight counts are shared by every process of the
host (Gunicorn workers balance together), and so are cooldowns, ejections, the round-robin
cursor and, with a prefix strategy, the routes (every worker learns every worker's picks, so a
conversation's next turn goes where its last went whichever worker picks it). With
``redis=RedisStore(...)`` and ``redis_name="fleet"`` cooldowns, ejections and (prefix
strategies) routes are shared by every process of every host under that name (mirrored from
Redis, read again at most every ``redis_refresh`` seconds, default 0.25; a pick never waits for
Redis, and while Redis is down each process keeps its own). Thread-safe; a pick never blocks on
I/O.)doc")
      .def(py::init([](const std::string& strategy, int64_t block_chars, int64_t max_blocks,
                       int64_t kv_capacity_blocks, int64_t imbalance_abs, double imbalance_rel,
                       double hot_spot_sigmas, std::map<std::string, double> weights,
                       double metrics_max_age, double score_load_slack,
                       double kv_session_half_life, double kv_full_usage, double load_bound,
                       int64_t virtual_nodes,
                       int64_t failures_before_cooldown, double cooldown_rate_limited,
                       double cooldown_auth, double cooldown_connection, double cooldown_timeout,
                       double cooldown_server, double ewma_weight, uint64_t seed,
                       const sluice::Clock* clock, std::optional<std::string> shared_region,
                       int64_t shared_max_in_flight, double shared_lease,
                       std::shared_ptr<sluice::RedisStore> redis,
                       std::optional<std::string> redis_name, double redis_refresh,
                       int64_t min_shared_affinity_blocks) {
             Balancer::Options o;
             o.strategy = StrategyFromName(strategy);
             o.prefix_hash = {block_chars, max_blocks};
             o.kv_capacity_blocks = kv_capacity_blocks;
             o.imbalance_abs = imbalance_abs;
             o.imbalance_rel = imbalance_rel;
             o.hot_spot_sigmas = hot_spot_sigmas;
             for (const auto& [name, value] : weights) {
               if (name == "prefix") o.weights.prefix = value;
               else if (name == "queue") o.weights.queue = value;
               else if (name == "kv_cache") o.weights.kv_cache = value;
               else if (name == "in_flight") o.weights.in_flight = value;
               else RaisePython("InvalidArgument", "sluice.Balancer: weights has no '" + name +
                                                       "' (prefix, queue, kv_cache, in_flight)");
             }
             o.metrics_max_age = SecondsToDuration(metrics_max_age, "metrics_max_age");
             o.score_load_slack = score_load_slack;
             o.kv_session_half_life = SecondsToDuration(kv_session_half_life, "kv_session_half_life");
             o.kv_full_usage = kv_full_usage;
             o.load_bound = load_bound;
             o.virtual_nodes = virtual_nodes;
             o.failures_before_cooldown = failures_before_cooldown;
             o.cooldown_rate_limited = SecondsToDuration(cooldown_rate_limited, "cooldown_rate_limited");
             o.cooldown_auth = SecondsToDuration(cooldown_auth, "cooldown_auth");
             o.cooldown_connection = SecondsToDuration(cooldown_connection, "cooldown_connection");
             o.cooldown_timeout = SecondsToDuration(cooldown_timeout, "cooldown_timeout");
             o.cooldown_server = SecondsToDuration(cooldown_server, "cooldown_server");
             o.ewma_weight = ewma_weight;
             o.seed = seed;
             o.shared_region = shared_region.value_or("");
             o.shared_max_in_flight = shared_max_in_flight;
             o.shared_lease = SecondsToDuration(shared_lease, "shared_lease");
             o.redis = std::move(redis);
             o.redis_name = redis_name.value_or("");
             o.redis_refresh = SecondsToDuration(redis_refresh, "redis_refresh");
             o.min_shared_affinity_blocks = min_shared_affinity_blocks;
             // Shared: a FallbackPolicy target may route through it.
             return std::shared_ptr<Balancer>(ValueOrThrow(Balancer::Create(o, ClockOrDefault(clock))));
           }),
           // Defaults are Balancer::Options{}'s (kDefaults), so the two cannot drift.
           py::arg("strategy") = "least_request", py::kw_only(),
           py::arg("block_chars") = kDefaults.prefix_hash.block_chars,
           py::arg("max_blocks") = kDefaults.prefix_hash.max_blocks,
           py::arg("kv_capacity_blocks") = kDefaults.kv_capacity_blocks,
           py::arg("imbalance_abs") = kDefaults.imbalance_abs,
           py::arg("imbalance_rel") = kDefaults.imbalance_rel,
           py::arg("hot_spot_sigmas") = kDefaults.hot_spot_sigmas,
           py::arg("weights") = std::map<std::string, double>{},
           py::arg("metrics_max_age") = absl::ToDoubleSeconds(kDefaults.metrics_max_age),
           py::arg("score_load_slack") = kDefaults.score_load_slack,
           py::arg("kv_session_half_life") = absl::ToDoubleSeconds(kDefaults.kv_session_half_life),
           py::arg("kv_full_usage") = kDefaults.kv_full_usage,
           py::arg("load_bound") = kDefaults.load_bound,
           py::arg("virtual_nodes") = kDefaults.virtual_nodes,
           py::arg("failures_before_cooldown") = kDefaults.failures_before_cooldown,
           py::arg("cooldown_rate_limited") = absl::ToDoubleSeconds(kDefaults.cooldown_rate_limited),
           py::arg("cooldown_auth") = absl::ToDoubleSeconds(kDefaults.cooldown_auth),
           py::arg("cooldown_connection") = absl::ToDoubleSeconds(kDefaults.cooldown_connection),
           py::arg("cooldown_timeout") = absl::ToDoubleSeconds(kDefaults.cooldown_timeout),
           py::arg("cooldown_server") = absl::ToDoubleSeconds(kDefaults.cooldown_server),
           py::arg("ewma_weight") = kDefaults.ewma_weight, py::arg("seed") = kDefaults.seed,
           py::arg("clock") = nullptr, py::arg("shared_region") = py::none(),
           py::arg("shared_max_in_flight") = kDefaults.shared_max_in_flight,
           py::arg("shared_lease") = absl::ToDoubleSeconds(kDefaults.shared_lease),
           py::arg("redis") = nullptr, py::arg("redis_name") = py::none(),
           py::arg("redis_refresh") = absl::ToDoubleSeconds(kDefaults.redis_refresh),
           py::arg("min_shared_affinity_blocks") = kDefaults.min_shared_affinity_blocks,
           // Keeps the clock alive with the balancer: 24 is its position (self is 1); count again
           // when adding an argument before it (test_hostile_lifetimes catches a wrong one).
           py::keep_alive<1, 24>())
      .def("add_endpoint", EndpointSetter(&Balancer::AddEndpoint), py::arg("id"), py::kw_only(),
           py::arg("weight") = 1, py::arg("max_concurrency") = 0, py::arg("kv_capacity_blocks") = 0,
           py::arg("labels") = py::dict(),
           "Adds an endpoint. labels={'model': ...} restricts it to that model; other labels\n"
           "(provider, api_key, url) come back on the Pick.")
      .def("update_endpoint", EndpointSetter(&Balancer::UpdateEndpoint), py::arg("id"),
           py::kw_only(), py::arg("weight") = 1, py::arg("max_concurrency") = 0,
           py::arg("kv_capacity_blocks") = 0,
           py::arg("labels") = py::dict(),
           "Replaces an endpoint's settings, keeping its counters and prefix index.")
      .def("remove_endpoint",
           [](Balancer& b, const py::str& id) {
             ThrowIfError(b.RemoveEndpoint(id.cast<std::string>()));
           },
           py::arg("id"), "Removes an endpoint; its picks in flight complete normally.")
      .def("update_metrics",
           [](Balancer& b, const py::str& id, const std::string& text) {
             ThrowIfError(b.UpdateMetrics(id.cast<std::string>(), text));
           },
           py::arg("id"), py::arg("text"),
           "Feeds the endpoint's scraped Prometheus text (vLLM or SGLang).")
      .def(
          "pick",
          [](const py::object& self, std::optional<py::bytes> body, const std::string& model,
             const std::string& affinity_key) {
            Balancer& b = Self<Balancer>(self);
            if (body) {
              std::string_view view = *body;
              absl::StatusOr<Balancer::Pick> pick;
              {
                py::gil_scoped_release release;
                absl::StatusOr<sluice::LlmRequest> request = sluice::ParseLlmRequest(view);
                pick = request.ok() ? b.PickEndpoint(*request, affinity_key) : request.status();
              }
              return KeepingAlive(ValueOrThrow(std::move(pick)), self);
            }
            return KeepingAlive(ValueOrThrow(b.PickEndpoint(sluice::PickRequest{
                                    .model = model, .affinity_key = affinity_key})),
                                self);
          },
          py::arg("body") = py::none(), py::kw_only(), py::arg("model") = "",
          py::arg("affinity_key") = "",
          "Picks an endpoint for a raw request body (bytes: parsed, its model and prefix used),\n"
          "or for a model name alone. Raises sluice.NotFound (no endpoint serves the model),\n"
          "sluice.CapacityError (all at max_concurrency) or sluice.Error (all cooling down).")
      .def(
          "pick_parsed",
          [](const py::object& self, const sluice::LlmRequest& request,
             const std::string& affinity_key) {
            absl::StatusOr<Balancer::Pick> pick;
            {
              py::gil_scoped_release release;
              pick = Self<Balancer>(self).PickEndpoint(request, affinity_key);
            }
            return KeepingAlive(ValueOrThrow(std::move(pick)), self);
          },
          py::arg("request"), py::kw_only(), py::arg("affinity_key") = "",
          "pick() for a request already parsed with parse_request().")
      .def("endpoints",
           [](const Balancer& b) {
             py::list out;
             std::vector<sluice::EndpointStats> stats = b.Endpoints();
             const int64_t now = b.clock()->NowNanos();  // after the snapshot: remaining >= 0
             for (const auto& s : stats) out.append(StatsToDict(s, now));
             return out;
           },
           "A dict per endpoint: id, in_flight (this process's picks), host_in_flight (every\n"
           "process's, with a shared_region), fleet_in_flight (and other hosts', as last read,\n"
           "with redis=), picks, completions, errors, EWMAs, prefix_blocks,\n"
           "metrics; cooldown_until and ejected_until (seconds on the balancer's clock, None when\n"
           "not held; host-wide with a shared_region), cooldown_remaining and ejected_remaining\n"
           "(seconds, 0.0 when not held), cooldown_reason (a failure class name, None for an\n"
           "administered cooldown without one), times_ejected, last_failure and last_failure_at\n"
           "(this process's last failed completion: class name and clock seconds, or None).")
      .def(
          "cooldown",
          [](Balancer& b, const py::str& id, double seconds, std::optional<std::string> reason) {
            const absl::Duration d = HoldDuration("sluice.Balancer.cooldown", seconds);
            sluice::Failure failure = sluice::Failure::kNone;
            if (reason) {
              const std::optional<sluice::Failure> f = sluice::FailureFromName(*reason);
              if (!f || *f == sluice::Failure::kNone) {
                RaisePython("InvalidArgument",
                            "sluice.Balancer.cooldown: reason must be None or a failure class "
                            "(rate_limited, auth, connect, reset, timeout, server, client, "
                            "context_length, content_filter, abandoned); got '" + *reason + "'");
              }
              failure = *f;
            }
            ThrowIfError(b.Cooldown(id.cast<std::string>(), d, failure));
          },
          py::arg("id"), py::arg("seconds"), py::kw_only(), py::arg("reason") = py::none(),
          "Keeps the endpoint out of picks for `seconds` (0 < seconds <= 86400) from now, as after\n"
          "a failure of class `reason` (None: an administered cooldown). The later end wins: a\n"
          "shorter cooldown changes nothing (restore() first). With a shared_region, host-wide.\n"
          "Raises sluice.InvalidArgument naming the argument, sluice.NotFound for an unknown id.")
      .def(
          "eject",
          [](Balancer& b, const py::str& id, double seconds) {
            const absl::Duration d = HoldDuration("sluice.Balancer.eject", seconds);
            ThrowIfError(b.Eject(id.cast<std::string>(), d));
          },
          py::arg("id"), py::arg("seconds"),
          "Ejects the endpoint for `seconds` (0 < seconds <= 86400), whatever the outlier\n"
          "ejection cap says (it counts towards the cap). With a shared_region, host-wide.")
      .def(
          "restore",
          [](Balancer& b, const py::str& id) { ThrowIfError(b.Restore(id.cast<std::string>())); },
          py::arg("id"),
          "Ends the endpoint's cooldown and ejection now (host-wide with a shared_region), and\n"
          "its runs of consecutive failures. Raises sluice.NotFound for an unknown id.");
}

}  // namespace sluice_python
