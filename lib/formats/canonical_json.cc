// RFC 8785 canonical JSON, and the cache key built on it (sluice/cache_key.h).
#include "formats/canonical_json.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"


namespace sluice {
inline namespace v1 {
namespace internal {

void AppendJcsNumber(double value, std::string& out) {
  if (value == 0) {  // +0 and -0
    out.push_back('0');
    return;
  }
  // The shortest round-trip digits, in scientific form: "-d.ddde+XX".
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  (void)ec;  // 64 bytes always fit a double
  std::string_view s(buf, static_cast<size_t>(end - buf));
  if (s.front() == '-') {
    out.push_back('-');
    s.remove_prefix(1);
  }
  const size_t e = s.find('e');
  std::string digits;
  for (char c : s.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  const int exponent = std::atoi(std::string(s.substr(e + 1)).c_str());
  const int k = static_cast<int>(digits.size());
  const int n = exponent + 1;  // the decimal point sits after n digits
  if (k <= n && n <= 21) {  // an integer: the digits, then zeros
    out.append(digits).append(static_cast<size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {  // a point inside the digits
    out.append(digits, 0, static_cast<size_t>(n)).push_back('.');
    out.append(digits, static_cast<size_t>(n));
  } else if (-6 < n && n <= 0) {  // 0.000ddd
    out.append("0.").append(static_cast<size_t>(-n), '0').append(digits);
  } else {  // d.ddde+XX
    out.push_back(digits[0]);
    if (k > 1) out.append(".").append(digits, 1);
    absl::StrAppend(&out, "e", n - 1 > 0 ? "+" : "-", std::abs(n - 1));
  }
}

namespace {

// Decodes UTF-8 into UTF-16 code units, one at a time.
class Utf16Units {
 public:
  explicit Utf16Units(std::string_view s) : s_(s) {}
  // The next unit, or -1 at the end.
  int Next() {
    if (pending_ >= 0) return std::exchange(pending_, -1);
    if (i_ >= s_.size()) return -1;
    const auto b = static_cast<unsigned char>(s_[i_]);
    const int len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    uint32_t cp = len == 1 ? b : len == 2 ? b & 0x1F : len == 3 ? b & 0x0F : b & 0x07;
    for (int j = 1; j < len && i_ + j < s_.size(); ++j) {
      cp = (cp << 6) | (static_cast<unsigned char>(s_[i_ + j]) & 0x3F);
    }
    i_ += static_cast<size_t>(len);
    if (cp < 0x10000) return static_cast<int>(cp);
    cp -= 0x10000;
    pending_ = static_cast<int>(0xDC00 + (cp & 0x3FF));
    return static_cast<int>(0xD800 + (cp >> 10));
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
  int pending_ = -1;
};

}  // namespace

bool Utf16Less(std::string_view a, std::string_view b) {
  Utf16Units x(a), y(b);
  while (true) {
    const int u = x.Next(), v = y.Next();
    if (u != v) return u < v;  // -1 (the end) sorts first
    if (u < 0) return false;
  }
}

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

absl::Status Invalid(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("JSON: ", std::string(what)));
}

}  // namespace

void AppendJsonString(std::string_view s, std::string& out) {
  out.push_back('"');
  size_t run = 0;  // start of the current run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";
        const char escape[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(escape, sizeof(escape));
      }
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

namespace {

// ---- numbers simdjson does not read ----------------------------------------------------------
//
// simdjson's DOM reads integers only within [INT64_MIN, UINT64_MAX] and refuses the document
// otherwise, yet JSON has no such limit and the cache key keeps an integer literal's digits.
// When a parse fails on a number, the input's number tokens are found by a scan outside
// strings; integer literals of 19 digits or more are replaced by a 0 (padded with spaces) in a
// copy that simdjson parses, and the writer, which visits values in document order, prints the
// replaced ones from the original text. The scan is exact for valid JSON, and the copy is
// valid JSON only if the original is (the tokens replaced are valid integer literals).

struct NumberToken {
  size_t offset = 0;
  size_t length = 0;
  bool replaced = false;  // printed from the original text, not from simdjson's value
};

bool IsNumberChar(char c) {
  return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

// -?(0|[1-9][0-9]*) with at least 19 digits: what simdjson may not read (and, below 2^64, reads
// as the same digits anyway).
bool IsLongIntegerLiteral(std::string_view token) {
  if (!token.empty() && token.front() == '-') token.remove_prefix(1);
  if (token.size() < 19 || token.front() == '0') return false;
  return std::all_of(token.begin(), token.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The number tokens of `json` outside strings, in document order.
std::vector<NumberToken> ScanNumbers(std::string_view json) {
  std::vector<NumberToken> tokens;
  for (size_t i = 0; i < json.size();) {
    const char c = json[i];
    if (c == '"') {
      for (++i; i < json.size() && json[i] != '"'; ++i) {
        if (json[i] == '\\') ++i;
      }
      ++i;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      const size_t begin = i;
      while (i < json.size() && IsNumberChar(json[i])) ++i;
      tokens.push_back({begin, i - begin, IsLongIntegerLiteral(json.substr(begin, i - begin))});
    } else {
      ++i;
    }
  }
  return tokens;
}

// Writes canonical values; with `numbers`, the document's number tokens in order.
struct Writer {
  std::string_view source;
  const std::vector<NumberToken>* numbers = nullptr;
  size_t next_number = 0;

  absl::Status Value(element value, std::string& out);
  template <typename Skip>
  absl::Status Object(simdjson::dom::object object, Skip skip, std::string& out);
  absl::Status Number(element value, std::string& out);
  void SkipNumbers(element value);
};

absl::Status Writer::Number(element value, std::string& out) {
  if (numbers != nullptr) {
    if (next_number >= numbers->size()) return Invalid("number tokens out of step");  // unreachable
    const NumberToken& token = (*numbers)[next_number++];
    if (token.replaced) {
      out.append(source.substr(token.offset, token.length));
      return absl::OkStatus();
    }
  }
  switch (value.type()) {
    case element_type::INT64:  // an integer literal keeps its digits; -0 reads as 0
      absl::StrAppend(&out, value.get_int64().value_unsafe());
      break;
    case element_type::UINT64:
      absl::StrAppend(&out, value.get_uint64().value_unsafe());
      break;
    default:
      AppendJcsNumber(value.get_double().value_unsafe(), out);
      break;
  }
  return absl::OkStatus();
}

// A member left out of the output still holds number tokens: step over them.
void Writer::SkipNumbers(element value) {
  if (numbers == nullptr) return;
  switch (value.type()) {
    case element_type::OBJECT: {
      const simdjson::dom::object object = value.get_object().value_unsafe();  // outlives the loop
      for (auto member : object) SkipNumbers(member.value);
      break;
    }
    case element_type::ARRAY: {
      const simdjson::dom::array array = value.get_array().value_unsafe();
      for (element item : array) SkipNumbers(item);
      break;
    }
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      ++next_number;
      break;
    default:
      break;
  }
}

// Writes an object's members sorted by name; `skip` leaves some out (the top-level exclusions).
// Members are written in document order (the number tokens are in that order), then moved into
// name order when they are not in it already.
template <typename Skip>
absl::Status Writer::Object(simdjson::dom::object object, Skip skip, std::string& out) {
  struct Member {
    std::string_view name;
    size_t begin, end;  // `"name":value` in `out`
  };
  std::vector<Member> members;
  out.push_back('{');
  const size_t start = out.size();
  for (auto [name, value] : object) {
    if (skip(name)) {
      SkipNumbers(value);
      continue;
    }
    if (!members.empty()) out.push_back(',');
    const size_t begin = out.size();
    AppendJsonString(name, out);
    out.push_back(':');
    if (absl::Status s = Value(value, out); !s.ok()) return s;
    members.push_back({name, begin, out.size()});
  }
  auto less = [](const Member& a, const Member& b) { return Utf16Less(a.name, b.name); };
  const bool sorted = std::is_sorted(members.begin(), members.end(), less);
  if (!sorted) std::stable_sort(members.begin(), members.end(), less);
  for (size_t i = 1; i < members.size(); ++i) {
    if (members[i].name == members[i - 1].name) {
      return Invalid(absl::StrCat("duplicate member name \"",
                                  std::string(members[i].name.substr(0, 64)), "\""));
    }
  }
  if (!sorted) {
    const std::string written = out.substr(start);
    out.resize(start);
    for (size_t i = 0; i < members.size(); ++i) {
      if (i > 0) out.push_back(',');
      out.append(written, members[i].begin - start, members[i].end - members[i].begin);
    }
  }
  out.push_back('}');
  return absl::OkStatus();
}

absl::Status Writer::Value(element value, std::string& out) {
  switch (value.type()) {
    case element_type::OBJECT:
      return Object(value.get_object().value_unsafe(), [](std::string_view) { return false; }, out);
    case element_type::ARRAY: {
      const simdjson::dom::array array = value.get_array().value_unsafe();  // outlives the loop
      out.push_back('[');
      bool first = true;
      for (element item : array) {
        if (!first) out.push_back(',');
        first = false;
        if (absl::Status s = Value(item, out); !s.ok()) return s;
      }
      out.push_back(']');
      return absl::OkStatus();
    }
    case element_type::STRING:
      AppendJsonString(value.get_string().value_unsafe(), out);
      return absl::OkStatus();
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return Number(value, out);
    case element_type::BOOL:
      out.append(value.get_bool().value_unsafe() ? "true" : "false");
      return absl::OkStatus();
    case element_type::NULL_VALUE:
      out.append("null");
      return absl::OkStatus();
  }
  return Invalid("unknown value type");
}

// Parses `json` (see "numbers simdjson does not read" above) and calls `write(root, writer)`.
template <typename Write>
absl::Status WithRoot(std::string_view json, Write write) {
  // One parser per thread: it keeps its buffers between calls.
  thread_local simdjson::dom::parser parser;
  json = NonNull(json);
  element root;
  auto error = parser.parse(json.data(), json.size()).get(root);
  if (error == simdjson::SUCCESS) {
    Writer writer{json};
    return write(root, writer);
  }
  if (error != simdjson::NUMBER_ERROR) return Invalid(simdjson::error_message(error));
  const std::vector<NumberToken> numbers = ScanNumbers(json);
  if (std::none_of(numbers.begin(), numbers.end(), [](const NumberToken& t) { return t.replaced; })) {
    return Invalid(simdjson::error_message(error));
  }
  std::string readable(json);
  for (const NumberToken& t : numbers) {
    if (t.replaced) readable.replace(t.offset, t.length, "0" + std::string(t.length - 1, ' '));
  }
  if (auto again = parser.parse(readable).get(root)) return Invalid(simdjson::error_message(again));
  Writer writer{json, &numbers};
  return write(root, writer);
}

}  // namespace
}  // namespace internal

absl::StatusOr<std::string> CanonicalizeJson(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  absl::Status s = internal::WithRoot(json, [&](simdjson::dom::element root, internal::Writer& w) {
    return w.Value(root, out);
  });
  if (!s.ok()) return s;
  return out;
}

namespace internal {

absl::Status AppendCanonicalObject(std::string_view json,
                                   absl::FunctionRef<bool(std::string_view)> skip,
                                   std::string& out) {
  return WithRoot(json, [&](simdjson::dom::element root, Writer& w) {
    simdjson::dom::object object;
    if (root.get_object().get(object) != simdjson::SUCCESS) {
      return absl::InvalidArgumentError("request body: not a JSON object");
    }
    return w.Object(object, skip, out);
  });
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
