// Internal: how sluice's objects use a RedisStore: Lua scripts run on its connection thread,
// each reply handed back through a PendingReply (see sluice/redis_store.h for the store's
// behaviour, and stores/redis_pending.h for the Pending that wraps a reply).
#ifndef SLUICE_LIB_STORES_REDIS_SCRIPTS_H_
#define SLUICE_LIB_STORES_REDIS_SCRIPTS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class PendingReply;

// A Lua script call: `script` is its source, of static lifetime (loaded once per connection and
// called by SHA).
struct ScriptCall {
  const std::string* script = nullptr;
  std::vector<std::string> keys;
  std::vector<std::string> args;
};

// How hard the store tries to deliver a command.
struct Delivery {
  // > 0: a must-deliver command. Across transport failures and an open breaker it is kept and
  // sent again after reconnecting, until this time on the steady clock (Clock::Steady(), ns);
  // INT64_MAX: until delivered. An error Redis answers (see "Errors") ends it. It must be safe
  // to run twice, and carries no callback. 0: fail at once.
  int64_t retry_until_nanos = 0;
  // What cancels the command's effect; it must be safe to run when the command never ran. Sent
  // (as a must-deliver command, until delivered) when the command's outcome is unknown (it was
  // written, then the connection failed before its reply), or when the reply came after its
  // caller gave up (PendingReply::Abandon) and its first integer is 1 ("something was taken").
  std::optional<ScriptCall> undo;
};

class RedisScripts {
 public:
  // Runs `call` on `store`'s connection. Never blocks.
  static std::shared_ptr<PendingReply> Run(RedisStore& store, ScriptCall call, bool want_fd,
                                           Delivery delivery);
  static std::shared_ptr<PendingReply> Run(RedisStore& store, const std::string& script,
                                           std::vector<std::string> keys,
                                           std::vector<std::string> args, bool want_fd);
  // Run, then `done` once the reply (or failure) is in: on the connection thread, or on the
  // caller's thread when the breaker fails the command at once. `done` must not block. If the
  // command is dropped unanswered (a child of fork() forgets its parent's queue), `done` is
  // destroyed without being called.
  static void RunThen(RedisStore& store, const std::string& script, std::vector<std::string> keys,
                      std::vector<std::string> args, std::function<void(PendingReply&)> done);
  // Counts and logs (rate-limited) an error an object found in a reply (an impossible value).
  static void NoteError(RedisStore& store, const absl::Status& status);
  // The script argument that carries "now": empty (the script reads the server's TIME) unless
  // `script_clock_for_testing` is set, then that clock's microseconds since the script epoch.
  static std::string ScriptNow(const RedisStore& store);
};

// A command under way. Thread-safe: one thread may wait while the connection thread completes it.
class PendingReply {
 public:
  PendingReply();
  ~PendingReply();
  PendingReply(const PendingReply&) = delete;
  PendingReply& operator=(const PendingReply&) = delete;

  // Waits (blocking this thread) for the reply, at most `timeout`. If it did not come, the reply
  // is abandoned (see Abandon) and the result is DeadlineExceeded. Otherwise the result, whose
  // errors are those of sluice/redis_store.h, "Errors" (Unavailable: Redis could not be reached).
  absl::StatusOr<std::vector<int64_t>> Wait(absl::Duration timeout);
  // The caller will not look at the reply: if it comes later, the command's undo runs (see
  // Delivery). Returns false if the reply was already in (then nothing is undone, and
  // the caller may still read it with Wait).
  bool Abandon();
  // True once the reply (or failure) is in. Never blocks.
  bool done() const;
  // A file descriptor that becomes readable when done (eventfd), or -1 if none was asked for.
  int fd() const { return fd_; }

  // The reply's bulk strings, in order (the integers are Wait's). REQUIRES: done().
  const std::vector<std::string>& strings() const;

  // For the connection thread. Returns whether the caller had abandoned the reply.
  bool Complete(absl::StatusOr<std::vector<int64_t>> result, std::vector<std::string> strings = {});

 private:
  struct State;
  std::unique_ptr<State> state_;
  int fd_ = -1;
  std::function<void(PendingReply&)> then_;  // RedisScripts::RunThen's `done`
  friend class RedisScripts;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_STORES_REDIS_SCRIPTS_H_
