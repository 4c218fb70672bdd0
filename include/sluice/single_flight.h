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
// blocking its thread.
//
// Streams are tailed live: a leader that relays a streamed answer calls `Append` with each SSE
// chunk as it passes it on, then `CompleteStream`. A follower that tails (it has called
// `TakeChunks` once) sees its fd become readable at each chunk, and `TakeChunks` gives it the
// chunks it has not had yet, so every client sees the answer arrive as fast as the leader's
// does; one that joins mid-stream first gets every chunk so far. A follower that never calls
// TakeChunks is woken only when Result() is ready. If a streaming leader gives up, the followers
// that already took chunks have sent part of an answer that no other call would continue: their
// Result() is `broken`; the followers that took none keep waiting for the next leader, from its
// first chunk.
//
//   // leader                                  // follower
//   for (chunk : upstream) {                   while (true) {
//     send(chunk);                               wait until w.fd() is readable;
//     r.lead->Append(chunk);                     for (c : w.TakeChunks()) send(c);
//   }                                            if (w.ready()) break;
//   r.lead->CompleteStream();                  }
//                                              FetchResult done = w.Result();
//                                              // hit: send its chunks from w.chunks_taken() on
//
// Thread-safety: Fetch may be called from any thread at once. A Lead and a Wait are values owned
// by one thread at a time; they may outlive the cache.

#ifndef SLUICE_SINGLE_FLIGHT_H_
#define SLUICE_SINGLE_FLIGHT_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

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
  // REQUIRES: no Append, or `response` is the appended chunks (use CompleteStream).
  bool Complete(CachedResponse response, absl::Duration ttl = absl::ZeroDuration(),
                bool store = true);
  // Streams one SSE chunk to the followers now. Chunks are kept in order.
  void Append(std::string chunk);
  // Complete with the appended chunks as the (streamed) answer. Pass `store` false for a stream
  // that did not end well: the followers still get what there was; nothing is stored.
  bool CompleteStream(absl::Duration ttl = absl::ZeroDuration(), bool store = true);
  // Gives up: the longest-waiting follower becomes the leader.
  void Abandon();

 private:
  friend class internal::CacheShard;
  friend class Wait;
  explicit Lead(std::shared_ptr<internal::Flight> flight);
  // Complete's work; `write_through` false stores in process only (an answer read from Redis).
  bool Finish(std::shared_ptr<const CachedResponse> value, absl::Duration ttl, bool store,
              bool write_through);
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

  // Readable once Result() is ready, and for a tailing follower at each chunk (an eventfd).
  int fd() const;
  bool ready() const;
  // Blocks this thread until ready (for threads; event loops wait on fd()).
  void Block() const;
  // The leader's answer (FetchResult::hit), or the lead (FetchResult::lead) when the leader gave
  // up and this follower is next, or FetchResult::broken. REQUIRES: ready(); call once.
  FetchResult Result();
  // The chunks the leader streamed that this follower has not taken yet (see above). Empties
  // the fd's signal first, so a chunk appended later makes it readable again.
  std::vector<std::string> TakeChunks();
  // How many chunks TakeChunks has given out: a hit's chunks from here on are still to send.
  size_t chunks_taken() const;

 private:
  friend class internal::CacheShard;
  Wait(std::shared_ptr<internal::Flight> flight, std::shared_ptr<internal::Waiter> waiter);
  std::shared_ptr<internal::Flight> flight_;
  std::shared_ptr<internal::Waiter> waiter_;
};

// What ResponseCache::Fetch (or Wait::Result) found: exactly one of these is set.
struct FetchResult {
  std::shared_ptr<const CachedResponse> hit;
  std::optional<Lead> lead;
  std::optional<Wait> wait;
  // Wait::Result only: the stream this follower was tailing broke off (its leader gave up).
  bool broken = false;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_SINGLE_FLIGHT_H_
