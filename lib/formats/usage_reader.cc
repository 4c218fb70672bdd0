// UsageReader: the framer's events, parsed with simdjson and mapped per provider (the mapping is
// documented in sluice/usage.h; docs/usage.md cites each provider's reference).
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "formats/canonical_json.h"
#include "formats/usage_framing.h"
#include "sluice/usage.h"

namespace sluice {
inline namespace v1 {
namespace {

using simdjson::dom::element;
using simdjson::dom::object;

// The counts as reported, before they are composed into a Usage: each report replaces the
// slots it names (the last report wins).
enum Slot : size_t {
  kInput,           // prompt_tokens, input_tokens, promptTokenCount
  kOutput,          // completion_tokens, output_tokens, candidatesTokenCount
  kTotal,           // total_tokens, totalTokenCount
  kCacheRead,       // cached_tokens, cache_read_input_tokens, cachedContentTokenCount
  kCacheCreation,   // cache_creation_input_tokens
  kReasoning,       // reasoning_tokens, thoughtsTokenCount
  kToolUsePrompt,   // toolUsePromptTokenCount
  kSlotCount,
};

bool StartsWith(std::string_view text, std::string_view prefix) { return text.starts_with(prefix); }

// REQUIRES: 0 <= a, b <= Usage::kMaxTokens.
int64_t SaturatingAdd(int64_t a, int64_t b) {
  return a > Usage::kMaxTokens - b ? Usage::kMaxTokens : a + b;
}

// Whose naming an event uses: the composition of the slots differs (sluice/usage.h).
enum class Family { kOpenAI, kAnthropic, kGemini };

// Which provider an event's shape names, if any (the kAuto rules of sluice/usage.h).
std::optional<Provider> Detect(object event) {
  std::string_view text;
  if (event["object"].get_string().get(text) == simdjson::SUCCESS) {
    if (text == "chat.completion" || text == "chat.completion.chunk") return Provider::kOpenAIChat;
    if (text == "text_completion") return Provider::kOpenAICompletions;
    if (text == "response") return Provider::kOpenAIResponses;
  }
  if (event["type"].get_string().get(text) == simdjson::SUCCESS) {
    if (StartsWith(text, "response.")) return Provider::kOpenAIResponses;
    if (text == "message" || StartsWith(text, "message_") ||
        StartsWith(text, "content_block_") || text == "ping") {
      return Provider::kAnthropic;
    }
  }
  if (event["usageMetadata"].error() == simdjson::SUCCESS ||
      event["candidates"].error() == simdjson::SUCCESS) {
    return Provider::kGemini;
  }
  if (event["output"].get_object().error() == simdjson::SUCCESS) return Provider::kDashScope;
  if (event["choices"].get_array().error() == simdjson::SUCCESS) return Provider::kOpenAIChat;
  return std::nullopt;
}

}  // namespace

std::string_view ProviderName(Provider provider) {
  switch (provider) {
    case Provider::kAuto: return "auto";
    case Provider::kOpenAIChat: return "openai_chat";
    case Provider::kOpenAICompletions: return "openai_completions";
    case Provider::kOpenAIResponses: return "openai_responses";
    case Provider::kAnthropic: return "anthropic";
    case Provider::kGemini: return "gemini";
    case Provider::kDashScope: return "dashscope";
  }
  return "unknown";
}

class UsageReader::Impl final : public internal::UsageEventSink {
 public:
  Impl(Provider provider, const Options& options)
      : provider_(provider), framer_(options.max_event_bytes) {
    assert(options.max_event_bytes > 0);
  }

  void Feed(std::string_view bytes) {
    assert(!result_.has_value() && "UsageReader::Feed after Finish");
    if (result_.has_value()) return;
    framer_.Feed(bytes, *this);
  }

  absl::StatusOr<Usage> Finish() {
    if (!result_.has_value()) {
      framer_.Finish(*this);
      result_ = Compose();
    }
    return *result_;
  }

  const Stats& stats() const { return stats_; }

  void OnOversized() override {
    ++stats_.events;
    ++stats_.oversized_events;
  }

  void OnEvent(std::string_view /*type*/, std::string_view data) override {
    ++stats_.events;
    const size_t begin = data.find_first_not_of(" \t\r\n");
    if (begin == std::string_view::npos) return;  // empty data: nothing said
    data = data.substr(begin);
    if (StartsWith(data, "[DONE]") &&
        data.find_first_not_of(" \t\r\n", 6) == std::string_view::npos) {
      return;  // OpenAI's and DashScope's compatible mode's end marker
    }
    data = internal::NonNull(data);
    element root;
    object event;
    if (parser_.parse(data.data(), data.size()).get(root) != simdjson::SUCCESS ||
        root.get_object().get(event) != simdjson::SUCCESS) {
      ++stats_.malformed_events;
      return;
    }
    if (provider_ == Provider::kAuto) {
      std::optional<Provider> detected = Detect(event);
      if (!detected) return;
      provider_ = *detected;
    }
    ReadEvent(event);
  }

 private:
  // Finds the event's usage object and reads its counts into the slots.
  void ReadEvent(object event) {
    object usage;
    switch (provider_) {
      case Provider::kAuto:
        return;
      case Provider::kOpenAIChat:
      case Provider::kOpenAICompletions:
        if (event["usage"].get_object().get(usage) != simdjson::SUCCESS) return;
        return ReadOpenAI(usage);
      case Provider::kOpenAIResponses: {
        // Events: response.usage (null until the response is done); a body: usage.
        object response;
        if (event["response"].get_object().get(response) == simdjson::SUCCESS) {
          if (response["usage"].get_object().get(usage) != simdjson::SUCCESS) return;
        } else if (event["usage"].get_object().get(usage) != simdjson::SUCCESS) {
          return;
        }
        return ReadInputOutput(usage, Family::kOpenAI);
      }
      case Provider::kAnthropic: {
        // message_start: message.usage; message_delta and a body: usage.
        object message;
        if (event["message"].get_object().get(message) == simdjson::SUCCESS) {
          if (message["usage"].get_object().get(usage) != simdjson::SUCCESS) return;
        } else if (event["usage"].get_object().get(usage) != simdjson::SUCCESS) {
          return;
        }
        return ReadInputOutput(usage, Family::kAnthropic);
      }
      case Provider::kGemini:
        if (event["usageMetadata"].get_object().get(usage) != simdjson::SUCCESS) return;
        return ReadGemini(usage);
      case Provider::kDashScope:
        if (event["usage"].get_object().get(usage) != simdjson::SUCCESS) return;
        if (usage["prompt_tokens"].error() == simdjson::SUCCESS ||
            usage["completion_tokens"].error() == simdjson::SUCCESS) {
          return ReadOpenAI(usage);  // its OpenAI-compatible mode
        }
        return ReadInputOutput(usage, Family::kOpenAI);
    }
  }

  void ReadOpenAI(object usage) {
    Report report(*this, Family::kOpenAI);
    report.Count(usage, "prompt_tokens", kInput);
    report.Count(usage, "completion_tokens", kOutput);
    report.Count(usage, "total_tokens", kTotal);
    object details;
    if (usage["prompt_tokens_details"].get_object().get(details) == simdjson::SUCCESS) {
      report.Count(details, "cached_tokens", kCacheRead);
    }
    if (usage["completion_tokens_details"].get_object().get(details) == simdjson::SUCCESS) {
      report.Count(details, "reasoning_tokens", kReasoning);
    }
  }

  // The Responses API's, Anthropic's and DashScope's names: input_tokens, output_tokens.
  void ReadInputOutput(object usage, Family family) {
    Report report(*this, family);
    report.Count(usage, "input_tokens", kInput);
    report.Count(usage, "output_tokens", kOutput);
    if (family == Family::kAnthropic) {
      report.Count(usage, "cache_read_input_tokens", kCacheRead);
      report.Count(usage, "cache_creation_input_tokens", kCacheCreation);
      return;
    }
    report.Count(usage, "total_tokens", kTotal);
    object details;
    // Responses: input_tokens_details; DashScope: prompt_tokens_details.
    if (usage["input_tokens_details"].get_object().get(details) == simdjson::SUCCESS ||
        usage["prompt_tokens_details"].get_object().get(details) == simdjson::SUCCESS) {
      report.Count(details, "cached_tokens", kCacheRead);
    }
    if (usage["output_tokens_details"].get_object().get(details) == simdjson::SUCCESS) {
      report.Count(details, "reasoning_tokens", kReasoning);
    }
  }

  void ReadGemini(object usage) {
    Report report(*this, Family::kGemini);
    report.Count(usage, "promptTokenCount", kInput);
    report.Count(usage, "candidatesTokenCount", kOutput);
    report.Count(usage, "totalTokenCount", kTotal);
    report.Count(usage, "cachedContentTokenCount", kCacheRead);
    report.Count(usage, "thoughtsTokenCount", kReasoning);
    report.Count(usage, "toolUsePromptTokenCount", kToolUsePrompt);
  }

  // One usage object's counts; counts the report in stats when it held any.
  class Report {
   public:
    Report(Impl& reader, Family family) : reader_(reader) { reader_.family_ = family; }
    ~Report() {
      if (read_any_) ++reader_.stats_.usage_reports;
    }
    Report(const Report&) = delete;
    Report& operator=(const Report&) = delete;

    void Count(object parent, std::string_view name, Slot slot) {
      element value;
      if (parent[name].get(value) != simdjson::SUCCESS || value.is_null()) return;  // absent
      std::optional<int64_t> count = ReadCount(value);
      if (!count) {
        ++reader_.stats_.rejected_counts;
        return;
      }
      reader_.slots_[slot] = *count;
      read_any_ = true;
    }

   private:
    // A non-negative integral number, saturated at Usage::kMaxTokens; nullopt otherwise.
    static std::optional<int64_t> ReadCount(element value) {
      int64_t signed_count;
      uint64_t unsigned_count;
      double real;
      if (value.get_int64().get(signed_count) == simdjson::SUCCESS) {
        if (signed_count < 0) return std::nullopt;
        return std::min(signed_count, Usage::kMaxTokens);
      }
      if (value.get_uint64().get(unsigned_count) == simdjson::SUCCESS) {
        return Usage::kMaxTokens;  // above INT64_MAX
      }
      if (value.is_double() && value.get_double().get(real) == simdjson::SUCCESS) {
        if (!std::isfinite(real) || real < 0 || std::floor(real) != real) return std::nullopt;
        if (real >= static_cast<double>(Usage::kMaxTokens)) return Usage::kMaxTokens;
        return static_cast<int64_t>(real);
      }
      return std::nullopt;  // a string, a boolean, an object or an array
    }

    Impl& reader_;
    bool read_any_ = false;
  };

  absl::StatusOr<Usage> Compose() const {
    auto has = [&](Slot s) { return slots_[s].has_value(); };
    auto get = [&](Slot s) { return slots_[s].value_or(0); };
    if (std::none_of(slots_.begin(), slots_.end(), [](const auto& s) { return s.has_value(); })) {
      return absl::NotFoundError(absl::StrCat(
          "usage: the answer reported no usage (", std::string(ProviderName(provider_)), ", ", stats_.events,
          " events, ", stats_.malformed_events, " malformed, ", stats_.oversized_events,
          " oversized; an OpenAI stream reports it only with stream_options.include_usage)"));
    }
    Usage usage;
    usage.provider = provider_;
    usage.prompt_tokens = get(kInput);
    usage.completion_tokens = get(kOutput);
    bool prompt_present = has(kInput);
    bool completion_present = has(kOutput);
    if (family_ == Family::kAnthropic) {
      // input_tokens leaves the cache's tokens out.
      usage.prompt_tokens =
          SaturatingAdd(usage.prompt_tokens, SaturatingAdd(get(kCacheRead), get(kCacheCreation)));
      prompt_present = prompt_present || has(kCacheRead) || has(kCacheCreation);
    } else if (family_ == Family::kGemini) {
      usage.prompt_tokens = SaturatingAdd(usage.prompt_tokens, get(kToolUsePrompt));
      usage.completion_tokens = SaturatingAdd(usage.completion_tokens, get(kReasoning));
      prompt_present = prompt_present || has(kToolUsePrompt);
      completion_present = completion_present || has(kReasoning);
    }
    usage.total_tokens =
        has(kTotal) ? get(kTotal) : SaturatingAdd(usage.prompt_tokens, usage.completion_tokens);
    usage.cached_tokens = get(kCacheRead);
    usage.cache_creation_tokens = get(kCacheCreation);
    usage.reasoning_tokens = get(kReasoning);
    if (prompt_present) usage.present |= Usage::kPromptTokens;
    if (completion_present) usage.present |= Usage::kCompletionTokens;
    if (has(kTotal)) usage.present |= Usage::kTotalTokens;
    if (has(kCacheRead)) usage.present |= Usage::kCachedTokens;
    if (has(kCacheCreation)) usage.present |= Usage::kCacheCreationTokens;
    if (has(kReasoning)) usage.present |= Usage::kReasoningTokens;
    return usage;
  }

  Provider provider_;
  Family family_ = Family::kOpenAI;
  internal::UsageFramer framer_;
  simdjson::dom::parser parser_;
  std::array<std::optional<int64_t>, kSlotCount> slots_{};
  Stats stats_;
  std::optional<absl::StatusOr<Usage>> result_;
};

UsageReader::UsageReader(Provider provider) : UsageReader(provider, Options()) {}
UsageReader::UsageReader(Provider provider, const Options& options)
    : impl_(std::make_unique<Impl>(provider, options)) {}
UsageReader::~UsageReader() = default;
UsageReader::UsageReader(UsageReader&&) noexcept = default;
UsageReader& UsageReader::operator=(UsageReader&&) noexcept = default;

void UsageReader::Feed(std::string_view bytes) { impl_->Feed(bytes); }
absl::StatusOr<Usage> UsageReader::Finish() { return impl_->Finish(); }
const UsageReader::Stats& UsageReader::stats() const { return impl_->stats(); }

absl::StatusOr<Usage> ReadUsage(Provider provider, std::string_view body) {
  UsageReader::Options options;
  options.max_event_bytes = std::max(options.max_event_bytes, body.size());
  UsageReader reader(provider, options);
  reader.Feed(body);
  return reader.Finish();
}

}  // namespace v1
}  // namespace sluice
