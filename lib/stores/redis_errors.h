// Internal: what a Redis error means for a sluice object (see sluice/redis_store.h, "Errors").
//
// Only a transport failure (timeout, refused, reset, EOF) or a server that says it is briefly
// unable to serve (LOADING, BUSY, MASTERDOWN, TRYAGAIN) is "Redis is unavailable": it opens the
// breaker and the object applies its failure mode. Anything else Redis answers is a fact about
// the deployment that no failure mode should hide: the caller gets it as an error status, it is
// logged and counted.
#ifndef SLUICE_LIB_REDIS_ERRORS_H_
#define SLUICE_LIB_REDIS_ERRORS_H_

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// What an error reply means.
struct RedisError {
  absl::Status status;
  // The connection as a whole is unusable (authentication, the wrong kind of server, a replica,
  // scripts not allowed), not only this command or key: the store then fails every command fast
  // with `status` for a reconnect interval, and verifies the server again.
  bool whole_connection = false;
};

// Classifies the error reply `error` (its text, starting with the error code) to `command`:
//   PermissionDenied    NOAUTH, WRONGPASS, NOPERM, a failed AUTH, a script denied a key;
//   FailedPrecondition  READONLY (a replica), MOVED / ASK / CROSSSLOT / CLUSTERDOWN (a Redis
//                       Cluster node where a standalone server was expected; a store in Cluster
//                       mode follows MOVED/ASK and reclassifies CLUSTERDOWN first), an unknown
//                       command (a Sentinel, or EVALSHA/SCRIPT renamed away), WRONGTYPE (another
//                       application's data under the key prefix), a database that does not exist;
//   ResourceExhausted   OOM (maxmemory reached with a noeviction policy);
//   Unavailable         LOADING, BUSY, MASTERDOWN, TRYAGAIN (transient: the failure mode applies);
//   Internal            anything else (a script error: a bug).
// The message is "redis: <command>: <error>; <what to check>".
RedisError ClassifyRedisError(absl::string_view command, absl::string_view error);

// Whether `status` means Redis could not be reached or could not serve for now (Unavailable,
// DeadlineExceeded): the failure mode applies. Every other error is reported to the caller.
bool IsTransportError(const absl::Status& status);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_REDIS_ERRORS_H_
