#include "sluice/redis_store.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "redis_connection_thread.h"

namespace sluice {
inline namespace v1 {

namespace {
constexpr absl::string_view kName = "sluice.RedisStore";
}  // namespace

struct PendingReply::State {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  absl::StatusOr<std::vector<int64_t>> result = absl::UnknownError("pending");
  std::vector<std::string> strings;
};

PendingReply::PendingReply() : state_(std::make_unique<State>()) {}

PendingReply::~PendingReply() {
  if (fd_ >= 0) close(fd_);
}

void PendingReply::Complete(absl::StatusOr<std::vector<int64_t>> result,
                            std::vector<std::string> strings) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->result = std::move(result);
    state_->strings = std::move(strings);
    state_->done = true;
  }
  if (then_) {
    std::function<void(PendingReply&)> then = std::move(then_);
    then(*this);
  }
  state_->cv.notify_all();
  if (fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(fd_, &one, sizeof(one));
  }
}

const std::vector<std::string>& PendingReply::strings() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->strings;  // written once, before done
}

bool PendingReply::done() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->done;
}

absl::StatusOr<std::vector<int64_t>> PendingReply::Wait(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(state_->mu);
  if (!state_->cv.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                           [&] { return state_->done; })) {
    return absl::DeadlineExceededError("redis: no reply in time");
  }
  return state_->result;
}

absl::StatusOr<std::shared_ptr<RedisStore>> RedisStore::Create(const RedisOptions& o) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": ", what));
  };
  if (o.unix_socket.empty()) {
    if (o.host.empty()) return bad("host must be set (or unix_socket)");
    if (o.port < 1 || o.port > 65535) return bad(absl::StrCat("port must be 1..65535, got ", o.port));
  }
  if (o.db < 0) return bad(absl::StrCat("db must be >= 0, got ", o.db));
  if (!o.username.empty() && o.password.empty()) return bad("username needs a password");
  if (o.connect_timeout <= absl::ZeroDuration()) return bad("connect_timeout must be > 0");
  if (o.command_timeout <= absl::ZeroDuration()) return bad("command_timeout must be > 0");
  if (o.reconnect_interval <= absl::ZeroDuration()) return bad("reconnect_interval must be > 0");
  if (o.key_prefix.empty() || absl::StrContains(o.key_prefix, "{") ||
      absl::StrContains(o.key_prefix, "}")) {
    return bad("key_prefix must be non-empty, without '{' or '}'");
  }
  return std::shared_ptr<RedisStore>(new RedisStore(o));
}

RedisStore::RedisStore(const RedisOptions& options)
    : options_(options), thread_(std::make_unique<internal::RedisConnectionThread>(options)) {}

RedisStore::~RedisStore() = default;

RedisStats RedisStore::stats() const { return thread_->stats(); }

std::shared_ptr<PendingReply> RedisStore::RunScript(const std::string& script,
                                                    std::vector<std::string> keys,
                                                    std::vector<std::string> args, bool want_fd) {
  auto reply = std::make_shared<PendingReply>();
  if (want_fd) reply->fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_->Submit({&script, std::move(keys), std::move(args), reply});
  return reply;
}

void RedisStore::RunScriptThen(const std::string& script, std::vector<std::string> keys,
                               std::vector<std::string> args,
                               std::function<void(PendingReply&)> done) {
  auto reply = std::make_shared<PendingReply>();
  reply->then_ = std::move(done);
  thread_->Submit({&script, std::move(keys), std::move(args), std::move(reply)});
}

}  // namespace v1
}  // namespace sluice
