#include "sluice/sse_replay.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "test_support.h"

using sluice::CompletionToSse;
using sluice::SseToCompletion;
using sluice_test::Value;

namespace {

const std::string kCompletion =
    R"({"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o",)"
    R"("choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"world\"\n"},)"
    R"("finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}})";

}  // namespace

TEST_CASE("replay: a whole completion becomes the SSE events a streaming client expects") {
  const std::vector<std::string> events = Value(CompletionToSse(kCompletion));
  REQUIRE(events.size() == 3);
  CHECK(events[0] ==
        "data: {\"object\":\"chat.completion.chunk\",\"id\":\"chatcmpl-1\",\"created\":1700000000,"
        "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
        "\"content\":\"Hello \\\"world\\\"\\n\"},\"finish_reason\":null}]}\n\n");
  CHECK(events[1] ==
        "data: {\"object\":\"chat.completion.chunk\",\"id\":\"chatcmpl-1\",\"created\":1700000000,"
        "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}\n\n");
  CHECK(events[2] == "data: [DONE]\n\n");
}

TEST_CASE("replay: a stored stream becomes one completion, and back again") {
  const std::vector<std::string> stream = {
      "data: {\"id\":\"c-2\",\"created\":7,\"model\":\"qwen\",\"choices\":[{\"index\":0,"
      "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
      "data: {\"id\":\"c-2\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
      "data: {\"id\":\"c-2\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},"
      "\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
      "data: {\"id\":\"c-2\",\"choices\":[],\"usage\":{\"total_tokens\":4}}\n\n",
      "data: [DONE]\n\n"};
  const std::string completion = Value(SseToCompletion(stream));
  CHECK(completion ==
        "{\"object\":\"chat.completion\",\"id\":\"c-2\",\"created\":7,\"model\":\"qwen\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello\"},"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"total_tokens\":4}}");
  // Round trip: the completion's stream reads back as the same completion.
  CHECK(Value(SseToCompletion(Value(CompletionToSse(completion)))) == completion);
  CHECK(Value(SseToCompletion(Value(CompletionToSse(kCompletion)))).find("Hello \\\"world\\\"\\n") !=
        std::string::npos);
}

TEST_CASE("replay: errors name the problem, tool calls are left alone") {
  CHECK(CompletionToSse("{").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(CompletionToSse(R"({"choices":[1]})").status().message()),
             Catch::Contains("choices[0].message"));
  CHECK(CompletionToSse(R"({"choices":[{"message":{"tool_calls":[]}}]})").status().code() ==
        absl::StatusCode::kUnimplemented);
  CHECK(SseToCompletion({"data: {\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}\n\n"}).status().code() ==
        absl::StatusCode::kUnimplemented);
  CHECK_THAT(std::string(SseToCompletion({"data: {nope\n\n"}).status().message()),
             Catch::Contains("chunk 0"));
}
