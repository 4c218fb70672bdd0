// Fuzz target: CompletionToSse on arbitrary bytes, and the round trip back through
// SseToCompletion (see fuzz_llm_request.cc for how it runs). Invariants, from sse_replay.h:
//   * the events are at most 10 x the input + 512 bytes (a cached record is untrusted input);
//   * each is "data: ...\n\n", the last is [DONE];
//   * they read back, whole or cut into any chunks, as the same completion, which keeps the
//     input's id, model (strings), created (an integer), usage (not null), and each choice's
//     string content, non-empty role and finish reason (when the choices' indices are distinct).
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "sluice/sse_replay.h"

namespace {

using simdjson::dom::element;
using simdjson::dom::object;

// The member as minified JSON, or "" when absent (or null, with `null_is_absent`).
std::string Minified(object o, std::string_view name, bool null_is_absent) {
  element value;
  if (o[name].get(value) != simdjson::SUCCESS) return "";
  if (null_is_absent && value.is_null()) return "";
  return simdjson::minify(value);
}

std::string StringMember(object o, std::string_view name, bool* present) {
  std::string_view s;
  *present = o[name].get_string().get(s) == simdjson::SUCCESS;
  return std::string(*present ? s : std::string_view());
}

void CheckRoundTrip(std::string_view input, const std::string& back) {
  simdjson::dom::parser in_parser, back_parser;
  object in, out;
  FUZZ_CHECK(in_parser.parse(std::string(input)).get_object().get(in) == simdjson::SUCCESS);
  FUZZ_CHECK(back_parser.parse(back).get_object().get(out) == simdjson::SUCCESS);
  for (std::string_view field : {"id", "model"}) {
    bool in_has, out_has;
    const std::string a = StringMember(in, field, &in_has), b = StringMember(out, field, &out_has);
    FUZZ_CHECK(in_has == out_has && a == b);
  }
  element created;
  const bool integer_created = in["created"].get(created) == simdjson::SUCCESS &&
                               (created.is_int64() || created.is_uint64());
  FUZZ_CHECK(Minified(out, "created", false) == (integer_created ? simdjson::minify(created) : ""));
  // usage is minified once more on the way back; minify is idempotent from then on.
  const std::string usage_in = Minified(in, "usage", true);
  std::string usage_twice;
  if (!usage_in.empty()) {
    simdjson::dom::parser p;
    usage_twice = simdjson::minify(p.parse(usage_in).value_unsafe());
  }
  FUZZ_CHECK(Minified(out, "usage", true) == usage_twice);

  // The choices, by their effective index (as CompletionToSse numbers them).
  simdjson::dom::array in_choices, out_choices;
  FUZZ_CHECK(in["choices"].get_array().get(in_choices) == simdjson::SUCCESS);
  FUZZ_CHECK(out["choices"].get_array().get(out_choices) == simdjson::SUCCESS);
  std::map<int64_t, object> by_index;
  for (element c : out_choices) {
    object o = c.get_object().value_unsafe();
    by_index[o["index"].get_int64().value_unsafe()] = o;
  }
  std::set<int64_t> seen;
  int64_t position = 0;
  std::vector<std::pair<int64_t, object>> inputs;
  for (element c : in_choices) {
    object o = c.get_object().value_unsafe();
    int64_t index = position++;
    if (o["index"].get_int64().get(index) != simdjson::SUCCESS) index = position - 1;
    if (!seen.insert(index).second) return;  // a shared index merges choices: nothing to compare
    inputs.emplace_back(index, o);
  }
  FUZZ_CHECK(by_index.size() == inputs.size());
  for (const auto& [index, choice] : inputs) {
    FUZZ_CHECK(by_index.count(index) == 1);
    object message = choice["message"].get_object().value_unsafe();
    object back_message = by_index[index]["message"].get_object().value_unsafe();
    bool has, back_has;
    const std::string content = StringMember(message, "content", &has);
    if (has) FUZZ_CHECK(StringMember(back_message, "content", &back_has) == content);
    const std::string role = StringMember(message, "role", &has);
    if (has && !role.empty()) FUZZ_CHECK(StringMember(back_message, "role", &back_has) == role);
    const std::string finish = Minified(choice, "finish_reason", true);
    if (!finish.empty()) {
      simdjson::dom::parser p;
      FUZZ_CHECK(Minified(by_index[index], "finish_reason", true) ==
                 simdjson::minify(p.parse(finish).value_unsafe()));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = sluice_fuzz::View(data, size);
  absl::StatusOr<std::vector<std::string>> events = sluice::CompletionToSse(text);
  if (!events.ok()) {
    FUZZ_CHECK(!events.status().message().empty());
    return 0;
  }
  size_t total = 0;
  std::string stream;
  for (const std::string& e : *events) {
    FUZZ_CHECK(e.rfind("data: ", 0) == 0 && e.size() >= 8 && e.substr(e.size() - 2) == "\n\n");
    total += e.size();
    stream += e;
  }
  FUZZ_CHECK(total <= 10 * size + 512);
  FUZZ_CHECK(events->back() == "data: [DONE]\n\n");
  absl::StatusOr<std::string> back = sluice::SseToCompletion(*events);
  FUZZ_CHECK(back.ok());
  CheckRoundTrip(text, *back);
  // Cut anywhere, the stream reads the same.
  std::vector<std::string> chunks;
  const size_t step = 1 + size % 7;
  for (size_t at = 0; at < stream.size(); at += step) chunks.push_back(stream.substr(at, step));
  absl::StatusOr<std::string> cut = sluice::SseToCompletion(chunks);
  FUZZ_CHECK(cut.ok() && *cut == *back);
  return 0;
}
