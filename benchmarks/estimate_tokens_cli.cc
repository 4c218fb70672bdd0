// Prints sluice::EstimatePromptTokens (or EstimateTextTokens with --text) for each record read
// from stdin, one number per line; benchmarks/python/bench_token_estimate.py compares them with a
// real tokenizer. A record is a decimal byte length, a newline, then that many bytes (so bodies
// may hold newlines and any byte).
//   Usage: estimate_tokens_cli [--text] [--cjk-chars-per-token X] < records
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "sluice/usage.h"

int main(int argc, char** argv) {
  bool text = false;
  sluice::EstimateOptions options;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--text") == 0) {
      text = true;
    } else if (std::strcmp(argv[i], "--cjk-chars-per-token") == 0 && i + 1 < argc) {
      options.cjk_chars_per_token = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--text] [--cjk-chars-per-token X] < records\n", argv[0]);
      return 2;
    }
  }
  if (!(options.cjk_chars_per_token > 0)) {
    std::fprintf(stderr, "estimate_tokens_cli: --cjk-chars-per-token must be > 0\n");
    return 2;
  }
  std::string length_line;
  while (std::getline(std::cin, length_line)) {
    const size_t length = std::strtoull(length_line.c_str(), nullptr, 10);
    std::string record(length, '\0');
    if (!std::cin.read(record.data(), static_cast<std::streamsize>(length))) {
      std::fprintf(stderr, "estimate_tokens_cli: a record is shorter than its length\n");
      return 1;
    }
    const int64_t tokens = text ? sluice::EstimateTextTokens(record, options)
                                : sluice::EstimatePromptTokens(record, options);
    std::printf("%lld\n", static_cast<long long>(tokens));
  }
  return 0;
}
