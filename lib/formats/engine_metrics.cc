#include "sluice/engine_metrics.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sluice {
inline namespace v1 {
namespace {

bool IsNameStart(char c) { return absl::ascii_isalpha(c) || c == '_' || c == ':'; }
bool IsNameChar(char c) { return IsNameStart(c) || absl::ascii_isdigit(c); }

// One sample line split into its parts; the label values are skipped, not kept.
struct Sample {
  absl::string_view name;
  double value = 0;
};

// Parses `name [{label="value",...}] value [timestamp]`. Returns an error message, or "".
std::string ParseSample(absl::string_view line, Sample& out) {
  size_t i = 0;
  if (i >= line.size() || !IsNameStart(line[i])) return "expected a metric name";
  while (i < line.size() && IsNameChar(line[i])) ++i;
  out.name = line.substr(0, i);
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (true) {
      while (i < line.size() && line[i] == ' ') ++i;
      if (i < line.size() && line[i] == '}') break;
      if (i >= line.size() || !IsNameStart(line[i])) return "expected a label name";
      while (i < line.size() && IsNameChar(line[i])) ++i;
      if (i >= line.size() || line[i] != '=') return "expected '=' after a label name";
      if (++i >= line.size() || line[i] != '"') return "expected a quoted label value";
      for (++i;; ++i) {
        if (i >= line.size()) return "unterminated label value";
        if (line[i] == '\\') {
          if (++i >= line.size()) return "unterminated label value";
        } else if (line[i] == '"') {
          break;
        }
      }
      ++i;
      while (i < line.size() && line[i] == ' ') ++i;
      if (i < line.size() && line[i] == ',') {
        ++i;
        continue;
      }
      if (i < line.size() && line[i] == '}') break;
      return "expected ',' or '}' in labels";
    }
    ++i;  // '}'
  }
  if (i >= line.size() || (line[i] != ' ' && line[i] != '\t')) return "expected a value";
  absl::string_view rest = absl::StripLeadingAsciiWhitespace(line.substr(i));
  const size_t space = rest.find_first_of(" \t");
  absl::string_view value = rest.substr(0, space);
  if (space != absl::string_view::npos) {
    absl::string_view timestamp = absl::StripAsciiWhitespace(rest.substr(space));
    int64_t ignored;
    if (!timestamp.empty() && !absl::SimpleAtoi(timestamp, &ignored)) return "bad timestamp";
  }
  if (value == "+Inf" || value == "Inf") {
    out.value = HUGE_VAL;
  } else if (value == "-Inf") {
    out.value = -HUGE_VAL;
  } else if (value == "NaN") {
    out.value = std::nan("");
  } else if (!absl::SimpleAtod(value, &out.value)) {
    return absl::StrCat("bad value '", value.substr(0, 32), "'");
  }
  return "";
}

enum class Series { kOther, kWaiting, kRunning, kKvUsage, kOlderKvUsage };

Series Classify(absl::string_view name) {
  if (name == "vllm:num_requests_waiting" || name == "sglang:num_queue_reqs") return Series::kWaiting;
  if (name == "vllm:num_requests_running" || name == "sglang:num_running_reqs") return Series::kRunning;
  if (name == "vllm:kv_cache_usage_perc" || name == "sglang:token_usage") return Series::kKvUsage;
  if (name == "vllm:gpu_cache_usage_perc") return Series::kOlderKvUsage;
  return Series::kOther;
}

// A sum of request counts, each term and the total held at kEngineMetricsMaxRequests: both
// operands are then at most 1e9, so the addition itself cannot overflow to +inf.
double SaturatingAdd(std::optional<double> sum, double value) {
  return std::min(kEngineMetricsMaxRequests,
                  sum.value_or(0) + std::min(value, kEngineMetricsMaxRequests));
}

}  // namespace

absl::StatusOr<EngineMetrics> ParseEngineMetrics(std::string_view input) {
  absl::string_view text(input.data(), input.size());
  EngineMetrics m;
  std::optional<double> older_kv_usage;
  size_t line_number = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    absl::string_view line = text.substr(0, end);
    text = end == absl::string_view::npos ? absl::string_view() : text.substr(end + 1);
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    line = absl::StripLeadingAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;

    Sample sample;
    if (std::string error = ParseSample(line, sample); !error.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics text: line ", line_number, ": ", error));
    }
    const Series series = Classify(sample.name);
    if (series == Series::kOther) continue;
    if (!std::isfinite(sample.value) || sample.value < 0) {
      return absl::InvalidArgumentError(absl::StrCat("metrics text: line ", line_number, ": ",
                                                     sample.name,
                                                     " must be finite and >= 0"));
    }
    switch (series) {
      case Series::kWaiting: m.waiting = SaturatingAdd(m.waiting, sample.value); break;
      case Series::kRunning: m.running = SaturatingAdd(m.running, sample.value); break;
      case Series::kKvUsage:
        m.kv_usage = std::max(m.kv_usage.value_or(0), std::min(sample.value, 1.0));
        break;
      case Series::kOlderKvUsage:
        older_kv_usage = std::max(older_kv_usage.value_or(0), std::min(sample.value, 1.0));
        break;
      case Series::kOther: break;
    }
  }
  if (!m.kv_usage) m.kv_usage = older_kv_usage;
  return m;
}

}  // namespace v1
}  // namespace sluice
