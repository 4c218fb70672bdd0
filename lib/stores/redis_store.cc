#include "sluice/redis_store.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "stores/redis_connection_thread.h"
#include "stores/redis_options_check.h"
#include "stores/redis_scripts.h"
#include "sluice/clock.h"

namespace sluice {
inline namespace v1 {

namespace {
constexpr absl::string_view kName = "sluice.RedisStore";
}  // namespace

namespace {

// Writes nothing (DEL of a key nobody uses), but as a write under the key prefix it meets every
// check a decision meets: authentication, ACL (+evalsha, the key pattern), a replica's READONLY.
const std::string kCheckScript = "return redis.call('DEL', KEYS[1])";

}  // namespace

absl::StatusOr<std::shared_ptr<RedisStore>> RedisStore::Create(const RedisOptions& o) {
  if (absl::Status s = internal::ValidateRedisOptions(o, kName); !s.ok()) return s;
  return std::shared_ptr<RedisStore>(new RedisStore(o));
}

RedisStore::RedisStore(const RedisOptions& options)
    : options_(options), thread_(std::make_unique<internal::RedisConnectionThread>(options)) {}

RedisStore::~RedisStore() {
  // The last reference can go on the connection thread itself, from a callback (a cache whose
  // owner let go while its read was being answered): that thread cannot join itself, so another
  // one stops it, once it has returned from the callback.
  if (thread_->OnConnectionThread()) {
    std::thread([thread = std::move(thread_)]() mutable { thread.reset(); }).detach();
  }
}

RedisStats RedisStore::stats() const { return thread_->stats(); }

absl::Status RedisStore::Check(absl::Duration timeout) {
  auto reply = internal::RedisScripts::Run(
      *this, kCheckScript, {absl::StrCat(options_.key_prefix, ":{sluice-check}")}, {},
      /*want_fd=*/false);
  absl::StatusOr<std::vector<int64_t>> result = reply->Wait(timeout);
  return result.ok() ? absl::OkStatus() : result.status();
}

namespace internal {

void RedisScripts::NoteError(RedisStore& store, const absl::Status& status) {
  store.thread_->NoteConfigError(status);
}

std::string RedisScripts::ScriptNow(const RedisStore& store) {
  const Clock* clock = store.options_.script_clock_for_testing;
  if (clock == nullptr) return "";
  return absl::StrCat(std::max<int64_t>(0, clock->NowNanos()) / 1000);
}

std::shared_ptr<PendingReply> RedisScripts::Run(RedisStore& store, ScriptCall call, bool want_fd,
                                                Delivery delivery) {
  auto reply = std::make_shared<PendingReply>();
  if (want_fd) reply->fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  store.thread_->Submit({std::move(call), reply, std::move(delivery)});
  return reply;
}

std::shared_ptr<PendingReply> RedisScripts::Run(RedisStore& store, const std::string& script,
                                                std::vector<std::string> keys,
                                                std::vector<std::string> args, bool want_fd) {
  return Run(store, {&script, std::move(keys), std::move(args)}, want_fd, {});
}

void RedisScripts::RunThen(RedisStore& store, const std::string& script,
                           std::vector<std::string> keys, std::vector<std::string> args,
                           std::function<void(PendingReply&)> done) {
  auto reply = std::make_shared<PendingReply>();
  reply->then_ = std::move(done);
  store.thread_->Submit({{&script, std::move(keys), std::move(args)}, std::move(reply), {}});
}

}  // namespace internal

}  // namespace v1
}  // namespace sluice
