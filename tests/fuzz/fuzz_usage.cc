// Fuzz target: UsageReader on an arbitrary answer, IncludeUsageInStream and EstimatePromptTokens
// on the same bytes (see fuzz_llm_request.cc for how it runs). The first byte chooses the
// provider and seeds the chunking of the rest. Invariants:
//   * the chunking changes nothing: random cuts give the usage (or error code) and the stats the
//     answer fed whole gives, and so does ReadUsage; the same holds with a 64-byte event cap;
//   * Finish called twice gives the same; a usage read has a count present and counts in range;
//   * IncludeUsageInStream is idempotent, and an answer it changed is still accepted by it;
//   * the estimate is non-negative and does not shrink when text is appended.
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "sluice/usage.h"

namespace {

using sluice::Usage;
using sluice::UsageReader;

struct Outcome {
  absl::StatusOr<Usage> usage;
  UsageReader::Stats stats;
};

Outcome Read(sluice::Provider provider, const std::vector<std::string_view>& chunks,
             size_t max_event_bytes) {
  UsageReader::Options options;
  options.max_event_bytes = max_event_bytes;
  UsageReader reader(provider, options);
  for (std::string_view chunk : chunks) reader.Feed(chunk);
  Outcome outcome{reader.Finish(), reader.stats()};
  const absl::StatusOr<Usage> again = reader.Finish();
  FUZZ_CHECK(again.status() == outcome.usage.status());
  FUZZ_CHECK(!again.ok() || *again == *outcome.usage);
  return outcome;
}

bool Same(const Outcome& a, const Outcome& b) {
  if (a.usage.status().code() != b.usage.status().code()) return false;
  if (a.usage.ok() && !(*a.usage == *b.usage)) return false;
  return a.stats == b.stats;
}

void CheckUsage(const absl::StatusOr<Usage>& usage) {
  if (!usage.ok()) {
    FUZZ_CHECK(usage.status().code() == absl::StatusCode::kNotFound);
    return;
  }
  FUZZ_CHECK(usage->present != 0);
  for (int64_t count : {usage->prompt_tokens, usage->completion_tokens, usage->total_tokens,
                        usage->cached_tokens, usage->cache_creation_tokens,
                        usage->reasoning_tokens}) {
    FUZZ_CHECK(count >= 0 && count <= Usage::kMaxTokens);
  }
  FUZZ_CHECK(usage->provider != sluice::Provider::kAuto);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    FUZZ_CHECK(sluice::ReadUsage(sluice::Provider::kAuto, std::string_view()).status().code() ==
               absl::StatusCode::kNotFound);
    return 0;
  }
  const auto provider = static_cast<sluice::Provider>(data[0] % 7);
  const std::string_view answer = sluice_fuzz::View(data + 1, size - 1);

  std::mt19937 random(data[0]);
  std::vector<std::string_view> chunks;
  for (size_t at = 0; at < answer.size();) {
    const size_t length = std::uniform_int_distribution<size_t>(0, 17)(random);
    chunks.push_back(answer.substr(at, length));
    at += length;
  }
  const Outcome whole = Read(provider, {answer}, size_t{1} << 20);
  CheckUsage(whole.usage);
  FUZZ_CHECK(Same(Read(provider, chunks, size_t{1} << 20), whole));
  const absl::StatusOr<Usage> once = sluice::ReadUsage(provider, answer);
  FUZZ_CHECK(once.status().code() == whole.usage.status().code());
  FUZZ_CHECK(!once.ok() || *once == *whole.usage);
  const Outcome capped = Read(provider, {answer}, 64);
  CheckUsage(capped.usage);
  FUZZ_CHECK(Same(Read(provider, chunks, 64), capped));

  const absl::StatusOr<std::string> with_usage = sluice::IncludeUsageInStream(answer);
  if (with_usage.ok()) {
    const absl::StatusOr<std::string> twice = sluice::IncludeUsageInStream(*with_usage);
    FUZZ_CHECK(twice.ok() && *twice == *with_usage);
  } else {
    FUZZ_CHECK(with_usage.status().code() == absl::StatusCode::kInvalidArgument);
  }
  const int64_t estimate = sluice::EstimateTextTokens(answer);
  FUZZ_CHECK(estimate >= 0);
  FUZZ_CHECK(sluice::EstimateTextTokens(std::string(answer) + " more words") >= estimate);
  FUZZ_CHECK(sluice::EstimatePromptTokens(answer) >= 0);
  return 0;
}
