// RedisStore and PendingDecision: cluster scope.
#include <pybind11/stl.h>

#include <algorithm>

#include <optional>
#include <string>
#include <utility>
#include <vector>

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

// sentinels= / cluster_nodes=: None, "h:p,h:p", or a list of "host:port" strings and
// (host, port) tuples. Errors name the argument and the item.
std::vector<sluice::RedisNode> NodesFromPython(const std::string& arg, const py::object& value,
                                               int default_port) {
  const std::string who = "sluice.RedisStore: " + arg;
  auto parse = [&](const std::string& where, const std::string& text) {
    absl::StatusOr<std::vector<sluice::RedisNode>> nodes =
        sluice::RedisNodesFromString(text, default_port);
    if (!nodes.ok()) {
      RaisePython("InvalidArgument", where + ": " + std::string(nodes.status().message()));
    }
    return *std::move(nodes);
  };
  auto text_of = [&](const std::string& where, const py::handle& item) {
    try {
      return item.cast<std::string>();
    } catch (const py::cast_error&) {  // a lone surrogate: not UTF-8
      RaisePython("InvalidArgument", where + " must be valid UTF-8");
    } catch (const py::error_already_set&) {
      RaisePython("InvalidArgument", where + " must be valid UTF-8");
    }
  };
  if (value.is_none()) return {};
  if (py::isinstance<py::str>(value)) return parse(who, text_of(who, value));
  if (!py::isinstance<py::list>(value) && !py::isinstance<py::tuple>(value)) {
    throw py::type_error(who + " must be a list of 'host:port' strings or (host, port) tuples, "
                               "got " + std::string(py::str(py::type::of(value).attr("__name__"))));
  }
  const py::sequence items = value.cast<py::sequence>();
  if (items.size() > 64) {
    RaisePython("InvalidArgument", who + " must list 1 to 64 nodes, got " +
                                       std::to_string(items.size()));
  }
  std::vector<sluice::RedisNode> nodes;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string where = who + "[" + std::to_string(i) + "]";
    const py::object item = items[i];
    if (py::isinstance<py::str>(item)) {
      std::vector<sluice::RedisNode> one = parse(where, text_of(where, item));
      if (one.size() != 1) RaisePython("InvalidArgument", where + " must be one 'host:port'");
      nodes.push_back(std::move(one[0]));
      continue;
    }
    if (!py::isinstance<py::tuple>(item) || py::len(item) != 2 ||
        !py::isinstance<py::str>(item.cast<py::tuple>()[0]) ||
        !py::isinstance<py::int_>(item.cast<py::tuple>()[1]) ||
        py::isinstance<py::bool_>(item.cast<py::tuple>()[1])) {
      throw py::type_error(where + " must be 'host:port' or a (host: str, port: int) tuple, got " +
                           std::string(py::str(py::type::of(item).attr("__name__"))));
    }
    const py::tuple pair = item.cast<py::tuple>();
    sluice::RedisNode node;
    node.host = text_of(where, pair[0]);
    const py::int_ port = pair[1].cast<py::int_>();
    if (port < py::int_(1) || port > py::int_(65535)) {
      RaisePython("InvalidArgument", where + " port must be 1..65535, got " +
                                         std::string(py::str(port)));
    }
    node.port = port.cast<int>();
    nodes.push_back(std::move(node));
  }
  return nodes;
}

// from_url's overrides, checked by name and type before the constructor sees them: pybind11's
// own "incompatible arguments" error would list every keyword's value, the password among them.
void CheckOverride(const std::string& name, const py::handle& value) {
  enum Kind { kText, kOptionalText, kInt, kSeconds, kFlag, kNodes };
  static const std::pair<const char*, Kind> kKinds[] = {
      {"host", kText}, {"port", kInt}, {"unix_socket", kOptionalText},
      {"username", kOptionalText}, {"password", kOptionalText}, {"db", kInt},
      {"connect_timeout", kSeconds}, {"command_timeout", kSeconds},
      {"reconnect_interval", kSeconds}, {"key_prefix", kText}, {"tls", kFlag},
      {"tls_ca_file", kOptionalText}, {"tls_cert_file", kOptionalText},
      {"tls_key_file", kOptionalText}, {"tls_server_name", kOptionalText},
      {"tls_verify_peer", kFlag}, {"sentinel_master", kOptionalText}, {"sentinels", kNodes},
      {"sentinel_username", kOptionalText}, {"sentinel_password", kOptionalText},
      {"cluster_nodes", kNodes}};
  const std::string who = "sluice.RedisStore.from_url: " + name;
  for (const auto& [known, kind] : kKinds) {
    if (name != known) continue;
    const char* expected = "";
    try {
      switch (kind) {
        case kText: expected = "a str"; (void)value.cast<std::string>(); break;
        case kOptionalText: expected = "a str or None";
          if (!value.is_none()) (void)value.cast<std::string>();
          break;
        case kInt: expected = "an int that fits in 32 bits"; (void)value.cast<int>(); break;
        case kSeconds: expected = "a number of seconds"; (void)value.cast<double>(); break;
        case kFlag: expected = "a bool"; (void)value.cast<bool>(); break;
        case kNodes: return;  // NodesFromPython names its errors
      }
    } catch (const py::cast_error&) {
      throw py::type_error(who + " must be " + expected + ", got " +
                           std::string(py::str(py::type::of(value).attr("__name__"))));
    } catch (const py::error_already_set&) {
      throw py::type_error(who + " must be " + expected + ", got " +
                           std::string(py::str(py::type::of(value).attr("__name__"))));
    }
    return;
  }
  throw py::type_error("sluice.RedisStore.from_url: unknown keyword '" + name +
                       "' (the overrides are RedisStore()'s keywords)");
}

py::object NodesToPython(const std::vector<sluice::RedisNode>& nodes) {
  if (nodes.empty()) return py::none();
  py::list out;
  for (const sluice::RedisNode& n : nodes) out.append(py::make_tuple(n.host, n.port));
  return out;
}

py::object OptionalText(const std::string& text) {
  return text.empty() ? py::object(py::none()) : py::object(py::str(text));
}

// The keyword arguments of RedisStore(...) that rebuild `o`: what from_url passes on, after the
// caller's overrides.
py::dict KeywordsOf(const sluice::RedisOptions& o) {
  py::dict k;
  k["host"] = o.host;
  k["port"] = o.port;
  k["unix_socket"] = OptionalText(o.unix_socket);
  k["username"] = OptionalText(o.username);
  k["password"] = OptionalText(o.password);
  k["db"] = o.db;
  k["connect_timeout"] = absl::ToDoubleSeconds(o.connect_timeout);
  k["command_timeout"] = absl::ToDoubleSeconds(o.command_timeout);
  k["reconnect_interval"] = absl::ToDoubleSeconds(o.reconnect_interval);
  k["key_prefix"] = o.key_prefix;
  k["tls"] = o.tls.enabled;
  k["tls_ca_file"] = OptionalText(o.tls.ca_file);
  k["tls_cert_file"] = OptionalText(o.tls.cert_file);
  k["tls_key_file"] = OptionalText(o.tls.key_file);
  k["tls_server_name"] = OptionalText(o.tls.server_name);
  k["tls_verify_peer"] = o.tls.verify_peer;
  k["sentinel_master"] = OptionalText(o.sentinel_master);
  k["sentinels"] = NodesToPython(o.sentinels);
  k["sentinel_username"] = OptionalText(o.sentinel_username);
  k["sentinel_password"] = OptionalText(o.sentinel_password);
  k["cluster_nodes"] = NodesToPython(o.cluster_nodes);
  return k;
}

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

// What RedisStore(...) was given that its typed constructor refused, named without any value:
// pybind11's own TypeError lists every argument's value, a password included.
std::string RedisStoreArgumentError(const py::args& args, const py::kwargs& kwargs) {
  enum Kind { kStr, kOptionalStr, kInt, kSeconds, kBool, kNodes };
  static const std::pair<const char*, Kind> kParams[] = {
      {"host", kStr}, {"port", kInt}, {"unix_socket", kOptionalStr}, {"username", kOptionalStr},
      {"password", kOptionalStr}, {"db", kInt}, {"connect_timeout", kSeconds},
      {"command_timeout", kSeconds}, {"reconnect_interval", kSeconds}, {"key_prefix", kStr},
      {"tls", kBool}, {"tls_ca_file", kOptionalStr}, {"tls_cert_file", kOptionalStr},
      {"tls_key_file", kOptionalStr}, {"tls_server_name", kOptionalStr},
      {"tls_verify_peer", kBool}, {"sentinel_master", kOptionalStr}, {"sentinels", kNodes},
      {"sentinel_username", kOptionalStr}, {"sentinel_password", kOptionalStr},
      {"cluster_nodes", kNodes}};
  const std::string who = "sluice.RedisStore: ";
  auto type_name = [](const py::handle& v) {
    return std::string(py::str(py::type::of(v).attr("__name__")));
  };
  auto wrong = [&](const char* name, Kind kind, const py::handle& v) -> std::string {
    const bool is_bool = py::isinstance<py::bool_>(v);
    const bool is_int = py::isinstance<py::int_>(v) && !is_bool;
    switch (kind) {
      case kStr:
        if (!py::isinstance<py::str>(v)) return std::string(name) + " must be a str";
        break;
      case kOptionalStr:
        if (!v.is_none() && !py::isinstance<py::str>(v)) {
          return std::string(name) + " must be a str or None";
        }
        break;
      case kInt:
        if (!is_int) return std::string(name) + " must be an int";
        break;
      case kSeconds:
        if (!is_int && !py::isinstance<py::float_>(v)) {
          return std::string(name) + " must be a number of seconds";
        }
        break;
      case kBool:
        if (!is_bool) return std::string(name) + " must be a bool";
        break;
      case kNodes:
        break;  // checked by the constructor itself, which names the item
    }
    return "";
  };
  if (args.size() > 2) {
    return who + "takes host and port by position and the rest by keyword, got " +
           std::to_string(args.size()) + " positional arguments";
  }
  for (size_t i = 0; i < args.size(); ++i) {
    if (std::string e = wrong(kParams[i].first, kParams[i].second, args[i]); !e.empty()) {
      return who + e + ", got " + type_name(args[i]);
    }
  }
  for (const auto& [key, value] : kwargs) {
    const std::string name = py::str(key);
    const auto* param = std::find_if(std::begin(kParams), std::end(kParams),
                                     [&](const auto& p) { return name == p.first; });
    if (param == std::end(kParams)) return who + "unknown keyword '" + name + "'";
    if (param - std::begin(kParams) < static_cast<ptrdiff_t>(args.size())) {
      return who + "got " + name + " both by position and by keyword";
    }
    if (std::string e = wrong(param->first, param->second, value); !e.empty()) {
      return who + e + ", got " + type_name(value);
    }
  }
  return who + "the arguments do not fit its signature (see help(sluice.RedisStore)); their "
               "values are not shown, one may be a password";
}

void BindCluster(py::module_& m) {
  py::class_<sluice::RedisStore, std::shared_ptr<sluice::RedisStore>>(m, "RedisStore", R"doc(
One connection to Redis, owned by a native background thread and shared by the objects that keep
their state in Redis (cluster scope). It connects on first use and reconnects by itself; while
Redis is unreachable, decisions fail fast into each object's failure mode. Safe across fork().)doc")
      .def(py::init([](std::string host, int port, std::optional<std::string> unix_socket,
                       std::optional<std::string> username, std::optional<std::string> password,
                       int db, double connect_timeout, double command_timeout,
                       double reconnect_interval, std::string key_prefix, bool tls,
                       std::optional<std::string> tls_ca_file,
                       std::optional<std::string> tls_cert_file,
                       std::optional<std::string> tls_key_file,
                       std::optional<std::string> tls_server_name, bool tls_verify_peer,
                       std::optional<std::string> sentinel_master, py::object sentinels,
                       std::optional<std::string> sentinel_username,
                       std::optional<std::string> sentinel_password, py::object cluster_nodes) {
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
             o.tls.enabled = tls;
             o.tls.ca_file = tls_ca_file.value_or("");
             o.tls.cert_file = tls_cert_file.value_or("");
             o.tls.key_file = tls_key_file.value_or("");
             o.tls.server_name = tls_server_name.value_or("");
             o.tls.verify_peer = tls_verify_peer;
             o.sentinel_master = sentinel_master.value_or("");
             o.sentinels = NodesFromPython("sentinels", sentinels, 26379);
             o.sentinel_username = sentinel_username.value_or("");
             o.sentinel_password = sentinel_password.value_or("");
             o.cluster_nodes = NodesFromPython("cluster_nodes", cluster_nodes, 6379);
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
           py::arg("key_prefix") = sluice::RedisOptions{}.key_prefix,
           py::arg("tls") = sluice::RedisTlsOptions{}.enabled, py::arg("tls_ca_file") = py::none(),
           py::arg("tls_cert_file") = py::none(), py::arg("tls_key_file") = py::none(),
           py::arg("tls_server_name") = py::none(),
           py::arg("tls_verify_peer") = sluice::RedisTlsOptions{}.verify_peer,
           py::arg("sentinel_master") = py::none(), py::arg("sentinels") = py::none(),
           py::arg("sentinel_username") = py::none(), py::arg("sentinel_password") = py::none(),
           py::arg("cluster_nodes") = py::none(),
           "Standalone (host and port, or unix_socket), Sentinel (sentinel_master and sentinels)\n"
           "or Redis Cluster (cluster_nodes); sentinels and cluster_nodes are lists of\n"
           "'host:port' strings or (host, port) tuples (IPv6 hosts in [] in strings), or one\n"
           "'h:p,h:p' string. tls turns TLS on for every connection; tls_verify_peer=False\n"
           "accepts any certificate. See sluice/redis_store.h, RedisOptions.")
      // Tried only when the typed constructor above refused the arguments: a TypeError that
      // names the argument and shows no value (pybind11's would show the password).
      .def(py::init([](const py::args& args,
                       const py::kwargs& kwargs) -> std::shared_ptr<sluice::RedisStore> {
             throw py::type_error(RedisStoreArgumentError(args, kwargs));
           }),
           "Reached only by arguments of the wrong type: raises TypeError naming the argument.")
      .def_static(
          "from_url",
          [](const std::string& url, py::kwargs overrides) {
            py::dict keywords = KeywordsOf(ValueOrThrow(sluice::RedisOptionsFromUrl(url)));
            for (const auto& [name, value] : overrides) {
              CheckOverride(py::str(name), value);
              keywords[name] = value;
            }
            return py::type::of<sluice::RedisStore>()(**keywords)
                .cast<std::shared_ptr<sluice::RedisStore>>();
          },
          py::arg("url"),
          "A store from a connection URL: redis://[[user]:password@]host[:port][/db][?options],\n"
          "rediss:// (TLS), unix:///path?db=N, redis+sentinel://h1[:26379],h2/<service>[/db],\n"
          "redis+cluster://h1[:6379],h2, and rediss+sentinel / rediss+cluster (the grammar and\n"
          "its options: sluice/redis_store.h, RedisOptionsFromUrl). Keyword overrides take the\n"
          "constructor's names and win over the URL. Errors never show the password.")
      .def_static(
          "from_url",
          [](const py::args& args,
             const py::kwargs& kwargs) -> std::shared_ptr<sluice::RedisStore> {
            // Reached when `url` is missing or not a str: pybind11's TypeError would list the
            // overrides' values, a password included.
            const std::string who = "sluice.RedisStore.from_url: ";
            if (args.size() > 1) throw py::type_error(who + "takes the url alone by position");
            if (args.empty() && !kwargs.contains("url")) throw py::type_error(who + "url is required");
            const py::handle url = args.empty() ? py::handle(kwargs["url"]) : py::handle(args[0]);
            throw py::type_error(who + "url must be a str, got " +
                                 std::string(py::str(py::type::of(url).attr("__name__"))));
          },
          "Reached only by a url of the wrong type: raises TypeError naming it.")
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
            d["redirected"] = st.redirected;
            d["topology_changes"] = st.topology_changes;
            d["connected"] = st.connected;
            d["last_error"] = st.last_error;
            return d;
          },
          "Counters since creation: commands, pipelined, failures, fast_failures, connects,\n"
          "script_loads, config_errors (a wrong password, a replica, ...), retried (releases kept\n"
          "across an outage, or replayed to a new master after a failover, and sent again),\n"
          "undone (acquires whose caller gave up, released), dropped, redirected (Redis Cluster:\n"
          "commands sent again after MOVED or ASK), topology_changes (slot maps read again,\n"
          "Sentinel masters that changed); whether it is connected now, and the last\n"
          "configuration error ('' if none).")
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
