#include "sluice/llm_request.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "cache/cache_record.h"
#include "sluice/engine_metrics.h"
#include "sluice/provider_error.h"
#include "test_support.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

using sluice::LlmRequest;
using sluice::ParseLlmRequest;
using sluice::PrefixBlockHashes;
using sluice_test::ErrorOf;
using sluice_test::Value;

TEST_CASE("chat bodies: model, stream, messages with string and parts content") {
  const LlmRequest r = Value(ParseLlmRequest(R"({
    "model": "qwen2.5-7b", "stream": true, "temperature": 0.2,
    "messages": [
      {"role": "system", "content": "You are terse."},
      {"role": "user", "content": [{"type": "text", "text": "Describe "},
                                   {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                                   {"type": "text", "text": "this."}]},
      {"role": "assistant", "content": null, "tool_calls": []}
    ]})"));
  CHECK(r.model == "qwen2.5-7b");
  CHECK(r.stream);
  REQUIRE(r.messages.size() == 3);
  CHECK(r.messages[0].role == "system");
  CHECK(r.messages[0].content == "You are terse.");
  CHECK(r.messages[1].content ==
        R"(Describe {"type":"image_url","image_url":{"url":"http://x/y.png"}}this.)");
  CHECK(r.messages[2].content.empty());
  CHECK(r.prompt_chars == static_cast<int64_t>(r.messages[0].content.size() +
                                               r.messages[1].content.size()));
  CHECK(r.EstimatedPromptTokens() == (r.prompt_chars + 3) / 4);
}

TEST_CASE("completion bodies: prompt becomes one message, stream defaults to false") {
  const LlmRequest r = Value(ParseLlmRequest(R"({"model":"m","prompt":"Once upon","stream":null})"));
  REQUIRE(r.messages.size() == 1);
  CHECK(r.messages[0].role == "prompt");
  CHECK(r.messages[0].content == "Once upon");
  CHECK_FALSE(r.stream);
}

TEST_CASE("malformed bodies name the field at fault") {
  CHECK_THAT(ErrorOf(ParseLlmRequest("{")), Catch::Contains("body: not valid JSON"));
  CHECK_THAT(ErrorOf(ParseLlmRequest("[1,2]")), Catch::Contains("body: not a JSON object"));
  CHECK_THAT(ErrorOf(ParseLlmRequest(R"({"messages":[]})")), Catch::Contains("model: missing"));
  CHECK_THAT(ErrorOf(ParseLlmRequest(R"({"model":7,"messages":[]})")), Catch::Contains("model"));
  CHECK_THAT(ErrorOf(ParseLlmRequest(R"({"model":"m"})")), Catch::Contains("messages: missing"));
  CHECK_THAT(ErrorOf(ParseLlmRequest(R"({"model":"m","messages":{}})")),
             Catch::Contains("messages: must be an array"));
  CHECK_THAT(ErrorOf(ParseLlmRequest(R"({"model":"m","messages":[{"role":"user"},3]})")),
             Catch::Contains("messages[1]: must be an object"));
  CHECK_THAT(ErrorOf(ParseLlmRequest(R"({"model":"m","messages":[{"content":"x"}]})")),
             Catch::Contains("messages[0].role"));
  CHECK_THAT(ErrorOf(ParseLlmRequest(R"({"model":"m","messages":[{"role":"u","content":5}]})")),
             Catch::Contains("messages[0].content: must be a string, null or an array"));
  CHECK_THAT(ErrorOf(ParseLlmRequest(
                 R"({"model":"m","messages":[{"role":"u","content":[{"type":"text","text":1}]}]})")),
             Catch::Contains("messages[0].content[0].text"));
  // Field names are built only on error (issue 15): still the failing message's and part's index.
  CHECK_THAT(ErrorOf(ParseLlmRequest(
                 R"({"model":"m","messages":[{"role":"u","content":"a"},{"role":"u","content":["b",7]}]})")),
             Catch::Contains("messages[1].content[1]: must be an object or a string"));
  CHECK_THAT(ErrorOf(ParseLlmRequest(R"({"model":"m","prompt":"p","stream":"yes"})")),
             Catch::Contains("stream: must be a boolean"));
  CHECK_THAT(ErrorOf(ParseLlmRequest(R"({"model":"m","prompt":["a"]})")),
             Catch::Contains("prompt: must be a string"));
  CHECK_THAT(ErrorOf(ParseLlmRequest("{\"model\":\"\xff\xfe\",\"prompt\":\"p\"}")),
             Catch::Contains("not valid JSON"));
  CHECK_THAT(ErrorOf(ParseLlmRequest(std::string(5000, '[') + std::string(5000, ']'))),
             Catch::Contains("not valid JSON"));  // deeper than simdjson's limit
  CHECK_THAT(ErrorOf(ParseLlmRequest("")), Catch::Contains("not valid JSON"));
}

namespace {
LlmRequest Chat(std::string model, std::vector<std::pair<std::string, std::string>> turns) {
  LlmRequest r;
  r.model = std::move(model);
  for (auto& [role, content] : turns) {
    r.prompt_chars += static_cast<int64_t>(content.size());
    r.messages.push_back({role, content});
  }
  return r;
}
}  // namespace

TEST_CASE("block hashes are chained: a shared prefix shares exactly its leading blocks") {
  sluice::PrefixHashOptions o;
  o.block_chars = 16;
  const std::string system(40, 's');
  const auto a = PrefixBlockHashes(Chat("m", {{"system", system}, {"user", "first question"}}), o);
  const auto b = PrefixBlockHashes(Chat("m", {{"system", system}, {"user", "other question"}}), o);
  // "system" 0x1F + 40 s + 0x1E = 48 bytes = three full blocks in common.
  REQUIRE(a.size() == b.size());
  CHECK(std::vector(a.begin(), a.begin() + 3) == std::vector(b.begin(), b.begin() + 3));
  CHECK(a[3] != b[3]);
  // A later turn extends the conversation: every block of the earlier one is its prefix, except
  // the earlier one's trailing partial block.
  const auto longer = PrefixBlockHashes(
      Chat("m", {{"system", system}, {"user", "first question"}, {"assistant", "answer"}}), o);
  CHECK(std::vector(longer.begin(), longer.begin() + 4) == std::vector(a.begin(), a.begin() + 4));
  // Seeded by the model: the same text under another model shares nothing.
  const auto other_model =
      PrefixBlockHashes(Chat("n", {{"system", system}, {"user", "first question"}}), o);
  CHECK(other_model[0] != a[0]);
  // Order-sensitive: the same messages swapped differ from the first block.
  const auto swapped = PrefixBlockHashes(Chat("m", {{"user", "first question"}, {"system", system}}), o);
  CHECK(swapped[0] != a[0]);
}

TEST_CASE("block hashes stop at max_blocks, an empty conversation has none") {
  sluice::PrefixHashOptions o;
  o.block_chars = 10;
  o.max_blocks = 3;
  CHECK(PrefixBlockHashes(Chat("m", {{"user", std::string(1000, 'x')}}), o).size() == 3);
  CHECK(PrefixBlockHashes(Chat("m", {}), o).empty());
  o.block_chars = 0;  // clamped to 1
  CHECK(PrefixBlockHashes(Chat("m", {{"u", "ab"}}), o).size() == 3);
}

TEST_CASE("block hashes: hashed where the messages lie, equal to hashing the joined stream") {
  // The definition, written plainly: join every message as role 0x1F content 0x1E, cut at
  // block_chars x max_blocks, chain XXH3 over the blocks. PrefixBlockHashes hashes blocks inside
  // a message in place and gathers only those that span messages (issue 15); the hashes must be
  // these, for blocks smaller and larger than messages, and at the cut.
  auto reference = [](const LlmRequest& r, size_t block, size_t max_blocks) {
    std::string text;
    for (const sluice::ChatMessage& m : r.messages) text += m.role + "\x1f" + m.content + "\x1e";
    text.resize(std::min(text.size(), block * max_blocks));
    std::vector<uint64_t> out;
    uint64_t chain = XXH3_64bits(r.model.data(), r.model.size());
    for (size_t at = 0; at < text.size(); at += block) {
      chain = XXH3_64bits_withSeed(text.data() + at, std::min(block, text.size() - at), chain);
      out.push_back(chain);
    }
    return out;
  };
  std::mt19937 rng(15);
  for (int trial = 0; trial < 400; ++trial) {
    std::vector<std::pair<std::string, std::string>> messages;
    const int count = static_cast<int>(rng() % 7);
    for (int i = 0; i < count; ++i) {
      const size_t length = rng() % 4 == 0 ? 0 : rng() % 400;
      std::string content(length, ' ');
      for (char& c : content) c = static_cast<char>('a' + rng() % 26);
      messages.push_back({rng() % 5 == 0 ? "" : "user", content});
    }
    LlmRequest r = Chat("m", messages);
    sluice::PrefixHashOptions o;
    o.block_chars = std::vector<int64_t>{1, 3, 16, 128, 500}[rng() % 5];
    o.max_blocks = std::vector<int64_t>{1, 2, 7, 256}[rng() % 4];
    INFO("trial " << trial << ", block " << o.block_chars << ", max " << o.max_blocks);
    CHECK(PrefixBlockHashes(r, o) ==
          reference(r, static_cast<size_t>(o.block_chars), static_cast<size_t>(o.max_blocks)));
  }
}

TEST_CASE("engine metrics: vLLM and SGLang series, label sets summed, older KV name as fallback") {
  const auto vllm = Value(sluice::ParseEngineMetrics(
      "# HELP vllm:num_requests_waiting Number of requests waiting.\n"
      "# TYPE vllm:num_requests_waiting gauge\n"
      "vllm:num_requests_waiting{engine=\"0\",model_name=\"qwen\"} 3.0\n"
      "vllm:num_requests_waiting{engine=\"1\",model_name=\"qwen\"} 2\n"
      "vllm:num_requests_running{model_name=\"a \\\"quoted\\\" , {brace}\"} 7 1700000000000\n"
      "vllm:gpu_cache_usage_perc{model_name=\"qwen\"} 0.9\r\n"
      "vllm:kv_cache_usage_perc{model_name=\"qwen\"} 0.25\n"
      "vllm:prompt_tokens_total{model_name=\"qwen\"} 1.5e9\n"
      "process_cpu_seconds_total NaN\n"));
  CHECK(*vllm.waiting == 5);
  CHECK(*vllm.running == 7);
  CHECK(*vllm.kv_usage == 0.25);  // the newer name wins over gpu_cache_usage_perc

  const auto old_vllm = Value(sluice::ParseEngineMetrics("vllm:gpu_cache_usage_perc 0.5\n"));
  CHECK(*old_vllm.kv_usage == 0.5);
  CHECK_FALSE(old_vllm.waiting.has_value());

  const auto sglang = Value(sluice::ParseEngineMetrics(
      "sglang:num_queue_reqs{name=\"x\"} 4\nsglang:num_running_reqs{name=\"x\",} 9\n"
      "sglang:token_usage{name=\"x\"} 1.7\n"));
  CHECK(*sglang.waiting == 4);
  CHECK(*sglang.running == 9);
  CHECK(*sglang.kv_usage == 1.0);  // clamped
}

TEST_CASE("engine metrics: sums saturate at kEngineMetricsMaxRequests, never +inf") {
  // Two finite samples of one series once summed to +inf, which the balancer's scored strategy
  // turned into NaN scores for every endpoint.
  const auto m = Value(sluice::ParseEngineMetrics(
      "vllm:num_requests_waiting{engine=\"0\"} 1e308\nvllm:num_requests_waiting{engine=\"1\"} 1e308\n"
      "vllm:num_requests_running 1.7976931348623157e308\nsglang:num_running_reqs 5\n"));
  CHECK(*m.waiting == sluice::kEngineMetricsMaxRequests);
  CHECK(*m.running == sluice::kEngineMetricsMaxRequests);
  // Below the bound, sums are exact.
  CHECK(*Value(sluice::ParseEngineMetrics("sglang:num_queue_reqs 3\nsglang:num_queue_reqs 4\n")).waiting == 7);
}

TEST_CASE("engine metrics: malformed lines and bad values are errors naming the line") {
  using sluice::ParseEngineMetrics;
  CHECK_THAT(ErrorOf(ParseEngineMetrics("ok 1\n{x} 1\n")), Catch::Contains("line 2: expected a metric name"));
  CHECK_THAT(ErrorOf(ParseEngineMetrics("a{b=\"c} 1\n")), Catch::Contains("line 1: unterminated"));
  CHECK_THAT(ErrorOf(ParseEngineMetrics("a{b=c} 1")), Catch::Contains("quoted label value"));
  CHECK_THAT(ErrorOf(ParseEngineMetrics("a{b=\"c\" d=\"e\"} 1")), Catch::Contains("',' or '}'"));
  CHECK_THAT(ErrorOf(ParseEngineMetrics("a")), Catch::Contains("expected a value"));
  CHECK_THAT(ErrorOf(ParseEngineMetrics("a 1x")), Catch::Contains("bad value"));
  CHECK_THAT(ErrorOf(ParseEngineMetrics("a 1 t")), Catch::Contains("bad timestamp"));
  CHECK_THAT(ErrorOf(ParseEngineMetrics("vllm:num_requests_waiting -1")),
             Catch::Contains("vllm:num_requests_waiting must be finite and >= 0"));
  CHECK_THAT(ErrorOf(ParseEngineMetrics("\n\nsglang:token_usage NaN")), Catch::Contains("line 3"));
  CHECK(ParseEngineMetrics("").ok());
}

// The C ABI passes (NULL, 0) on as std::string_view(nullptr, 0), a valid empty view; a parser
// that handed its data() to simdjson reached memcpy with a null source (undefined behaviour,
// reported by the asan preset's UBSan). CompletionToSse, CanonicalizeJson and MakeCacheKey are
// covered in sse_replay_test and cache_key_test.
TEST_CASE("parsers take an empty view with a null pointer") {
  const std::string_view null_view(nullptr, 0);
  CHECK_THAT(ErrorOf(ParseLlmRequest(null_view)), Catch::Contains("body"));
  const sluice::EngineMetrics m = Value(sluice::ParseEngineMetrics(null_view));
  CHECK_FALSE(m.waiting.has_value());
  CHECK(sluice::ClassifyProviderError(null_view) == sluice::Failure::kNone);
  CHECK(sluice::Classify({.http_status = 400, .error_body = null_view}) == sluice::Failure::kClient);
  CHECK_FALSE(sluice::ParseRetryAfter(null_view, absl::UnixEpoch()).has_value());
  CHECK_FALSE(sluice::internal::DecodeCacheRecord(null_view).ok());
}
