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

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "sluice/decision.h"

namespace sluice {
inline namespace v1 {

namespace internal {
// A result a store is still working on (a Redis reply on its way, and how to read it). Made by
// the library only; callers see it through Pending.
template <typename T>
class PendingSource {
 public:
  virtual ~PendingSource() = default;
  virtual bool done() const = 0;
  virtual int fd() const = 0;
  // Waits (at most the store's timeouts) and turns what came into the result; a configuration
  // error goes to `*error` and the result is a refusal. Called at most once.
  virtual T Finish(absl::Status* error) = 0;
  // The result will never be taken: give back what it was granted, now or when the reply comes.
  virtual void Abandon() = 0;
};
}  // namespace internal

// sluice::Pending
template <typename T>
class Pending {
 public:
  // A result decided on the spot (with `error` when the call was refused because of it).
  explicit Pending(T ready, absl::Status error = absl::OkStatus())
      : ready_(std::move(ready)), error_(std::move(error)) {}
  // A result a store is still working on. Internal: made by sluice's objects.
  explicit Pending(std::unique_ptr<internal::PendingSource<T>> source)
      : source_(std::move(source)) {}

  Pending(Pending&& other) noexcept = default;
  Pending& operator=(Pending&& other) noexcept {
    if (this != &other) {
      Drop();
      ready_ = std::move(other.ready_);
      error_ = std::move(other.error_);
      source_ = std::move(other.source_);
    }
    return *this;
  }
  // A Pending dropped before its result was taken gives back what Redis granted for it (a
  // ConcurrencyLimiter slot), whether the reply is already in or comes later.
  ~Pending() { Drop(); }

  // True once Get() returns without waiting.
  bool done() const { return source_ == nullptr || source_->done(); }
  // Readable once done (an eventfd), or -1 when the result was decided on the spot.
  int fd() const { return source_ == nullptr ? -1 : source_->fd(); }
  // The result. If the reply is not in yet it waits for it (blocking this thread) at most the
  // store's command and connect timeouts; a reply that never comes is decided by the object's
  // failure mode (and what Redis grants after that is given back). A configuration error gives a
  // refusal, and status() says why. A move-only result (a Permit, a Reservation) is handed over
  // by the first call; later calls return an empty one.
  T Get() {
    if (source_ != nullptr) {
      ready_.emplace(source_->Finish(&error_));
      source_.reset();
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
    if (source_ == nullptr) return;
    source_->Abandon();
    source_.reset();
  }

  std::optional<T> ready_;
  absl::Status error_;
  std::unique_ptr<internal::PendingSource<T>> source_;
};

// A decision under way (RateLimiter::Start, LeakyBucket::Start, Reservation::StartSettle, ...).
using PendingDecision = Pending<Decision>;

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_PENDING_H_
