// Fuzz target: ParseLlmRequest and PrefixBlockHashes on arbitrary bytes. libFuzzer entry point;
// built with clang's -fsanitize=fuzzer when available, and always with standalone_driver.cc
// (seed corpus + bounded random mutations) as a ctest test under every sanitizer preset.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "sluice/llm_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<sluice::LlmRequest> r = sluice::ParseLlmRequest(body);
  if (!r.ok()) {
    if (r.status().message().empty()) std::abort();  // every error names its field
    return 0;
  }
  int64_t chars = 0;
  for (const auto& m : r->messages) chars += static_cast<int64_t>(m.content.size());
  if (chars != r->prompt_chars) std::abort();
  sluice::PrefixHashOptions o;
  o.block_chars = 1 + static_cast<int64_t>(size % 64);
  o.max_blocks = 1 + static_cast<int64_t>(size % 300);
  if (static_cast<int64_t>(sluice::PrefixBlockHashes(*r, o).size()) > o.max_blocks) std::abort();
  return 0;
}
