// Lead and Wait (sluice/single_flight.h); the flight bookkeeping is in cache_shard.cc.
#include "sluice/single_flight.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

#include "cache/cache_shard.h"
#include "sluice/internal/mutex.h"

namespace sluice {
inline namespace v1 {

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
  return Finish(std::make_shared<const CachedResponse>(std::move(response)), ttl, store,
                /*write_through=*/true);
}

void Lead::Append(std::string chunk) {
  if (flight_ == nullptr) return;
  internal::MutexLock lock(&flight_->mu);
  flight_->chunks.push_back(std::move(chunk));
  for (const auto& w : flight_->waiters) {
    if (w->tailing) w->Nudge();  // the others wait for the whole answer only
  }
}

bool Lead::CompleteStream(absl::Duration ttl, bool store) {
  if (flight_ == nullptr) return false;
  CachedResponse response{.body = {}, .chunks = {}, .streamed = true};
  {
    internal::MutexLock lock(&flight_->mu);
    response.chunks = flight_->chunks;  // copied: followers may still be taking them
  }
  return Complete(std::move(response), ttl, store);
}

bool Lead::Finish(std::shared_ptr<const CachedResponse> value, absl::Duration ttl, bool store,
                  bool write_through) {
  if (flight_ == nullptr) return false;
  std::shared_ptr<internal::Flight> flight = std::move(flight_);
  bool stored = false;
  if (std::shared_ptr<internal::CacheShard> shard = flight->shard.lock()) {
    // Store first, then end the flight: a caller that misses in between finds the answer.
    if (store) stored = shard->InsertResponse(flight->key, value, ttl, write_through);
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
    if (shard->PassLead(flight)) shard->CountFailover();
    return;
  }
  // The cache is gone: every follower leads for itself (or, if it tailed the stream, is broken).
  const auto waiters = flight->TakeWaiters();
  {
    internal::MutexLock lock(&flight->mu);  // ~Wait reads `promoted` under it
    for (const auto& w : waiters) (w->taken > 0 ? w->broken : w->promoted) = true;
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
  } else if (waiter_->broken) {
    r.broken = true;
  } else {
    r.hit = waiter_->answer;
  }
  return r;
}

std::vector<std::string> Wait::TakeChunks() {
  std::vector<std::string> out;
  if (waiter_ == nullptr) return out;
  waiter_->Drain();
  internal::MutexLock lock(&flight_->mu);
  waiter_->tailing = true;
  const std::vector<std::string>& chunks = flight_->chunks;
  // A promoted or finished waiter has left the queue: the log may belong to the next leader.
  if (waiter_->ready.load(std::memory_order_acquire) && waiter_->answer == nullptr) return out;
  if (waiter_->taken < chunks.size()) {
    out.assign(chunks.begin() + static_cast<std::ptrdiff_t>(waiter_->taken), chunks.end());
    waiter_->taken = chunks.size();
  }
  return out;
}

size_t Wait::chunks_taken() const {
  if (waiter_ == nullptr) return 0;
  internal::MutexLock lock(&flight_->mu);
  return waiter_->taken;
}

}  // namespace v1
}  // namespace sluice
