// Internal: the background thread that owns a RedisStore's connection (see sluice/redis_store.h).
//
// What belongs to whom matters for fork(): the connection (hiredis context, loaded script SHAs)
// is the thread's alone and lives on its stack (`Link` in Run()), so a child of fork(), which
// has no such thread, never touches a socket buffer that the thread was resizing at the instant
// of the fork. Everything callers share (the queues, the breaker) is guarded by `mu_`, which the
// fork hooks hold across fork(), so the child sees it consistent and resets it.
#ifndef SLUICE_LIB_REDIS_CONNECTION_THREAD_H_
#define SLUICE_LIB_REDIS_CONNECTION_THREAD_H_

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>

#include "sluice/internal/mutex.h"
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "base/fork_hooks.h"
#include "base/log.h"
#include "sluice/redis_store.h"
#include "stores/redis_scripts.h"

struct redisContext;

namespace sluice {
inline namespace v1 {
namespace internal {

struct RedisCommand {
  ScriptCall call;
  std::shared_ptr<PendingReply> reply;
  Delivery delivery;
};

// The transport failure hiredis reports on `c` (after a null reply or REDIS_ERR): DeadlineExceeded
// for a timeout, else Unavailable.
absl::Status RedisTransportError(const redisContext* c, absl::string_view what);

class RedisConnectionThread {
 public:
  // Must-deliver commands kept while Redis is away, at most; beyond, the oldest are dropped
  // (counted and logged): a release then ends with its lease instead.
  static constexpr size_t kMaxDeferred = size_t{1} << 16;

  explicit RedisConnectionThread(const RedisOptions& options);
  ~RedisConnectionThread();

  // Queues `command` for the thread; while the breaker is open, fails it at once (or keeps it,
  // if it must be delivered).
  void Submit(RedisCommand command);
  RedisStats stats() const;
  // Whether the caller is this object's connection thread (which must not destroy it: it would
  // join itself).
  bool OnConnectionThread() const;
  // Counts and logs an error that is not a transport failure.
  void NoteConfigError(const absl::Status& status);

 private:
  // The connection; owned by Run(), on the thread's stack.
  struct Link {
    redisContext* context = nullptr;
    absl::flat_hash_map<const std::string*, std::string> shas;  // loaded scripts
  };

  // fork() hooks: hold the lock across fork; the child forgets the parent's thread, queues and
  // condition variable, closes its copy of the socket, and starts its own thread on first use.
  void LockForFork();
  void UnlockAfterFork(bool in_child);

  void Run();
  // Connects and checks the server (AUTH, HELLO: not a Sentinel nor a replica, SELECT). In
  // redis_connect.cc, with Disconnect and LoadScript.
  absl::Status Connect(Link& link);
  void Disconnect(Link& link);
  // SCRIPT LOAD on the link. The error as classified (see redis_errors.h) on failure.
  absl::Status LoadScript(Link& link, const std::string* script);
  void ExecuteBatch(Link& link, std::vector<RedisCommand>& batch);

  // Opens the breaker for a reconnect interval: callers fail fast with `why` meanwhile.
  void OpenBreaker(const absl::Status& why);
  bool BreakerOpenLocked() const;
  // After a transport failure, a must-deliver command goes back to wait for the next connection
  // (or is dropped, past its deadline); any other command, or any other error, fails with
  // `status`.
  void FailOrKeep(RedisCommand command, const absl::Status& status);
  void KeepLocked(RedisCommand command);
  const RedisOptions options_;
  const std::string where_;  // "host:port" or the socket path, for messages
  mutable Mutex mu_;
  // Held by pointer: a child of fork() must replace it (see UnlockAfterFork).
  std::unique_ptr<std::condition_variable_any> cv_ = std::make_unique<std::condition_variable_any>();
  std::deque<RedisCommand> queue_;     // guarded by mu_
  std::deque<RedisCommand> deferred_;  // must-deliver commands waiting for a connection; mu_
  absl::Status breaker_status_;        // why the breaker is open; mu_
  std::string last_error_;             // mu_
  bool stop_ = false;
  std::unique_ptr<std::thread> thread_;
  pid_t owner_pid_ = 0;  // the process the thread belongs to

  std::atomic<int> socket_fd_{-1};               // the link's socket, for a fork() child to close
  std::atomic<int64_t> breaker_open_until_{0};   // steady nanoseconds; 0 = closed
  std::atomic<bool> connected_{false};
  std::atomic<bool> unreachable_logged_{false};  // a "reconnected" message is due
  std::atomic<int64_t> commands_{0}, pipelined_{0}, failures_{0}, fast_failures_{0},
      connects_{0}, script_loads_{0}, config_errors_{0}, retried_{0}, undone_{0}, dropped_{0};
  LogThrottle unreachable_log_, config_log_, dropped_log_;
  std::unique_ptr<ForkHooks> fork_hooks_;  // registered last, unregistered first
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_REDIS_CONNECTION_THREAD_H_
