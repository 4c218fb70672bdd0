// -----------------------------------------------------------------------------
// File: sluice/pending.h
// -----------------------------------------------------------------------------
//
// `Pending<T>` is a result under way: what every `Start...` method of a sluice object returns.
// In process and host scope the result is ready at once; in cluster scope it waits for a Redis
// reply, and `fd()` becomes readable when that reply is in, so an event loop (gevent, asyncio,
// epoll) can wait for it without blocking its thread. `Get()` then returns the result.
//
// Example (an epoll server):
//
//   sluice::PendingDecision pending = limiter->Start("tenant-42").value();
//   if (!pending.done()) WatchReadable(pending.fd(), ...);   // resume when readable
//   sluice::Decision d = pending.Get();
//
// Thread-safety: a Pending is a value owned by one thread at a time (it may be moved between
// threads). It must not outlive the object that started it.

#ifndef SLUICE_PENDING_H_
#define SLUICE_PENDING_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/decision.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {

// sluice::Pending
template <typename T>
class Pending {
 public:
  // Turns the Redis reply (or the failure to get one) into the result.
  using Finisher = std::function<T(const absl::StatusOr<std::vector<int64_t>>&)>;

  // A result decided on the spot.
  explicit Pending(T ready) : ready_(std::move(ready)) {}
  // A result that waits for `reply`, at most `timeout`, then runs `finish`.
  Pending(std::shared_ptr<PendingReply> reply, absl::Duration timeout, Finisher finish)
      : reply_(std::move(reply)), timeout_(timeout), finish_(std::move(finish)) {}

  Pending(Pending&&) noexcept = default;
  Pending& operator=(Pending&&) noexcept = default;

  // True once Get() returns without waiting.
  bool done() const { return reply_ == nullptr || reply_->done(); }
  // Readable once done (an eventfd), or -1 when the result was decided on the spot.
  int fd() const { return reply_ == nullptr ? -1 : reply_->fd(); }
  // The result. If the reply is not in yet it waits for it (blocking this thread) at most the
  // store's command and connect timeouts; a reply that never comes is decided by the object's
  // failure mode. A move-only result (a Permit, a Reservation) is handed over by the first call;
  // later calls return an empty one.
  T Get() {
    if (reply_ != nullptr) {
      ready_.emplace(finish_(reply_->Wait(timeout_)));
      reply_.reset();
      finish_ = nullptr;
    }
    if constexpr (std::is_copy_constructible_v<T>) {
      return *ready_;
    } else {
      return std::move(*ready_);
    }
  }

 private:
  std::optional<T> ready_;
  std::shared_ptr<PendingReply> reply_;
  absl::Duration timeout_;
  Finisher finish_;
};

// A decision under way (RateLimiter::Start, LeakyBucket::Start, Reservation::StartSettle, ...).
using PendingDecision = Pending<Decision>;

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_PENDING_H_
