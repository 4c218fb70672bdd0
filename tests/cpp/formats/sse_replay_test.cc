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

TEST_CASE("replay: a completion's events grow linearly with it, whatever its shape") {
  // A long id and many choices: the id once went into two events per choice (quadratic: 271 KB
  // in, 2.46 GB out). sse_replay.h promises at most 10 x the input + 512 bytes.
  std::string completion = R"({"id":")" + std::string(16 * 1024, 'i') +
                           R"(","model":")" + std::string(4 * 1024, 'm') + R"(","choices":[)";
  for (int i = 0; i < 1000; ++i) completion += std::string(i ? "," : "") + R"({"message":{}})";
  completion += "]}";
  const std::vector<std::string> events = Value(CompletionToSse(completion));
  size_t out = 0;
  for (const std::string& e : events) out += e.size();
  CHECK(out <= 10 * completion.size() + 512);
  // Every choice is still there, in order, and the head is on every event.
  const std::string back = Value(SseToCompletion(events));
  CHECK(back.find(R"({"index":999,"message":{"role":"assistant","content":""})") != std::string::npos);
  for (const std::string& e : events) {
    if (e != "data: [DONE]\n\n") CHECK(e.find(std::string(16 * 1024, 'i')) != std::string::npos);
  }
}

TEST_CASE("replay: a completion without choices keeps its id, model, created and usage") {
  const std::string completion =
      R"({"object":"chat.completion","id":"c-9","created":1700000001,"model":"m",)"
      R"("choices":[],"usage":{"prompt_tokens":5,"completion_tokens":0,"total_tokens":5}})";
  const std::vector<std::string> events = Value(CompletionToSse(completion));
  REQUIRE(events.size() == 2);
  CHECK(events[0] ==
        "data: {\"object\":\"chat.completion.chunk\",\"id\":\"c-9\",\"created\":1700000001,"
        "\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":0,"
        "\"total_tokens\":5}}\n\n");
  CHECK(Value(SseToCompletion(events)) == completion);
}

TEST_CASE("replay: several choices share two events and come back apart") {
  const std::string completion =
      R"({"object":"chat.completion","id":"c","created":1,"model":"m","choices":[)"
      R"({"index":0,"message":{"role":"assistant","content":"one"},"finish_reason":"stop"},)"
      R"({"index":1,"message":{"role":"assistant","content":"two"},"finish_reason":"length"}]})";
  const std::vector<std::string> events = Value(CompletionToSse(completion));
  REQUIRE(events.size() == 3);
  CHECK(Value(SseToCompletion(events)) == completion);
}

TEST_CASE("replay: streams are read line by line, as the EventSource spec reads them") {
  const std::string expected =
      R"({"object":"chat.completion","id":"s","created":3,"model":"m","choices":[)"
      R"({"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],)"
      R"("usage":{"total_tokens":2}})";
  const std::string first =
      R"({"id":"s","created":3,"model":"m","choices":[{"index":0,"delta":{"role":"assistant",)"
      R"("content":"He"}}]})";
  const std::string second =
      R"({"id":"s","choices":[{"index":0,"delta":{"content":"llo"},"finish_reason":"stop"}],)"
      R"("usage":{"total_tokens":2}})";
  // Each line end (LF, CRLF, CR) gives the same answer.
  for (const std::string eol : {"\n", "\r\n", "\r"}) {
    INFO("line end " << (eol == "\n" ? "LF" : eol == "\r" ? "CR" : "CRLF"));
    // id: after data:, a comment that mentions data:, a retry field, and both events in one chunk.
    const std::string one_chunk = ": keep-alive data: {\"nope\"" + eol + "data: " + first + eol +
                                  "id: 41" + eol + eol + "retry: 100" + eol + "data:" + second +
                                  eol + "id: 42" + eol + eol + "data: [DONE]" + eol + eol;
    CHECK(Value(SseToCompletion({one_chunk})) == expected);
    // One JSON value over three data: lines (joined with '\n'), and an event split over chunks.
    const size_t at = first.find("\"model\""), at2 = first.find("\"choices\"");
    const std::string split = "data: " + first.substr(0, at) + eol + "data: " +
                              first.substr(at, at2 - at) + eol + "data:" + first.substr(at2) + eol +
                              eol + "event: message" + eol + "data: " + second.substr(0, 40);
    CHECK(Value(SseToCompletion({split, second.substr(40) + eol, eol, "data: [DONE]" + eol + eol})) ==
          expected);
  }
  // A CRLF split between two chunks is one line end, not two (which would end the event early).
  CHECK(Value(SseToCompletion({"data: " + first + "\r", "\n\r\ndata: " + second + "\n\n"})) ==
        expected);
  // Events of other types and with empty data are skipped; an event the stream ends inside of
  // is not dispatched.
  CHECK(Value(SseToCompletion({"event: ping\ndata: not json\n\ndata:\n\ndata: " + first + "\n\ndata: " +
                               second + "\n\ndata: {\"id\": \"cut"})) == expected);
  // Errors name the chunk the event ended in.
  CHECK_THAT(std::string(SseToCompletion({"data: " + first + "\n\n", "data: {", "x\n\n"})
                             .status()
                             .message()),
             Catch::Contains("chunk 2"));
}

TEST_CASE("replay: an empty view with a null pointer is an error, not undefined behaviour") {
  CHECK(CompletionToSse(std::string_view(nullptr, 0)).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(Value(SseToCompletion({})) == R"({"object":"chat.completion","choices":[]})");
}
