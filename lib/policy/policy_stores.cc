// The `stores` section: Redis connections, by fields or by URL (redis://user:pass@host:port/db,
// unix:///path). See docs/policy.md, "Stores".
#include <algorithm>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "policy/policy_sections.h"
#include "policy/policy_units.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// %XX escapes decoded (a password may hold '@' or ':'); false on a malformed escape.
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

// Fills `redis` from a URL; the problem, or "" when it is well formed.
std::string ParseRedisUrl(absl::string_view url, RedisOptions* redis) {
  constexpr absl::string_view kForms = "redis://[user[:password]@]host[:port][/db] or unix:///path";
  if (url.substr(0, 7) == "unix://") {
    absl::string_view path = url.substr(7);
    if (path.empty() || path.front() != '/') return absl::StrCat("must be ", kForms);
    redis->unix_socket = std::string(path);
    return "";
  }
  if (url.substr(0, 9) == "rediss://") return "rediss:// (TLS) is not supported";
  if (url.substr(0, 8) != "redis://") return absl::StrCat("must be ", kForms);
  absl::string_view rest = url.substr(8);
  if (const size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    absl::string_view credentials = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    const size_t colon = credentials.find(':');
    if (!PercentDecode(credentials.substr(0, colon), &redis->username)) {
      return "has a malformed %-escape in the user";
    }
    if (colon != absl::string_view::npos &&
        !PercentDecode(credentials.substr(colon + 1), &redis->password)) {
      return "has a malformed %-escape in the password";
    }
  }
  absl::string_view host_port = rest.substr(0, rest.find('/'));
  if (const size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    absl::string_view db = rest.substr(slash + 1);
    if (!db.empty() && (!absl::SimpleAtoi(db, &redis->db) || redis->db < 0 ||
                        !absl::ascii_isdigit(static_cast<unsigned char>(db.front())))) {
      return absl::StrCat("has a database that is not a number >= 0: \"",
                          absl::CHexEscape(db.substr(0, 20)), "\"");
    }
  }
  absl::string_view port;
  if (!host_port.empty() && host_port.front() == '[') {  // [::1]:6379
    const size_t close = host_port.find(']');
    if (close == absl::string_view::npos) return "has an IPv6 host without its closing ]";
    redis->host = std::string(host_port.substr(1, close - 1));
    absl::string_view after = host_port.substr(close + 1);
    if (!after.empty() && after.front() != ':') return absl::StrCat("must be ", kForms);
    if (!after.empty()) port = after.substr(1);
  } else {
    const size_t colon = host_port.rfind(':');
    redis->host = std::string(host_port.substr(0, colon));
    if (colon != absl::string_view::npos) port = host_port.substr(colon + 1);
  }
  if (redis->host.empty()) return "has no host";
  if (host_port.find(':') != absl::string_view::npos || !port.empty()) {
    if (!absl::SimpleAtoi(port, &redis->port) || redis->port < 1 || redis->port > 65535) {
      return absl::StrCat("has a port that is not in [1, 65535]: \"",
                          absl::CHexEscape(port.substr(0, 20)), "\"");
    }
  }
  return "";
}

bool HasControl(absl::string_view text, bool space_too) {
  return std::any_of(text.begin(), text.end(), [&](char c) {
    const unsigned char u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f || (space_too && u == ' ');
  });
}

}  // namespace

void ReadStores(PolicyErrors& errors, const YAML::Node& node, Policy* policy) {
  if (!ExpectList(errors, node, "stores")) return;
  std::vector<std::string> names;
  size_t i = 0;
  for (auto it = node.begin(); it != node.end(); ++it, ++i) {
    Fields fields(errors, *it, ItemPath("stores", i),
                  {"name", "url", "host", "port", "unix_socket", "username", "password", "db",
                   "connect_timeout", "command_timeout", "reconnect_interval", "key_prefix"});
    if (!fields.ok()) continue;
    StoreSpec store;
    store.line = fields.line();
    ReadPolicyName(fields, "name", &names, &store.name);
    RedisOptions& redis = store.redis;
    std::string url;
    if (fields.String("url", &url) && fields.Has("url")) {
      if (std::string problem = ParseRedisUrl(url, &redis); !problem.empty()) {
        fields.Error("url", problem);
      }
      for (const char* other : {"host", "port", "unix_socket", "username", "password", "db"}) {
        if (fields.Has(other)) fields.Error(other, "cannot be set with url (the url sets it)");
      }
    }
    if (fields.String("host", &redis.host) && (redis.host.empty() || redis.host.size() > 255 ||
                                               redis.host.find('\0') != std::string::npos)) {
      fields.Error("host", "must be 1 to 255 bytes without NUL");
    }
    fields.Int("port", 1, 65535, &redis.port);
    if (fields.String("unix_socket", &redis.unix_socket) &&
        (redis.unix_socket.size() > 107 || redis.unix_socket.find('\0') != std::string::npos)) {
      fields.Error("unix_socket", "must be at most 107 bytes without NUL");
    }
    if (fields.String("username", &redis.username) && HasControl(redis.username, true)) {
      fields.Error("username", "must have no space or control character");
    }
    fields.String("password", &redis.password);
    fields.Int("db", 0, INT32_MAX, &redis.db);
    fields.Duration("connect_timeout", absl::Nanoseconds(1), kMaxRedisTimeout,
                    &redis.connect_timeout);
    fields.Duration("command_timeout", absl::Nanoseconds(1), kMaxRedisTimeout,
                    &redis.command_timeout);
    fields.Duration("reconnect_interval", absl::Nanoseconds(1), kMaxRedisTimeout,
                    &redis.reconnect_interval);
    if (fields.String("key_prefix", &redis.key_prefix) &&
        (redis.key_prefix.empty() || redis.key_prefix.size() > 100 ||
         std::any_of(redis.key_prefix.begin(), redis.key_prefix.end(), [](char c) {
           return c <= ' ' || c > '~' || c == '{' || c == '}';
         }))) {
      fields.Error("key_prefix", "must be 1 to 100 printable ASCII characters without '{', '}' "
                                 "or space");
    }
    policy->stores.push_back(std::move(store));
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
