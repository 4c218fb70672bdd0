// The `stores` section: Redis connections, by fields or by URL (every form of
// sluice/redis_store.h, RedisOptionsFromUrl). See docs/policy.md, "Stores".
#include <algorithm>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "policy/policy_sections.h"
#include "policy/policy_units.h"
#include "sluice/redis_store.h"
#include "stores/redis_options_check.h"
#include "stores/redis_url.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// One "host:port" entry of a node list (sentinels, cluster_nodes).
void ReadNodes(const Fields& fields, absl::string_view name, int default_port,
               std::vector<RedisNode>* out) {
  std::vector<std::string> entries;
  if (!fields.StringList(name, /*single_ok=*/false, &entries) || !fields.Has(name)) return;
  out->clear();
  for (size_t i = 0; i < entries.size(); ++i) {
    absl::StatusOr<std::vector<RedisNode>> nodes = RedisNodesFromString(entries[i], default_port);
    if (!nodes.ok() || nodes->size() != 1) {
      fields.Error(name, absl::StrCat(
          "[", i, "] must be one host[:port] (an IPv6 host in []): ",
          nodes.ok() ? "got several" : absl::StripPrefix(nodes.status().message(),
                                                         "sluice.RedisNodesFromString: ")));
      continue;
    }
    out->push_back((*nodes)[0]);
  }
}

// `tls: true`, `tls: false`, or a mapping (which turns TLS on) of RedisTlsOptions' fields.
void ReadTls(PolicyErrors& errors, const Fields& store, RedisTlsOptions* tls) {
  const YAML::Node* node = store.Get("tls");
  if (node == nullptr) return;
  if (!node->IsMap()) {
    ReadBool(errors, *node, store.PathOf("tls"), &tls->enabled);
    return;
  }
  Fields fields(errors, *node, store.PathOf("tls"),
                {"ca_file", "server_name", "cert_file", "key_file", "verify_peer"});
  if (!fields.ok()) return;
  tls->enabled = true;
  fields.String("ca_file", &tls->ca_file);
  fields.String("server_name", &tls->server_name);
  fields.String("cert_file", &tls->cert_file);
  fields.String("key_file", &tls->key_file);
  fields.Bool("verify_peer", &tls->verify_peer);
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
                   "connect_timeout", "command_timeout", "reconnect_interval", "key_prefix",
                   "tls", "sentinel_master", "sentinels", "sentinel_username",
                   "sentinel_password", "cluster_nodes"});
    if (!fields.ok()) continue;
    const size_t errors_before = errors.size();
    StoreSpec store;
    store.line = fields.line();
    ReadPolicyName(fields, "name", &names, &store.name);
    RedisOptions& redis = store.redis;
    std::string url;
    if (fields.String("url", &url) && fields.Has("url")) {
      // The one URL parser (sluice/redis_store.h, RedisOptionsFromUrl); the fields below may
      // add what the URL does not name, never change what it does.
      std::vector<std::string> named;
      if (absl::Status s = ApplyRedisUrl(url, &redis, &named); !s.ok()) {
        fields.Error("url", absl::StripPrefix(s.message(), "sluice.RedisOptionsFromUrl: "));
      }
      for (const char* other : {"host", "port", "unix_socket", "username", "password", "db",
                                "sentinel_master", "sentinels", "cluster_nodes"}) {
        if (fields.Has(other)) fields.Error(other, "cannot be set with url (the url sets it)");
      }
      const bool url_tls = std::find(named.begin(), named.end(), "tls.enabled") != named.end();
      if (const YAML::Node* tls = fields.Get("tls"); tls != nullptr) {
        if (!url_tls) {
          fields.Error("tls", "needs a rediss url (the url's scheme says whether TLS is on)");
        } else if (!tls->IsMap()) {
          fields.Error("tls", "cannot be true or false with url (the url's scheme sets it)");
        }
      }
      for (const std::string& field : named) {
        if (absl::StartsWith(field, "tls.")) {
          const YAML::Node* tls = fields.Get("tls");
          if (tls != nullptr && tls->IsMap() && (*tls)[field.substr(4)]) {
            fields.Error("tls", absl::StrCat(field.substr(4), " cannot be set with url (the url "
                                                              "sets it)"));
          }
        } else if (fields.Has(field) && field != "host" && field != "port" &&
                   field != "unix_socket" && field != "username" && field != "password" &&
                   field != "db" && field != "sentinel_master" && field != "sentinels" &&
                   field != "cluster_nodes") {
          fields.Error(field, "cannot be set with url (the url sets it)");
        }
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
    ReadTls(errors, fields, &redis.tls);
    if (fields.String("sentinel_master", &redis.sentinel_master) &&
        HasControl(redis.sentinel_master, true)) {
      fields.Error("sentinel_master", "must have no space or control character");
    }
    ReadNodes(fields, "sentinels", /*default_port=*/26379, &redis.sentinels);
    fields.String("sentinel_username", &redis.sentinel_username);
    fields.String("sentinel_password", &redis.sentinel_password);
    ReadNodes(fields, "cluster_nodes", /*default_port=*/6379, &redis.cluster_nodes);
    // The checks RedisStore::Create makes (one topology, TLS fields with TLS on, ...), here so
    // that the error has the store's line.
    if (errors.size() == errors_before) {
      if (absl::Status s = ValidateRedisOptions(redis, "is inconsistent"); !s.ok()) {
        errors.Add(fields.line(), fields.path(), s.message());
      }
    }
    policy->stores.push_back(std::move(store));
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
