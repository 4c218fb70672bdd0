// EstimatePromptTokens: the text a model sees in a request, costed run by run. The constants were
// fitted against o200k_base (GPT-4o's BPE) and their error measured on held-out text by
// benchmarks/python/bench_token_estimate.py; docs/usage.md has the figures. Per-message and
// per-request overheads follow OpenAI's "How to count tokens with tiktoken" (openai-cookbook).
#include <simdjson.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>

#include "formats/canonical_json.h"
#include "sluice/usage.h"

namespace sluice {
inline namespace v1 {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

// An ASCII word of n letters costs 1 + (n - 1) / kLettersPerExtraToken tokens: BPE vocabularies
// hold most English words (with their leading space) whole.
constexpr int64_t kLettersPerExtraToken = 10;
// Digits: o200k_base and cl100k_base cut numbers into groups of up to 3.
constexpr int64_t kDigitsPerToken = 3;
// A punctuation mark or symbol: pairs such as "()", ");" or "\"," are often one token.
constexpr double kPunctuationTokens = 0.6;
// A run of line breaks or tabs, and a run of two or more spaces (indentation).
constexpr double kLineBreakRunTokens = 0.5;
constexpr double kSpaceRunTokens = 1.0;
// Other non-ASCII text (accented Latin, Cyrillic, Greek, Arabic, emoji...): UTF-8 bytes per token.
constexpr double kOtherBytesPerToken = 2.5;

bool IsAsciiLetter(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
bool IsDigit(unsigned char c) { return c >= '0' && c <= '9'; }

// Han, kana, Hangul, CJK punctuation and full-width forms.
bool IsCjk(uint32_t cp) {
  return (cp >= 0x3000 && cp <= 0x30FF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7AF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFF00 && cp <= 0xFFEF) ||
         (cp >= 0x20000 && cp <= 0x2FFFF);
}

// The length of the UTF-8 sequence at s[i] and its code point; an invalid byte is 1 byte, code
// point 0xFFFD.
size_t DecodeUtf8(std::string_view s, size_t i, uint32_t& cp) {
  const unsigned char lead = static_cast<unsigned char>(s[i]);
  size_t length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  if (length == 1 || i + length > s.size()) {
    cp = 0xFFFD;
    return 1;
  }
  cp = lead & (0x3F >> (length - 1));
  for (size_t k = 1; k < length; ++k) {
    const unsigned char next = static_cast<unsigned char>(s[i + k]);
    if ((next & 0xC0) != 0x80) {
      cp = 0xFFFD;
      return 1;
    }
    cp = (cp << 6) | (next & 0x3F);
  }
  return length;
}

double TextTokens(std::string_view text, const EstimateOptions& options) {
  double tokens = 0;
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t j = i + 1;
    if (IsAsciiLetter(c)) {
      while (j < n && IsAsciiLetter(static_cast<unsigned char>(text[j]))) ++j;
      tokens += 1 + static_cast<double>((j - i - 1) / kLettersPerExtraToken);
    } else if (IsDigit(c)) {
      while (j < n && IsDigit(static_cast<unsigned char>(text[j]))) ++j;
      tokens += static_cast<double>((j - i + kDigitsPerToken - 1) / kDigitsPerToken);
    } else if (c == ' ') {
      while (j < n && text[j] == ' ') ++j;
      if (j - i > 1) tokens += kSpaceRunTokens;  // a single space joins the next word
    } else if (c == '\n' || c == '\r' || c == '\t') {
      while (j < n && (text[j] == '\n' || text[j] == '\r' || text[j] == '\t')) ++j;
      tokens += kLineBreakRunTokens;
    } else if (c < 0x80) {
      tokens += kPunctuationTokens;
    } else {
      uint32_t cp;
      j = i + DecodeUtf8(text, i, cp);
      tokens += IsCjk(cp) ? 1.0 / options.cjk_chars_per_token
                          : static_cast<double>(j - i) / kOtherBytesPerToken;
    }
    i = j;
  }
  return tokens;
}

// Walks the members of a request that a model reads (sluice/usage.h lists them).
class Estimator {
 public:
  explicit Estimator(const EstimateOptions& options) : options_(options) {}

  void Request(object request) {
    element value;
    if (request["messages"].get(value) == simdjson::SUCCESS) Messages(value);
    if (request["contents"].get(value) == simdjson::SUCCESS) Messages(value);  // Gemini
    if (request["system"].get(value) == simdjson::SUCCESS) Content(value);     // Anthropic
    if (request["systemInstruction"].get(value) == simdjson::SUCCESS ||
        request["system_instruction"].get(value) == simdjson::SUCCESS) {
      Content(value);
    }
    if (request["instructions"].get(value) == simdjson::SUCCESS) Content(value);  // Responses
    if (request["prompt"].get(value) == simdjson::SUCCESS) Content(value);        // completions
    if (request["input"].get(value) == simdjson::SUCCESS) {
      object nested;
      if (value.get_object().get(nested) == simdjson::SUCCESS) {
        Request(nested);  // DashScope native: input.messages, input.prompt
      } else if (value.is_array()) {
        Messages(value);  // Responses: items
      } else {
        Content(value);
      }
    }
    if (request["tools"].get(value) == simdjson::SUCCESS) Json(value);
    if (request["functions"].get(value) == simdjson::SUCCESS) Json(value);
  }

  void Text(std::string_view text) { tokens_ += TextTokens(text, options_); }

  double Total() const {
    return tokens_ + static_cast<double>(messages_) * static_cast<double>(options_.tokens_per_message) +
           static_cast<double>(images_) * static_cast<double>(options_.tokens_per_image) +
           static_cast<double>(options_.tokens_per_request);
  }

 private:
  void Messages(element list) {
    array items;
    if (list.get_array().get(items) != simdjson::SUCCESS) return Content(list);
    for (element item : items) {
      object message;
      if (item.get_object().get(message) != simdjson::SUCCESS) {
        Content(item);
        continue;
      }
      Message(message);
    }
  }

  void Message(object message) {
    ++messages_;
    element value;
    std::string_view text;
    if (message["role"].get_string().get(text) == simdjson::SUCCESS) Text(text);
    if (message["name"].get_string().get(text) == simdjson::SUCCESS) {
      Text(text);
      tokens_ += 1;  // OpenAI: a name costs one more token
    }
    if (message["content"].get(value) == simdjson::SUCCESS) Content(value);
    if (message["parts"].get(value) == simdjson::SUCCESS) Content(value);  // Gemini
    if (message["tool_calls"].get(value) == simdjson::SUCCESS) Json(value);
    if (message["function_call"].get(value) == simdjson::SUCCESS) Json(value);
    // Responses items without content: function calls and their outputs.
    if (message["arguments"].get_string().get(text) == simdjson::SUCCESS) Text(text);
    if (message["output"].get_string().get(text) == simdjson::SUCCESS) Text(text);
  }

  // A content value: a string, or a list of parts (text, images, tool calls and results).
  void Content(element content) {
    std::string_view text;
    if (content.get_string().get(text) == simdjson::SUCCESS) return Text(text);
    array parts;
    if (content.get_array().get(parts) == simdjson::SUCCESS) {
      for (element part : parts) Content(part);
      return;
    }
    object part;
    if (content.get_object().get(part) != simdjson::SUCCESS) return;
    element value;
    if (part["parts"].get(value) == simdjson::SUCCESS) return Content(value);  // Gemini system
    if (part["text"].get_string().get(text) == simdjson::SUCCESS) return Text(text);
    std::string_view type;
    if (part["type"].get_string().get(type) != simdjson::SUCCESS) type = {};
    if (type.find("image") != std::string_view::npos || part["inlineData"].error() == simdjson::SUCCESS ||
        part["inline_data"].error() == simdjson::SUCCESS ||
        part["fileData"].error() == simdjson::SUCCESS) {
      ++images_;
      return;
    }
    if (part["input"].get(value) == simdjson::SUCCESS) return Json(value);    // tool_use
    if (part["content"].get(value) == simdjson::SUCCESS) return Content(value);  // tool_result
    if (part["functionCall"].get(value) == simdjson::SUCCESS ||
        part["functionResponse"].get(value) == simdjson::SUCCESS) {
      return Json(value);
    }
  }

  void Json(element value) { Text(simdjson::minify(value)); }

  const EstimateOptions& options_;
  double tokens_ = 0;
  int64_t messages_ = 0;
  int64_t images_ = 0;
};

int64_t Rounded(double tokens, const EstimateOptions& options) {
  const double scaled = tokens * options.scale;
  if (!(scaled > 0)) return 0;
  if (scaled >= static_cast<double>(Usage::kMaxTokens)) return Usage::kMaxTokens;
  return std::llround(scaled);
}

}  // namespace

int64_t EstimateTextTokens(std::string_view text, const EstimateOptions& options) {
  assert(options.cjk_chars_per_token > 0 && options.scale >= 0);
  return Rounded(TextTokens(text, options), options);
}

int64_t EstimatePromptTokens(std::string_view request_body, const EstimateOptions& options) {
  assert(options.tokens_per_message >= 0 && options.tokens_per_request >= 0 &&
         options.tokens_per_image >= 0 && options.cjk_chars_per_token > 0 && options.scale >= 0);
  request_body = internal::NonNull(request_body);
  Estimator estimator(options);
  simdjson::dom::parser parser;
  element root;
  object request;
  if (parser.parse(request_body.data(), request_body.size()).get(root) == simdjson::SUCCESS &&
      root.get_object().get(request) == simdjson::SUCCESS) {
    estimator.Request(request);
  } else {
    estimator.Text(request_body);  // not a JSON object: plain text
  }
  return Rounded(estimator.Total(), options);
}

}  // namespace v1
}  // namespace sluice
