// Deterministic OpenAI chat bodies for the balancer benchmarks: a system prompt and alternating
// user / assistant turns of word-salad English, about 4 bytes a token. Every conversation starts
// with its own fixed-width id, so two conversations share no prefix block and an id can be
// rewritten in place (no allocation inside a timed loop).
#ifndef SLUICE_BENCHMARKS_CHAT_BODY_H_
#define SLUICE_BENCHMARKS_CHAT_BODY_H_

#include <cstdint>
#include <cstdio>
#include <string>

namespace sluice_bench {

// Text of `chars` bytes (JSON-safe: letters, spaces, punctuation, escaped newlines), from `seed`.
inline std::string Prose(uint64_t seed, size_t chars) {
  static const char* const kWords[] = {
      "the",     "model",   "request", "cache",   "replica", "token",  "prompt",  "answer",
      "please",  "explain", "why",     "latency", "budget",  "stream", "server",  "queue",
      "of",      "and",     "a",       "to",      "in",      "with",   "routing", "prefix",
      "context", "window",  "user",    "system",  "assist",  "tool",   "call",    "json",
      "python",  "error",   "retry",   "limit",   "rate",    "key",    "value",   "shard"};
  std::string out;
  out.reserve(chars + 16);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  size_t sentence = 0;
  while (out.size() < chars) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    out.append(kWords[(x >> 33) % (sizeof(kWords) / sizeof(kWords[0]))]);
    if (++sentence % 12 == 0) {
      out.append(sentence % 48 == 0 ? ".\\n" : ". ");
    } else {
      out.push_back(' ');
    }
  }
  out.resize(chars);
  if (out.back() == '\\') out.back() = '.';  // never cut an escape in half
  return out;
}

// The digits of a conversation id start here in a ChatBody (and in messages[0].content).
constexpr size_t kIdDigits = 16;
inline constexpr char kIdLead[] = "Conversation ";

// Writes `id` into the kIdDigits characters at `at`.
inline void WriteId(char* at, uint64_t id) {
  char digits[kIdDigits + 1];
  std::snprintf(digits, sizeof(digits), "%016llu", static_cast<unsigned long long>(id));
  for (size_t i = 0; i < kIdDigits; ++i) at[i] = digits[i];
}

struct ChatBody {
  std::string json;
  size_t id_at = 0;  // offset of the id digits in json
};

// About `chars` bytes of message content: an 1/8 system prompt, then turns of ~2,000 bytes.
inline ChatBody MakeChatBody(uint64_t id, size_t chars) {
  ChatBody body;
  body.json = R"({"model":"qwen2.5-7b","stream":true,"messages":[{"role":"system","content":")";
  body.json += kIdLead;
  body.id_at = body.json.size();
  body.json.append(kIdDigits, '0');
  WriteId(body.json.data() + body.id_at, id);
  body.json += ". ";
  const size_t system = chars / 8;
  body.json += Prose(0, system - sizeof(kIdLead) - kIdDigits - 1);  // shared by every conversation
  body.json += R"("})";
  size_t left = chars - system;
  for (int turn = 0; left > 0; ++turn) {
    const size_t n = left < 2000 ? left : 2000;
    body.json += turn % 2 == 0 ? R"(,{"role":"user","content":")" : R"(,{"role":"assistant","content":")";
    body.json += Prose(id * 1000 + static_cast<uint64_t>(turn), n);
    body.json += R"("})";
    left -= n;
  }
  body.json += "]}";
  return body;
}

// The body with one more assistant reply and user turn (~`chars` bytes each) appended.
inline void AppendTurn(std::string& json, uint64_t seed, size_t chars) {
  json.resize(json.size() - 2);  // "]}"
  json += R"(,{"role":"assistant","content":")";
  json += Prose(seed, chars);
  json += R"("},{"role":"user","content":")";
  json += Prose(seed + 1, chars);
  json += R"("}]})";
}

}  // namespace sluice_bench

#endif  // SLUICE_BENCHMARKS_CHAT_BODY_H_
