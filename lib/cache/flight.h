// Internal: one key's fetch in progress (a Flight: its leader, the followers waiting for it and
// the chunks streamed so far) and a follower's slot in it (a Waiter). The shard keeps the flights
// (cache_shard.cc: JoinOrStartFlight, EndFlight); Lead and Wait (sluice/single_flight.h,
// single_flight.cc) are their public handles.
#ifndef SLUICE_LIB_CACHE_FLIGHT_H_
#define SLUICE_LIB_CACHE_FLIGHT_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "sluice/cache_key.h"
#include "sluice/internal/mutex.h"
#include "sluice/response_cache.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class CacheShard;

// A follower's slot: an eventfd, and what it is woken for.
struct Waiter {
  Waiter();
  ~Waiter();
  // Result() is ready: signals the eventfd for good.
  void Wake();
  // A chunk arrived: signals the eventfd until the follower takes it.
  void Nudge() const;
  // Empties the eventfd (before taking chunks, so a later chunk signals again).
  void Drain() const;
  int fd = -1;
  std::atomic<bool> ready{false};
  std::shared_ptr<const CachedResponse> answer;  // set before ready, unless promoted or broken
  bool promoted = false;                          // set before ready: it leads now
  bool broken = false;  // set before ready: the stream it was tailing broke off
  bool consumed = false;                          // Result() was called
  size_t taken = 0;     // live chunks taken (guarded by the flight's mu)
  bool tailing = false;  // it called TakeChunks: wake it at each chunk (the flight's mu)
};

// One key's fetch in progress: its leader, the followers waiting for it, and the chunks the
// leader streamed so far.
struct Flight {
  std::weak_ptr<CacheShard> shard;  // whose flight it is
  CacheKey key;
  Mutex mu;
  std::deque<std::shared_ptr<Waiter>> waiters ABSL_GUARDED_BY(mu);
  std::vector<std::string> chunks ABSL_GUARDED_BY(mu);

  // Hands every waiter over (the flight is ending): they are woken by the caller.
  std::deque<std::shared_ptr<Waiter>> TakeWaiters();
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CACHE_FLIGHT_H_
