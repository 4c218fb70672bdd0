// RedisStore and PendingDecision: cluster scope.
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <utility>

#include "bindings.h"
#include "sluice/rate_limiter.h"
#include "sluice/redis_store.h"

namespace sluice_python {

namespace {

// The Python spellings of the cluster enums, in one place: parsed here, and the constructors'
// defaults are the names of ClusterOptions{}'s values.
constexpr std::pair<sluice::FailureMode, const char*> kFailureModes[] = {
    {sluice::FailureMode::kAllow, "allow"},
    {sluice::FailureMode::kDeny, "deny"},
    {sluice::FailureMode::kLocal, "local"},
};
constexpr std::pair<sluice::ClusterMode, const char*> kClusterModes[] = {
    {sluice::ClusterMode::kStrict, "strict"},
    {sluice::ClusterMode::kLeased, "leased"},
};

}  // namespace

const char* FailureModeName(sluice::FailureMode mode) {
  for (const auto& [value, name] : kFailureModes) {
    if (value == mode) return name;
  }
  return "local";
}

const char* ClusterModeName(sluice::ClusterMode mode) {
  for (const auto& [value, name] : kClusterModes) {
    if (value == mode) return name;
  }
  return "strict";
}

sluice::ClusterMode ClusterModeFromName(const char* object, const std::string& mode) {
  for (const auto& [value, name] : kClusterModes) {
    if (mode == name) return value;
  }
  RaisePython("InvalidArgument", std::string(object) + ": mode must be 'strict' or 'leased', got '" +
                                     mode + "'");
}

sluice::ClusterOptions ClusterFromPython(const char* object,
                                         std::shared_ptr<sluice::RedisStore> redis,
                                         std::optional<std::string> redis_name,
                                         const std::string& on_failure,
                                         std::optional<int64_t> local_share) {
  sluice::ClusterOptions c;
  c.store = std::move(redis);
  c.redis_name = redis_name.value_or("");
  c.local_share = local_share.value_or(c.local_share);
  for (const auto& [value, name] : kFailureModes) {
    if (on_failure == name) {
      c.on_failure = value;
      return c;
    }
  }
  RaisePython("InvalidArgument", std::string(object) + ": on_failure must be 'allow', 'deny' "
                                                       "or 'local', got '" + on_failure + "'");
}

void BindCluster(py::module_& m) {
  py::class_<sluice::RedisStore, std::shared_ptr<sluice::RedisStore>>(m, "RedisStore", R"doc(
One connection to Redis, owned by a native background thread and shared by the objects that keep
their state in Redis (cluster scope). It connects on first use and reconnects by itself; while
Redis is unreachable, decisions fail fast into each object's failure mode. Safe across fork().)doc")
      .def(py::init([](std::string host, int port, std::optional<std::string> unix_socket,
                       std::optional<std::string> username, std::optional<std::string> password,
                       int db, double connect_timeout, double command_timeout,
                       double reconnect_interval, std::string key_prefix) {
             sluice::RedisOptions o;
             o.host = std::move(host);
             o.port = port;
             o.unix_socket = unix_socket.value_or("");
             o.username = username.value_or("");
             o.password = password.value_or("");
             o.db = db;
             o.connect_timeout = SecondsToDuration(connect_timeout, "connect_timeout");
             o.command_timeout = SecondsToDuration(command_timeout, "command_timeout");
             o.reconnect_interval = SecondsToDuration(reconnect_interval, "reconnect_interval");
             o.key_prefix = std::move(key_prefix);
             return ValueOrThrow(sluice::RedisStore::Create(o));
           }),
           // Defaults are RedisOptions{}'s, so the two cannot drift.
           py::arg("host") = sluice::RedisOptions{}.host,
           py::arg("port") = sluice::RedisOptions{}.port, py::kw_only(),
           py::arg("unix_socket") = py::none(), py::arg("username") = py::none(),
           py::arg("password") = py::none(), py::arg("db") = sluice::RedisOptions{}.db,
           py::arg("connect_timeout") = absl::ToDoubleSeconds(sluice::RedisOptions{}.connect_timeout),
           py::arg("command_timeout") = absl::ToDoubleSeconds(sluice::RedisOptions{}.command_timeout),
           py::arg("reconnect_interval") =
               absl::ToDoubleSeconds(sluice::RedisOptions{}.reconnect_interval),
           py::arg("key_prefix") = sluice::RedisOptions{}.key_prefix)
      .def(
          "stats",
          [](const sluice::RedisStore& s) {
            const sluice::RedisStats st = s.stats();
            py::dict d;
            d["commands"] = st.commands;
            d["pipelined"] = st.pipelined;
            d["failures"] = st.failures;
            d["fast_failures"] = st.fast_failures;
            d["connects"] = st.connects;
            d["script_loads"] = st.script_loads;
            d["config_errors"] = st.config_errors;
            d["retried"] = st.retried;
            d["undone"] = st.undone;
            d["dropped"] = st.dropped;
            d["connected"] = st.connected;
            d["last_error"] = st.last_error;
            return d;
          },
          "Counters since creation: commands, pipelined, failures, fast_failures, connects,\n"
          "script_loads, config_errors (a wrong password, a replica, ...), retried (releases kept\n"
          "across an outage and sent again), undone (acquires whose caller gave up, released),\n"
          "dropped; whether it is connected now, and the last configuration error ('' if none).")
      .def(
          "check",
          [](sluice::RedisStore& s, double timeout) {
            const absl::Duration wait = SecondsToDuration(timeout, "timeout");
            absl::Status status;
            {
              py::gil_scoped_release release;
              status = s.Check(wait);
            }
            ThrowIfError(status);
          },
          py::arg("timeout") = 2.0,
          "Connects if need be and checks the server: the credentials, that it is a master (not\n"
          "a replica or a Sentinel), the database, that scripts may run and write sluice's keys.\n"
          "Raises sluice.PermissionDenied, sluice.FailedPrecondition, or sluice.Unavailable when\n"
          "Redis cannot be reached within `timeout` seconds. It waits (GIL released, but a gevent\n"
          "hub is blocked): call it at start-up.");

  BindPending<sluice::Decision>(m, "PendingDecision", R"doc(
A decision under way (``RateLimiter.start``, ``LeakyBucket.start``). ``fileno()`` becomes readable
when the reply is in (-1 when it was decided on the spot); ``result()`` then returns the Decision
without waiting.)doc");
}

}  // namespace sluice_python
