// internal::PendingReply: a Redis command under way (see stores/redis_scripts.h).
#include <unistd.h>

#include <condition_variable>
#include <mutex>

#include "sluice/internal/mutex.h"
#include <utility>

#include "stores/redis_scripts.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct PendingReply::State {
  Mutex mu;
  std::condition_variable_any cv;
  bool done = false;
  bool abandoned = false;
  absl::StatusOr<std::vector<int64_t>> result = absl::UnknownError("pending");
  std::vector<std::string> strings;
};

PendingReply::PendingReply() : state_(std::make_unique<State>()) {}

PendingReply::~PendingReply() {
  if (fd_ >= 0) close(fd_);
}

bool PendingReply::Complete(absl::StatusOr<std::vector<int64_t>> result,
                            std::vector<std::string> strings) {
  bool abandoned;
  {
    MutexLock lock(&state_->mu);
    state_->result = std::move(result);
    state_->strings = std::move(strings);
    state_->done = true;
    abandoned = state_->abandoned;
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
  return abandoned;
}

bool PendingReply::Abandon() {
  MutexLock lock(&state_->mu);
  if (state_->done) return false;
  state_->abandoned = true;
  return true;
}

const std::vector<std::string>& PendingReply::strings() const {
  MutexLock lock(&state_->mu);
  return state_->strings;  // written once, before done
}

bool PendingReply::done() const {
  MutexLock lock(&state_->mu);
  return state_->done;
}

absl::StatusOr<std::vector<int64_t>> PendingReply::Wait(absl::Duration timeout) {
  std::unique_lock<Mutex> lock(state_->mu);
  if (!state_->cv.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                           [&] { return state_->done; })) {
    state_->abandoned = true;  // a reply that comes now is undone, not lost
    return absl::DeadlineExceededError("redis: no reply in time");
  }
  if (!state_->result.ok()) {
    // A status of its own: sharing the stored one's reference count with the caller's thread
    // would have Debian's uninstrumented Abseil release it where ThreadSanitizer cannot see.
    return absl::Status(state_->result.status().code(), state_->result.status().message());
  }
  return state_->result;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
