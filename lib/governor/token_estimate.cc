#include "governor/token_estimate.h"

#include <algorithm>
#include <string>

#include "simdjson.h"
#include "sluice/usage.h"

namespace sluice {
inline namespace v1 {
namespace internal {

int64_t MaxAnswerTokens(std::string_view body) {
  if (body.empty()) return 0;
  // One parser per thread: its buffers are reused instead of allocated per request.
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body.data(), body.size(), /*realloc_if_needed=*/true).get(root) != 0) return 0;
  simdjson::dom::object object;
  if (root.get(object) != 0) return 0;
  int64_t most = 0;
  for (const char* field : {"max_tokens", "max_completion_tokens", "max_output_tokens"}) {
    int64_t value = 0;
    if (object[field].get(value) == 0) most = std::max(most, value);
  }
  return std::min(most, Usage::kMaxTokens);
}

int64_t EstimateRequestTokens(std::string_view body) {
  int64_t prompt = std::min(EstimatePromptTokens(body), Usage::kMaxTokens);
  return prompt + MaxAnswerTokens(body);  // each at most 2^62: no overflow
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
