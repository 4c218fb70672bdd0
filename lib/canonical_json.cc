// RFC 8785 canonical JSON, and the cache key built on it (sluice/cache_key.h).
#include "canonical_json.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sluice/cache_key.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

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

// Integers within +-2^53 print the same as JCS prints their double; beyond, all digits are kept.
constexpr int64_t kExactIntegers = int64_t{1} << 53;

absl::Status AppendValue(element value, std::string& out);

// Writes an object's members sorted by name; `skip` leaves some out (the top-level exclusions).
template <typename Skip>
absl::Status AppendObject(simdjson::dom::object object, Skip skip, std::string& out) {
  std::vector<std::pair<std::string_view, element>> members;
  for (auto [key, value] : object) {
    if (!skip(key)) members.emplace_back(key, value);
  }
  std::sort(members.begin(), members.end(),
            [](const auto& a, const auto& b) { return Utf16Less(a.first, b.first); });
  out.push_back('{');
  for (size_t i = 0; i < members.size(); ++i) {
    if (i > 0) {
      if (members[i].first == members[i - 1].first) {
        return Invalid(absl::StrCat("duplicate member name \"",
                                    std::string(members[i].first.substr(0, 64)), "\""));
      }
      out.push_back(',');
    }
    AppendJsonString(members[i].first, out);
    out.push_back(':');
    if (absl::Status s = AppendValue(members[i].second, out); !s.ok()) return s;
  }
  out.push_back('}');
  return absl::OkStatus();
}

absl::Status AppendValue(element value, std::string& out) {
  switch (value.type()) {
    case element_type::OBJECT:
      return AppendObject(value.get_object().value_unsafe(), [](std::string_view) { return false; },
                          out);
    case element_type::ARRAY: {
      const simdjson::dom::array array = value.get_array().value_unsafe();  // outlives the loop
      out.push_back('[');
      bool first = true;
      for (element item : array) {
        if (!first) out.push_back(',');
        first = false;
        if (absl::Status s = AppendValue(item, out); !s.ok()) return s;
      }
      out.push_back(']');
      return absl::OkStatus();
    }
    case element_type::STRING:
      AppendJsonString(value.get_string().value_unsafe(), out);
      return absl::OkStatus();
    case element_type::INT64: {
      const int64_t v = value.get_int64().value_unsafe();
      if (v >= -kExactIntegers && v <= kExactIntegers) {
        AppendJcsNumber(static_cast<double>(v), out);
      } else {
        absl::StrAppend(&out, v);
      }
      return absl::OkStatus();
    }
    case element_type::UINT64:  // only values above INT64_MAX arrive as UINT64
      absl::StrAppend(&out, value.get_uint64().value_unsafe());
      return absl::OkStatus();
    case element_type::DOUBLE:
      AppendJcsNumber(value.get_double().value_unsafe(), out);
      return absl::OkStatus();
    case element_type::BOOL:
      out.append(value.get_bool().value_unsafe() ? "true" : "false");
      return absl::OkStatus();
    case element_type::NULL_VALUE:
      out.append("null");
      return absl::OkStatus();
  }
  return Invalid("unknown value type");
}

// One parser per thread: it keeps its buffers between calls.
absl::StatusOr<element> Parse(std::string_view json) {
  thread_local simdjson::dom::parser parser;
  element root;
  if (auto error = parser.parse(json.data(), json.size()).get(root)) {
    return Invalid(simdjson::error_message(error));
  }
  return root;
}

}  // namespace
}  // namespace internal

absl::StatusOr<std::string> CanonicalizeJson(std::string_view json) {
  absl::StatusOr<simdjson::dom::element> root = internal::Parse(json);
  if (!root.ok()) return root.status();
  std::string out;
  out.reserve(json.size());
  if (absl::Status s = internal::AppendValue(*root, out); !s.ok()) return s;
  return out;
}

std::string CacheKey::DigestHex() const {
  return absl::StrFormat("%016x%016x", digest_hi, digest_lo);
}

absl::StatusOr<CacheKey> MakeCacheKey(std::string_view body, std::string_view name_space,
                                      const CacheKeyOptions& options) {
  absl::StatusOr<simdjson::dom::element> root = internal::Parse(body);
  if (!root.ok()) return root.status();
  simdjson::dom::object object;
  if (root->get_object().get(object) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError("request body: not a JSON object");
  }
  CacheKey key;
  key.canonical.reserve(name_space.size() + 1 + body.size());
  key.canonical.append(name_space).push_back('\x1F');
  auto excluded = [&](std::string_view name) {
    return std::find(options.excluded_fields.begin(), options.excluded_fields.end(), name) !=
           options.excluded_fields.end();
  };
  if (absl::Status s = internal::AppendObject(object, excluded, key.canonical); !s.ok()) return s;
  const XXH128_hash_t h = XXH3_128bits(key.canonical.data(), key.canonical.size());
  key.digest_hi = h.high64;
  key.digest_lo = h.low64;
  return key;
}

}  // namespace v1
}  // namespace sluice
