// Internal: the tokens a request reserves when the caller gives no estimate.
#ifndef SLUICE_LIB_GOVERNOR_TOKEN_ESTIMATE_H_
#define SLUICE_LIB_GOVERNOR_TOKEN_ESTIMATE_H_

#include <cstdint>
#include <string_view>

namespace sluice {
inline namespace v1 {
namespace internal {

// The answer's cap as the body asks for it: max_tokens (OpenAI chat and completions, Anthropic,
// DashScope's OpenAI mode), max_completion_tokens (OpenAI's newer name), max_output_tokens
// (Responses); the largest if several; 0 when none or the body is not a JSON object.
int64_t MaxAnswerTokens(std::string_view body);

// EstimatePromptTokens(body) + MaxAnswerTokens(body), saturating.
int64_t EstimateRequestTokens(std::string_view body);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_GOVERNOR_TOKEN_ESTIMATE_H_
