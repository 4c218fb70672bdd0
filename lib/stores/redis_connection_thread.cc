#include "stores/redis_connection_thread.h"

#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <mutex>

#include "sluice/internal/mutex.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "stores/redis_errors.h"
#include "sluice/clock.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

int64_t Now() { return Clock::Steady()->NowNanos(); }

// A reply that is an integer or an array of integers and bulk strings (what sluice's scripts
// return), or an error. The strings go to `strings`. Error replies are the caller's to classify.
absl::StatusOr<std::vector<int64_t>> Values(const redisReply* reply,
                                            std::vector<std::string>* strings) {
  if (reply->type == REDIS_REPLY_INTEGER) return std::vector<int64_t>{reply->integer};
  if (reply->type != REDIS_REPLY_ARRAY) {
    return absl::InternalError(absl::StrCat("redis: unexpected reply type ", reply->type));
  }
  std::vector<int64_t> out;
  for (size_t i = 0; i < reply->elements; ++i) {
    const redisReply* element = reply->element[i];
    if (element->type == REDIS_REPLY_INTEGER) {
      out.push_back(element->integer);
    } else if (element->type == REDIS_REPLY_STRING) {
      strings->emplace_back(element->str, element->len);
    } else {
      return absl::InternalError("redis: a script returned neither an integer nor a string");
    }
  }
  return out;
}

bool MustDeliver(const RedisCommand& c) { return c.delivery.retry_until_nanos > 0; }

// A copy of `s` that shares nothing with it. One status handed to several callers (or kept as the
// breaker's) would share a reference count that Debian's Abseil updates in uninstrumented code,
// which ThreadSanitizer then reports as a race when the last reference goes; a copy per caller
// has its own.
absl::Status Fresh(const absl::Status& s) { return absl::Status(s.code(), s.message()); }

}  // namespace

RedisConnectionThread::RedisConnectionThread(const RedisOptions& options)
    : options_(options),
      // Escaped: a host name of any bytes must not write control characters into a log.
      topology_(TopologyOf(options)),
      where_(absl::CHexEscape(DescribeRedisServers(options))),
      fork_hooks_(std::make_unique<ForkHooks>([this] { LockForFork(); },
                                              [this] { UnlockAfterFork(false); },
                                              [this] { UnlockAfterFork(true); })) {
  for (auto& fd : sockets_) fd.store(-1, std::memory_order_relaxed);
}

RedisConnectionThread::~RedisConnectionThread() {
  fork_hooks_.reset();  // no fork() hook may run on a half-destroyed object
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_->notify_all();
  if (thread_ && owner_pid_ == getpid()) thread_->join();  // Run() closes its link
  const absl::Status gone = absl::UnavailableError("redis: the store was destroyed");
  for (auto* q : {&queue_, &deferred_}) {
    for (auto& command : *q) command.reply->Complete(Fresh(gone));
    q->clear();
  }
}

void RedisConnectionThread::LockForFork() { mu_.lock(); }

void RedisConnectionThread::UnlockAfterFork(bool in_child) {
  if (in_child) {
    // The parent's thread does not exist here; its std::thread object must not be touched. The
    // condition variable may still count that thread as a waiter, and signalling it would wait
    // for the phantom forever (glibc), so it is abandoned (not destroyed) and replaced.
    (void)thread_.release();
    (void)cv_.release();
    cv_ = std::make_unique<std::condition_variable_any>();
    owner_pid_ = 0;
    // The parent's callers and the parent's deliveries, not ours. Leaked, not destroyed:
    // destroying a command runs its owner's code (a cache passing on a lead), whose locks a
    // parent thread that does not exist here may hold.
    (void)new std::deque<RedisCommand>(std::move(queue_));
    (void)new std::deque<RedisCommand>(std::move(deferred_));
    queue_.clear();
    deferred_.clear();
    // The links themselves live on the parent thread's stack, possibly mid-update: only our
    // copies of their sockets are closed, so the child cannot write into the parent's connection and the
    // server sees the connection end when the parent closes it.
    for (auto& socket : sockets_) {
      const int fd = socket.exchange(-1);
      if (fd >= 0) close(fd);
    }
    connected_ = false;
    breaker_open_until_ = 0;
    breaker_status_ = absl::OkStatus();
  }
  mu_.unlock();
}

std::string RedisConnectionThread::About(absl::string_view message) const {
  const std::string prefix = absl::StrCat("redis ", where_, ":");
  return absl::StartsWith(message, prefix) ? std::string(message)
                                           : absl::StrCat(prefix, " ", message);
}

void RedisConnectionThread::TrackSocket(int fd) {
  for (auto& socket : sockets_) {
    int free = -1;
    if (socket.compare_exchange_strong(free, fd)) return;
  }
  // Untracked: a fork() child keeps a copy of this socket open (harmless: it never writes).
}

void RedisConnectionThread::UntrackSocket(int fd) {
  for (auto& socket : sockets_) {
    int mine = fd;
    if (socket.compare_exchange_strong(mine, -1)) return;
  }
}

bool RedisConnectionThread::BreakerOpenLocked() const {
  const int64_t until = breaker_open_until_.load(std::memory_order_acquire);
  return until != 0 && Now() < until;
}

void RedisConnectionThread::Submit(RedisCommand command) {
  absl::Status refused;
  {
    MutexLock lock(&mu_);
    if (BreakerOpenLocked()) {
      if (MustDeliver(command)) {
        KeepLocked(std::move(command));  // sent once the thread reconnects
        return;
      }
      refused = Fresh(breaker_status_);
    } else {
      if (owner_pid_ != getpid()) {  // first use, or first use after fork()
        owner_pid_ = getpid();
        thread_ = std::make_unique<std::thread>([this] { Run(); });
      }
      queue_.push_back(std::move(command));
    }
  }
  if (!refused.ok()) {  // completed outside the lock: a callback may submit again
    fast_failures_.fetch_add(1, std::memory_order_relaxed);
    if (!IsTransportError(refused)) config_errors_.fetch_add(1, std::memory_order_relaxed);
    command.reply->Complete(std::move(refused));
    return;
  }
  cv_->notify_one();
}

bool RedisConnectionThread::OnConnectionThread() const {
  MutexLock lock(&mu_);
  return thread_ != nullptr && owner_pid_ == getpid() &&
         thread_->get_id() == std::this_thread::get_id();
}

RedisStats RedisConnectionThread::stats() const {
  RedisStats s;
  s.commands = commands_.load();
  s.pipelined = pipelined_.load();
  s.failures = failures_.load();
  s.fast_failures = fast_failures_.load();
  s.connects = connects_.load();
  s.script_loads = script_loads_.load();
  s.config_errors = config_errors_.load();
  s.retried = retried_.load();
  s.undone = undone_.load();
  s.dropped = dropped_.load();
  s.redirected = redirected_.load();
  s.topology_changes = topology_changes_.load();
  s.connected = connected_.load();
  MutexLock lock(&mu_);
  s.last_error = last_error_;
  return s;
}

void RedisConnectionThread::OpenBreaker(const absl::Status& why) {
  MutexLock lock(&mu_);
  breaker_status_ = Fresh(why);
  breaker_open_until_.store(Now() + absl::ToInt64Nanoseconds(options_.reconnect_interval),
                            std::memory_order_release);
}

// Must-deliver commands carry no callback (RunScriptThen never delivers this way), so completing
// one under the lock runs no caller code.
void RedisConnectionThread::KeepLocked(RedisCommand command) {
  if (deferred_.size() >= kMaxDeferred) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    dropped_log_.Log(LogLevel::kWarning,
                     absl::StrCat("redis ", where_, ": more than ", kMaxDeferred,
                                  " releases wait for Redis to return; the oldest is dropped "
                                  "(its slot comes back when its lease ends)"));
    deferred_.front().reply->Complete(
        absl::UnavailableError("redis: dropped: too many commands wait for Redis"));
    deferred_.pop_front();
  }
  deferred_.push_back(std::move(command));
}

void RedisConnectionThread::FailOrKeep(RedisCommand command, const absl::Status& status) {
  // Only an outage is worth waiting out: an error Redis answered would answer again (and a kept
  // command is resent as soon as the connection is up, so it would spin).
  if (MustDeliver(command) && IsTransportError(status) &&
      Now() < command.delivery.retry_until_nanos) {
    MutexLock lock(&mu_);
    KeepLocked(std::move(command));
    return;
  }
  if (MustDeliver(command)) dropped_.fetch_add(1, std::memory_order_relaxed);
  failures_.fetch_add(1, std::memory_order_relaxed);
  command.reply->Complete(Fresh(status));
}

void RedisConnectionThread::NoteConfigError(const absl::Status& status) {
  config_errors_.fetch_add(1, std::memory_order_relaxed);
  const std::string message = absl::StrCat("redis ", where_, ": ", status.ToString());
  {
    MutexLock lock(&mu_);
    last_error_ = message;
  }
  config_log_.Log(LogLevel::kError, message);
}

void RedisConnectionThread::ExecuteBatch(Links& links, std::vector<RedisCommand>& batch) {
  std::vector<Redirected> redirected;
  if (topology_ != RedisTopology::kCluster) {
    ExecuteOn(links, links.nodes.begin()->second, batch, /*asking=*/false, redirected);
    return;  // nothing is redirected off a Cluster
  }
  // Cluster: one pipeline per master, by the slot of each command's (hash-tagged) keys.
  auto slot_of = [](const RedisCommand& c) {
    return KeySlot(c.call.keys.empty() ? "" : c.call.keys[0]);
  };
  bool unserved = false;
  for (const auto& command : batch) unserved |= links.slots.OwnerOf(slot_of(command)) < 0;
  if (unserved && Now() >= links.next_slots_refresh) {  // the map may be stale: once an interval
    links.next_slots_refresh = Now() + absl::ToInt64Nanoseconds(options_.reconnect_interval);
    if (absl::Status s = RefreshSlots(links); !s.ok() && !IsTransportError(s)) NoteConfigError(s);
  }
  std::vector<std::vector<RedisCommand>> by_master(links.slots.masters().size());
  for (auto& command : batch) {
    const int slot = slot_of(command);
    const int owner = links.slots.OwnerOf(slot);
    if (owner < 0) {  // between a failure and its failover, or a cluster being formed
      Postpone(links, std::move(command),
               absl::UnavailableError(absl::StrCat("redis ", where_, ": no master serves slot ",
                                                   slot, " (CLUSTERDOWN)")));
      continue;
    }
    by_master[owner].push_back(std::move(command));
  }
  batch.clear();
  // Every master's pipeline is written before the first reply is read, so a batch that spans
  // masters costs one round trip, not one per master.
  const std::vector<RedisEndpoint> masters = links.slots.masters();  // links may change below
  std::vector<Pipeline> pipelines;
  pipelines.reserve(by_master.size());
  for (size_t i = 0; i < by_master.size(); ++i) {
    if (by_master[i].empty()) continue;
    absl::Status status = absl::UnavailableError(
        absl::StrCat("redis ", where_, ": the connection was lost"));  // by an earlier pipeline
    NodeLink* node = links.connected() ? NodeAt(links, masters[i], &status) : nullptr;
    if (node == nullptr) {  // nothing was sent to this master
      if (links.connected() && IsTransportError(status)) {
        Disconnect(links);
        OpenBreaker(status);
      } else if (!IsTransportError(status)) {
        NoteConfigError(status);
      }
      for (auto& command : by_master[i]) FailOrKeep(std::move(command), status);
      continue;
    }
    Pipeline pipeline;
    if (Send(links, *node, by_master[i], /*asking=*/false, &pipeline)) {
      pipelines.push_back(std::move(pipeline));
    }
  }
  for (Pipeline& pipeline : pipelines) {
    // A failure shows again at the first GetReply, where it is handled.
    if (links.connected()) (void)pipeline.node->link->Flush();
  }
  for (Pipeline& pipeline : pipelines) Receive(links, pipeline, redirected);
  FollowRedirections(links, std::move(redirected));
}

void RedisConnectionThread::FollowRedirections(Links& links, std::vector<Redirected> redirected) {
  if (redirected.empty()) return;
  bool moved = false;
  for (const auto& r : redirected) moved |= !r.to.ask;
  if (moved && links.connected()) {
    // The map is stale: read it again (a failure leaves the old one, which MOVED corrects).
    topology_changes_.fetch_add(1, std::memory_order_relaxed);
    if (absl::Status s = RefreshSlots(links); !s.ok() && !IsTransportError(s)) {
      NoteConfigError(s);
    }
  }
  std::vector<RedisCommand> again;
  std::vector<Redirected> asked;
  for (auto& r : redirected) {
    RedisCommand& command = r.command;
    if (++command.redirections > kMaxRedirections) {
      command.redirections = 0;  // a postponed command starts afresh
      Postpone(links, std::move(command),
               absl::UnavailableError(absl::StrCat(
                   "redis ", where_, ": slot ", r.to.slot, " still moving after ",
                   kMaxRedirections, " redirections (a resharding under way)")));
    } else if (!links.connected()) {
      FailOrKeep(std::move(command),
                 absl::UnavailableError(absl::StrCat("redis ", where_, ": the connection was "
                                                     "lost")));
    } else if (!r.to.ask) {
      redirected_.fetch_add(1, std::memory_order_relaxed);
      links.slots.Assign(r.to.slot, r.to.to);  // MOVED is newer than any map
      again.push_back(std::move(command));
    } else {
      redirected_.fetch_add(1, std::memory_order_relaxed);
      asked.push_back(std::move(r));
    }
  }
  if (!again.empty()) ExecuteBatch(links, again);
  // ASK: this command only, on the importing node, after ASKING; the map stays.
  for (auto& r : asked) {
    absl::Status status = absl::UnavailableError(
        absl::StrCat("redis ", where_, ": the connection was lost"));
    NodeLink* node = links.connected() ? NodeAt(links, r.to.to, &status) : nullptr;
    if (node == nullptr) {
      if (!IsTransportError(status)) NoteConfigError(status);
      FailOrKeep(std::move(r.command), status);
      continue;
    }
    std::vector<RedisCommand> one;
    one.push_back(std::move(r.command));
    std::vector<Redirected> further;
    ExecuteOn(links, *node, one, /*asking=*/true, further);
    FollowRedirections(links, std::move(further));
  }
}

void RedisConnectionThread::Outcome::NoteBreaker(const absl::Status& s) {
  if (breaker.ok() || IsTransportError(breaker)) breaker = s;
}

void RedisConnectionThread::CompleteFailed(Outcome& outcome) {
  for (auto& [command, status] : outcome.failed) FailOrKeep(std::move(command), status);
  outcome.failed.clear();
}

void RedisConnectionThread::ExecuteOn(Links& links, NodeLink& node,
                                      std::vector<RedisCommand>& batch, bool asking,
                                      std::vector<Redirected>& redirected) {
  Pipeline pipeline;
  if (Send(links, node, batch, asking, &pipeline)) Receive(links, pipeline, redirected);
}

bool RedisConnectionThread::Send(Links& links, NodeLink& node, std::vector<RedisCommand>& batch,
                                 bool asking, Pipeline* out) {
  Outcome outcome;
  absl::Status& breaker = outcome.breaker;
  auto note_breaker = [&](const absl::Status& s) { outcome.NoteBreaker(s); };
  auto& failed_commands = outcome.failed;
  auto complete_failed = [&] { CompleteFailed(outcome); };
  // 1. Every script this batch needs, loaded on this connection. Nothing is sent yet, so a
  // failure here leaves every outcome known: nothing ran.
  std::vector<RedisCommand> ready;
  absl::flat_hash_map<const std::string*, absl::Status> failed;  // each script tried once
  for (auto& command : batch) {
    const std::string* script = command.call.script;
    absl::Status loaded;
    if (auto f = failed.find(script); f != failed.end()) {
      loaded = f->second;
    } else if (!node.shas.contains(script)) {
      loaded = LoadScript(node, script);
      if (!loaded.ok()) {
        failed[script] = loaded;
        if (!IsTransportError(loaded)) NoteConfigError(loaded);
      }
    }
    if (loaded.ok()) {
      ready.push_back(std::move(command));
      continue;
    }
    if (IsTransportError(loaded)) {
      Disconnect(links);
      OpenBreaker(loaded);
      for (auto& c : batch) {
        if (c.reply != nullptr) FailOrKeep(std::move(c), loaded);
      }
      for (auto& c : ready) FailOrKeep(std::move(c), loaded);
      complete_failed();
      batch.clear();
      return false;
    }
    // Denied, or a server that runs no scripts: without its script no command can run on this
    // connection, unless it is a bug in that one script (Internal).
    if (!absl::IsInternal(loaded)) note_breaker(loaded);
    failed_commands.emplace_back(std::move(command), loaded);
  }
  batch.clear();
  if (!breaker.ok()) {  // scripts cannot run on this connection: nothing else is sent
    Disconnect(links);
    OpenBreaker(breaker);
    for (auto& c : ready) FailOrKeep(std::move(c), breaker);
    complete_failed();
    return false;
  }
  complete_failed();  // a script's own bug (Internal): those commands only
  if (ready.empty()) return false;
  // 2. Queued on the link; written by Flush or the first GetReply.
  for (const auto& command : ready) {
    if (asking) node.link->Append({"ASKING"});
    const std::string& sha = node.shas[command.call.script];
    const std::string nkeys = absl::StrCat(command.call.keys.size());
    std::vector<absl::string_view> argv = {"EVALSHA", sha, nkeys};
    for (const auto& k : command.call.keys) argv.push_back(k);
    for (const auto& a : command.call.args) argv.push_back(a);
    node.link->Append(argv);
  }
  if (ready.size() > 1) pipelined_.fetch_add(ready.size(), std::memory_order_relaxed);
  out->node = &node;
  out->answered = node.link->endpoint();
  out->asking = asking;
  out->ready = std::move(ready);
  return true;
}

// After Disconnect(links), `pipeline.node` is gone: nothing below touches it past that point.
void RedisConnectionThread::Receive(Links& links, Pipeline& pipeline,
                                    std::vector<Redirected>& redirected) {
  std::vector<RedisCommand>& ready = pipeline.ready;
  const RedisEndpoint& answered = pipeline.answered;
  const bool asking = pipeline.asking;
  Outcome outcome;
  absl::Status& breaker = outcome.breaker;
  auto note_breaker = [&](const absl::Status& s) { outcome.NoteBreaker(s); };
  auto& failed_commands = outcome.failed;
  auto complete_failed = [&] { CompleteFailed(outcome); };
  // 3. The replies, in order.
  std::vector<RedisCommand> reload;  // NOSCRIPT: the server lost its scripts (flush, failover)
  std::vector<RedisCommand> undo;    // effects nobody will use
  auto undo_of = [&](RedisCommand& command) {
    if (!command.delivery.undo.has_value()) return;
    undone_.fetch_add(1, std::memory_order_relaxed);
    undo.push_back({*std::move(command.delivery.undo), std::make_shared<PendingReply>(),
                    {std::numeric_limits<int64_t>::max(), std::nullopt}});
  };
  for (size_t i = 0; i < ready.size(); ++i) {
    // Another node's pipeline of this batch may have lost the connections (Disconnect closes
    // them all): these were written, or not, and are unanswered.
    absl::StatusOr<RedisReplyPtr> got =
        links.connected() ? pipeline.node->link->GetReply()
                          : absl::StatusOr<RedisReplyPtr>(absl::UnavailableError(absl::StrCat(
                                "redis ", answered.ToString(), ": the connection was lost")));
    if (got.ok() && asking) got = pipeline.node->link->GetReply();  // ASKING's +OK came first
    if (!got.ok()) {
      const absl::Status lost = got.status();
      note_breaker(lost);
      // Written, unanswered: each may or may not have run. Undo what can be undone; send again
      // what must be delivered (it is safe to run twice); fail the rest.
      for (size_t j = i; j < ready.size(); ++j) {
        undo_of(ready[j]);
        failed_commands.emplace_back(std::move(ready[j]), lost);
      }
      break;
    }
    const redisReply* reply = got->get();
    RedisCommand& command = ready[i];
    if (reply->type == REDIS_REPLY_ERROR) {
      const absl::string_view text(reply->str, reply->len);
      if (absl::StartsWith(text, "NOSCRIPT")) {
        reload.push_back(std::move(command));
        continue;
      }
      Redirection to;
      if (topology_ == RedisTopology::kCluster && ParseRedirection(text, answered, &to)) {
        redirected.push_back({std::move(command), std::move(to)});  // it did not run
        continue;
      }
      if (topology_ == RedisTopology::kCluster && absl::StartsWith(text, "TRYAGAIN")) {
        // A slot migrating: some of this command's keys have moved, others (or ones that do not
        // exist yet) have not. It did not run; it concerns this key only, for as long as the
        // migration lasts: the failure mode for this decision, no breaker for the others. A
        // must-deliver command waits a reconnect_interval and goes again.
        Postpone(links, std::move(command),
                 absl::UnavailableError(absl::StrCat(
                     "redis ", answered.ToString(), ": EVALSHA: ", text,
                     " (a slot migrating: this key's failure mode meanwhile)")));
        continue;
      }
      const RedisError error = ClassifyReply("EVALSHA", text);
      if (IsTransportError(error.status)) {  // LOADING, BUSY, ...: it did not run
        note_breaker(error.status);
        failed_commands.emplace_back(std::move(command), error.status);
        continue;
      }
      commands_.fetch_add(1, std::memory_order_relaxed);
      NoteConfigError(error.status);
      if (error.whole_connection) note_breaker(error.status);
      failed_commands.emplace_back(std::move(command), error.status);
      continue;
    }
    commands_.fetch_add(1, std::memory_order_relaxed);
    std::vector<std::string> strings;
    absl::StatusOr<std::vector<int64_t>> result = Values(reply, &strings);
    if (!result.ok()) {
      failures_.fetch_add(1, std::memory_order_relaxed);
      NoteConfigError(result.status());
    }
    const bool took = result.ok() && !result->empty() && (*result)[0] == 1;
    if (command.reply->Complete(std::move(result), std::move(strings)) && took) undo_of(command);
    if (MustDeliver(command) && topology_ != RedisTopology::kStandalone) {
      const int64_t now = Now();
      auto& delivered = links.delivered;
      while (!delivered.empty() &&
             (delivered.size() >= kMaxReplayed ||
              delivered.front().first < now - absl::ToInt64Nanoseconds(kReplayWindow))) {
        delivered.pop_front();
      }
      delivered.emplace_back(now, std::move(command.call));
    }
  }
  if (!breaker.ok()) {
    if (IsTransportError(breaker) && !unreachable_logged_.exchange(true)) {
      unreachable_log_.Log(
          LogLevel::kWarning,
          absl::StrCat(About(breaker.message()), "; objects apply their failure ",
                       "mode until it answers again (retrying every ",
                       absl::FormatDuration(options_.reconnect_interval), ")"));
    }
    Disconnect(links);  // `pipeline.node` is gone from here on
    OpenBreaker(breaker);
  }
  complete_failed();
  if (!undo.empty()) {
    MutexLock lock(&mu_);
    for (auto& c : undo) KeepLocked(std::move(c));
  }
  if (!reload.empty() && !links.connected()) {  // they did not run
    for (auto& c : reload) FailOrKeep(std::move(c), breaker);
    return;
  }
  if (!reload.empty()) {
    pipeline.node->shas.clear();
    // Reloads the scripts, then runs these again.
    ExecuteOn(links, *pipeline.node, reload, asking, redirected);
  }
}

void RedisConnectionThread::Postpone(Links& links, RedisCommand command,
                                     const absl::Status& status) {
  if (MustDeliver(command) && Now() < command.delivery.retry_until_nanos) {
    links.later.emplace_back(Now() + absl::ToInt64Nanoseconds(options_.reconnect_interval),
                             std::move(command));
    return;
  }
  FailOrKeep(std::move(command), status);  // fails it (or drops it, past its deadline)
}

void RedisConnectionThread::Replay(Links& links) {
  if (links.delivered.empty()) return;
  const int64_t until = Now() + absl::ToInt64Nanoseconds(kReplayWindow);
  MutexLock lock(&mu_);
  for (auto& [when, call] : links.delivered) {
    KeepLocked({std::move(call), std::make_shared<PendingReply>(), {until, std::nullopt}});
  }
  links.delivered.clear();
}

void RedisConnectionThread::Run() {
  Links links;  // this thread's connections: on its stack, so a fork() child never touches them
  std::unique_lock<Mutex> lock(mu_);
  while (!stop_) {
    if (!links.connected()) {
      const int64_t until = breaker_open_until_.load();
      if (until != 0 && Now() < until) {
        // Unreachable: try again every reconnect_interval, whether or not anyone is waiting, so
        // the breaker closes soon after Redis returns (and kept commands go out).
        cv_->wait_for(lock, std::chrono::nanoseconds(until - Now()));
        continue;
      }
      if (until == 0 && queue_.empty() && deferred_.empty()) {
        cv_->wait(lock, [&] { return stop_ || !queue_.empty() || !deferred_.empty(); });
        continue;
      }
      lock.unlock();
      absl::Status connected = Connect(links);
      if (!connected.ok()) {
        if (IsTransportError(connected)) {
          if (!unreachable_logged_.exchange(true)) {
            unreachable_log_.Log(
                LogLevel::kWarning,
                absl::StrCat(About(connected.message()), "; objects apply ",
                             "their failure mode until it answers (retrying every ",
                             absl::FormatDuration(options_.reconnect_interval), ")"));
          }
        } else {
          NoteConfigError(connected);
        }
        OpenBreaker(connected);
      }
      if (connected.ok()) Replay(links);
      lock.lock();
      if (!connected.ok()) {
        // Nothing was sent: callers fail (fast, from now on); deliveries wait for the next try.
        std::vector<RedisCommand> waiting(std::make_move_iterator(queue_.begin()),
                                          std::make_move_iterator(queue_.end()));
        queue_.clear();
        std::deque<RedisCommand> kept;
        kept.swap(deferred_);
        lock.unlock();
        for (auto& command : waiting) FailOrKeep(std::move(command), connected);
        for (auto& command : kept) FailOrKeep(std::move(command), connected);
        lock.lock();
      }
      continue;
    }
    if (topology_ == RedisTopology::kSentinel && Now() >= links.next_master_check) {
      lock.unlock();
      CheckSentinelMaster(links);
      lock.lock();
      continue;
    }
    const bool later_due = !links.later.empty() && links.later.front().first <= Now();
    if (queue_.empty() && deferred_.empty() && !later_due) {
      auto waiting = [&] { return stop_ || !queue_.empty() || !deferred_.empty(); };
      int64_t wake = std::numeric_limits<int64_t>::max();
      if (topology_ == RedisTopology::kSentinel) wake = links.next_master_check;
      if (!links.later.empty()) wake = std::min(wake, links.later.front().first);
      if (wake != std::numeric_limits<int64_t>::max()) {
        cv_->wait_for(lock, std::chrono::nanoseconds(std::max<int64_t>(0, wake - Now())), waiting);
      } else {
        cv_->wait(lock, waiting);
      }
      continue;
    }
    // Kept deliveries first: a release goes out before newer acquires that may want its slot.
    std::vector<RedisCommand> batch;
    bool resending = !deferred_.empty();
    while (!links.later.empty() && links.later.front().first <= Now()) {
      batch.push_back(std::move(links.later.front().second));
      links.later.pop_front();
      resending = true;
    }
    for (auto* q : {&deferred_, &queue_}) {
      for (auto& command : *q) batch.push_back(std::move(command));
      q->clear();
    }
    lock.unlock();
    if (resending) {
      for (const auto& command : batch) {
        if (MustDeliver(command)) retried_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    ExecuteBatch(links, batch);
    lock.lock();
  }
  // Stopping (the store is being destroyed): releases and undos already queued go out once, if
  // a connection is up, so that a process that releases a permit and then lets go of the store
  // (or exits) does not leave the slot held in Redis until its lease ends. Bounded by the
  // command timeout; nothing new is connected.
  std::vector<RedisCommand> last;
  if (links.connected()) {
    for (auto* q : {&deferred_, &queue_}) {
      for (auto it = q->begin(); it != q->end();) {
        if (MustDeliver(*it)) {
          last.push_back(std::move(*it));
          it = q->erase(it);
        } else {
          ++it;
        }
      }
    }
  }
  lock.unlock();
  if (!last.empty()) ExecuteBatch(links, last);
  Disconnect(links);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
