// Internal: the Prometheus text exposition format 0.0.4, piece by piece
// (https://prometheus.io/docs/instrumenting/exposition_formats/, "Text format details").

#ifndef SLUICE_LIB_METRICS_EXPOSITION_H_
#define SLUICE_LIB_METRICS_EXPOSITION_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice {
inline namespace v1 {
namespace internal {

using LabelViews = std::vector<std::pair<std::string_view, std::string_view>>;

// `bytes` with each invalid UTF-8 sequence replaced by U+FFFD (the exposition is UTF-8).
void AppendValidUtf8(std::string* out, std::string_view bytes);

// "# HELP name text" (backslash and newline escaped) and "# TYPE name type".
void AppendFamilyHeader(std::string* out, std::string_view name, std::string_view help,
                        std::string_view type);

// One sample line: name{labels,extra} value. `extra` (e.g. le="0.5") is appended after the
// series' own labels when not empty; label values are escaped (backslash, quote, newline).
void AppendSample(std::string* out, std::string_view name, std::string_view suffix,
                  const LabelViews& labels, std::string_view extra_label,
                  std::string_view extra_value, std::string_view value);

// Go's float formatting as Prometheus reads it: shortest round-trip digits, "+Inf", "-Inf",
// "NaN".
std::string FormatDouble(double v);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_METRICS_EXPOSITION_H_
