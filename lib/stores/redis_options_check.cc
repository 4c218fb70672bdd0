#include "stores/redis_options_check.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr size_t kMaxNodes = 64;
constexpr size_t kMaxPathBytes = 4096;  // PATH_MAX on Linux

bool HasNul(absl::string_view s) { return s.find('\0') != absl::string_view::npos; }

// Printable ASCII without space: what Redis accepts unquoted in a name.
bool IsToken(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 127; });
}

class Checker {
 public:
  explicit Checker(absl::string_view who) : who_(who) {}

  absl::Status Bad(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(who_, ": ", what));
  }

  absl::Status Duration(absl::string_view field, absl::Duration d) const {
    if (d <= absl::ZeroDuration() || d > kMaxRedisTimeout) {
      return Bad(absl::StrCat(field, " must be > 0 and <= ", absl::FormatDuration(kMaxRedisTimeout),
                              ", got ", absl::FormatDuration(d)));
    }
    return absl::OkStatus();
  }

  absl::Status Host(absl::string_view field, absl::string_view host) const {
    if (host.empty() || host.size() > 255 || HasNul(host)) {
      return Bad(absl::StrCat(field, " must be 1 to 255 bytes without NUL, got ", host.size(),
                              " bytes"));
    }
    return absl::OkStatus();
  }

  absl::Status Port(absl::string_view field, int port) const {
    if (port < 1 || port > 65535) return Bad(absl::StrCat(field, " must be 1..65535, got ", port));
    return absl::OkStatus();
  }

  absl::Status Nodes(absl::string_view field, const std::vector<RedisNode>& nodes) const {
    if (nodes.size() > kMaxNodes) {
      return Bad(absl::StrCat(field, " must list 1 to ", kMaxNodes, " nodes, got ", nodes.size()));
    }
    for (size_t i = 0; i < nodes.size(); ++i) {
      const std::string at = absl::StrCat(field, "[", i, "]");
      if (absl::Status s = Host(absl::StrCat(at, ".host"), nodes[i].host); !s.ok()) return s;
      if (absl::Status s = Port(absl::StrCat(at, ".port"), nodes[i].port); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status Path(absl::string_view field, absl::string_view path) const {
    if (path.size() > kMaxPathBytes || HasNul(path)) {
      return Bad(absl::StrCat(field, " must be at most ", kMaxPathBytes, " bytes without NUL, got ",
                              path.size(), " bytes"));
    }
    return absl::OkStatus();
  }

 private:
  absl::string_view who_;
};

absl::Status CheckTopology(const Checker& check, const RedisOptions& o) {
  const bool sentinel = !o.sentinel_master.empty();
  const bool cluster = !o.cluster_nodes.empty();
  if (!sentinel && !cluster) {
    if (o.unix_socket.empty()) {
      if (o.host.empty() || o.host.size() > 255 || HasNul(o.host)) {
        return check.Bad(absl::StrCat(
            "host must be 1 to 255 bytes without NUL (or set unix_socket), got ", o.host.size(),
            " bytes"));
      }
      if (absl::Status s = check.Port("port", o.port); !s.ok()) return s;
    } else if (o.unix_socket.size() > 107 || HasNul(o.unix_socket)) {
      return check.Bad(absl::StrCat("unix_socket must be at most 107 bytes without NUL, got ",
                                    o.unix_socket.size(), " bytes"));
    }
  } else if (!o.unix_socket.empty()) {
    return check.Bad(absl::StrCat("unix_socket cannot be set with ",
                                  sentinel ? "sentinel_master" : "cluster_nodes",
                                  " (sentinels and cluster nodes are reached over TCP)"));
  }
  if (sentinel && cluster) {
    return check.Bad("cluster_nodes cannot be set with sentinel_master (one topology: Sentinel "
                     "or Redis Cluster)");
  }
  if (sentinel) {
    if (o.sentinel_master.size() > 255 || !IsToken(o.sentinel_master)) {
      return check.Bad(absl::StrCat(
          "sentinel_master must be 1 to 255 printable ASCII characters without spaces, got ",
          o.sentinel_master.size(), " bytes"));
    }
    if (o.sentinels.empty()) {
      return check.Bad("sentinels must list 1 to 64 sentinels with sentinel_master, got 0");
    }
  } else {
    if (!o.sentinels.empty()) {
      return check.Bad("sentinels need sentinel_master (the name of the service they watch)");
    }
    if (!o.sentinel_username.empty() || !o.sentinel_password.empty()) {
      return check.Bad(absl::StrCat(o.sentinel_username.empty() ? "sentinel_password"
                                                                : "sentinel_username",
                                    " needs sentinel_master"));
    }
  }
  if (absl::Status s = check.Nodes("sentinels", o.sentinels); !s.ok()) return s;
  if (absl::Status s = check.Nodes("cluster_nodes", o.cluster_nodes); !s.ok()) return s;
  if (cluster && o.db != 0) {
    return check.Bad(absl::StrCat(
        "db must be 0 with cluster_nodes (Redis Cluster has only database 0), got ", o.db));
  }
  if (!o.sentinel_username.empty() && o.sentinel_password.empty()) {
    return check.Bad("sentinel_username needs a sentinel_password");
  }
  if (std::any_of(o.sentinel_username.begin(), o.sentinel_username.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 127; })) {
    return check.Bad("sentinel_username must not hold NUL, spaces or control characters");
  }
  return absl::OkStatus();
}

absl::Status CheckTls(const Checker& check, const RedisOptions& o) {
  const RedisTlsOptions& tls = o.tls;
  const std::pair<const char*, const std::string*> files[] = {{"tls.ca_file", &tls.ca_file},
                                                              {"tls.server_name", &tls.server_name},
                                                              {"tls.cert_file", &tls.cert_file},
                                                              {"tls.key_file", &tls.key_file}};
  if (!tls.enabled) {
    // A careless configuration (a CA file without enabling TLS) would otherwise connect in clear.
    for (const auto& [field, value] : files) {
      if (!value->empty()) {
        return check.Bad(absl::StrCat(field, " is set but tls.enabled is false (enable TLS, or "
                                             "clear ", field, ")"));
      }
    }
    if (!tls.verify_peer) {
      return check.Bad("tls.verify_peer is false but tls.enabled is false (enable TLS, or leave "
                       "verify_peer true)");
    }
    return absl::OkStatus();
  }
  for (const auto& [field, value] : files) {
    if (absl::Status s = check.Path(field, *value); !s.ok()) return s;
  }
  if (tls.server_name.size() > 255) {
    return check.Bad(absl::StrCat("tls.server_name must be at most 255 bytes, got ",
                                  tls.server_name.size()));
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return check.Bad(absl::StrCat("tls.cert_file and tls.key_file must be set together (a client "
                                  "certificate and its key), got only ",
                                  tls.cert_file.empty() ? "tls.key_file" : "tls.cert_file"));
  }
  if (!o.unix_socket.empty()) {
    return check.Bad("tls cannot be enabled with unix_socket (a Unix socket is local: Redis "
                     "serves no TLS on it)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRedisOptions(const RedisOptions& o, absl::string_view who) {
  const Checker check(who);
  if (absl::Status s = CheckTopology(check, o); !s.ok()) return s;
  if (o.db < 0) return check.Bad(absl::StrCat("db must be >= 0, got ", o.db));
  if (!o.username.empty() && o.password.empty()) return check.Bad("username needs a password");
  if (std::any_of(o.username.begin(), o.username.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 127; })) {
    return check.Bad("username must not hold NUL, spaces or control characters");
  }
  if (absl::Status s = check.Duration("connect_timeout", o.connect_timeout); !s.ok()) return s;
  if (absl::Status s = check.Duration("command_timeout", o.command_timeout); !s.ok()) return s;
  if (absl::Status s = check.Duration("reconnect_interval", o.reconnect_interval); !s.ok()) {
    return s;
  }
  if (o.key_prefix.empty() || o.key_prefix.size() > 100 ||
      !std::all_of(o.key_prefix.begin(), o.key_prefix.end(),
                   [](char c) { return c > ' ' && c < 127 && c != '{' && c != '}'; })) {
    return check.Bad("key_prefix must be 1 to 100 printable ASCII characters, without '{', '}' or "
                     "spaces");
  }
  return CheckTls(check, o);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
