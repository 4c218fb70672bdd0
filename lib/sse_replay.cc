#include "sluice/sse_replay.h"

#include <simdjson.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "canonical_json.h"

namespace sluice {
inline namespace v1 {
namespace {

using internal::AppendJsonString;
using simdjson::dom::element;

// Reads an optional field: `out` keeps its default when the field is absent or of another type.
template <typename T>
void ReadOptional(simdjson::simdjson_result<T> field, T& out) {
  T value;
  if (std::move(field).get(value) == simdjson::SUCCESS) out = value;
}

absl::Status Invalid(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("SSE replay: ", std::string(what)));
}

// Appends `"name":<value as minified JSON>` when `object` has the member.
void CopyMember(simdjson::dom::object object, std::string_view name, std::string& out) {
  element value;
  if (object[name].get(value) != simdjson::SUCCESS) return;
  out.push_back(',');
  AppendJsonString(name, out);
  out.push_back(':');
  out.append(simdjson::minify(value));
}

// The head every chunk shares: {"id":...,"object":"chat.completion.chunk","created":...,"model":...
std::string ChunkHead(simdjson::dom::object completion) {
  std::string head = R"({"object":"chat.completion.chunk")";
  for (std::string_view field : {"id", "created", "model", "system_fingerprint"}) {
    CopyMember(completion, field, head);
  }
  return head;
}

// What one choice of a stream adds up to.
struct Choice {
  std::string role;
  std::string content;
  std::string finish_reason = "null";  // minified JSON
};

// The JSON of an SSE event ("data: {...}"), or "" for [DONE] and lines without data.
std::string_view EventData(std::string_view event) {
  size_t at = event.find("data:");
  if (at == std::string_view::npos) return {};
  std::string_view data = event.substr(at + 5);
  while (!data.empty() && (data.front() == ' ')) data.remove_prefix(1);
  while (!data.empty() && (data.back() == '\n' || data.back() == '\r' || data.back() == ' ')) {
    data.remove_suffix(1);
  }
  return data == "[DONE]" ? std::string_view() : data;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> CompletionToSse(std::string_view completion_json) {
  simdjson::dom::parser parser;
  element root;
  if (auto error = parser.parse(completion_json.data(), completion_json.size()).get(root)) {
    return Invalid(absl::StrCat("not JSON (", simdjson::error_message(error), ")"));
  }
  simdjson::dom::object completion;
  simdjson::dom::array choices;
  if (root.get_object().get(completion) != simdjson::SUCCESS ||
      completion["choices"].get_array().get(choices) != simdjson::SUCCESS) {
    return Invalid("choices: missing or not an array");
  }
  const std::string head = ChunkHead(completion);
  std::vector<std::string> events;
  std::string last;
  int64_t position = 0;
  for (element item : choices) {
    simdjson::dom::object choice, message;
    if (item.get_object().get(choice) != simdjson::SUCCESS ||
        choice["message"].get_object().get(message) != simdjson::SUCCESS) {
      return Invalid(absl::StrCat("choices[", position, "].message: missing or not an object"));
    }
    if (message["tool_calls"].error() == simdjson::SUCCESS) {
      return absl::UnimplementedError("SSE replay: tool-call answers are not converted");
    }
    int64_t index = position;
    ReadOptional(choice["index"].get_int64(), index);
    std::string_view role = "assistant", content;
    ReadOptional(message["role"].get_string(), role);
    ReadOptional(message["content"].get_string(), content);
    std::string event = "data: " + head + R"(,"choices":[{"index":)" + std::to_string(index) +
                        R"(,"delta":{"role":)";
    AppendJsonString(role, event);
    event += R"(,"content":)";
    AppendJsonString(content, event);
    event += "},\"finish_reason\":null}]}\n\n";
    events.push_back(std::move(event));
    std::string finish = "data: " + head + R"(,"choices":[{"index":)" + std::to_string(index) +
                         R"(,"delta":{})";
    CopyMember(choice, "finish_reason", finish);
    finish += "}]";
    events.push_back(std::move(finish));  // closed below, with the usage on the last one
    ++position;
  }
  for (size_t i = 1; i < events.size(); i += 2) {
    if (i + 1 == events.size()) CopyMember(completion, "usage", events[i]);
    events[i] += "}\n\n";
  }
  events.push_back("data: [DONE]\n\n");
  return events;
}

absl::StatusOr<std::string> SseToCompletion(const std::vector<std::string>& chunks) {
  simdjson::dom::parser parser;
  std::map<int64_t, Choice> choices;
  std::string id, model, usage, created;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const std::string_view data = EventData(chunks[i]);
    if (data.empty()) continue;
    element root;
    simdjson::dom::object chunk;
    if (parser.parse(data.data(), data.size()).get(root) != simdjson::SUCCESS ||
        root.get_object().get(chunk) != simdjson::SUCCESS) {
      return Invalid(absl::StrCat("chunk ", i, ": not a JSON object"));
    }
    std::string_view text;
    if (id.empty() && chunk["id"].get_string().get(text) == simdjson::SUCCESS) id = text;
    if (model.empty() && chunk["model"].get_string().get(text) == simdjson::SUCCESS) model = text;
    element value;
    if (created.empty() && chunk["created"].get(value) == simdjson::SUCCESS) {
      created = simdjson::minify(value);
    }
    if (chunk["usage"].get(value) == simdjson::SUCCESS && !value.is_null()) {
      usage = simdjson::minify(value);
    }
    simdjson::dom::array deltas;
    if (chunk["choices"].get_array().get(deltas) != simdjson::SUCCESS) continue;
    for (element item : deltas) {
      simdjson::dom::object choice, delta;
      if (item.get_object().get(choice) != simdjson::SUCCESS) {
        return Invalid(absl::StrCat("chunk ", i, ": a choice is not an object"));
      }
      int64_t index = 0;
      ReadOptional(choice["index"].get_int64(), index);
      Choice& c = choices[index];
      if (choice["delta"].get_object().get(delta) == simdjson::SUCCESS) {
        if (delta["tool_calls"].error() == simdjson::SUCCESS) {
          return absl::UnimplementedError("SSE replay: tool-call streams are not converted");
        }
        if (delta["role"].get_string().get(text) == simdjson::SUCCESS) c.role = text;
        if (delta["content"].get_string().get(text) == simdjson::SUCCESS) c.content.append(text);
      }
      if (choice["finish_reason"].get(value) == simdjson::SUCCESS && !value.is_null()) {
        c.finish_reason = simdjson::minify(value);
      }
    }
  }
  std::string out = R"({"object":"chat.completion")";
  if (!id.empty()) out += ",\"id\":", AppendJsonString(id, out);
  if (!created.empty()) out += ",\"created\":" + created;
  if (!model.empty()) out += ",\"model\":", AppendJsonString(model, out);
  out += ",\"choices\":[";
  bool first = true;
  for (const auto& [index, c] : choices) {
    if (!first) out.push_back(',');
    first = false;
    out += "{\"index\":" + std::to_string(index) + ",\"message\":{\"role\":";
    AppendJsonString(c.role.empty() ? "assistant" : c.role, out);
    out += ",\"content\":";
    AppendJsonString(c.content, out);
    out += "},\"finish_reason\":" + c.finish_reason + "}";
  }
  out += "]";
  if (!usage.empty()) out += ",\"usage\":" + usage;
  out += "}";
  return out;
}

}  // namespace v1
}  // namespace sluice
