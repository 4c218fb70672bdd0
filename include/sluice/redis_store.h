// -----------------------------------------------------------------------------
// File: sluice/redis_store.h
// -----------------------------------------------------------------------------
//
// Cluster scope: a `RedisStore` is the connection to Redis, owned by a native background thread,
// that sluice objects share to keep their state in Redis so that every host decides against one
// limit. Redis may be one standalone server, the master a Sentinel group names (asked again
// whenever that master fails or steps down), or a Redis Cluster (a connection per master,
// each command sent to the master of its key's slot; MOVED and ASK are followed and the slot map
// read again), in plain text or TLS (see RedisOptions). Callers never touch the sockets:
//
//   * a decision is one EVALSHA of an atomic Lua script that reads the Redis server's clock
//     (TIME), so hosts with skewed clocks agree; concurrent callers' commands are pipelined on the
//     one connection;
//   * each reply is handed back through a `Pending` (sluice/pending.h), which a C++ caller waits
//     on and which a Python caller polls through a file descriptor (gevent and asyncio wait on it
//     cooperatively);
//   * when Redis is slow or down, a command fails after `command_timeout` and a breaker opens, so
//     later callers fail at once (and apply their object's failure mode) instead of paying the
//     timeout; the thread reconnects by itself, probing every `reconnect_interval`;
//   * a command that must not be lost (a ConcurrencyLimiter release, or the undoing of an acquire
//     whose caller gave up or whose outcome a dropped connection left unknown) is kept across an
//     outage and sent after reconnecting, so a stall never costs a slot for longer than it lasts;
//     such commands still queued when the store is destroyed go out once over a live connection;
//   * after fork() (Gunicorn, Celery), the child gets a fresh thread and connection on first use;
//     the parent keeps working. fork() is safe while other threads use the store.
//
// Errors. Only a transport failure (timeout, connection refused, reset or closed) or a server
// that is briefly unable to serve (LOADING, BUSY, MASTERDOWN, TRYAGAIN; from a Cluster node also
// CLUSTERDOWN and READONLY, and READONLY from a Sentinel-named master: a failover under way) means
// "Redis is unavailable": the breaker opens and each object applies its failure mode (allow,
// deny, local). In a Cluster one master's outage opens the store's breaker for every slot until
// the map names a master that answers (the failover's duration; see docs/deployment.md).
// Anything else is a configuration error that no failure mode may hide. The object's call then
// returns it as its status, and the store logs it (sluice/log.h, rate-limited) and counts it
// (`RedisStats::config_errors`, `last_error`):
//
//   PermissionDenied    wrong or missing password (NOAUTH, WRONGPASS), an ACL user without
//                       +evalsha / +script|load or without access to the keys (NOPERM)
//   FailedPrecondition  a replica (checked at connect, and READONLY), a Sentinel (checked at
//                       connect, or "unknown command"), a Redis Cluster node given as a
//                       standalone server or a standalone server given in `cluster_nodes`
//                       (checked at connect), a service no sentinel knows, TLS refused (the
//                       certificate did not verify, a plain-text server), a `db` the server
//                       does not have, WRONGTYPE (another application's data under `key_prefix`)
//   ResourceExhausted   OOM: the server reached maxmemory and refuses writes
//   Internal            an impossible reply or a script error (a bug: please report it)
//
// Failover. Sentinel: the store asks a sentinel every `reconnect_interval` whether the master
// changed and moves to the new one at once (a manual SENTINEL FAILOVER leaves the old master
// accepting writes for seconds, until the sentinels demote it), and asks again whenever the master
// fails or answers READONLY. Cluster: a master's outage sends every command to the failure mode
// until the slot map names a master that answers (the cluster's failover time, ~ its
// cluster-node-timeout); MOVED and ASK are followed (at most 5 redirections per command).
// Replication is asynchronous, so a failover can lose the last writes the old master
// acknowledged: the store replays to the new master the releases (and undos) acknowledged in the
// last 5 s, which are safe to run twice, so no slot leaks; acquires lost that way are not
// replayed (a few more callers than the cap may hold permits until those callers release).
//
// Errors of the connection as a whole (authentication, a replica, a Sentinel, scripts denied) are
// found when the thread connects; every command then fails fast with the same status for a
// `reconnect_interval`, after which the thread connects and checks again. `Check()` runs these
// checks on demand (at start-up, say); creating a store does not connect, so a store can be
// created before Redis is up.
//
// Example:
//
//   sluice::RedisOptions redis;
//   redis.host = "10.0.0.5";
//   redis.password = "...";
//   // A Redis Cluster instead: redis.cluster_nodes = {{"10.0.0.5", 7000}, {"10.0.0.6", 7000}};
//   // or a URL: RedisOptionsFromUrl("rediss+sentinel://:pw@s1:26379,s2:26379/mymaster").value()
//   auto store = sluice::RedisStore::Create(redis).value();
//   if (absl::Status s = store->Check(); !s.ok()) LOG(ERROR) << s;  // e.g. WRONGPASS, a replica
//   sluice::RateLimiter::Options options;
//   options.windows = {sluice::Window::PerMinute(600)};
//   options.cluster.store = store;
//   options.cluster.redis_name = "tenant-rpm";
//   options.cluster.local_share = 16;  // 16 workers share the rule: each admits 1/16 during an outage
//   auto limiter = sluice::RateLimiter::Create(options).value();
//
// Thread-safety: a RedisStore is safe for concurrent use by any number of threads.

#ifndef SLUICE_REDIS_STORE_H_
#define SLUICE_REDIS_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sluice/log.h"

namespace sluice {
inline namespace v1 {

class Clock;

namespace internal {
class RedisConnectionThread;
class RedisScripts;
}  // namespace internal

// sluice::RedisNode: a Redis server's TCP address (a Cluster seed, a Sentinel).
struct RedisNode {
  // A name or an IP literal (IPv6 without brackets). 1 to 255 bytes, without NUL.
  std::string host;
  // 1..65535. Default: 6379 (a Sentinel's is usually 26379).
  int port = 6379;
};

// sluice::RedisTlsOptions: TLS (OpenSSL) for every connection a store opens: the standalone server,
// the sentinels and the master they name, every Redis Cluster node. The server's certificate is
// always verified (chain and name) unless `verify_peer` is false.
struct RedisTlsOptions {
  // Whether connections use TLS. Default: false.
  bool enabled = false;
  // A PEM file of the certificate authorities that sign the servers' certificates. Empty: the
  // system's store (OpenSSL's default paths, /etc/ssl/certs on Debian). Default: empty.
  std::string ca_file;
  // The name sent as SNI and checked against the certificate. Empty: the host connected to (for
  // an IP literal, the certificate's IP addresses are checked and no SNI is sent). Default: empty.
  std::string server_name;
  // A client certificate and its private key (PEM files), for servers that require one
  // (`tls-auth-clients yes`). Both or neither. Default: empty.
  std::string cert_file;
  std::string key_file;
  // DANGER: false accepts any certificate (no protection against an impostor). Default: true.
  bool verify_peer = true;
};

// sluice::RedisOptions
//
// Three topologies, chosen by which fields are set:
//   * standalone (default): `host` and `port`, or `unix_socket`;
//   * Sentinel: `sentinel_master` names the service and `sentinels` lists the sentinels; the store
//     asks them for the master and asks again whenever the master fails or steps down;
//   * Redis Cluster: `cluster_nodes` lists seed nodes; the store reads the slot map from them,
//     sends each command to the master of its key's slot and follows MOVED and ASK.
// `username`, `password` and `tls` apply to the data nodes in every topology.
struct RedisOptions {
  // TCP host and port. Default: 127.0.0.1:6379. Ignored when `unix_socket` is set. The host is at
  // most 255 bytes, without NUL.
  std::string host = "127.0.0.1";
  int port = 6379;
  // A Unix socket path; when set, used instead of host and port. At most 107 bytes, without NUL.
  // Default: empty.
  std::string unix_socket;
  // ACL user (Redis 6+) and password; an empty password sends no AUTH. The username has no NUL,
  // space or control character. Default: empty.
  std::string username;
  std::string password;
  // The logical database. Default: 0. Must be >= 0.
  int db = 0;
  // How long connecting (and checking the server) may take. Default: 200 ms. Must be > 0 and at
  // most kMaxRedisTimeout.
  absl::Duration connect_timeout = absl::Milliseconds(200);
  // How long one command may take before it fails (and the breaker opens). Default: 5 ms.
  // Must be > 0 and at most kMaxRedisTimeout.
  absl::Duration command_timeout = absl::Milliseconds(5);
  // While Redis is unreachable, how often the thread tries again. Callers fail fast meanwhile.
  // Default: 100 ms. Must be > 0 and at most kMaxRedisTimeout.
  absl::Duration reconnect_interval = absl::Milliseconds(100);
  // Prefix of every key sluice writes. Default: "sluice". 1 to 100 printable ASCII characters,
  // with no '{', '}' or space.
  std::string key_prefix = "sluice";
  // Sentinel: the name of the service the sentinels watch (`sentinel monitor <name> ...`).
  // Non-empty selects Sentinel; then `host`, `port` and `unix_socket` are ignored. At most 255
  // printable ASCII characters without spaces. Default: empty.
  std::string sentinel_master;
  // The sentinels, asked in order until one names the master. Required (1 to 64) with
  // `sentinel_master`. Default: empty.
  std::vector<RedisNode> sentinels;
  // Credentials for the sentinels themselves (`requirepass` / ACL users on the sentinels), apart
  // from `username` / `password`, which are the data nodes'. Default: empty (no AUTH).
  std::string sentinel_username;
  std::string sentinel_password;
  // Redis Cluster: seed nodes (any reachable one will do; more survive a node's absence).
  // Non-empty selects Cluster; then `host`, `port` and `unix_socket` are ignored, and `db` must
  // be 0. 1 to 64 nodes. Not together with `sentinel_master`. Default: empty.
  std::vector<RedisNode> cluster_nodes;
  // TLS for every connection. Default: off.
  RedisTlsOptions tls;
  // TESTING ONLY. When set, sluice's scripts take "now" from this clock instead of the Redis
  // server's TIME, reading NowNanos() as nanoseconds since 2025-01-01 00:00 UTC (sluice's script
  // epoch; it must be >= 0). It lets a test drive Redis-side time with a ManualClock. Never set it
  // in production: hosts would no longer share one clock. Must outlive the store.
  const Clock* script_clock_for_testing = nullptr;
};

// The longest timeout or interval a RedisOptions accepts: 1 hour.
inline constexpr absl::Duration kMaxRedisTimeout = absl::Hours(1);

// Counters of a RedisStore (all since creation, in this process).
struct RedisStats {
  int64_t commands = 0;        // commands answered by Redis
  int64_t pipelined = 0;       // commands sent in a batch with at least one other
  int64_t failures = 0;        // commands that failed: connection lost, timeout, error reply
  int64_t fast_failures = 0;   // commands refused at once because the breaker was open
  int64_t connects = 0;        // successful (re)connections
  int64_t script_loads = 0;    // SCRIPT LOADs (once per connection, and after NOSCRIPT)
  int64_t config_errors = 0;   // commands failed by a configuration error (see "Errors" above)
  int64_t retried = 0;         // must-deliver commands kept across an outage and sent again,
                               // or replayed to a new master after a failover (see "Failover")
  int64_t undone = 0;          // commands undone because their caller gave up or their outcome
                               // was unknown (a ConcurrencyLimiter acquire: its slot released)
  int64_t dropped = 0;         // must-deliver commands given up (past their deadline, or the
                               // retry queue full)
  int64_t redirected = 0;      // Redis Cluster: commands sent again to another node after a
                               // MOVED or ASK reply (a resharding or failover)
  int64_t topology_changes = 0;  // Redis Cluster slot maps read after a redirection, and
                                 // Sentinel masters that changed, since the first connect
  bool connected = false;
  std::string last_error;      // the last configuration error, or empty
};
// The result of one command: the reply's integers and bulk strings (a script returns an array of
// them, or one integer).

// sluice::RedisStore
class RedisStore {
 public:
  // Validates `options` (errors name the field). Does not connect yet: the background thread
  // connects on first use (or Check()), so a store can be created before Redis is up.
  static absl::StatusOr<std::shared_ptr<RedisStore>> Create(const RedisOptions& options);

  ~RedisStore();
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  // Connects if need be, checks the server (authentication, that it is a master and not a
  // Sentinel or replica, the database, that scripts may run and may write keys under
  // `key_prefix`) and returns OK, or the error (see "Errors" above; Unavailable or
  // DeadlineExceeded if Redis cannot be reached within `timeout`). Blocks this thread up to
  // `timeout`; at start-up, say. Thread-safe.
  absl::Status Check(absl::Duration timeout = absl::Seconds(2));

  RedisStats stats() const;
  const RedisOptions& options() const { return options_; }

 private:
  friend class internal::RedisScripts;  // sluice's objects run their scripts through it
  explicit RedisStore(const RedisOptions& options);
  RedisOptions options_;
  std::unique_ptr<internal::RedisConnectionThread> thread_;
};

// sluice::RedisOptionsFromUrl: a RedisOptions from a connection URL, as operators write them
// (redis-py's `Redis.from_url`, Celery/kombu, Spring Data Redis and the provisional IANA `redis`
// and `rediss` URI schemes, https://www.iana.org/assignments/uri-schemes/prov/redis). Fields the
// URL does not name keep RedisOptions{}'s defaults; the result is checked as
// `RedisStore::Create` checks it.
//
//   redis://[[user]:password@]host[:port][/db][?options]            standalone (port 6379)
//   rediss://...                                                   the same over TLS
//   unix://[[user]:password@]/path/to.sock[?db=N&options]           a Unix socket
//   redis+sentinel://[[user]:password@]h1[:port][,h2[:port]...]/service[/db][?options]
//   rediss+sentinel://...                                          (sentinels' port 26379)
//   redis+cluster://[[user]:password@]h1[:port][,h2[:port]...][/ or /0][?options]
//   rediss+cluster://...                                           (Cluster has only db 0)
//
// Scheme names are case-insensitive. A host is a name, an IPv4 literal or an IPv6 literal in
// brackets ("[::1]:6379"). The user, password, path and option values are %-decoded; write
// '%40' for '@', '%3A' for ':', '%2F' for '/', '%3F' for '?', '%23' for '#' and '%25' for '%'.
// The user and password are the data nodes' (`username`, `password`); a password alone is
// ":password@". With Sentinel the sentinels' own credentials are options.
//
// Options (each at most once; an unknown one is an error that names it):
//   db=N                                 the database (instead of the path's /N)
//   connect_timeout, command_timeout (alias socket_timeout), reconnect_interval
//                                        seconds as decimals ("0.25", as redis-py), or with
//                                        units ("250ms", "2s", "1m")
//   key_prefix=...
//   ssl_ca_certs (alias tls_ca_file), ssl_certfile, ssl_keyfile, ssl_server_name
//                                        tls.ca_file, tls.cert_file, tls.key_file,
//                                        tls.server_name (with rediss schemes only)
//   ssl_cert_reqs=required|none          none: tls.verify_peer = false (also CERT_REQUIRED,
//                                        CERT_NONE, Celery's spelling)
//   sentinel_username, sentinel_password
//
// Examples:
//   redis://:s3cret@10.0.0.5:6380/2?command_timeout=10ms
//   rediss://app:s3cret@redis.example.com/0?ssl_ca_certs=/etc/ssl/redis-ca.pem
//   unix:///run/redis/redis.sock?db=1
//   redis+sentinel://:s3cret@s1:26379,s2,[fd00::3]/mymaster/0?sentinel_password=t0p
//   rediss+cluster://:s3cret@node-1:7000,node-2:7000?ssl_cert_reqs=required
//
// Errors: InvalidArgument "sluice.RedisOptionsFromUrl: <the bad part> in '<url>' ..." naming the
// part (a port, an option, a host), with any password in the URL shown as ***. Never echoes a
// password or the value of a password option.
absl::StatusOr<RedisOptions> RedisOptionsFromUrl(absl::string_view url);

// sluice::RedisNodesFromString: "host[:port][,host[:port]...]" (IPv6 literals in brackets:
// "[fd00::1]:26379") as RedisNodes, a port left out being `default_port` (6379 for Cluster nodes,
// 26379 for sentinels). Spaces around each entry are ignored. For the C ABI's and the bindings'
// lists of sentinels and cluster nodes. Errors: InvalidArgument naming the entry.
absl::StatusOr<std::vector<RedisNode>> RedisNodesFromString(absl::string_view nodes,
                                                            int default_port);

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_REDIS_STORE_H_
