// -----------------------------------------------------------------------------
// File: sluice/redis_store.h
// -----------------------------------------------------------------------------
//
// Cluster scope: a `RedisStore` is one connection to Redis, owned by a native background thread,
// that sluice objects share to keep their state in Redis so that every host decides against one
// limit. Callers never touch the socket:
//
//   * a decision is one EVALSHA of an atomic Lua script that reads the Redis server's clock
//     (TIME), so hosts with skewed clocks agree; concurrent callers' commands are pipelined on the
//     one connection;
//   * each reply is handed back through a `PendingReply`, which a C++ caller waits on and which a
//     Python caller polls through a file descriptor (gevent and asyncio wait on it cooperatively);
//   * when Redis is slow or down, a command fails after `command_timeout` and a breaker opens, so
//     later callers fail at once (and apply their object's failure mode) instead of paying the
//     timeout; the thread reconnects by itself, probing every `reconnect_interval`;
//   * after fork() (Gunicorn preload), the child gets a fresh thread and connection on first use;
//     the parent keeps working.
//
// Example:
//
//   sluice::RedisOptions redis;
//   redis.host = "10.0.0.5";
//   redis.password = "...";
//   auto store = sluice::RedisStore::Create(redis).value();
//   sluice::RateLimiter::Options options;
//   options.windows = {sluice::Window::PerMinute(600)};
//   options.cluster.store = store;
//   options.cluster.rule = "tenant-rpm";
//   auto limiter = sluice::RateLimiter::Create(options).value();
//
// Thread-safety: a RedisStore is safe for concurrent use by any number of threads.

#ifndef SLUICE_REDIS_STORE_H_
#define SLUICE_REDIS_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {

namespace internal {
class RedisConnectionThread;
}  // namespace internal

// sluice::RedisOptions
struct RedisOptions {
  // TCP host and port. Default: 127.0.0.1:6379. Ignored when `unix_socket` is set.
  std::string host = "127.0.0.1";
  int port = 6379;
  // A Unix socket path; when set, used instead of host and port. Default: empty.
  std::string unix_socket;
  // ACL user (Redis 6+) and password; an empty password sends no AUTH. Default: empty.
  std::string username;
  std::string password;
  // The logical database. Default: 0. Must be >= 0.
  int db = 0;
  // How long connecting may take. Default: 200 ms. Must be > 0.
  absl::Duration connect_timeout = absl::Milliseconds(200);
  // How long one command may take before it fails (and the breaker opens). Default: 5 ms.
  // Must be > 0.
  absl::Duration command_timeout = absl::Milliseconds(5);
  // While Redis is unreachable, how often the thread tries again. Callers fail fast meanwhile.
  // Default: 100 ms. Must be > 0.
  absl::Duration reconnect_interval = absl::Milliseconds(100);
  // Prefix of every key sluice writes. Default: "sluice". Must be non-empty, with no '{' or '}'.
  std::string key_prefix = "sluice";
};

// Counters of a RedisStore (all since creation, in this process).
struct RedisStats {
  int64_t commands = 0;        // commands answered by Redis
  int64_t pipelined = 0;       // commands sent in a batch with at least one other
  int64_t failures = 0;        // commands that failed: connection lost, timeout, error reply
  int64_t fast_failures = 0;   // commands refused at once because the breaker was open
  int64_t connects = 0;        // successful (re)connections
  int64_t script_loads = 0;    // SCRIPT LOADs (once per connection, and after NOSCRIPT)
  bool connected = false;
};

// The result of one command: the reply's integers and bulk strings (a script returns an array of
// them, or one integer).
class PendingReply;

// sluice::RedisStore
class RedisStore {
 public:
  // Validates `options` (errors name the field). Does not connect yet: the background thread
  // connects on first use, so a store can be created before Redis is up.
  static absl::StatusOr<std::shared_ptr<RedisStore>> Create(const RedisOptions& options);

  ~RedisStore();
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  RedisStats stats() const;
  const RedisOptions& options() const { return options_; }

  // Internal plumbing for sluice's objects: runs Lua script `script` (its source; it is loaded
  // once per connection and called by SHA) with `keys` and `args`. Never blocks.
  std::shared_ptr<PendingReply> RunScript(const std::string& script,
                                          std::vector<std::string> keys,
                                          std::vector<std::string> args, bool want_fd);
  // RunScript, then `done` once the reply (or failure) is in: on the connection thread, or on
  // the caller's thread when the breaker fails the command at once. `done` must not block. If
  // the command is dropped unanswered (a child of fork() forgets its parent's queue), `done` is
  // destroyed without being called.
  void RunScriptThen(const std::string& script, std::vector<std::string> keys,
                     std::vector<std::string> args, std::function<void(PendingReply&)> done);

 private:
  explicit RedisStore(const RedisOptions& options);
  RedisOptions options_;
  std::unique_ptr<internal::RedisConnectionThread> thread_;
};

// sluice::PendingReply
//
// A command under way. Thread-safe: one thread may wait while the connection thread completes it.
class PendingReply {
 public:
  PendingReply();
  ~PendingReply();
  PendingReply(const PendingReply&) = delete;
  PendingReply& operator=(const PendingReply&) = delete;

  // Waits (blocking this thread) for the reply, at most `timeout`. DeadlineExceeded if it did not
  // come; Unavailable if Redis could not be reached; Internal for an unexpected reply.
  absl::StatusOr<std::vector<int64_t>> Wait(absl::Duration timeout);
  // True once the reply (or failure) is in. Never blocks.
  bool done() const;
  // A file descriptor that becomes readable when done (eventfd), or -1 if none was asked for.
  int fd() const { return fd_; }

  // The reply's bulk strings, in order (the integers are Wait's). REQUIRES: done().
  const std::vector<std::string>& strings() const;

  // For the connection thread.
  void Complete(absl::StatusOr<std::vector<int64_t>> result, std::vector<std::string> strings = {});

 private:
  struct State;
  std::unique_ptr<State> state_;
  int fd_ = -1;
  std::function<void(PendingReply&)> then_;  // RunScriptThen's `done`
  friend class RedisStore;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_REDIS_STORE_H_
