// UsageReader: every provider streamed and not, from answers shaped as the providers send them
// (event order, "usage": null chunks, CRLF for Gemini, DashScope's comment lines), cut at every
// byte and at random; and hostile input.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "sluice/usage.h"

using sluice::Provider;
using sluice::ReadUsage;
using sluice::Usage;
using sluice::UsageReader;

namespace {

constexpr uint32_t kPrompt = Usage::kPromptTokens, kCompletion = Usage::kCompletionTokens,
                   kTotal = Usage::kTotalTokens, kCached = Usage::kCachedTokens,
                   kCreation = Usage::kCacheCreationTokens, kReasoning = Usage::kReasoningTokens;

Usage MakeUsage(Provider provider, int64_t prompt, int64_t completion, int64_t total,
                uint32_t present, int64_t cached = 0, int64_t reasoning = 0,
                int64_t creation = 0) {
  Usage u;
  u.provider = provider;
  u.prompt_tokens = prompt;
  u.completion_tokens = completion;
  u.total_tokens = total;
  u.cached_tokens = cached;
  u.reasoning_tokens = reasoning;
  u.cache_creation_tokens = creation;
  u.present = present;
  return u;
}

std::string Describe(const absl::StatusOr<Usage>& u) {
  if (!u.ok()) return std::string(u.status().ToString());
  return std::string(sluice::ProviderName(u->provider)) + " prompt=" +
         std::to_string(u->prompt_tokens) + " completion=" + std::to_string(u->completion_tokens) +
         " total=" + std::to_string(u->total_tokens) + " cached=" + std::to_string(u->cached_tokens) +
         " creation=" + std::to_string(u->cache_creation_tokens) +
         " reasoning=" + std::to_string(u->reasoning_tokens) +
         " present=" + std::to_string(u->present);
}

struct Fixture {
  const char* name;
  Provider provider;       // the reader's, when not kAuto
  Provider detected;       // what kAuto finds
  std::string answer;
  Usage expected;          // provider field: `provider`
};

const std::string kChatHead =
    R"({"id":"chatcmpl-A1b2","object":"chat.completion.chunk","created":1727000000,)"
    R"("model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5f20662549",)";

std::vector<Fixture> Fixtures() {
  std::vector<Fixture> f;
  f.push_back({"openai chat stream", Provider::kOpenAIChat, Provider::kOpenAIChat,
               "data: " + kChatHead +
                   R"("choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null})"
                   "\n\n"
                   "data: " + kChatHead +
                   R"("choices":[{"index":0,"delta":{"content":"你好，世界 👋"},"logprobs":null,"finish_reason":null}],"usage":null})"
                   "\n\n"
                   "data: " + kChatHead +
                   R"("choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null})"
                   "\n\n"
                   "data: " + kChatHead +
                   R"("choices":[],"usage":{"prompt_tokens":1919,"completion_tokens":10,"total_tokens":1929,)"
                   R"("prompt_tokens_details":{"cached_tokens":1792,"audio_tokens":0},)"
                   R"("completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,)"
                   R"("accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}})"
                   "\n\n"
                   "data: [DONE]\n\n",
               MakeUsage(Provider::kOpenAIChat, 1919, 10, 1929,
                         kPrompt | kCompletion | kTotal | kCached | kReasoning, 1792, 0)});
  f.push_back({"openai chat body", Provider::kOpenAIChat, Provider::kOpenAIChat,
               R"({"id":"chatcmpl-A1b3","object":"chat.completion","created":1727000001,)"
               R"("model":"o3-mini-2025-01-31","choices":[{"index":0,"message":{"role":"assistant",)"
               R"("content":"The answer is {42} [sic] \"quoted\" \\ done","refusal":null},)"
               R"("finish_reason":"stop"}],"usage":{"prompt_tokens":13,"completion_tokens":203,)"
               R"("total_tokens":216,"prompt_tokens_details":{"cached_tokens":0},)"
               R"("completion_tokens_details":{"reasoning_tokens":192}}})"
               "\n",
               MakeUsage(Provider::kOpenAIChat, 13, 203, 216,
                         kPrompt | kCompletion | kTotal | kCached | kReasoning, 0, 192)});
  f.push_back({"openai completions stream", Provider::kOpenAICompletions,
               Provider::kOpenAICompletions,
               R"(data: {"id":"cmpl-7","object":"text_completion","created":1727000002,"model":"gpt-3.5-turbo-instruct","choices":[{"text":" Once","index":0,"logprobs":null,"finish_reason":null}],"usage":null})"
               "\n\n"
               R"(data: {"id":"cmpl-7","object":"text_completion","created":1727000002,"model":"gpt-3.5-turbo-instruct","choices":[{"text":" upon","index":0,"logprobs":null,"finish_reason":"length"}],"usage":null})"
               "\n\n"
               R"(data: {"id":"cmpl-7","object":"text_completion","created":1727000002,"model":"gpt-3.5-turbo-instruct","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}})"
               "\n\n"
               "data: [DONE]\n\n",
               MakeUsage(Provider::kOpenAICompletions, 5, 2, 7, kPrompt | kCompletion | kTotal)});
  f.push_back({"openai completions body", Provider::kOpenAICompletions,
               Provider::kOpenAICompletions,
               R"({"id":"cmpl-8","object":"text_completion","created":1727000003,"model":"gpt-3.5-turbo-instruct",)"
               R"("choices":[{"text":"\n\nThis is indeed a test","index":0,"logprobs":null,"finish_reason":"length"}],)"
               R"("usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}})",
               MakeUsage(Provider::kOpenAICompletions, 5, 7, 12, kPrompt | kCompletion | kTotal)});
  f.push_back({"openai responses stream", Provider::kOpenAIResponses, Provider::kOpenAIResponses,
               "event: response.created\n"
               R"(data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_67c9","object":"response","created_at":1741290958,"status":"in_progress","model":"gpt-4.1-2025-04-14","output":[],"usage":null}})"
               "\n\n"
               "event: response.output_text.delta\n"
               R"(data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67c9","output_index":0,"content_index":0,"delta":"Hi there – ça va?"})"
               "\n\n"
               "event: response.completed\n"
               R"(data: {"type":"response.completed","sequence_number":9,"response":{"id":"resp_67c9","object":"response","created_at":1741290958,"status":"completed","model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_67c9","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi there – ça va?","annotations":[]}]}],"usage":{"input_tokens":37,"input_tokens_details":{"cached_tokens":5},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":3},"total_tokens":48}}})"
               "\n\n",
               MakeUsage(Provider::kOpenAIResponses, 37, 11, 48,
                         kPrompt | kCompletion | kTotal | kCached | kReasoning, 5, 3)});
  f.push_back({"openai responses body", Provider::kOpenAIResponses, Provider::kOpenAIResponses,
               R"({"id":"resp_1","object":"response","created_at":1741476542,"status":"completed",)"
               R"("model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_1","status":"completed",)"
               R"("role":"assistant","content":[{"type":"output_text","text":"In a peaceful grove...","annotations":[]}]}],)"
               R"("usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,)"
               R"("output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}})",
               MakeUsage(Provider::kOpenAIResponses, 36, 87, 123,
                         kPrompt | kCompletion | kTotal | kCached | kReasoning)});
  f.push_back({"anthropic stream", Provider::kAnthropic, Provider::kAnthropic,
               "event: message_start\n"
               R"(data: {"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":1}}})"
               "\n\n"
               "event: content_block_start\n"
               R"(data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"
               "\n\n"
               "event: ping\n"
               R"(data: {"type": "ping"})"
               "\n\n"
               "event: content_block_delta\n"
               R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello – 日本語"}})"
               "\n\n"
               "event: content_block_stop\n"
               R"(data: {"type":"content_block_stop","index":0})"
               "\n\n"
               "event: message_delta\n"
               R"(data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}})"
               "\n\n"
               "event: message_stop\n"
               R"(data: {"type":"message_stop"})"
               "\n\n",
               MakeUsage(Provider::kAnthropic, 2125, 15, 2140,
                         kPrompt | kCompletion | kCached | kCreation, 2000, 0, 100)});
  f.push_back({"anthropic body", Provider::kAnthropic, Provider::kAnthropic,
               R"({"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant",)"
               R"("model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"Hi! My name is Claude."}],)"
               R"("stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"output_tokens":503,)"
               R"("cache_creation_input_tokens":0,"cache_read_input_tokens":0}})",
               MakeUsage(Provider::kAnthropic, 2095, 503, 2598,
                         kPrompt | kCompletion | kCached | kCreation)});
  f.push_back({"gemini sse stream (CRLF)", Provider::kGemini, Provider::kGemini,
               R"(data: {"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 8}]},"modelVersion": "gemini-2.5-flash","responseId": "mD8aaPW7"})"
               "\r\n\r\n"
               R"(data: {"candidates": [{"content": {"parts": [{"text": " sky is blue – 天空"}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 20,"totalTokenCount": 52,"cachedContentTokenCount": 0,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 8}],"thoughtsTokenCount": 24},"modelVersion": "gemini-2.5-flash","responseId": "mD8aaPW7"})"
               "\r\n\r\n",
               MakeUsage(Provider::kGemini, 8, 44, 52,
                         kPrompt | kCompletion | kTotal | kCached | kReasoning, 0, 24)});
  f.push_back({"gemini json array stream", Provider::kGemini, Provider::kGemini,
               "[{\r\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Once [upon] {a}\"}],"
               "\"role\": \"model\"},\"index\": 0}],\r\n  \"usageMetadata\": {\"promptTokenCount\": 11,"
               "\"totalTokenCount\": 11},\r\n  \"modelVersion\": \"gemini-2.0-flash\"\r\n}\r\n,\r\n"
               "{\r\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \" a time \\\"}\\\"\"}],"
               "\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\r\n  \"usageMetadata\": "
               "{\"promptTokenCount\": 11,\"candidatesTokenCount\": 6,\"totalTokenCount\": 17,"
               "\"toolUsePromptTokenCount\": 3},\r\n  \"modelVersion\": \"gemini-2.0-flash\"\r\n}\r\n]",
               MakeUsage(Provider::kGemini, 14, 6, 17, kPrompt | kCompletion | kTotal)});
  f.push_back({"gemini body", Provider::kGemini, Provider::kGemini,
               R"({"candidates":[{"content":{"parts":[{"text":"Hello"}],"role":"model"},"finishReason":"STOP",)"
               R"("avgLogprobs":-0.05}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1,)"
               R"("totalTokenCount":5,"cachedContentTokenCount":2},"modelVersion":"gemini-1.5-flash"})",
               MakeUsage(Provider::kGemini, 4, 1, 5, kPrompt | kCompletion | kTotal | kCached, 2)});
  f.push_back({"dashscope native stream", Provider::kDashScope, Provider::kDashScope,
               "id:1\nevent:result\n:HTTP_STATUS/200\n"
               R"(data:{"output":{"choices":[{"message":{"content":"你好","role":"assistant"},"finish_reason":"null"}]},"usage":{"total_tokens":23,"output_tokens":1,"input_tokens":22},"request_id":"1b1e4c7e-9c1d"})"
               "\n\n"
               "id:2\nevent:result\n:HTTP_STATUS/200\n"
               R"(data:{"output":{"choices":[{"message":{"content":"！有什么可以帮你？","role":"assistant"},"finish_reason":"stop"}]},"usage":{"total_tokens":30,"output_tokens":8,"input_tokens":22,"prompt_tokens_details":{"cached_tokens":16}},"request_id":"1b1e4c7e-9c1d"})"
               "\n\n",
               MakeUsage(Provider::kDashScope, 22, 8, 30, kPrompt | kCompletion | kTotal | kCached,
                         16)});
  f.push_back({"dashscope native body", Provider::kDashScope, Provider::kDashScope,
               R"({"output":{"text":"我是通义千问。","finish_reason":"stop"},)"
               R"("usage":{"output_tokens":380,"input_tokens":633,"total_tokens":1013,)"
               R"("output_tokens_details":{"reasoning_tokens":300}},"request_id":"d0f1"})",
               MakeUsage(Provider::kDashScope, 633, 380, 1013,
                         kPrompt | kCompletion | kTotal | kReasoning, 0, 300)});
  f.push_back({"dashscope compatible-mode stream", Provider::kDashScope, Provider::kOpenAIChat,
               R"(data: {"choices":[{"delta":{"content":"","role":"assistant"},"index":0,"logprobs":null,"finish_reason":null}],"object":"chat.completion.chunk","usage":null,"created":1715931028,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-3bb05cf5"})"
               "\n\n"
               R"(data: {"choices":[{"finish_reason":"stop","delta":{"content":"我是"},"index":0,"logprobs":null}],"object":"chat.completion.chunk","usage":null,"created":1715931028,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-3bb05cf5"})"
               "\n\n"
               R"(data: {"choices":[],"object":"chat.completion.chunk","usage":{"prompt_tokens":22,"completion_tokens":17,"total_tokens":39},"created":1715931028,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-3bb05cf5"})"
               "\n\n"
               "data: [DONE]\n\n",
               MakeUsage(Provider::kDashScope, 22, 17, 39, kPrompt | kCompletion | kTotal)});
  return f;
}

absl::StatusOr<Usage> ReadChunks(Provider provider, const std::vector<std::string_view>& chunks,
                                 UsageReader::Stats* stats = nullptr,
                                 UsageReader::Options options = {}) {
  UsageReader reader(provider, options);
  for (std::string_view chunk : chunks) reader.Feed(chunk);
  absl::StatusOr<Usage> usage = reader.Finish();
  if (stats != nullptr) *stats = reader.stats();
  return usage;
}

Usage WithProvider(Usage u, Provider p) {
  u.provider = p;
  return u;
}

}  // namespace

TEST_CASE("usage: every provider, streamed and not, with its provider named and detected") {
  for (const Fixture& f : Fixtures()) {
    INFO(f.name);
    absl::StatusOr<Usage> named = ReadUsage(f.provider, f.answer);
    INFO(Describe(named));
    REQUIRE(named.ok());
    CHECK(*named == f.expected);
    absl::StatusOr<Usage> detected = ReadUsage(Provider::kAuto, f.answer);
    INFO(Describe(detected));
    REQUIRE(detected.ok());
    CHECK(*detected == WithProvider(f.expected, f.detected));
  }
}

TEST_CASE("usage: cut at every byte, the answer reads the same (Higress 4146, 4248)") {
  for (const Fixture& f : Fixtures()) {
    INFO(f.name);
    const std::string_view answer = f.answer;
    UsageReader::Stats whole_stats;
    const absl::StatusOr<Usage> whole = ReadChunks(f.provider, {answer}, &whole_stats);
    REQUIRE(whole.ok());
    for (size_t cut = 0; cut <= answer.size(); ++cut) {
      UsageReader::Stats stats;
      const absl::StatusOr<Usage> two =
          ReadChunks(f.provider, {answer.substr(0, cut), answer.substr(cut)}, &stats);
      INFO("cut at " << cut << ": " << Describe(two));
      REQUIRE(two.ok());
      REQUIRE(*two == *whole);
      REQUIRE(stats == whole_stats);
    }
    std::vector<std::string_view> bytes;
    for (size_t i = 0; i < answer.size(); ++i) bytes.push_back(answer.substr(i, 1));
    const absl::StatusOr<Usage> one_by_one = ReadChunks(f.provider, bytes);
    REQUIRE(one_by_one.ok());
    CHECK(*one_by_one == *whole);
  }
}

TEST_CASE("usage: random multi-way cuts (seeded) read the same") {
  std::mt19937_64 random(20260916);
  for (const Fixture& f : Fixtures()) {
    INFO(f.name);
    const std::string_view answer = f.answer;
    UsageReader::Stats whole_stats;
    const absl::StatusOr<Usage> whole = ReadChunks(Provider::kAuto, {answer}, &whole_stats);
    REQUIRE(whole.ok());
    for (int round = 0; round < 200; ++round) {
      std::vector<std::string_view> chunks;
      size_t at = 0;
      while (at < answer.size()) {
        const size_t length = std::uniform_int_distribution<size_t>(0, 40)(random);
        chunks.push_back(answer.substr(at, length));
        at += length;
      }
      UsageReader::Stats stats;
      const absl::StatusOr<Usage> cut = ReadChunks(Provider::kAuto, chunks, &stats);
      INFO("round " << round << ": " << Describe(cut));
      REQUIRE(cut.ok());
      REQUIRE(*cut == *whole);
      REQUIRE(stats == whole_stats);
    }
  }
}

TEST_CASE("usage: an OpenAI stream without include_usage reports none: NotFound, not zeros") {
  const std::string stream =
      "data: " + kChatHead +
      R"("choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]})"
      "\n\ndata: [DONE]\n\n";
  UsageReader reader(Provider::kOpenAIChat);
  reader.Feed(stream);
  const absl::StatusOr<Usage> usage = reader.Finish();
  REQUIRE(usage.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(usage.status().message()), Catch::Contains("include_usage"));
  CHECK(reader.stats().events == 2);
  CHECK(reader.stats().malformed_events == 0);  // [DONE] is not malformed
  CHECK(reader.Finish().status() == usage.status());  // Finish again: the same
  CHECK(ReadUsage(Provider::kAuto, "").status().code() == absl::StatusCode::kNotFound);
  CHECK(ReadUsage(Provider::kAuto, std::string_view()).status().code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("usage: several reports: each count reported replaces the one before") {
  // Two usage chunks (a proxy that repeats one): the last wins, nothing is summed.
  const std::string stream =
      "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":"
      "{\"prompt_tokens\":10,\"completion_tokens\":1,\"total_tokens\":11}}\n\n"
      "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":"
      "{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15}}\n\n";
  const Usage u = ReadUsage(Provider::kAuto, stream).value();
  CHECK(u.completion_tokens == 5);
  CHECK(u.total_tokens == 15);
  // Anthropic: a message_delta that repeats input counts (cumulative) replaces message_start's.
  const std::string anthropic =
      "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":"
      "{\"input_tokens\":5,\"cache_read_input_tokens\":7,\"output_tokens\":1}}}\n\n"
      "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n"
      "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":"
      "{\"input_tokens\":6,\"output_tokens\":12}}\n\n";
  const Usage a = ReadUsage(Provider::kAnthropic, anthropic).value();
  CHECK(a.prompt_tokens == 6 + 7);
  CHECK(a.completion_tokens == 12);
  CHECK(a.total_tokens == 25);
  CHECK_FALSE(a.Has(Usage::kTotalTokens));  // computed, not reported
}

TEST_CASE("usage: counts that are not non-negative integers are ignored and counted") {
  auto read = [](const std::string& usage_json, UsageReader::Stats* stats) {
    UsageReader reader(Provider::kOpenAIChat);
    reader.Feed("data: {\"object\":\"chat.completion.chunk\",\"usage\":" + usage_json + "}\n\n");
    absl::StatusOr<Usage> u = reader.Finish();
    *stats = reader.stats();
    return u;
  };
  UsageReader::Stats stats;
  Usage u = read(R"({"prompt_tokens":-3,"completion_tokens":12.5,"total_tokens":"9"})", &stats)
                .value_or(Usage());
  CHECK(stats.rejected_counts == 3);
  CHECK(read(R"({"prompt_tokens":-3})", &stats).status().code() == absl::StatusCode::kNotFound);

  u = read(R"({"prompt_tokens":12.0,"completion_tokens":true,"total_tokens":null})", &stats).value();
  CHECK(u.prompt_tokens == 12);
  CHECK(u.present == Usage::kPromptTokens);
  CHECK(stats.rejected_counts == 1);  // the boolean; null is absent

  // Beyond int64, beyond uint64 as a real, and near 2^62: saturated, and the sums too.
  u = read(R"({"prompt_tokens":18446744073709551615,"completion_tokens":1e300})", &stats).value();
  CHECK(u.prompt_tokens == Usage::kMaxTokens);
  CHECK(u.completion_tokens == Usage::kMaxTokens);
  CHECK(u.total_tokens == Usage::kMaxTokens);
  CHECK(stats.rejected_counts == 0);
  u = read(R"({"prompt_tokens":4611686018427387903,"completion_tokens":4611686018427387903})",
           &stats)
          .value();
  CHECK(u.total_tokens == Usage::kMaxTokens);

  // An integer simdjson cannot hold (beyond 64 bits, no fraction) makes the event malformed.
  CHECK(read(R"({"prompt_tokens":123456789012345678901234567890})", &stats).status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(stats.malformed_events == 1);
}

TEST_CASE("usage: invalid UTF-8, NUL bytes and non-objects are skipped and counted") {
  const std::string bad_utf8 = "data: {\"type\":\"message_delta\",\"delta\":{\"text\":\"\xC3\x28\"},"
                               "\"usage\":{\"output_tokens\":99}}\n\n";
  const std::string nul = std::string("data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":") +
                          '\0' + "77}}\n\n";
  const std::string start =
      "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":"
      "{\"input_tokens\":5,\"output_tokens\":1}}}\n\n";
  UsageReader::Stats stats;
  const Usage u = ReadChunks(Provider::kAuto,
                             {start, bad_utf8, nul, "data: [1,2]\n\n", "data: hello\n\n",
                              "data: \"text\"\n\n"},
                             &stats)
                      .value();
  CHECK(u.prompt_tokens == 5);
  CHECK(u.completion_tokens == 1);  // message_start's: both later reports were unreadable
  CHECK(stats.malformed_events == 5);
  CHECK(stats.events == 6);
  CHECK(stats.usage_reports == 1);
}

TEST_CASE("usage: an event over max_event_bytes is dropped as it arrives, the rest is read") {
  const std::string big(5000, 'x');
  const std::string stream =
      "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"content\":\"" + big +
      "\"}}]}\n\n" + "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":"
      "{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n";
  UsageReader::Options options;
  options.max_event_bytes = 256;
  const std::string_view view = stream;
  for (size_t step : {size_t{1}, size_t{7}, size_t{300}, view.size()}) {
    INFO("chunks of " << step);
    std::vector<std::string_view> chunks;
    for (size_t at = 0; at < view.size(); at += step) chunks.push_back(view.substr(at, step));
    UsageReader::Stats stats;
    const Usage u = ReadChunks(Provider::kOpenAIChat, chunks, &stats, options).value();
    CHECK(u.total_tokens == 7);
    CHECK(stats.oversized_events == 1);
    CHECK(stats.events == 2);
  }
  // A JSON body over the cap: dropped and counted; ReadUsage raises the cap to the body's size.
  const std::string body = R"({"object":"chat.completion","choices":[{"message":{"content":")" +
                           std::string(2 << 20, 'y') +
                           R"("}}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}})";
  UsageReader::Stats stats;
  CHECK(ReadChunks(Provider::kOpenAIChat, {body}, &stats).status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(stats.oversized_events == 1);
  CHECK(ReadUsage(Provider::kOpenAIChat, body).value().total_tokens == 3);
}

TEST_CASE("usage: the stream's end: a missing last blank line is forgiven, a cut event is not") {
  const std::string usage_event =
      "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":"
      "{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}";
  CHECK(ReadUsage(Provider::kAuto, usage_event + "\n").value().total_tokens == 7);
  CHECK(ReadUsage(Provider::kAuto, usage_event).value().total_tokens == 7);
  UsageReader::Stats stats;
  CHECK(ReadChunks(Provider::kAuto, {usage_event.substr(0, usage_event.size() - 3)}, &stats)
            .status()
            .code() == absl::StatusCode::kNotFound);
  CHECK(stats.malformed_events == 1);
  // A JSON body cut short.
  CHECK(ReadChunks(Provider::kAuto, {R"({"object":"chat.completion","usage":{"prompt_tokens":3)"},
                   &stats)
            .status()
            .code() == absl::StatusCode::kNotFound);
  CHECK(stats.malformed_events == 1);
}

TEST_CASE("usage: SSE details: BOM, CR or CRLF lines, joined data lines, comments, other fields") {
  // A CR at the end of a chunk may be half of a CRLF: the LF first in the next chunk must not
  // read as a blank line ending the event early (Higress 4249's T-06).
  for (const std::string eol : {"\r", "\r\n"}) {
    const std::string stream =
        "\xEF\xBB\xBF: keep-alive" + eol + "retry: 1000" + eol + "id: 7" + eol +
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[]," + eol +
        "data: \"usage\":{\"prompt_tokens\":3," + eol + "data:\"completion_tokens\":4}}" + eol + eol;
    const std::string_view view = stream;
    for (size_t cut = 0; cut <= view.size(); ++cut) {
      INFO("line end " << eol.size() << " bytes, cut at " << cut);
      UsageReader::Stats stats;
      const absl::StatusOr<Usage> u =
          ReadChunks(Provider::kAuto, {view.substr(0, cut), view.substr(cut)}, &stats);
      REQUIRE(u.ok());
      CHECK(u->prompt_tokens == 3);
      CHECK(u->completion_tokens == 4);
      CHECK(u->total_tokens == 7);
      CHECK(u->provider == Provider::kOpenAIChat);
      CHECK(stats.events == 1);
      CHECK(stats.malformed_events == 0);
    }
  }
}

TEST_CASE("usage: kAuto reads nothing from shapes it cannot place, deep nesting is malformed") {
  CHECK(ReadUsage(Provider::kAuto, R"({"usage":{"input_tokens":3,"output_tokens":4}})")
            .status()
            .code() == absl::StatusCode::kNotFound);
  // The named provider reads the same body.
  CHECK(ReadUsage(Provider::kDashScope, R"({"usage":{"input_tokens":3,"output_tokens":4}})")
            .value()
            .total_tokens == 7);
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  UsageReader::Stats stats;
  CHECK(ReadChunks(Provider::kAuto, {deep}, &stats).status().code() ==
        absl::StatusCode::kNotFound);
  const std::string deep_object = "{\"a\":" + std::string(5000, '[') + std::string(5000, ']') + "}";
  CHECK(ReadChunks(Provider::kAuto, {deep_object}, &stats).status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(stats.malformed_events == 1);
}

TEST_CASE("usage: NDJSON objects one after the other are read one by one") {
  const std::string ndjson =
      "{\"object\":\"chat.completion.chunk\",\"usage\":{\"prompt_tokens\":1}}\n"
      "{\"object\":\"chat.completion.chunk\",\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n";
  UsageReader::Stats stats;
  const Usage u = ReadChunks(Provider::kAuto, {ndjson}, &stats).value();
  CHECK(u.prompt_tokens == 2);
  CHECK(u.completion_tokens == 3);
  CHECK(stats.events == 2);
  CHECK(stats.usage_reports == 2);
}

TEST_CASE("usage: a reader moves") {
  UsageReader reader(Provider::kAuto);
  reader.Feed("data: {\"object\":\"chat.completion.chunk\",\"usage\":{\"prompt_tokens\":1");
  UsageReader moved = std::move(reader);
  moved.Feed("}}\n\n");
  CHECK(moved.Finish().value().prompt_tokens == 1);
  CHECK(sluice::ProviderName(Provider::kGemini) == "gemini");
}
