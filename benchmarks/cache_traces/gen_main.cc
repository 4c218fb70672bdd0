// Writes one cache trace (trace.h describes the file; shapes.h the shapes).
//
//   cache_trace_gen SHAPE SEED REQUESTS OUT_FILE
//   cache_trace_gen --list          the shapes, one a line: <name> <description>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "shapes.h"
#include "trace.h"

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--list") {
    for (const cache_traces::ShapeInfo& s : cache_traces::Shapes()) {
      std::printf("%s %s\n", s.name, s.description);
    }
    return 0;
  }
  uint64_t seed = 0;
  int64_t requests = 0;
  if (argc != 5 || !absl::SimpleAtoi(argv[2], &seed) || !absl::SimpleAtoi(argv[3], &requests)) {
    std::fprintf(stderr, "usage: cache_trace_gen SHAPE SEED REQUESTS OUT_FILE | --list\n");
    return 2;
  }
  auto trace = cache_traces::Generate(argv[1], seed, requests);
  if (!trace.ok()) {
    std::fprintf(stderr, "cache_trace_gen: %s\n", std::string(trace.status().message()).c_str());
    return 2;
  }
  const absl::Status written = cache_traces::WriteTrace(
      argv[4], absl::StrCat("shape=", argv[1], " seed=", seed), *trace);
  if (!written.ok()) {
    std::fprintf(stderr, "cache_trace_gen: %s\n", std::string(written.message()).c_str());
    return 1;
  }
  return 0;
}
