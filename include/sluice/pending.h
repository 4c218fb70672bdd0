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
// Errors: a reply Redis could not decide because of a configuration error (a wrong password, a
// replica, ...; see sluice/redis_store.h) is a refusal whose reason `status()` gives after Get().
// When Redis merely cannot be reached, the object's failure mode decides and status() is OK.
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

#include "absl/status/status.h"
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
  // Turns the Redis reply (or the failure to get one) into the result. A reply that Redis could
  // not decide (a configuration error, an impossible reply; see sluice/redis_store.h, "Errors")
  // becomes a refusal, with the error in `*error`.
  using Finisher =
      std::function<T(const absl::StatusOr<std::vector<int64_t>>& reply, absl::Status* error)>;

  // A result decided on the spot (with `error` when the call was refused because of it).
  explicit Pending(T ready, absl::Status error = absl::OkStatus())
      : ready_(std::move(ready)), error_(std::move(error)) {}
  // A result that waits for `reply`, at most `timeout`, then runs `finish`.
  Pending(std::shared_ptr<PendingReply> reply, absl::Duration timeout, Finisher finish)
      : reply_(std::move(reply)), timeout_(timeout), finish_(std::move(finish)) {}

  Pending(Pending&& other) noexcept
      : ready_(std::move(other.ready_)),
        error_(std::move(other.error_)),
        reply_(std::move(other.reply_)),
        timeout_(other.timeout_),
        finish_(std::move(other.finish_)) {
    other.reply_.reset();
  }
  Pending& operator=(Pending&& other) noexcept {
    if (this != &other) {
      Drop();
      ready_ = std::move(other.ready_);
      error_ = std::move(other.error_);
      reply_ = std::move(other.reply_);
      other.reply_.reset();
      timeout_ = other.timeout_;
      finish_ = std::move(other.finish_);
    }
    return *this;
  }
  // A Pending dropped before its result was taken gives back what Redis granted for it (a
  // ConcurrencyLimiter slot), whether the reply is already in or comes later.
  ~Pending() { Drop(); }

  // True once Get() returns without waiting.
  bool done() const { return reply_ == nullptr || reply_->done(); }
  // Readable once done (an eventfd), or -1 when the result was decided on the spot.
  int fd() const { return reply_ == nullptr ? -1 : reply_->fd(); }
  // The result. If the reply is not in yet it waits for it (blocking this thread) at most the
  // store's command and connect timeouts; a reply that never comes is decided by the object's
  // failure mode (and what Redis grants after that is given back). A configuration error gives a
  // refusal, and status() says why. A move-only result (a Permit, a Reservation) is handed over
  // by the first call; later calls return an empty one.
  T Get() {
    if (reply_ != nullptr) {
      ready_.emplace(finish_(reply_->Wait(timeout_), &error_));
      reply_.reset();
      finish_ = nullptr;
    }
    if constexpr (std::is_copy_constructible_v<T>) {
      return *ready_;
    } else {
      return std::move(*ready_);
    }
  }
  // After Get(): OK when Redis decided the result or Redis could not be reached (the object's
  // failure mode decided it); otherwise the configuration error that made it a refusal
  // (PermissionDenied, FailedPrecondition, ResourceExhausted, Internal: see
  // sluice/redis_store.h, "Errors"), which the caller should surface rather than treat as a
  // refusal.
  const absl::Status& status() const { return error_; }

 private:
  void Drop() {
    if (reply_ == nullptr) return;
    if (!reply_->Abandon()) {  // in already: take the result and let it go (a permit releases)
      absl::StatusOr<std::vector<int64_t>> reply = reply_->Wait(absl::ZeroDuration());
      absl::Status ignored;
      if (reply.ok()) (void)finish_(reply, &ignored);
    }
    reply_.reset();
  }

  std::optional<T> ready_;
  absl::Status error_;
  std::shared_ptr<PendingReply> reply_;
  absl::Duration timeout_;
  Finisher finish_;
};

// A decision under way (RateLimiter::Start, LeakyBucket::Start, Reservation::StartSettle, ...).
using PendingDecision = Pending<Decision>;

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_PENDING_H_
