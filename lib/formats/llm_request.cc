#include "sluice/llm_request.h"

#include <simdjson.h>

#include <algorithm>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "formats/canonical_json.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sluice {
inline namespace v1 {
namespace {

using simdjson::dom::element;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("request body: ", field, ": ", what));
}

// The name of messages[index].content, for errors only: building it for every message cost an
// allocation each (issue 15).
std::string ContentField(size_t index) { return absl::StrCat("messages[", index, "].content"); }

// Appends the text of messages[index].content (a string, null, or an array of parts) to `out`.
absl::Status AppendContent(element content, size_t index, std::string& out) {
  if (content.is_null()) return absl::OkStatus();
  std::string_view text;
  if (content.get_string().get(text) == simdjson::SUCCESS) {
    out.append(text);
    return absl::OkStatus();
  }
  simdjson::dom::array parts;
  if (content.get_array().get(parts) != simdjson::SUCCESS) {
    return Invalid(ContentField(index), "must be a string, null or an array of parts");
  }
  size_t part_index = 0;
  for (element part : parts) {
    const size_t at = part_index++;
    if (part.get_string().get(text) == simdjson::SUCCESS) {  // a bare string part
      out.append(text);
      continue;
    }
    simdjson::dom::object object;
    if (part.get_object().get(object) != simdjson::SUCCESS) {
      return Invalid(absl::StrCat(ContentField(index), "[", at, "]"), "must be an object or a string");
    }
    std::string_view type;
    if (object["type"].get_string().get(type) == simdjson::SUCCESS && type == "text") {
      if (object["text"].get_string().get(text) != simdjson::SUCCESS) {
        return Invalid(absl::StrCat(ContentField(index), "[", at, "].text"), "must be a string");
      }
      out.append(text);
    } else {
      out.append(simdjson::minify(part));  // images, audio: their JSON shapes the prefix too
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LlmRequest> ParseLlmRequest(std::string_view json_body) {
  // One parser per thread: it keeps its buffers between calls, so parsing allocates only when a
  // body is larger than any before it on this thread.
  thread_local simdjson::dom::parser parser;
  json_body = internal::NonNull(json_body);
  element root;
  if (auto error = parser.parse(json_body.data(), json_body.size()).get(root)) {
    return Invalid("body", absl::StrCat("not valid JSON (", simdjson::error_message(error), ")"));
  }
  simdjson::dom::object body;
  if (root.get_object().get(body) != simdjson::SUCCESS) return Invalid("body", "not a JSON object");

  LlmRequest request;
  std::string_view model;
  if (body["model"].get_string().get(model) != simdjson::SUCCESS) {
    return Invalid("model", "missing or not a string");
  }
  request.model = std::string(model);

  element stream;
  if (body["stream"].get(stream) == simdjson::SUCCESS && !stream.is_null()) {
    if (stream.get_bool().get(request.stream) != simdjson::SUCCESS) {
      return Invalid("stream", "must be a boolean");
    }
  }

  element messages_value;
  if (body["messages"].get(messages_value) == simdjson::SUCCESS) {
    simdjson::dom::array messages;
    if (messages_value.get_array().get(messages) != simdjson::SUCCESS) {
      return Invalid("messages", "must be an array");
    }
    request.messages.reserve(messages.size());
    size_t index = 0;
    for (element message_value : messages) {
      const size_t at = index++;
      simdjson::dom::object message;
      if (message_value.get_object().get(message) != simdjson::SUCCESS) {
        return Invalid(absl::StrCat("messages[", at, "]"), "must be an object");
      }
      ChatMessage out;
      std::string_view role;
      if (message["role"].get_string().get(role) != simdjson::SUCCESS) {
        return Invalid(absl::StrCat("messages[", at, "].role"), "missing or not a string");
      }
      out.role = std::string(role);
      element content;
      if (message["content"].get(content) == simdjson::SUCCESS) {
        absl::Status s = AppendContent(content, at, out.content);
        if (!s.ok()) return s;
      }
      request.prompt_chars += static_cast<int64_t>(out.content.size());
      request.messages.push_back(std::move(out));
    }
    return request;
  }

  element prompt_value;
  if (body["prompt"].get(prompt_value) == simdjson::SUCCESS) {
    std::string_view prompt;
    if (prompt_value.get_string().get(prompt) != simdjson::SUCCESS) {
      return Invalid("prompt", "must be a string");
    }
    request.messages.push_back(ChatMessage{"prompt", std::string(prompt)});
    request.prompt_chars = static_cast<int64_t>(prompt.size());
    return request;
  }
  return Invalid("messages", "missing (and no prompt)");
}

std::vector<uint64_t> PrefixBlockHashes(const LlmRequest& request,
                                        const PrefixHashOptions& options) {
  const size_t block = static_cast<size_t>(std::max<int64_t>(1, options.block_chars));
  const size_t max_blocks = static_cast<size_t>(std::max<int64_t>(1, options.max_blocks));
  const size_t limit = block * max_blocks;

  // The conversation as one byte stream, cut at `limit`, hashed block by block where it lies:
  // a block inside one message is hashed in place, and only one that spans messages is gathered
  // in `spanning`. (Joining the 32 KiB of an 8k-token chat into one string first cost a copy and
  // an allocation per pick; issue 15.)
  std::vector<uint64_t> hashes;
  hashes.reserve(std::min(max_blocks, (static_cast<size_t>(request.prompt_chars) +
                                       4 * request.messages.size() + 16) / block + 1));
  uint64_t chain = XXH3_64bits(request.model.data(), request.model.size());
  std::string spanning;
  size_t streamed = 0;  // bytes of the stream so far
  auto feed = [&](std::string_view bytes) {
    bytes = bytes.substr(0, limit - streamed);
    streamed += bytes.size();
    if (!spanning.empty()) {
      const size_t take = std::min(bytes.size(), block - spanning.size());
      spanning.append(bytes.data(), take);
      bytes.remove_prefix(take);
      if (spanning.size() < block) return;
      chain = XXH3_64bits_withSeed(spanning.data(), block, chain);
      hashes.push_back(chain);
      spanning.clear();
    }
    for (; bytes.size() >= block; bytes.remove_prefix(block)) {
      chain = XXH3_64bits_withSeed(bytes.data(), block, chain);
      hashes.push_back(chain);
    }
    spanning.append(bytes.data(), bytes.size());
  };
  for (const ChatMessage& m : request.messages) {
    if (streamed >= limit) break;
    feed(m.role);
    feed("\x1f");
    feed(m.content);
    feed("\x1e");
  }
  if (!spanning.empty()) {  // the trailing partial block
    chain = XXH3_64bits_withSeed(spanning.data(), spanning.size(), chain);
    hashes.push_back(chain);
  }
  return hashes;
}

}  // namespace v1
}  // namespace sluice
