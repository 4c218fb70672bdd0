// Replays a cache trace through sluice's ResponseCache and a plain LRU (replay.h).
//
//   cache_trace_replay TRACE BUDGET_BYTES...
//
// Prints one line per budget and column: `<column> <budget> <hits> <requests>`.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "replay.h"
#include "trace.h"

int main(int argc, char** argv) {
  std::vector<int64_t> budgets;
  for (int i = 2; i < argc; ++i) {
    int64_t budget = 0;
    if (!absl::SimpleAtoi(argv[i], &budget)) {
      std::fprintf(stderr, "cache_trace_replay: budget must be a number of bytes, got \"%s\"\n", argv[i]);
      return 2;
    }
    budgets.push_back(budget);
  }
  if (argc < 3) {
    std::fprintf(stderr, "usage: cache_trace_replay TRACE BUDGET_BYTES...\n");
    return 2;
  }
  auto trace = cache_traces::ReadTrace(argv[1]);
  if (!trace.ok()) {
    std::fprintf(stderr, "cache_trace_replay: %s\n", std::string(trace.status().message()).c_str());
    return 1;
  }
  auto results = cache_traces::Replay(*trace, budgets);
  if (!results.ok()) {
    std::fprintf(stderr, "cache_trace_replay: %s\n", std::string(results.status().message()).c_str());
    return 1;
  }
  for (const cache_traces::Result& r : *results) {
    std::printf("%s %lld %lld %lld\n", r.column.c_str(), static_cast<long long>(r.budget),
                static_cast<long long>(r.hits), static_cast<long long>(r.requests));
  }
  return 0;
}
