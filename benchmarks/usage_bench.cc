// Google Benchmark: UsageReader's throughput over answers shaped as providers stream them. Run:
// build/dev/benchmarks/usage_bench
//
// BM_OpenAIStream/<chunk>:    a chat completion stream with stream_options.include_usage: 400
//                             content chunks ("usage": null each, English and Chinese deltas),
//                             the finish chunk, the usage chunk, [DONE].
// BM_AnthropicStream/<chunk>: a Messages stream: message_start, a text block of 400 deltas with a
//                             ping, message_delta with the output count, message_stop.
// BM_EstimatePrompt:          EstimatePromptTokens on a 6-message chat request (~4 KB).
// <chunk> is the size of each Feed: 1 byte (the worst case), 64 bytes, 4 KiB (a typical read).
// The rate is the answer's bytes per second ("bytes_per_second").
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include "sluice/usage.h"

namespace {

std::string OpenAIStream() {
  const std::string head =
      R"(data: {"id":"chatcmpl-AzB3k","object":"chat.completion.chunk","created":1727000000,)"
      R"("model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5f20662549","choices":)";
  std::string s = head + R"([{"index":0,"delta":{"role":"assistant","content":"","refusal":null},)"
                         R"("logprobs":null,"finish_reason":null}],"usage":null})" "\n\n";
  for (int i = 0; i < 400; ++i) {
    const char* delta = i % 3 == 0 ? " the" : i % 3 == 1 ? " quota" : "令牌";
    s += head + R"([{"index":0,"delta":{"content":")" + std::string(delta) +
         R"("},"logprobs":null,"finish_reason":null}],"usage":null})" "\n\n";
  }
  s += head + R"([{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null})"
              "\n\n";
  s += head + R"([],"usage":{"prompt_tokens":1919,"completion_tokens":401,"total_tokens":2320,)"
              R"("prompt_tokens_details":{"cached_tokens":1792,"audio_tokens":0},)"
              R"("completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,)"
              R"("accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}})" "\n\n";
  s += "data: [DONE]\n\n";
  return s;
}

std::string AnthropicStream() {
  std::string s =
      "event: message_start\n"
      R"(data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message",)"
      R"("role":"assistant","content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,)"
      R"("stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,)"
      R"("cache_read_input_tokens":2048,"output_tokens":2}}})" "\n\n"
      "event: content_block_start\n"
      R"(data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"
      "\n\n"
      "event: ping\ndata: {\"type\": \"ping\"}\n\n";
  for (int i = 0; i < 400; ++i) {
    const char* text = i % 3 == 0 ? " the" : i % 3 == 1 ? " budget" : "用量";
    s += "event: content_block_delta\n"
         R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":")" +
         std::string(text) + "\"}}\n\n";
  }
  s += "event: content_block_stop\n"
       R"(data: {"type":"content_block_stop","index":0})" "\n\n"
       "event: message_delta\n"
       R"(data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},)"
       R"("usage":{"output_tokens":401}})" "\n\n"
       "event: message_stop\n"
       R"(data: {"type":"message_stop"})" "\n\n";
  return s;
}

void ReadStream(benchmark::State& state, const std::string& answer, sluice::Provider provider) {
  const size_t chunk = static_cast<size_t>(state.range(0));
  const std::string_view view = answer;
  for (auto _ : state) {
    sluice::UsageReader reader(provider);
    for (size_t at = 0; at < view.size(); at += chunk) reader.Feed(view.substr(at, chunk));
    absl::StatusOr<sluice::Usage> usage = reader.Finish();
    if (!usage.ok()) std::abort();  // the benchmark measures a read that finds the usage
    benchmark::DoNotOptimize(usage->total_tokens);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(answer.size()));
  state.counters["answer_bytes"] = static_cast<double>(answer.size());
}

void BM_OpenAIStream(benchmark::State& state) {
  static const std::string answer = OpenAIStream();
  ReadStream(state, answer, sluice::Provider::kOpenAIChat);
}
BENCHMARK(BM_OpenAIStream)->Arg(1)->Arg(64)->Arg(4096);

void BM_AnthropicStream(benchmark::State& state) {
  static const std::string answer = AnthropicStream();
  ReadStream(state, answer, sluice::Provider::kAnthropic);
}
BENCHMARK(BM_AnthropicStream)->Arg(1)->Arg(64)->Arg(4096);

void BM_EstimatePrompt(benchmark::State& state) {
  std::string body = R"({"model":"gpt-4o","messages":[{"role":"system","content":"You are a )"
                     R"(careful assistant that answers briefly."})";
  for (int i = 0; i < 5; ++i) {
    body += R"(,{"role":"user","content":"Please summarize the following paragraph about rate )"
            R"(limits, token budgets and fallback chains in an AI gateway, keeping every number )"
            R"(exact. 令牌预算在调用之前预留估计值，调用结束后按实际用量结算。 int main() { return 0; } )"
            R"(The quick brown fox jumps over the lazy dog, again and again, 1234567890 times."})";
  }
  body += "]}";
  for (auto _ : state) benchmark::DoNotOptimize(sluice::EstimatePromptTokens(body));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(body.size()));
}
BENCHMARK(BM_EstimatePrompt);

}  // namespace

BENCHMARK_MAIN();
