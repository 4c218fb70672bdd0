// Lead, Wait and Waiter (sluice/single_flight.h); the flight bookkeeping is in cache_shard.cc.
#include "sluice/single_flight.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

#include "cache_shard.h"
#include "mutex_lock.h"

namespace sluice {
inline namespace v1 {
namespace internal {

Waiter::Waiter() : fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
Waiter::~Waiter() {
  if (fd >= 0) close(fd);
}

void Waiter::Wake() {
  ready.store(true, std::memory_order_release);
  const uint64_t one = 1;
  if (fd >= 0) (void)!write(fd, &one, sizeof(one));
}

std::deque<std::shared_ptr<Waiter>> Flight::TakeWaiters() {
  std::deque<std::shared_ptr<Waiter>> taken;
  MutexLock lock(&mu);
  taken.swap(waiters);
  return taken;
}

}  // namespace internal

// ---- Lead -------------------------------------------------------------------------------------

Lead::Lead(std::shared_ptr<internal::Flight> flight) : flight_(std::move(flight)) {}
Lead::Lead(Lead&&) noexcept = default;
Lead& Lead::operator=(Lead&& other) noexcept {
  if (this != &other) {
    Abandon();
    flight_ = std::move(other.flight_);
  }
  return *this;
}
Lead::~Lead() { Abandon(); }

bool Lead::Complete(CachedResponse response, absl::Duration ttl, bool store) {
  if (flight_ == nullptr) return false;
  std::shared_ptr<internal::Flight> flight = std::move(flight_);
  auto value = std::make_shared<const CachedResponse>(std::move(response));
  bool stored = false;
  if (std::shared_ptr<internal::CacheShard> shard = flight->shard.lock()) {
    // Store first, then end the flight: a caller that misses in between finds the answer.
    if (store) stored = shard->InsertResponse(flight->key, value, ttl);
    shard->EndFlight(flight);
  }
  for (const auto& w : flight->TakeWaiters()) {
    w->answer = value;
    w->Wake();
  }
  return stored;
}

void Lead::Abandon() {
  if (flight_ == nullptr) return;
  std::shared_ptr<internal::Flight> flight = std::move(flight_);
  if (std::shared_ptr<internal::CacheShard> shard = flight->shard.lock()) {
    shard->PassLead(flight);
    return;
  }
  // The cache is gone: every follower leads for itself.
  const auto waiters = flight->TakeWaiters();
  {
    internal::MutexLock lock(&flight->mu);  // ~Wait reads `promoted` under it
    for (const auto& w : waiters) w->promoted = true;
  }
  for (const auto& w : waiters) w->Wake();
}

// ---- Wait -------------------------------------------------------------------------------------

Wait::Wait(std::shared_ptr<internal::Flight> flight, std::shared_ptr<internal::Waiter> waiter)
    : flight_(std::move(flight)), waiter_(std::move(waiter)) {}
Wait::Wait(Wait&&) noexcept = default;
Wait& Wait::operator=(Wait&&) noexcept = default;

Wait::~Wait() {
  if (waiter_ == nullptr || waiter_->consumed) return;
  bool promoted;
  {
    internal::MutexLock lock(&flight_->mu);
    // Still queued: leave the queue.
    for (auto it = flight_->waiters.begin(); it != flight_->waiters.end(); ++it) {
      if (*it == waiter_) {
        flight_->waiters.erase(it);
        return;
      }
    }
    promoted = waiter_->promoted;
  }
  // Promoted but never took the lead: pass it on, so the others are not left waiting.
  if (promoted) Lead(flight_).Abandon();
}

int Wait::fd() const { return waiter_ == nullptr ? -1 : waiter_->fd; }
bool Wait::ready() const {
  return waiter_ != nullptr && waiter_->ready.load(std::memory_order_acquire);
}

void Wait::Block() const {
  while (!ready()) {
    pollfd p{.fd = fd(), .events = POLLIN, .revents = 0};
    (void)poll(&p, 1, 100);  // wakes on the eventfd; the timeout only re-checks `ready`
  }
}

FetchResult Wait::Result() {
  FetchResult r;
  if (!ready() || waiter_->consumed) return r;
  waiter_->consumed = true;
  if (waiter_->promoted) {
    r.lead.emplace(Lead(flight_));
  } else {
    r.hit = waiter_->answer;
  }
  return r;
}

}  // namespace v1
}  // namespace sluice
