// Redis connection URLs (sluice/redis_store.h). The grammar follows what operators already write
// for redis-py (`Redis.from_url`: decimal-second timeouts, ssl_* options), Celery/kombu
// (ssl_cert_reqs=CERT_REQUIRED), Spring Data Redis and the provisional IANA `redis` / `rediss`
// schemes (https://www.iana.org/assignments/uri-schemes/prov/redis); the `+sentinel` and
// `+cluster` schemes follow the comma-separated host lists several clients accept. Written here
// from those descriptions, not from their code.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "base/edit_distance.h"
#include "stores/redis_options_check.h"
#include "stores/redis_url.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace {

constexpr absl::string_view kName = "sluice.RedisOptionsFromUrl";
constexpr absl::string_view kSecret = "***";
constexpr int kSentinelPort = 26379;

enum class Topology { kStandalone, kUnix, kSentinel, kCluster };

struct Scheme {
  absl::string_view name;
  bool tls;
  Topology topology;
};
constexpr Scheme kSchemes[] = {
    {"redis", false, Topology::kStandalone},         {"rediss", true, Topology::kStandalone},
    {"unix", false, Topology::kUnix},                {"redis+sentinel", false, Topology::kSentinel},
    {"rediss+sentinel", true, Topology::kSentinel},  {"redis+cluster", false, Topology::kCluster},
    {"rediss+cluster", true, Topology::kCluster},
};
constexpr absl::string_view kSchemeList =
    "redis, rediss, unix, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster";

constexpr absl::string_view kOptions[] = {
    "db",           "connect_timeout", "command_timeout", "socket_timeout",    "reconnect_interval",
    "key_prefix",   "ssl_ca_certs",    "tls_ca_file",     "ssl_certfile",      "ssl_keyfile",
    "ssl_cert_reqs", "ssl_server_name", "sentinel_username", "sentinel_password"};

// A part of the input as it may appear in a message: control and non-ASCII bytes escaped,
// shortened. Only called on parts that hold no secret.
std::string Shown(absl::string_view text, size_t max = 200) {
  std::string out;
  for (size_t i = 0; i < text.size() && out.size() < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7f || c == '\\' || c == '\'') {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (out.size() >= max && text.size() > max) out += "...";
  return out;
}

// %XX escapes decoded; false on a malformed escape.
bool PercentDecode(absl::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size() || !absl::ascii_isxdigit(static_cast<unsigned char>(in[i + 1])) ||
        !absl::ascii_isxdigit(static_cast<unsigned char>(in[i + 2]))) {
      return false;
    }
    auto hex = [](char c) { return absl::ascii_isdigit(c) ? c - '0' : (c | 0x20) - 'a' + 10; };
    out->push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
    i += 2;
  }
  return true;
}

// The URL cut into its parts. The userinfo ends at the last '@' before the query (an unescaped
// '@' or '/' in a password is tolerated); for unix:// at the first "@/" (the path follows).
struct UrlParts {
  bool has_scheme = false;
  std::string scheme;  // lower case
  std::optional<absl::string_view> userinfo;
  absl::string_view rest;  // hosts and path (unix: the path)
  std::optional<absl::string_view> query;
};

UrlParts Split(absl::string_view url) {
  UrlParts p;
  absl::string_view after = url;
  if (const size_t sep = url.find("://"); sep != absl::string_view::npos) {
    p.has_scheme = true;
    p.scheme = absl::AsciiStrToLower(url.substr(0, sep));
    after = url.substr(sep + 3);
  }
  if (const size_t q = after.find('?'); q != absl::string_view::npos) {
    p.query = after.substr(q + 1);
    after = after.substr(0, q);
  }
  size_t at = p.scheme == "unix" ? after.find("@/") : after.rfind('@');
  // A unix:// URL whose path is not absolute is refused; its userinfo must be hidden all the same.
  if (at == absl::string_view::npos && !after.empty() && after.front() != '/') at = after.rfind('@');
  if (at != absl::string_view::npos) {
    p.userinfo = after.substr(0, at);
    after.remove_prefix(at + 1);
  }
  p.rest = after;
  return p;
}

bool IsSecretOption(absl::string_view key) {
  return absl::StrContains(absl::AsciiStrToLower(key), "pass");
}

// The URL with its password and password options replaced by ***.
std::string Redacted(absl::string_view url) {
  const UrlParts p = Split(url);
  std::string out;
  if (p.has_scheme) absl::StrAppend(&out, url.substr(0, url.find("://")), "://");
  if (p.userinfo) {
    const size_t colon = p.userinfo->find(':');
    // Without a colon the whole userinfo may be a password (Spring writes redis://secret@host).
    if (colon == absl::string_view::npos) {
      absl::StrAppend(&out, kSecret, "@");
    } else {
      absl::StrAppend(&out, p.userinfo->substr(0, colon), ":", kSecret, "@");
    }
  }
  absl::StrAppend(&out, p.rest);
  if (p.query) {
    out += '?';
    bool first = true;
    for (absl::string_view pair : absl::StrSplit(*p.query, '&')) {
      if (!first) out += '&';
      first = false;
      const size_t eq = pair.find('=');
      std::string key;
      if (!PercentDecode(pair.substr(0, eq), &key)) key = std::string(pair.substr(0, eq));
      if (eq != absl::string_view::npos && IsSecretOption(key)) {
        absl::StrAppend(&out, pair.substr(0, eq), "=", kSecret);
      } else {
        absl::StrAppend(&out, pair);
      }
    }
  }
  return Shown(out, 300);
}


// What is wrong with one part of the input: "<part> in '<input>' <problem>".
struct Problem {
  std::string part;
  std::string problem;
};

bool AllDigits(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "host", "host:port", "[v6]" or "[v6]:port".
std::optional<Problem> ParseNode(absl::string_view text, int default_port, RedisNode* node) {
  absl::string_view host = text;
  std::optional<absl::string_view> port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == absl::string_view::npos) {
      return Problem{absl::StrCat("host '", Shown(text, 60), "'"),
                     "has an IPv6 literal without its closing ']'"};
    }
    host = text.substr(1, close - 1);
    absl::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return Problem{absl::StrCat("host '", Shown(text, 60), "'"),
                       "has something other than ':port' after the ']'"};
      }
      port = after.substr(1);
    }
  } else if (const size_t colon = text.find(':'); colon != absl::string_view::npos) {
    if (text.find(':', colon + 1) != absl::string_view::npos) {
      return Problem{absl::StrCat("host '", Shown(text, 60), "'"),
                     "is an IPv6 literal without brackets (write [::1]:6379)"};
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty()) return Problem{"a host", "is empty"};
  node->host = std::string(host);
  node->port = default_port;
  if (port) {
    int value = 0;
    if (!AllDigits(*port) || port->size() > 5 || !absl::SimpleAtoi(*port, &value) || value < 1 ||
        value > 65535) {
      return Problem{absl::StrCat("port '", Shown(*port, 20), "'"), "is not a number 1..65535"};
    }
    node->port = value;
  }
  return std::nullopt;
}

std::optional<Problem> ParseNodes(absl::string_view text, int default_port,
                                  std::vector<RedisNode>* nodes) {
  nodes->clear();
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    RedisNode node;
    if (auto problem = ParseNode(absl::StripAsciiWhitespace(entry), default_port, &node)) {
      return problem;
    }
    nodes->push_back(std::move(node));
  }
  return std::nullopt;
}

std::optional<Problem> ParseDb(absl::string_view text, int* db) {
  if (!AllDigits(text) || text.size() > 10 || !absl::SimpleAtoi(text, db)) {
    return Problem{absl::StrCat("db '", Shown(text, 20), "'"), "is not a number >= 0"};
  }
  return std::nullopt;
}

// Seconds as a decimal ("0.25", redis-py's socket_timeout) or a duration with units ("250ms").
std::optional<absl::Duration> ParseSeconds(absl::string_view text) {
  const bool decimal =
      !text.empty() && std::all_of(text.begin(), text.end(),
                                   [](char c) { return (c >= '0' && c <= '9') || c == '.'; }) &&
      std::count(text.begin(), text.end(), '.') <= 1 && text != ".";
  if (decimal) {
    double seconds = 0;
    if (!absl::SimpleAtod(text, &seconds)) return std::nullopt;
    // Beyond a day is refused by the checks anyway; capping keeps absl::Seconds finite.
    return absl::Seconds(std::min(seconds, 1e9));
  }
  absl::Duration d;
  if (text.empty() || !absl::ParseDuration(std::string(text), &d) || d == absl::InfiniteDuration() ||
      d == -absl::InfiniteDuration()) {
    return std::nullopt;
  }
  return d;
}

class UrlParser {
 public:
  UrlParser(absl::string_view url, RedisOptions* o, std::vector<std::string>* named)
      : url_(url), shown_(Redacted(url)), o_(o), named_(named) {}

  absl::Status Parse() {
    const UrlParts parts = Split(url_);
    if (!parts.has_scheme) {
      return Error({"the scheme", ""}, absl::StrCat("is missing: must be one of ", kSchemeList,
                                                    " (redis://host:6379/0)"));
    }
    const Scheme* scheme = nullptr;
    for (const Scheme& s : kSchemes) {
      if (parts.scheme == s.name) scheme = &s;
    }
    if (scheme == nullptr) {
      return Error({absl::StrCat("scheme '", Shown(parts.scheme, 40), "'"), ""},
                   absl::StrCat("is not one of ", kSchemeList));
    }
    if (scheme->tls) Set("tls.enabled", [&] { o_->tls.enabled = true; });
    if (parts.userinfo) {
      if (auto p = ParseUserinfo(*parts.userinfo)) return Error(*p);
    }
    std::optional<Problem> problem;
    switch (scheme->topology) {
      case Topology::kUnix: problem = ParseUnix(parts.rest); break;
      case Topology::kStandalone: problem = ParseStandalone(parts.rest); break;
      case Topology::kSentinel: problem = ParseSentinel(parts.rest); break;
      case Topology::kCluster: problem = ParseCluster(parts.rest); break;
    }
    if (problem) return Error(*problem);
    if (parts.query) {
      if (auto p = ParseQuery(*parts.query)) return Error(*p);
    }
    return absl::OkStatus();
  }

  const std::string& shown() const { return shown_; }

 private:
  absl::Status Error(const Problem& p, absl::string_view problem = "") const {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": ", p.part, " in '", shown_, "' ",
                                                   problem.empty() ? p.problem : problem));
  }

  template <typename Assign>
  void Set(absl::string_view field, Assign assign) {
    assign();
    if (named_ != nullptr) named_->emplace_back(field);
  }

  std::optional<Problem> ParseUserinfo(absl::string_view userinfo) {
    const size_t colon = userinfo.find(':');
    if (colon == absl::string_view::npos) {
      return Problem{"the userinfo", "has no ':' (a password alone is ':password@', an ACL user "
                                     "'user:password@')"};
    }
    std::string user, password;
    if (!PercentDecode(userinfo.substr(0, colon), &user)) {
      return Problem{"the user", "has a malformed %-escape"};
    }
    if (!PercentDecode(userinfo.substr(colon + 1), &password)) {
      return Problem{"the password", "has a malformed %-escape"};
    }
    if (!user.empty()) Set("username", [&] { o_->username = std::move(user); });
    Set("password", [&] { o_->password = std::move(password); });
    return std::nullopt;
  }

  std::optional<Problem> ParseUnix(absl::string_view rest) {
    if (rest.empty() || rest.front() != '/') {
      return Problem{"the socket path", "must be absolute (unix:///run/redis/redis.sock)"};
    }
    std::string path;
    if (!PercentDecode(rest, &path)) return Problem{"the socket path", "has a malformed %-escape"};
    Set("unix_socket", [&] { o_->unix_socket = std::move(path); });
    return std::nullopt;
  }

  // "hosts" and "/path" of the network schemes.
  static std::pair<absl::string_view, absl::string_view> HostsAndPath(absl::string_view rest) {
    const size_t slash = rest.find('/');
    if (slash == absl::string_view::npos) return {rest, ""};
    return {rest.substr(0, slash), rest.substr(slash)};
  }

  std::optional<Problem> PathDb(absl::string_view path) {
    if (path.empty() || path == "/") return std::nullopt;
    int db = 0;
    if (auto p = ParseDb(path.substr(1), &db)) return p;
    Set("db", [&] { o_->db = db; });
    path_db_ = true;
    return std::nullopt;
  }

  std::optional<Problem> ParseStandalone(absl::string_view rest) {
    auto [hosts, path] = HostsAndPath(rest);
    if (hosts.empty()) return Problem{"the host", "is missing (redis://host[:port][/db])"};
    if (absl::StrContains(hosts, ',')) {
      return Problem{absl::StrCat("hosts '", Shown(hosts, 80), "'"),
                     "are several: redis:// takes one (use redis+sentinel:// or redis+cluster://)"};
    }
    RedisNode node;
    if (auto p = ParseNode(hosts, 6379, &node)) return p;
    Set("host", [&] { o_->host = node.host; });
    Set("port", [&] { o_->port = node.port; });
    return PathDb(path);
  }

  std::optional<Problem> ParseSentinel(absl::string_view rest) {
    auto [hosts, path] = HostsAndPath(rest);
    if (hosts.empty()) return Problem{"the sentinels", "are missing (h1[:26379],h2[:26379])"};
    std::vector<RedisNode> nodes;
    if (auto p = ParseNodes(hosts, kSentinelPort, &nodes)) return p;
    Set("sentinels", [&] { o_->sentinels = std::move(nodes); });
    const Problem no_service{"the service name",
                             "is missing (redis+sentinel://host:26379/<service>[/db])"};
    if (path.size() <= 1) return no_service;
    path.remove_prefix(1);
    const size_t slash = path.find('/');
    std::string service;
    if (!PercentDecode(path.substr(0, slash), &service)) {
      return Problem{"the service name", "has a malformed %-escape"};
    }
    if (service.empty()) return no_service;
    Set("sentinel_master", [&] { o_->sentinel_master = std::move(service); });
    return slash == absl::string_view::npos ? std::nullopt : PathDb(path.substr(slash));
  }

  std::optional<Problem> ParseCluster(absl::string_view rest) {
    auto [hosts, path] = HostsAndPath(rest);
    if (hosts.empty()) return Problem{"the cluster nodes", "are missing (h1[:6379],h2[:6379])"};
    std::vector<RedisNode> nodes;
    if (auto p = ParseNodes(hosts, 6379, &nodes)) return p;
    Set("cluster_nodes", [&] { o_->cluster_nodes = std::move(nodes); });
    if (!path.empty() && path != "/" && path != "/0") {
      return Problem{absl::StrCat("path '", Shown(path, 40), "'"),
                     "is not empty or /0: Redis Cluster has only db 0"};
    }
    return std::nullopt;
  }

  std::optional<Problem> ParseQuery(absl::string_view query) {
    std::vector<std::string> seen;
    for (absl::string_view pair : absl::StrSplit(query, '&')) {
      if (pair.empty()) continue;
      const size_t eq = pair.find('=');
      std::string key, value;
      if (!PercentDecode(pair.substr(0, eq), &key)) {
        return Problem{absl::StrCat("option '", Shown(pair.substr(0, eq), 40), "'"),
                       "has a malformed %-escape in its name"};
      }
      const Problem part{absl::StrCat("option '", Shown(key, 40), "'"), ""};
      if (eq == absl::string_view::npos) {
        return Problem{part.part, absl::StrCat("has no value (", Shown(key, 40), "=...)")};
      }
      if (!PercentDecode(pair.substr(eq + 1), &value)) {
        return Problem{part.part, "has a malformed %-escape in its value"};
      }
      const bool known = std::find(std::begin(kOptions), std::end(kOptions), key) !=
                         std::end(kOptions);
      if (!known) return Problem{part.part, UnknownOption(key)};
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
        return Problem{part.part, "is given twice"};
      }
      seen.push_back(key);
      if (auto p = ApplyOption(key, value, part.part)) return p;
    }
    return std::nullopt;
  }

  static std::string UnknownOption(absl::string_view key) {
    std::string problem = "is not an option sluice knows";
    absl::string_view nearest;
    size_t best = 3;  // a typo: at most 2 edits
    for (absl::string_view known : kOptions) {
      if (const size_t d = internal::EditDistance(key, known); d < best) {
        best = d;
        nearest = known;
      }
    }
    if (!nearest.empty()) absl::StrAppend(&problem, " (did you mean ", nearest, "?)");
    absl::StrAppend(&problem, "; see sluice/redis_store.h, RedisOptionsFromUrl");
    return problem;
  }

  std::optional<Problem> ApplyOption(const std::string& key, std::string& value,
                                     const std::string& part) {
    auto duration = [&](const char* field, absl::Duration* out) -> std::optional<Problem> {
      std::optional<absl::Duration> d = ParseSeconds(value);
      if (!d) {
        return Problem{part, absl::StrCat("is not a duration: seconds (0.25) or with a unit "
                                          "(250ms, 2s), got '", Shown(value, 40), "'")};
      }
      Set(field, [&] { *out = *d; });
      return std::nullopt;
    };
    auto string = [&](const char* field, std::string* out) -> std::optional<Problem> {
      Set(field, [&] { *out = std::move(value); });
      return std::nullopt;
    };
    if (key == "db") {
      if (path_db_) return Problem{part, "repeats the database the path gives"};
      int db = 0;
      if (!AllDigits(value) || value.size() > 10 || !absl::SimpleAtoi(value, &db)) {
        return Problem{part, absl::StrCat("is not a number >= 0, got '", Shown(value, 20), "'")};
      }
      Set("db", [&] { o_->db = db; });
      return std::nullopt;
    }
    if (key == "connect_timeout") return duration("connect_timeout", &o_->connect_timeout);
    if (key == "command_timeout" || key == "socket_timeout") {
      if (command_timeout_given_) return Problem{part, "repeats command_timeout (its alias)"};
      command_timeout_given_ = true;
      return duration("command_timeout", &o_->command_timeout);
    }
    if (key == "reconnect_interval") return duration("reconnect_interval", &o_->reconnect_interval);
    if (key == "key_prefix") return string("key_prefix", &o_->key_prefix);
    if (key == "ssl_ca_certs" || key == "tls_ca_file") {
      if (ca_given_) return Problem{part, "repeats the CA file (ssl_ca_certs, tls_ca_file)"};
      ca_given_ = true;
      return string("tls.ca_file", &o_->tls.ca_file);
    }
    if (key == "ssl_certfile") return string("tls.cert_file", &o_->tls.cert_file);
    if (key == "ssl_keyfile") return string("tls.key_file", &o_->tls.key_file);
    if (key == "ssl_server_name") return string("tls.server_name", &o_->tls.server_name);
    if (key == "ssl_cert_reqs") {
      const std::string v = absl::AsciiStrToLower(value);
      if (v == "required" || v == "cert_required") {
        Set("tls.verify_peer", [&] { o_->tls.verify_peer = true; });
      } else if (v == "none" || v == "cert_none") {
        Set("tls.verify_peer", [&] { o_->tls.verify_peer = false; });
      } else {
        return Problem{part, absl::StrCat("must be required or none, got '", Shown(value, 40),
                                          "'")};
      }
      return std::nullopt;
    }
    if (key == "sentinel_username") return string("sentinel_username", &o_->sentinel_username);
    return string("sentinel_password", &o_->sentinel_password);  // the last known option
  }

  absl::string_view url_;
  std::string shown_;
  RedisOptions* o_;
  std::vector<std::string>* named_;
  bool path_db_ = false;
  bool command_timeout_given_ = false;
  bool ca_given_ = false;
};

}  // namespace

namespace internal {

absl::Status ApplyRedisUrl(absl::string_view url, RedisOptions* options,
                           std::vector<std::string>* named) {
  return UrlParser(url, options, named).Parse();
}

}  // namespace internal

absl::StatusOr<RedisOptions> RedisOptionsFromUrl(absl::string_view url) {
  RedisOptions options;
  UrlParser parser(url, &options, nullptr);
  if (absl::Status s = parser.Parse(); !s.ok()) return s;
  if (absl::Status s = internal::ValidateRedisOptions(
          options, absl::StrCat(kName, ": in '", parser.shown(), "'"));
      !s.ok()) {
    return s;
  }
  return options;
}

absl::StatusOr<std::vector<RedisNode>> RedisNodesFromString(absl::string_view nodes,
                                                            int default_port) {
  constexpr absl::string_view kWho = "sluice.RedisNodesFromString";
  if (default_port < 1 || default_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(kWho, ": default_port must be 1..65535, got ", default_port));
  }
  if (absl::StripAsciiWhitespace(nodes).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kWho, ": nodes must list host[:port][,host[:port]...], got ''"));
  }
  std::vector<RedisNode> out;
  if (auto p = ParseNodes(nodes, default_port, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kWho, ": ", p->part, " in '", Shown(nodes), "' ", p->problem));
  }
  return out;
}

}  // namespace v1
}  // namespace sluice
