#include "sluice/sse_replay.h"

#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "formats/canonical_json.h"

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

// The head every event shares: {"object":"chat.completion.chunk","id":...,"created":...,...
// Only strings (and an integer `created`) are copied: each is at most as long as in the input
// (escapes are minimal), which keeps the replay's size linear in it (see sse_replay.h).
std::string ChunkHead(simdjson::dom::object completion) {
  std::string head = R"({"object":"chat.completion.chunk")";
  std::string_view text;
  auto copy_string = [&](std::string_view name) {
    if (completion[name].get_string().get(text) != simdjson::SUCCESS) return;
    head.push_back(',');
    AppendJsonString(name, head);
    head.push_back(':');
    AppendJsonString(text, head);
  };
  copy_string("id");
  element created;
  if (completion["created"].get(created) == simdjson::SUCCESS &&
      (created.is_int64() || created.is_uint64())) {
    absl::StrAppend(&head, ",\"created\":", simdjson::minify(created));
  }
  copy_string("model");
  copy_string("system_fingerprint");
  return head;
}

// ---- the event stream (WHATWG HTML, "Server-sent events", 9.2.6 Interpreting an event stream) --

// One dispatched event: its type ("" for the default, "message") and its data lines joined by
// '\n'; `chunk` is the chunk its closing blank line was read from.
struct SseEvent {
  std::string_view type;
  std::string data;
  size_t chunk = 0;
};

// Calls `dispatch(const SseEvent&)` for every complete event of the stream `chunks` concatenate
// to (an event may span chunks, a chunk may hold several). Lines end with CRLF, LF or CR;
// comment lines (':') and fields other than data and event are ignored; an event without data
// is not dispatched, nor is one the stream ends in the middle of (no blank line after it).
template <typename Dispatch>
absl::Status ReadEvents(const std::vector<std::string>& chunks, Dispatch dispatch) {
  std::string stream;
  std::vector<size_t> chunk_ends;  // where each chunk ends in `stream`
  size_t total = 0;
  for (const std::string& c : chunks) total += c.size();
  stream.reserve(total);
  for (const std::string& c : chunks) chunk_ends.push_back((stream += c).size());
  auto chunk_at = [&](size_t offset) {
    return static_cast<size_t>(std::upper_bound(chunk_ends.begin(), chunk_ends.end(), offset) -
                               chunk_ends.begin());
  };

  std::string_view rest = stream;
  if (rest.substr(0, 3) == "\xEF\xBB\xBF") rest.remove_prefix(3);  // a leading BOM
  SseEvent event;
  bool has_data = false;
  while (true) {
    const size_t eol = rest.find_first_of("\r\n");
    if (eol == std::string_view::npos) break;  // no line end: an unfinished line, discarded
    const std::string_view line = rest.substr(0, eol);
    const size_t line_at = static_cast<size_t>(line.data() - stream.data());
    rest.remove_prefix(eol + (rest[eol] == '\r' && eol + 1 < rest.size() && rest[eol + 1] == '\n'
                                  ? 2
                                  : 1));
    if (line.empty()) {
      if (has_data) {
        event.data.pop_back();  // the '\n' after the last data line
        event.chunk = chunk_at(line_at);
        if (absl::Status s = dispatch(event); !s.ok()) return s;
      }
      event = SseEvent();
      has_data = false;
      continue;
    }
    if (line.front() == ':') continue;  // a comment
    const size_t colon = line.find(':');
    const std::string_view field = line.substr(0, colon);
    std::string_view value =
        colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (field == "data") {
      event.data.append(value).push_back('\n');
      has_data = true;
    } else if (field == "event") {
      event.type = value;
    }  // id and retry concern a live connection; other fields are ignored by the spec
  }
  return absl::OkStatus();
}

// What one choice of a stream adds up to.
struct Choice {
  std::string role;
  std::string content;
  std::string finish_reason = "null";  // minified JSON
};

}  // namespace

absl::StatusOr<std::vector<std::string>> CompletionToSse(std::string_view completion_json) {
  completion_json = internal::NonNull(completion_json);
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
  // Every choice goes into the same two events (its content, then its finish reason), so the
  // head is written twice whatever the number of choices.
  std::string deltas = "data: " + head + R"(,"choices":[)";
  std::string finishes = "data: " + head + R"(,"choices":[)";
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
    const char* separator = position > 0 ? "," : "";
    absl::StrAppend(&deltas, separator, R"({"index":)", index, R"(,"delta":{"role":)");
    AppendJsonString(role, deltas);
    deltas += R"(,"content":)";
    AppendJsonString(content, deltas);
    deltas += R"(},"finish_reason":null})";
    absl::StrAppend(&finishes, separator, R"({"index":)", index, R"(,"delta":{})");
    CopyMember(choice, "finish_reason", finishes);
    finishes += "}";
    ++position;
  }
  deltas += "]}\n\n";
  finishes += "]";
  CopyMember(completion, "usage", finishes);
  finishes += "}\n\n";
  std::vector<std::string> events;
  // No choices: one event still carries the head and the usage (OpenAI's last chunk with
  // stream_options.include_usage has "choices": [] too).
  if (position > 0) events.push_back(std::move(deltas));
  events.push_back(std::move(finishes));
  events.push_back("data: [DONE]\n\n");
  return events;
}

absl::StatusOr<std::string> SseToCompletion(const std::vector<std::string>& chunks) {
  simdjson::dom::parser parser;
  std::map<int64_t, Choice> choices;
  std::optional<std::string> id, model, usage, created;
  absl::Status read = ReadEvents(chunks, [&](const SseEvent& event) -> absl::Status {
    if ((!event.type.empty() && event.type != "message") || event.data.empty() ||
        event.data == "[DONE]") {
      return absl::OkStatus();
    }
    element root;
    simdjson::dom::object chunk;
    if (parser.parse(event.data).get(root) != simdjson::SUCCESS ||
        root.get_object().get(chunk) != simdjson::SUCCESS) {
      return Invalid(absl::StrCat("chunk ", event.chunk, ": not a JSON object"));
    }
    std::string_view text;
    if (!id && chunk["id"].get_string().get(text) == simdjson::SUCCESS) id = text;
    if (!model && chunk["model"].get_string().get(text) == simdjson::SUCCESS) model = text;
    element value;
    if (!created && chunk["created"].get(value) == simdjson::SUCCESS) {
      created = simdjson::minify(value);
    }
    if (chunk["usage"].get(value) == simdjson::SUCCESS && !value.is_null()) {
      usage = simdjson::minify(value);
    }
    simdjson::dom::array deltas;
    if (chunk["choices"].get_array().get(deltas) != simdjson::SUCCESS) return absl::OkStatus();
    for (element item : deltas) {
      simdjson::dom::object choice, delta;
      if (item.get_object().get(choice) != simdjson::SUCCESS) {
        return Invalid(absl::StrCat("chunk ", event.chunk, ": a choice is not an object"));
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
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  std::string out = R"({"object":"chat.completion")";
  if (id) out += ",\"id\":", AppendJsonString(*id, out);
  if (created) out += ",\"created\":" + *created;
  if (model) out += ",\"model\":", AppendJsonString(*model, out);
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
  if (usage) out += ",\"usage\":" + *usage;
  out += "}";
  return out;
}

}  // namespace v1
}  // namespace sluice
