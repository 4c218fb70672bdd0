// Cache traces: the request streams that scripts/bench-cache-peers.sh replays through sluice's
// ResponseCache, a plain LRU and Caffeine, every replayer charging each entry the same bytes.
//
// File format (text, one request a line, in request order):
//
//   # sluice cache trace v1 shape=<name> seed=<n> requests=<n>   <- lines starting with '#' are comments
//   <question id> <charged bytes>
//
// A question id is a decimal integer >= 0; the same id is the same question, and it is charged
// the same bytes every time: its canonical key's bytes (QuestionBody(id) under the namespace
// kTraceNamespace, through sluice::MakeCacheKey) + its answer (500-4,000 bytes, a hash of the
// id) + ResponseCache::kEntryOverhead. A replayer that stores an answer of
// `charged - canonical - kEntryOverhead` bytes under that key is charged exactly `charged`.
#ifndef SLUICE_BENCHMARKS_CACHE_TRACES_TRACE_H_
#define SLUICE_BENCHMARKS_CACHE_TRACES_TRACE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sluice/cache_key.h"

namespace cache_traces {

struct Request {
  int64_t id = 0;
  int64_t charge = 0;
  friend bool operator==(const Request& a, const Request& b) {
    return a.id == b.id && a.charge == b.charge;
  }
};

inline constexpr char kTraceNamespace[] = "app";
inline constexpr int64_t kMinAnswerBytes = 500;
inline constexpr int64_t kMaxAnswerBytes = 4000;

// The request body of question `id`: a one-message chat completion.
std::string QuestionBody(int64_t id);
// Its cache key (MakeCacheKey of QuestionBody under kTraceNamespace).
sluice::CacheKey QuestionKey(int64_t id);
// Its answer's length: uniform in [kMinAnswerBytes, kMaxAnswerBytes], fixed by the id.
int64_t AnswerBytes(int64_t id);
// The bytes every replayer charges for question `id`.
int64_t ChargedBytes(int64_t id);

// Writes `requests` to `path` with `header` as its comment line. Errors name the path.
absl::Status WriteTrace(const std::string& path, const std::string& header,
                        const std::vector<Request>& requests);
// Reads a trace file. Errors name the path and line.
absl::StatusOr<std::vector<Request>> ReadTrace(const std::string& path);

}  // namespace cache_traces

#endif  // SLUICE_BENCHMARKS_CACHE_TRACES_TRACE_H_
