#include "stores/redis_errors.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

// The error code: the reply's first word ("WRONGPASS", "ERR", ...).
absl::string_view CodeOf(absl::string_view error) {
  const size_t space = error.find(' ');
  return space == absl::string_view::npos ? error : error.substr(0, space);
}

RedisError Make(absl::StatusCode code, absl::string_view command, absl::string_view error,
                absl::string_view check, bool whole_connection) {
  std::string message = absl::StrCat("redis: ", command, ": ", error);
  if (!check.empty()) absl::StrAppend(&message, "; ", check);
  return {absl::Status(code, message), whole_connection};
}

}  // namespace

RedisError ClassifyRedisError(absl::string_view command, absl::string_view error) {
  using absl::StatusCode;
  const absl::string_view code = CodeOf(error);
  // Authentication and ACLs.
  if (code == "NOAUTH" || code == "WRONGPASS") {
    return Make(StatusCode::kPermissionDenied, command, error,
                "check RedisOptions.username and password against the server's requirepass/ACL",
                true);
  }
  if (code == "NOPERM") {
    // A command the user may not run spoils every decision; a key pattern only some keys.
    const bool command_denied = absl::StrContains(error, "to run the");
    return Make(StatusCode::kPermissionDenied, command, error,
                command_denied ? "the ACL user needs +evalsha and +script|load"
                               : "the ACL user needs access to keys matching "
                                 "'<key_prefix>:*' (e.g. ~sluice:*)",
                command_denied);
  }
  if (code == "ERR" && (absl::StrContains(error, "invalid password") ||
                        absl::StrContains(error, "called without any password configured") ||
                        absl::StrContains(error, "no password is set"))) {
    return Make(StatusCode::kPermissionDenied, command, error,
                "check RedisOptions.username and password against the server's requirepass/ACL",
                true);
  }
  if (code == "ERR" && absl::StrContains(error, "can't access at least one of the keys")) {
    return Make(StatusCode::kPermissionDenied, command, error,
                "the ACL user needs access to keys matching '<key_prefix>:*'", false);
  }
  // The wrong kind of server.
  if (code == "READONLY") {
    return Make(StatusCode::kFailedPrecondition, command, error,
                "this server is a read-only replica: point the store at the master (after a "
                "failover the store reconnects and checks again)",
                true);
  }
  if (code == "MOVED" || code == "ASK" || code == "CROSSSLOT" || code == "CLUSTERDOWN") {
    return Make(StatusCode::kFailedPrecondition, command, error,
                "this server is a Redis Cluster node: list the cluster's nodes in "
                "RedisOptions.cluster_nodes (or use a redis+cluster:// URL)",
                false);
  }
  if (code == "ERR" && (absl::StrContains(error, "unknown command") ||
                        absl::StrContains(error, "unknown subcommand"))) {
    return Make(StatusCode::kFailedPrecondition, command, error,
                "the server does not run scripts: is it a Sentinel (use the master it reports), "
                "or are EVALSHA/SCRIPT renamed?",
                true);
  }
  if (code == "ERR" && (absl::StrContains(error, "DB index is out of range") ||
                        absl::StrContains(error, "SELECT is not allowed"))) {
    return Make(StatusCode::kFailedPrecondition, command, error,
                "check RedisOptions.db against the server's `databases` setting", true);
  }
  if (code == "WRONGTYPE") {
    return Make(StatusCode::kFailedPrecondition, command, error,
                "another application writes under RedisOptions.key_prefix: choose another prefix",
                false);
  }
  if (code == "OOM") {
    return Make(StatusCode::kResourceExhausted, command, error,
                "Redis reached maxmemory and refuses writes: raise maxmemory or use an eviction "
                "policy (sluice's keys all expire)",
                false);
  }
  // Briefly unable to serve: the same as unreachable.
  if (code == "LOADING" || code == "BUSY" || code == "MASTERDOWN" || code == "TRYAGAIN") {
    return Make(StatusCode::kUnavailable, command, error, "", false);
  }
  return Make(StatusCode::kInternal, command, error, "", false);
}

bool IsTransportError(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
