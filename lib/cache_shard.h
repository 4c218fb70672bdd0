// One shard of the ResponseCache: a segmented LRU (probation, protected) within a byte budget,
// behind a TinyLFU admission filter, under one mutex.
#ifndef SLUICE_LIB_CACHE_SHARD_H_
#define SLUICE_LIB_CACHE_SHARD_H_

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "frequency_sketch.h"
#include "sluice/response_cache.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class CacheShard {
 public:
  CacheShard(int64_t capacity_bytes, double protected_share, bool admission);

  std::shared_ptr<const CachedResponse> Lookup(const CacheKey& key, int64_t now);
  bool Insert(const CacheKey& key, std::shared_ptr<const CachedResponse> value, int64_t bytes,
              int64_t expires);
  bool Erase(const CacheKey& key);
  // Adds this shard's counters to `stats`.
  void AddTo(ResponseCache::Stats& stats) const;

 private:
  struct Node {
    std::pair<uint64_t, uint64_t> digest;
    std::string canonical;
    std::shared_ptr<const CachedResponse> value;
    int64_t bytes = 0;
    int64_t expires = 0;
    bool is_protected = false;
  };
  using List = std::list<Node>;

  List& ListOf(const Node& n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return n.is_protected ? protected_ : probation_;
  }
  void Remove(List::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves a probation entry that was hit to protected; protected's oldest fall back to probation.
  void Promote(List::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The entry eviction would take next: probation's oldest, else protected's.
  List::iterator Victim() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t capacity_;
  const int64_t protected_capacity_;
  const bool admission_;
  mutable absl::Mutex mu_;
  FrequencySketch sketch_ ABSL_GUARDED_BY(mu_);
  List probation_ ABSL_GUARDED_BY(mu_);  // front: most recently used
  List protected_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, List::iterator> index_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t protected_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  ResponseCache::Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CACHE_SHARD_H_
