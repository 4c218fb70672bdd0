// IncludeUsageInStream: asks an OpenAI-style streaming request to end with a usage chunk
// (`stream_options.include_usage`, OpenAI's chat and completions references; Higress's ai-proxy
// does the same for its token limits).
#include <simdjson.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "formats/canonical_json.h"
#include "sluice/usage.h"

namespace sluice {
inline namespace v1 {
namespace {

using internal::AppendJsonString;
using simdjson::dom::element;
using simdjson::dom::object;

constexpr const char* kIncludeUsage = R"("include_usage":true)";

absl::Status Invalid(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("usage: request body: ", std::string(what)));
}

// A value for an error message: minified, cut to 40 bytes.
std::string Shown(element value) {
  std::string text = simdjson::minify(value);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return text;
}

// `{` + options' members other than include_usage + include_usage true + `}`.
std::string MergedOptions(object options) {
  std::string out = "{";
  for (auto [key, value] : options) {
    if (key == "include_usage") continue;
    AppendJsonString(key, out);
    out.push_back(':');
    out += simdjson::minify(value);
    out.push_back(',');
  }
  out += kIncludeUsage;
  out.push_back('}');
  return out;
}

}  // namespace

absl::StatusOr<std::string> IncludeUsageInStream(std::string_view request_body) {
  request_body = internal::NonNull(request_body);
  simdjson::dom::parser parser;
  element root;
  if (auto error = parser.parse(request_body.data(), request_body.size()).get(root)) {
    return Invalid(absl::StrCat("not JSON (", simdjson::error_message(error), ")"));
  }
  object request;
  if (root.get_object().get(request) != simdjson::SUCCESS) return Invalid("not a JSON object");
  // Duplicates of the members this reads: parsers disagree on which one wins, so no guess.
  int streams = 0, options_seen = 0;
  bool chat_or_completions = false;
  for (auto [key, value] : request) {
    streams += key == "stream";
    options_seen += key == "stream_options";
    chat_or_completions = chat_or_completions || key == "messages" || key == "prompt";
  }
  if (streams > 1) return Invalid("duplicate member stream");
  if (options_seen > 1) return Invalid("duplicate member stream_options");

  element stream;
  if (request["stream"].get(stream) != simdjson::SUCCESS) return std::string(request_body);
  bool streaming = false;
  if (stream.get_bool().get(streaming) != simdjson::SUCCESS) {
    return Invalid(absl::StrCat("stream must be a boolean, got ", Shown(stream)));
  }
  if (!streaming || !chat_or_completions) return std::string(request_body);

  element options;
  if (request["stream_options"].get(options) != simdjson::SUCCESS) {
    // Absent: insert the member after the last member, keeping every byte of the body.
    const size_t close = request_body.find_last_not_of(" \t\r\n");
    const size_t last = request_body.find_last_not_of(" \t\r\n", close - 1);
    std::string out;
    out.reserve(request_body.size() + 48);
    out.append(request_body.substr(0, last + 1));
    absl::StrAppend(&out, R"(,"stream_options":{)", kIncludeUsage, "}");
    out.append(request_body.substr(last + 1));
    return out;
  }
  object existing;
  if (!options.is_null()) {
    if (options.get_object().get(existing) != simdjson::SUCCESS) {
      return Invalid(absl::StrCat("stream_options must be an object, got ", Shown(options)));
    }
    bool include = false;
    if (existing["include_usage"].get_bool().get(include) == simdjson::SUCCESS && include) {
      return std::string(request_body);  // already asked for
    }
  }
  // Rewrite: every member minified in its order, stream_options merged.
  std::string out = "{";
  bool first = true;
  for (auto [key, value] : request) {
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(key, out);
    out.push_back(':');
    if (key == "stream_options") {
      out += options.is_null() ? absl::StrCat("{", kIncludeUsage, "}") : MergedOptions(existing);
    } else {
      out += simdjson::minify(value);
    }
  }
  out.push_back('}');
  return out;
}

}  // namespace v1
}  // namespace sluice
