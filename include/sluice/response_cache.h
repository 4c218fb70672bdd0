// -----------------------------------------------------------------------------
// File: sluice/response_cache.h
// -----------------------------------------------------------------------------
//
// `ResponseCache` keeps LLM answers in process memory, filed under their canonical request keys
// (sluice/cache_key.h), within a byte budget.
//
// Storage: `shards` independent shards, each with its own mutex (no global lock). A shard is a
// W-TinyLFU cache (Einziger, Friedman and Manes, "TinyLFU", 2017): new entries enter an LRU
// *window*; what the window pushes out enters the main space, a segmented LRU (probation, then
// protected once hit), only if a frequency sketch (4-bit counters, halved as they age) says it
// is asked for more often than each entry it would evict. One-off requests (a scan) therefore
// cannot flush the answers asked for again and again, and a loop larger than the cache keeps
// most of its answers instead of none.
//
// The window's share adapts. A small window wins where popularity is lasting (Zipf traffic); a
// large one where new questions are asked again soon and then forgotten (trending questions,
// retries, a working set that moves on), where a fixed 1% window falls far below a plain LRU.
// The cache replays a sample of its keys through miniature caches of the candidate window shares
// (1%, 5%, 20%, 50%, 100%: the last is an LRU) and every shard takes the share whose miniature
// earned the most hits lately (Waldspurger et al., "Cache Modeling and Optimization using
// Miniature Simulations", ATC 2017). Measured beside plain LRU and Caffeine 3.3.1 on ten trace
// shapes: BENCHMARKS.md, "Response cache beside Caffeine" (scripts/bench-cache-peers.sh). The
// miniatures cost a sampled request (1 in max_bytes / 1 MiB, every request below 2 MiB) a pass
// through five key-only caches, and hold about 100 bytes per entry they model.
//
// Every entry counts its key's canonical bytes, its value's bytes and a fixed overhead against
// `max_bytes`, split evenly across the shards: memory never exceeds the budget. A hit compares
// the canonical bytes, not only the 128-bit digest, so a collision can never serve the wrong
// answer. Entries expire after their TTL (checked on lookup).
//
// Example:
//
//   auto cache = sluice::ResponseCache::Create({.max_bytes = 256 << 20}).value();
//   sluice::CacheKey key = sluice::MakeCacheKey(body, tenant).value();
//   if (auto hit = cache->Get(key)) return Replay(*hit);
//   Response r = CallModel(body);
//   if (r.ok()) cache->Put(key, {.body = r.body});
//
// Single flight: `Fetch` merges identical concurrent misses into one upstream call (see
// sluice/single_flight.h).
//
// Redis tier (optional, `Options::redis`): behind the in-process tier, shared by every process
// and host that uses the same Redis and `redis_name`. Put (and a leader's Complete) writes the
// answer there too, with the same TTL; Erase removes it there too. A `Fetch` that misses in
// process asks Redis before anyone calls upstream: the caller gets a `Wait` that is ready when
// Redis has answered, and its Result() is the answer (a Redis hit, now also stored in process for
// the time Redis still keeps it) or the lead (a Redis miss). Identical misses meanwhile wait on
// the same read. Redis is read through the store's connection thread, never on the caller's: a
// slow or dead Redis costs at most the store's `command_timeout`, then (breaker open) nothing,
// and is counted in `redis_errors`; the in-process tier keeps working and nothing fails.
// `Get` stays in process (it cannot wait for Redis). Records carry their canonical bytes: a
// foreign or colliding record reads as a miss.
//
// Thread-safety: every method may be called from any thread at once; each takes one shard's
// mutex for a few hundred nanoseconds. Values are immutable and shared: a hit stays valid after
// the entry is evicted.
//
// fork(): a child keeps the parent's entries (copy-on-write) and forgets its fetches in flight,
// whose leaders are the parent's callers: the child's callers lead their own. Waits copied into
// the child (a gevent greenlet waiting at the fork) never end; fork before serving, as Gunicorn's
// preload does.

#ifndef SLUICE_RESPONSE_CACHE_H_
#define SLUICE_RESPONSE_CACHE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/bytes.h"
#include "sluice/cache_key.h"
#include "sluice/clock.h"
#include "sluice/redis_store.h"
#include "sluice/single_flight.h"

namespace sluice {
inline namespace v1 {

namespace internal {
class CacheShard;
class CacheTier;
class ForkHooks;
}  // namespace internal

// A stored answer: the whole body, or the SSE events of a streamed answer in order.
struct CachedResponse {
  Bytes body;  // a string, or a view its owner keeps alive (sluice/bytes.h)
  std::vector<std::string> chunks;
  bool streamed = false;
  // The bytes it holds (body and chunks).
  int64_t bytes() const;
  // Whether it calls tools: a "tool_calls" member or a "tool_calls" finish reason anywhere.
  bool CallsTools() const;
};

// sluice::ResponseCache
class ResponseCache {
 public:
  // The longest an entry lives: longer TTLs (default_ttl, Put's, a Lead's) are cut to it, in
  // process and in Redis (whose expiry arithmetic would overflow on "forever").
  static constexpr absl::Duration kMaxTtl = absl::Hours(24 * 365 * 100);

  struct Options {
    // The whole cache's memory: keys, values and per-entry overhead. Default 256 MiB. >= 64 KiB.
    int64_t max_bytes = int64_t{256} << 20;
    // Independent shards (a power of two). Default 16. In [1, 1024].
    int shards = 16;
    // How long an entry lives unless Put says otherwise. Default 1 hour. > 0; at most kMaxTtl
    // (longer is cut to it).
    absl::Duration default_ttl = absl::Hours(1);
    // The protected segment's share of a shard's bytes. Default 0.8. In [0, 1).
    double protected_share = 0.8;
    // The adaptive window and the TinyLFU filter in front of the segmented LRU. Default on; off
    // gives a plain segmented LRU (no window, nothing turned away).
    bool admission = true;
    // Store answers that call tools (a "tool_calls" member, or finish_reason "tool_calls")?
    // Default true. A tool call's answer is only right while the tools' world stays the same.
    bool store_tool_calls = true;
    // The Redis tier's store; null (the default): in process only.
    std::shared_ptr<RedisStore> redis;
    // Names this cache's entries in Redis: `<key_prefix>:<redis_name>:<digest>`. Caches that
    // share a name share answers. Default "cache". 1 to 100 characters of [A-Za-z0-9._-].
    std::string redis_name = "cache";
  };

  struct Stats {
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t inserts = 0;
    // Entries the admission filter turned away as they left the window (each would have evicted
    // a more popular one), and answers larger than a shard's budget.
    int64_t rejected = 0;
    int64_t evictions = 0;
    int64_t expirations = 0;
    // Digest matches whose canonical bytes differed (served as misses).
    int64_t collisions = 0;
    // Fetch: misses that waited for another caller's upstream call instead of making their own,
    // and leaders that gave up and passed the lead to a follower.
    int64_t merged_waits = 0;
    int64_t leader_failovers = 0;
    // Answers not stored because they call tools (Options::store_tool_calls false).
    int64_t skipped_tool_calls = 0;
    // The Redis tier: reads that found the answer, reads that did not, answers written, and
    // commands that failed (Redis down, slow, or an unreadable record).
    int64_t redis_hits = 0;
    int64_t redis_misses = 0;
    int64_t redis_writes = 0;
    int64_t redis_errors = 0;
    int64_t entries = 0;
    int64_t bytes = 0;
  };

  // Errors: InvalidArgument naming the field.
  static absl::StatusOr<std::unique_ptr<ResponseCache>> Create(const Options& options,
                                                               const Clock* clock = Clock::Steady());
  ~ResponseCache();
  ResponseCache(const ResponseCache&) = delete;
  ResponseCache& operator=(const ResponseCache&) = delete;

  // The stored answer, or nullptr (a miss, an expired entry, or a digest collision).
  std::shared_ptr<const CachedResponse> Get(const CacheKey& key);
  // Stores an answer for `ttl` (zero or negative: default_ttl; at most kMaxTtl). Returns false
  // when it was not stored: larger than a shard's budget, turned away by the admission filter at
  // once (an answer larger than the window, less asked for than what it would evict), or a tool
  // call that Options::store_tool_calls keeps out. Replaces an existing entry. A stored answer
  // may still be turned away later, when the window pushes it out (Stats::rejected).
  bool Put(const CacheKey& key, CachedResponse response, absl::Duration ttl = absl::ZeroDuration());
  // The names before sluice 0.2 (one verb per meaning: docs/architecture.md, "Verbs").
  [[deprecated("use Get")]] std::shared_ptr<const CachedResponse> Lookup(const CacheKey& key) {
    return Get(key);
  }
  [[deprecated("use Put")]] bool Insert(const CacheKey& key, CachedResponse response,
                                        absl::Duration ttl = absl::ZeroDuration()) {
    return Put(key, std::move(response), ttl);
  }
  // Removes the key's entry (in Redis too); false if there was none in process.
  bool Erase(const CacheKey& key);
  // A lookup that merges identical concurrent misses (sluice/single_flight.h): the stored
  // answer, or the lead (call upstream, then Complete), or a wait for the caller that leads (or,
  // with a Redis tier, for Redis's answer). Never blocks.
  FetchResult Fetch(const CacheKey& key);

  Stats stats() const;
  const Options& options() const { return options_; }

  // Bytes counted per entry on top of its key's and answer's bytes, an upper bound of what this
  // build allocates for one: the list node (128 with its malloc header), the map slot at 7/8
  // load (29), the shared CachedResponse and its control block (128), the canonical string's
  // malloc header (16), and a Python-owned body's owner block and `bytes` header (81).
  static constexpr int64_t kEntryOverhead = 384;

 private:
  ResponseCache(const Options& options, const Clock* clock);
  internal::CacheShard& ShardOf(const CacheKey& key) const;

  const Options options_;
  const Clock* const clock_;
  std::shared_ptr<internal::CacheTier> tier_;  // null without Options::redis
  std::vector<std::shared_ptr<internal::CacheShard>> shards_;  // flights hold weak references
  std::unique_ptr<internal::ForkHooks> fork_hooks_;  // registered last, unregistered first
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_RESPONSE_CACHE_H_
