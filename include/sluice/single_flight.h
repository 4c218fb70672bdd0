// -----------------------------------------------------------------------------
// File: sluice/single_flight.h
// -----------------------------------------------------------------------------
//
// `ResponseCache::Fetch` (sluice/response_cache.h) merges identical concurrent misses: the first
// caller to miss a key becomes its *leader* and calls upstream; every other caller that misses
// the same key while the leader is out becomes a *follower* and waits for the leader's answer
// instead of calling upstream too. N identical concurrent misses cost one upstream call.
//
//   FetchResult r = cache->Fetch(key);
//   if (r.hit)      -> the stored answer
//   if (r.lead)     -> call upstream, then r.lead->Complete(answer) (or let it go: abandoned)
//   if (r.wait)     -> wait until r.wait->fd() is readable (or Block()), then r.wait->Result():
//                      the leader's answer, or the lead itself when the leader gave up
//
// If a leader gives up (its `Lead` is destroyed without Complete: the upstream call failed), the
// longest-waiting follower is promoted to leader and the others keep waiting. Errors are never
// fanned out: each follower either gets an answer or a turn to try.
//
// A follower waits on an eventfd, so an event loop (gevent, asyncio, epoll) waits without
// blocking its thread. Streamed answers reach followers whole, once the leader has stored them
// (live tailing of a leader's stream is not built yet).
//
// Thread-safety: Fetch may be called from any thread at once. A Lead and a Wait are values owned
// by one thread at a time; they may outlive the cache.

#ifndef SLUICE_SINGLE_FLIGHT_H_
#define SLUICE_SINGLE_FLIGHT_H_

#include <memory>
#include <optional>

#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {

struct CachedResponse;
struct FetchResult;

namespace internal {
struct Flight;
struct Waiter;
class CacheShard;
}  // namespace internal

// The duty to fetch a key's answer for everyone waiting on it.
class Lead {
 public:
  Lead(Lead&&) noexcept;
  Lead& operator=(Lead&&) noexcept;
  Lead(const Lead&) = delete;
  Lead& operator=(const Lead&) = delete;
  // Gives up, if neither Complete nor Abandon was called: the next follower leads.
  ~Lead();

  // Hands `response` to every follower and, unless `store` is false, stores it for `ttl` (zero:
  // the cache's default). Returns whether it was stored.
  bool Complete(CachedResponse response, absl::Duration ttl = absl::ZeroDuration(),
                bool store = true);
  // Gives up: the longest-waiting follower becomes the leader.
  void Abandon();

 private:
  friend class internal::CacheShard;
  friend class Wait;
  explicit Lead(std::shared_ptr<internal::Flight> flight);
  std::shared_ptr<internal::Flight> flight_;
};

// A follower's wait for the leader.
class Wait {
 public:
  Wait(Wait&&) noexcept;
  Wait& operator=(Wait&&) noexcept;
  Wait(const Wait&) = delete;
  Wait& operator=(const Wait&) = delete;
  ~Wait();

  // Readable once Result() is ready (an eventfd).
  int fd() const;
  bool ready() const;
  // Blocks this thread until ready (for threads; event loops wait on fd()).
  void Block() const;
  // The leader's answer (FetchResult::hit), or the lead (FetchResult::lead) when the leader gave
  // up and this follower is next. REQUIRES: ready(); call once.
  FetchResult Result();

 private:
  friend class internal::CacheShard;
  Wait(std::shared_ptr<internal::Flight> flight, std::shared_ptr<internal::Waiter> waiter);
  std::shared_ptr<internal::Flight> flight_;
  std::shared_ptr<internal::Waiter> waiter_;
};

// What ResponseCache::Fetch found: exactly one of the three is set.
struct FetchResult {
  std::shared_ptr<const CachedResponse> hit;
  std::optional<Lead> lead;
  std::optional<Wait> wait;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_SINGLE_FLIGHT_H_
