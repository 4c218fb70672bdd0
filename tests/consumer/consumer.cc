// Builds against the installed sluice: the headers, sluice::sluice and its Abseil dependency.
//
// It also includes simdjson.h and parses with its own simdjson::dom::parser, as a server that
// uses simdjson itself would. sluice's objects hold simdjson's inline functions (the parser's
// constructor and destructor among them) compiled with the layout SIMDJSON_THREADS_ENABLED picks;
// the linker keeps one copy of each for the whole program, so this file must see the same
// definition or sluice's JSON parsing writes past its parser (it once crashed in
// dom::parser::~parser, called from sse_replay.cc). sluice::sluice carries the definition.
#include <simdjson.h>

#include <cstdio>
#include <string>
#include <vector>

#include "sluice/sluice.hpp"

namespace {

bool RateLimiterWorks() {
  sluice::ManualClock clock;
  sluice::RateLimiter::Options options;
  options.windows = {sluice::Window::PerSecond(2)};
  auto limiter = sluice::RateLimiter::Create(options, &clock);
  if (!limiter.ok()) return false;
  const bool a = (*limiter)->Allow("k"), b = (*limiter)->Allow("k"), c = (*limiter)->Allow("k");
  std::printf("sluice %s: %d %d %d\n", SLUICE_VERSION_STRING, a, b, c);
  return a && b && !c;
}

bool JsonWorksNextToOurOwnSimdjson() {
  simdjson::dom::parser ours;  // the consumer's own parser, alive across sluice's calls
  simdjson::dom::element doc;
  const std::string mine = R"({"mine":[1,2,3]})";
  if (ours.parse(mine).get(doc) != simdjson::SUCCESS) return false;

  const std::string body =
      R"({"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5})";
  absl::StatusOr<sluice::LlmRequest> request = sluice::ParseLlmRequest(body);
  absl::StatusOr<sluice::CacheKey> key = sluice::MakeCacheKey(body, "tenant");
  const std::string completion =
      R"({"id":"c","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant",)"
      R"("content":"hello"},"finish_reason":"stop"}],"usage":{"total_tokens":3}})";
  absl::StatusOr<std::vector<std::string>> events = sluice::CompletionToSse(completion);
  if (!request.ok() || !key.ok() || !events.ok()) return false;
  absl::StatusOr<std::string> back = sluice::SseToCompletion(*events);
  if (!back.ok()) return false;

  // Our parser still works after sluice's, and theirs after ours.
  int64_t sum = 0;
  simdjson::dom::array numbers;
  if (ours.parse(R"([40,2])", 6).get(numbers) != simdjson::SUCCESS) return false;
  for (simdjson::dom::element n : numbers) sum += n.get_int64().value_unsafe();
  std::printf("model %s, key %s, %zu events, sum %lld\n", request->model.c_str(),
              key->DigestHex().c_str(), events->size(), static_cast<long long>(sum));
  return request->model == "m" && key->canonical.find("\"temperature\":0.5") != std::string::npos &&
         back->find("\"content\":\"hello\"") != std::string::npos && sum == 42 &&
         sluice::ParseLlmRequest(body).ok();
}

// The policy parser links yaml-cpp, which the installed package's config finds again.
bool PolicyWorks() {
  absl::StatusOr<sluice::Policy> policy =
      sluice::ParsePolicy("version: 1\nrules: [{name: r, requests: [600/1m]}]\n", "c.yaml");
  absl::StatusOr<sluice::Policy> bad = sluice::ParsePolicy("version: 2\n", "c.yaml");
  return policy.ok() && policy->rules.size() == 1 && policy->rules[0].limits.requests[0].limit == 600 &&
         !bad.ok();
}

}  // namespace

int main() {
  const bool limiter = RateLimiterWorks();
  const bool json = JsonWorksNextToOurOwnSimdjson();
  const bool policy = PolicyWorks();
  return limiter && json && policy ? 0 : 1;
}
