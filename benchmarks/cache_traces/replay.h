// Replays a trace (trace.h) through sluice's ResponseCache and a plain LRU at the same byte
// budgets, every cache charged the trace's bytes per entry. Per request: a lookup; on a miss,
// a Put (an insert).
#ifndef SLUICE_BENCHMARKS_CACHE_TRACES_REPLAY_H_
#define SLUICE_BENCHMARKS_CACHE_TRACES_REPLAY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trace.h"

namespace cache_traces {

// The columns, in the report's order:
//   lru            a plain byte-bounded LRU
//   sluice         ResponseCache::Create({.max_bytes = budget}): every other option at its default
//   sluice-1shard  the same with .shards = 1
//   sluice-slru    the same as `sluice` with .admission = false (the segmented LRU alone)
const std::vector<std::string>& Columns();

struct Result {
  std::string column;
  int64_t budget = 0;
  int64_t hits = 0;
  int64_t requests = 0;
  int64_t bytes = 0;  // the bytes the cache holds at the end (its own count)
};

// One Result per budget and column (budget-major). Errors: a budget sluice refuses (named by
// ResponseCache::Create), or a request charged less than its key and the entry overhead.
absl::StatusOr<std::vector<Result>> Replay(const std::vector<Request>& trace,
                                           const std::vector<int64_t>& budgets);

}  // namespace cache_traces

#endif  // SLUICE_BENCHMARKS_CACHE_TRACES_REPLAY_H_
