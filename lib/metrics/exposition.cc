#include "metrics/exposition.h"

#include <charconv>
#include <cmath>


namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The length of the valid UTF-8 sequence at the start of `s`, or 0 (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF).
size_t ValidSequence(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < n || b(1) < lo || b(1) > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (b(i) < 0x80 || b(i) > 0xBF) return 0;
  }
  return n;
}

// Appends `text` as UTF-8 with `\` and newline escaped, and `"` too when `quote`.
void AppendEscaped(std::string* out, std::string_view text, bool quote) {
  std::string valid;
  AppendValidUtf8(&valid, text);
  for (char c : valid) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"' && quote) {
      out->append("\\\"");
    } else {
      out->push_back(c);
    }
  }
}
}  // namespace

void AppendValidUtf8(std::string* out, std::string_view bytes) {
  while (!bytes.empty()) {
    const size_t n = ValidSequence(bytes);
    if (n == 0) {
      out->append(kReplacement);
      bytes.remove_prefix(1);
    } else {
      out->append(bytes.substr(0, n));
      bytes.remove_prefix(n);
    }
  }
}

// Appends every piece to `out`.
template <typename... Pieces>
void Append(std::string* out, const Pieces&... pieces) {
  (out->append(std::string_view(pieces)), ...);
}

void AppendFamilyHeader(std::string* out, std::string_view name, std::string_view help,
                        std::string_view type) {
  Append(out, "# HELP ", name, " ");
  AppendEscaped(out, help, /*quote=*/false);
  Append(out, "\n# TYPE ", name, " ", type, "\n");
}

void AppendSample(std::string* out, std::string_view name, std::string_view suffix,
                  const LabelViews& labels, std::string_view extra_label,
                  std::string_view extra_value, std::string_view value) {
  Append(out, name, suffix);
  if (!labels.empty() || !extra_label.empty()) {
    out->push_back('{');
    bool first = true;
    auto label = [&](std::string_view label_name, std::string_view label_value) {
      if (!first) out->push_back(',');
      first = false;
      Append(out, label_name, "=\"");
      AppendEscaped(out, label_value, /*quote=*/true);
      out->push_back('"');
    };
    for (const auto& [label_name, label_value] : labels) label(label_name, label_value);
    if (!extra_label.empty()) label(extra_label, extra_value);
    out->push_back('}');
  }
  Append(out, " ", value, "\n");
}

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), v);
  return std::string(buffer, result.ptr);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
