// IncludeUsageInStream and EstimatePromptTokens.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <string>

#include "sluice/usage.h"

using sluice::EstimateOptions;
using sluice::EstimatePromptTokens;
using sluice::EstimateTextTokens;
using sluice::IncludeUsageInStream;

TEST_CASE("include usage: a streaming chat request gets stream_options, its bytes kept") {
  const std::string body = "{\n  \"model\": \"gpt-4o\",\n  \"messages\": [{\"role\": \"user\", "
                           "\"content\": \"hi\"}],\n  \"stream\": true\n}\n";
  CHECK(IncludeUsageInStream(body).value() ==
        "{\n  \"model\": \"gpt-4o\",\n  \"messages\": [{\"role\": \"user\", "
        "\"content\": \"hi\"}],\n  \"stream\": true,\"stream_options\":{\"include_usage\":true}\n}\n");
  CHECK(IncludeUsageInStream(R"({"prompt":"Say this","stream":true})").value() ==
        R"({"prompt":"Say this","stream":true,"stream_options":{"include_usage":true}})");
}

TEST_CASE("include usage: bodies that need nothing come back byte for byte") {
  for (const std::string& body : {
           std::string(R"({"messages":[],"stream":false})"),
           std::string(R"({"messages":[]})"),
           std::string(R"( {"messages":[],"stream":true,"stream_options":{"include_usage":true}} )"),
           std::string(R"({"input":"hi","stream":true})"),  // Responses: usage always sent
           std::string(R"({"model":"x","stream":true})"),
       }) {
    INFO(body);
    CHECK(IncludeUsageInStream(body).value() == body);
  }
}

TEST_CASE("include usage: existing stream_options are merged, include_usage false overridden") {
  CHECK(IncludeUsageInStream(
            R"({"messages":[{"role":"user","content":"é"}],"stream":true,"stream_options":{"include_obfuscation":false},"temperature":0.5})")
            .value() ==
        R"({"messages":[{"role":"user","content":"é"}],"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true},"temperature":0.5})");
  CHECK(IncludeUsageInStream(
            R"({"stream_options":{"include_usage":false},"messages":[],"stream":true})")
            .value() == R"({"stream_options":{"include_usage":true},"messages":[],"stream":true})");
  CHECK(IncludeUsageInStream(R"({"stream_options":null,"messages":[],"stream":true})").value() ==
        R"({"stream_options":{"include_usage":true},"messages":[],"stream":true})");
}

TEST_CASE("include usage: errors name the problem") {
  auto message = [](std::string_view body) {
    absl::StatusOr<std::string> out = IncludeUsageInStream(body);
    REQUIRE(out.status().code() == absl::StatusCode::kInvalidArgument);
    return std::string(out.status().message());
  };
  CHECK_THAT(message("{\"stream\": tru"), Catch::StartsWith("usage: request body: not JSON ("));
  CHECK_THAT(message(std::string_view()), Catch::StartsWith("usage: request body: not JSON ("));
  CHECK(message("[1]") == "usage: request body: not a JSON object");
  CHECK(message(R"({"messages":[],"stream":"yes"})") ==
        "usage: request body: stream must be a boolean, got \"yes\"");
  CHECK(message(R"({"messages":[],"stream":true,"stream_options":[1]})") ==
        "usage: request body: stream_options must be an object, got [1]");
  CHECK(message(R"({"messages":[],"stream":false,"stream":true})") ==
        "usage: request body: duplicate member stream");
  CHECK(message(R"({"messages":[],"stream":true,"stream_options":{},"stream_options":{}})") ==
        "usage: request body: duplicate member stream_options");
}

TEST_CASE("estimate: the text rule, term by term") {
  CHECK(EstimateTextTokens("") == 0);
  CHECK(EstimateTextTokens("hello") == 1);
  CHECK(EstimateTextTokens("internationalization") == 2);  // 20 letters: 1 + 19 / 10
  CHECK(EstimateTextTokens("1234567") == 3);               // digits by threes
  CHECK(EstimateTextTokens("a, b.") == 3);                 // 2 words + 2 x 0.6
  CHECK(EstimateTextTokens("一二三四五六七八九十一二") == 10);  // 12 CJK characters / 1.2
  EstimateOptions cl100k;
  cl100k.cjk_chars_per_token = 1.0;
  CHECK(EstimateTextTokens("一二三四五六七八九十一二", cl100k) == 12);
  CHECK(EstimateTextTokens("\xC3\x28\xFF") == 1);  // invalid UTF-8: 3 bytes / 2.5
}

TEST_CASE("estimate: within its documented bound of o200k_base on English, Chinese, code, JSON") {
  // Reference counts from o200k_base (pip install bpe-openai; bpe_openai.get_encoding(
  // "o200k_base").encode(text)); the estimator must stay within 25% of each (docs/usage.md has
  // the corpus-wide median and p90).
  struct Case {
    const char* text;
    int64_t o200k;
  };
  const Case cases[] = {
      {"The quick brown fox jumps over the lazy dog. Rate limiting protects shared upstream "
       "capacity from bursts of traffic, and token budgets keep a tenant within its plan.",
       31},
      {"令牌预算在调用之前预留估计值，调用结束后按实际用量结算，多退少补。速率限制保护上游模型的共享容量。",
       37},
      {"int64_t Sum(const std::vector<int64_t>& v) {\n  int64_t total = 0;\n  for (int64_t x : v) "
       "total += x;\n  return total;\n}\n",
       43},
      {R"({"id": 42, "name": "sluice", "tags": ["rate", "limit"], "score": 98.5, "active": true})",
       35},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    const int64_t estimate = EstimateTextTokens(c.text);
    INFO("estimate " << estimate << ", o200k_base " << c.o200k);
    CHECK(std::abs(static_cast<double>(estimate - c.o200k)) <= 0.25 * static_cast<double>(c.o200k));
  }
}

TEST_CASE("estimate: a request's overheads and the members read per API") {
  // OpenAI's cookbook count for one user message "Hello": 3 + 1 (role) + 1 + 3 (priming) = 8.
  CHECK(EstimatePromptTokens(R"({"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]})") == 8);
  // A name costs one more token beside its text.
  CHECK(EstimatePromptTokens(
            R"({"messages":[{"role":"user","name":"bob","content":"Hello"}]})") == 10);
  // Parts: text counted, an image at tokens_per_image.
  EstimateOptions options;
  options.tokens_per_image = 85;
  CHECK(EstimatePromptTokens(
            R"({"messages":[{"role":"user","content":[{"type":"text","text":"Hello"},)"
            R"({"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]})",
            options) == 8 + 85);
  // The same text through each API's members costs about the same.
  const std::string text = "Summarize the quarterly report in three short bullet points please";
  const int64_t chat = EstimatePromptTokens(
      R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":")" + text +
      R"("}]})");
  const int64_t anthropic = EstimatePromptTokens(
      R"({"system":[{"type":"text","text":"Be brief."}],"messages":[{"role":"user","content":[{"type":"text","text":")" +
      text + R"("}]}]})");
  const int64_t gemini = EstimatePromptTokens(
      R"({"systemInstruction":{"parts":[{"text":"Be brief."}]},"contents":[{"role":"user","parts":[{"text":")" +
      text + R"("}]}]})");
  const int64_t responses = EstimatePromptTokens(
      R"({"instructions":"Be brief.","input":[{"role":"user","content":[{"type":"input_text","text":")" +
      text + R"("}]}]})");
  const int64_t dashscope = EstimatePromptTokens(
      R"({"model":"qwen-plus","input":{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":")" +
      text + R"("}]}})");
  CHECK(chat == dashscope);
  for (int64_t other : {anthropic, gemini, responses}) {
    INFO("chat " << chat << ", other " << other);
    CHECK(std::abs(other - chat) <= 6);  // message overheads differ, the text does not
  }
  // A completions prompt (string or list) and tool definitions count too.
  CHECK(EstimatePromptTokens(R"({"prompt":["Hello","Hello"]})") == 2 + 3);
  CHECK(EstimatePromptTokens(R"({"messages":[],"tools":[{"type":"function","function":{"name":"get_weather"}}]})") >
        EstimatePromptTokens(R"({"messages":[]})"));
}

TEST_CASE("estimate: not JSON is plain text, scale, the floor, monotone in the text") {
  CHECK(EstimatePromptTokens("hello world") == 2 + 3);
  CHECK(EstimatePromptTokens(std::string_view()) == 3);
  EstimateOptions doubled;
  doubled.scale = 2.0;
  CHECK(EstimatePromptTokens(R"({"messages":[{"role":"user","content":"Hello"}]})", doubled) == 16);
  std::string content;
  int64_t last = 0;
  for (int i = 0; i < 200; ++i) {
    content += i % 3 == 0 ? "word " : i % 3 == 1 ? "字" : "{k: 1}";
    const int64_t now = EstimatePromptTokens(R"({"messages":[{"role":"user","content":")" +
                                             content + "\"}]}");
    REQUIRE(now >= last);
    last = now;
  }
}
