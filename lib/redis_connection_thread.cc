#include "redis_connection_thread.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sluice/clock.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

int64_t Now() { return Clock::Steady()->NowNanos(); }

// A reply that is an integer or an array of integers and bulk strings (what sluice's scripts
// return), or an error. The strings go to `strings`.
absl::StatusOr<std::vector<int64_t>> Values(const redisReply* reply,
                                            std::vector<std::string>* strings) {
  if (reply->type == REDIS_REPLY_ERROR) {
    return absl::InternalError(absl::StrCat("redis: ", std::string(reply->str, reply->len)));
  }
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

// Runs one command synchronously on `c` (connection setup and SCRIPT LOAD only).
redisReply* Command(redisContext* c, const std::vector<std::string>& argv) {
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const auto& a : argv) ptrs.push_back(a.data()), lens.push_back(a.size());
  return static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
}

}  // namespace

RedisConnectionThread::RedisConnectionThread(const RedisOptions& options)
    : options_(options),
      fork_hooks_(std::make_unique<ForkHooks>([this] { LockForFork(); },
                                              [this] { UnlockAfterFork(false); },
                                              [this] { UnlockAfterFork(true); })) {}

RedisConnectionThread::~RedisConnectionThread() {
  fork_hooks_.reset();  // no fork() hook may run on a half-destroyed object
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_->notify_all();
  if (thread_ && owner_pid_ == getpid()) thread_->join();
  for (auto& command : queue_) {
    command.reply->Complete(absl::UnavailableError("redis: the store was destroyed"));
  }
  Disconnect();
}

void RedisConnectionThread::LockForFork() { mu_.lock(); }

void RedisConnectionThread::UnlockAfterFork(bool in_child) {
  if (in_child) {
    // The parent's thread does not exist here; its std::thread object must not be touched. The
    // condition variable may still count that thread as a waiter, and signalling it would wait
    // for the phantom forever (glibc), so it is abandoned (not destroyed) and replaced.
    (void)thread_.release();
    (void)cv_.release();
    cv_ = std::make_unique<std::condition_variable>();
    owner_pid_ = 0;
    // The parent's callers, not ours. Leaked, not destroyed: destroying a command runs its
    // owner's code (a cache passing on a lead), whose locks a parent thread that does not exist
    // here may hold.
    (void)new std::deque<RedisCommand>(std::move(queue_));
    queue_.clear();
    if (context_ != nullptr) {
      redisFree(context_);  // closes only the child's copy of the socket
      context_ = nullptr;
    }
    shas_.clear();
    connected_ = false;
    breaker_open_until_ = 0;
  }
  mu_.unlock();
}

void RedisConnectionThread::Submit(RedisCommand command) {
  const int64_t open_until = breaker_open_until_.load(std::memory_order_acquire);
  if (open_until != 0 && Now() < open_until) {
    fast_failures_.fetch_add(1, std::memory_order_relaxed);
    command.reply->Complete(
        absl::UnavailableError("redis: unreachable (breaker open; retrying in the background)"));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (owner_pid_ != getpid()) {  // first use, or first use after fork()
      owner_pid_ = getpid();
      thread_ = std::make_unique<std::thread>([this] { Run(); });
    }
    queue_.push_back(std::move(command));
  }
  cv_->notify_one();
}

RedisStats RedisConnectionThread::stats() const {
  RedisStats s;
  s.commands = commands_.load();
  s.pipelined = pipelined_.load();
  s.failures = failures_.load();
  s.fast_failures = fast_failures_.load();
  s.connects = connects_.load();
  s.script_loads = script_loads_.load();
  s.connected = connected_.load();
  return s;
}

void RedisConnectionThread::OpenBreaker() {
  breaker_open_until_.store(Now() + absl::ToInt64Nanoseconds(options_.reconnect_interval),
                            std::memory_order_release);
}

void RedisConnectionThread::Disconnect() {
  if (context_ != nullptr) redisFree(context_);
  context_ = nullptr;
  shas_.clear();
  connected_ = false;
}

bool RedisConnectionThread::Connect() {
  Disconnect();
  redisContext* c =
      options_.unix_socket.empty()
          ? redisConnectWithTimeout(options_.host.c_str(), options_.port,
                                    absl::ToTimeval(options_.connect_timeout))
          : redisConnectUnixWithTimeout(options_.unix_socket.c_str(),
                                        absl::ToTimeval(options_.connect_timeout));
  if (c == nullptr || c->err) {
    if (c != nullptr) redisFree(c);
    return false;
  }
  redisSetTimeout(c, absl::ToTimeval(options_.command_timeout + options_.connect_timeout));
  auto ok = [&](std::vector<std::string> argv) {
    redisReply* r = Command(c, argv);
    const bool good = r != nullptr && r->type != REDIS_REPLY_ERROR;
    if (r != nullptr) freeReplyObject(r);
    return good;
  };
  if (!options_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!options_.username.empty()) auth.push_back(options_.username);
    auth.push_back(options_.password);
    if (!ok(auth)) return redisFree(c), false;
  }
  if (options_.db != 0 && !ok({"SELECT", absl::StrCat(options_.db)})) return redisFree(c), false;
  redisSetTimeout(c, absl::ToTimeval(options_.command_timeout));
  context_ = c;
  connected_ = true;
  connects_.fetch_add(1, std::memory_order_relaxed);
  breaker_open_until_.store(0, std::memory_order_release);
  return true;
}

bool RedisConnectionThread::LoadScript(const std::string* script, std::string* message) {
  redisReply* r = Command(context_, {"SCRIPT", "LOAD", *script});
  script_loads_.fetch_add(1, std::memory_order_relaxed);
  const bool good = r != nullptr && r->type == REDIS_REPLY_STRING;
  if (good) shas_[script] = std::string(r->str, r->len);
  if (!good) *message = r == nullptr ? context_->errstr : std::string(r->str, r->len);
  if (r != nullptr) freeReplyObject(r);
  return good;
}

void RedisConnectionThread::ExecuteBatch(std::vector<RedisCommand>& batch) {
  auto fail_from = [&](size_t first, const absl::Status& status) {
    for (size_t i = first; i < batch.size(); ++i) {
      failures_.fetch_add(1, std::memory_order_relaxed);
      batch[i].reply->Complete(status);
    }
  };
  for (const auto& command : batch) {
    std::string message;
    if (!shas_.contains(command.script) && !LoadScript(command.script, &message)) {
      Disconnect();
      OpenBreaker();
      return fail_from(0, absl::UnavailableError(absl::StrCat("redis: SCRIPT LOAD: ", message)));
    }
  }
  // Pipeline: every command is written before the first reply is read.
  for (const auto& command : batch) {
    std::vector<const char*> argv = {"EVALSHA", shas_[command.script].c_str()};
    std::vector<size_t> lens = {7, shas_[command.script].size()};
    const std::string nkeys = absl::StrCat(command.keys.size());
    argv.push_back(nkeys.c_str()), lens.push_back(nkeys.size());
    for (const auto& k : command.keys) argv.push_back(k.data()), lens.push_back(k.size());
    for (const auto& a : command.args) argv.push_back(a.data()), lens.push_back(a.size());
    redisAppendCommandArgv(context_, static_cast<int>(argv.size()), argv.data(), lens.data());
  }
  if (batch.size() > 1) pipelined_.fetch_add(batch.size(), std::memory_order_relaxed);
  std::vector<size_t> reload;  // NOSCRIPT: the server lost its scripts (flush, failover)
  for (size_t i = 0; i < batch.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(context_, &raw) != REDIS_OK || raw == nullptr) {
      const bool timeout = context_->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
      const std::string why = context_->errstr;
      Disconnect();
      OpenBreaker();
      return fail_from(i, timeout ? absl::DeadlineExceededError("redis: command timed out")
                                  : absl::UnavailableError(absl::StrCat("redis: ", why)));
    }
    auto* reply = static_cast<redisReply*>(raw);
    if (reply->type == REDIS_REPLY_ERROR && absl::StartsWith(reply->str, "NOSCRIPT")) {
      reload.push_back(i);
    } else {
      commands_.fetch_add(1, std::memory_order_relaxed);
      std::vector<std::string> strings;
      auto result = Values(reply, &strings);
      if (!result.ok()) failures_.fetch_add(1, std::memory_order_relaxed);
      batch[i].reply->Complete(std::move(result), std::move(strings));
    }
    freeReplyObject(reply);
  }
  if (!reload.empty()) {
    shas_.clear();
    std::vector<RedisCommand> again;
    for (size_t i : reload) again.push_back(std::move(batch[i]));
    ExecuteBatch(again);  // reloads the scripts, then runs these once more
  }
}

void RedisConnectionThread::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (queue_.empty()) {
      if (context_ == nullptr && breaker_open_until_.load() != 0) {
        // Unreachable: try again every reconnect_interval, whether or not anyone is waiting, so
        // the breaker closes soon after Redis returns.
        const int64_t wait = breaker_open_until_.load() - Now();
        if (wait > 0) cv_->wait_for(lock, std::chrono::nanoseconds(wait));
        if (stop_) break;
        if (queue_.empty() && Now() >= breaker_open_until_.load()) {
          lock.unlock();
          if (!Connect()) OpenBreaker();
          lock.lock();
        }
      } else {
        cv_->wait(lock, [&] { return stop_ || !queue_.empty(); });
      }
      continue;
    }
    std::vector<RedisCommand> batch(std::make_move_iterator(queue_.begin()),
                                    std::make_move_iterator(queue_.end()));
    queue_.clear();
    lock.unlock();
    if (context_ == nullptr && !Connect()) {
      OpenBreaker();
      for (auto& command : batch) {
        failures_.fetch_add(1, std::memory_order_relaxed);
        command.reply->Complete(absl::UnavailableError("redis: cannot connect"));
      }
    } else {
      ExecuteBatch(batch);
    }
    lock.lock();
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
