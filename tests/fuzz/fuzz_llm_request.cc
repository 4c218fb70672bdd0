// Fuzz target: ParseLlmRequest and PrefixBlockHashes on arbitrary bytes. A libFuzzer entry point:
// coverage-guided with clang (scripts/run-fuzz.sh), and under every preset with
// standalone_driver.cc (seed corpus + bounded random mutations) as a ctest test.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_support.h"
#include "sluice/llm_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body = sluice_fuzz::View(data, size);
  absl::StatusOr<sluice::LlmRequest> r = sluice::ParseLlmRequest(body);
  if (!r.ok()) {
    FUZZ_CHECK(!r.status().message().empty());  // every error names its field
    return 0;
  }
  int64_t chars = 0;
  for (const auto& m : r->messages) chars += static_cast<int64_t>(m.content.size());
  FUZZ_CHECK(chars == r->prompt_chars);
  sluice::PrefixHashOptions o;
  o.block_chars = 1 + static_cast<int64_t>(size % 64);
  o.max_blocks = 1 + static_cast<int64_t>(size % 300);
  FUZZ_CHECK(static_cast<int64_t>(sluice::PrefixBlockHashes(*r, o).size()) <= o.max_blocks);
  return 0;
}
