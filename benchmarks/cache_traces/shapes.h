// The trace shapes: seeded, deterministic request streams of question ids (trace.h), each
// question charged ChargedBytes(id).
//
// Several shapes follow the workloads of the W-TinyLFU paper (Einziger, Friedman, Manes,
// "TinyLFU: A Highly Efficient Cache Admission Policy", ACM ToS 2017) and the synthetic
// generators of Caffeine's simulator (its Zipf, scan and loop patterns): the skewed Zipf
// streams, Zipf polluted by one-off scans, and the loop that defeats LRU. `shifting`, `recency`
// and `mix-change` are the recency-heavy streams of issue 19, on which admission without a window
// turns new questions away; `trending` and `zipf-0.6` are there so that no one tunes on the
// listed shapes alone.
#ifndef SLUICE_BENCHMARKS_CACHE_TRACES_SHAPES_H_
#define SLUICE_BENCHMARKS_CACHE_TRACES_SHAPES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trace.h"

namespace cache_traces {

struct ShapeInfo {
  const char* name;
  const char* description;
};

// Every shape, in the report's order.
const std::vector<ShapeInfo>& Shapes();

// `requests` requests of the named shape (one of Shapes()), drawn with `seed`: the same trace for
// the same seed (std::mt19937_64 is the same everywhere; the distributions are the standard
// library's, so another standard library may draw another trace).
// Errors: InvalidArgument naming an unknown shape or a non-positive request count.
absl::StatusOr<std::vector<Request>> Generate(const std::string& shape, uint64_t seed,
                                              int64_t requests);

}  // namespace cache_traces

#endif  // SLUICE_BENCHMARKS_CACHE_TRACES_SHAPES_H_
