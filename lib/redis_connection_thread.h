// Internal: the background thread that owns a RedisStore's connection (see sluice/redis_store.h).
#ifndef SLUICE_LIB_REDIS_CONNECTION_THREAD_H_
#define SLUICE_LIB_REDIS_CONNECTION_THREAD_H_

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "fork_hooks.h"
#include "sluice/redis_store.h"

struct redisContext;

namespace sluice {
inline namespace v1 {
namespace internal {

struct RedisCommand {
  const std::string* script;  // static-lifetime Lua source; its SHA is learned per connection
  std::vector<std::string> keys;
  std::vector<std::string> args;
  std::shared_ptr<PendingReply> reply;
};

class RedisConnectionThread {
 public:
  explicit RedisConnectionThread(const RedisOptions& options);
  ~RedisConnectionThread();

  // Queues `command` for the thread, or fails it at once while the breaker is open.
  void Submit(RedisCommand command);
  RedisStats stats() const;

 private:
  // fork() hooks: hold the lock across fork; the child forgets the parent's thread, connection
  // and condition variable, and starts its own on first use.
  void LockForFork();
  void UnlockAfterFork(bool in_child);

  void Run();
  bool Connect();
  void Disconnect();
  void OpenBreaker();
  void ExecuteBatch(std::vector<RedisCommand>& batch);
  // SCRIPT LOAD on this connection; false (and the connection dropped) on failure.
  bool LoadScript(const std::string* script, std::string* message);

  const RedisOptions options_;
  mutable std::mutex mu_;
  // Held by pointer: a child of fork() must replace it (see UnlockAfterFork).
  std::unique_ptr<std::condition_variable> cv_ = std::make_unique<std::condition_variable>();
  std::deque<RedisCommand> queue_;
  bool stop_ = false;
  std::unique_ptr<std::thread> thread_;
  pid_t owner_pid_ = 0;  // the process the thread belongs to

  // Owned by the thread.
  redisContext* context_ = nullptr;
  absl::flat_hash_map<const std::string*, std::string> shas_;

  std::atomic<int64_t> breaker_open_until_{0};  // steady nanoseconds; 0 = closed
  std::atomic<bool> connected_{false};
  std::atomic<int64_t> commands_{0}, pipelined_{0}, failures_{0}, fast_failures_{0},
      connects_{0}, script_loads_{0};
  std::unique_ptr<ForkHooks> fork_hooks_;  // registered last, unregistered first
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_REDIS_CONNECTION_THREAD_H_
