#include "metrics/metric_names.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
bool Letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool Digit(char c) { return c >= '0' && c <= '9'; }

void AppendU32(std::string* out, uint32_t n) {
  const char bytes[4] = {static_cast<char>(n), static_cast<char>(n >> 8),
                         static_cast<char>(n >> 16), static_cast<char>(n >> 24)};
  out->append(bytes, 4);
}

void AppendString(std::string* out, std::string_view s) {
  AppendU32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

bool ReadU32(std::string_view* in, uint32_t* n) {
  if (in->size() < 4) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(in->data());
  *n = p[0] | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
  in->remove_prefix(4);
  return true;
}

bool ReadString(std::string_view* in, std::string_view* s) {
  uint32_t n = 0;
  if (!ReadU32(in, &n) || in->size() < n) return false;
  *s = in->substr(0, n);
  in->remove_prefix(n);
  return true;
}

// For error messages: at most 64 bytes of a caller's string.
std::string Shown(std::string_view s) {
  return s.size() <= 64 ? std::string(s) : absl::StrCat(Av(s.substr(0, 64)), "...");
}
}  // namespace

const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

bool ValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!(Letter(c) || c == ':' || (i > 0 && Digit(c)))) return false;
  }
  return true;
}

bool ValidLabelName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!(Letter(name[i]) || (i > 0 && Digit(name[i])))) return false;
  }
  return true;
}

absl::StatusOr<std::string> SeriesKey(std::string_view method, std::string_view name,
                                      MetricType type, const MetricLabels& labels) {
  if (!ValidMetricName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        Av(method), ": name must be a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), got \"",
        Shown(name), "\""));
  }
  if (name == kDroppedSeriesName) {
    return absl::InvalidArgumentError(
        absl::StrCat(Av(method), ": name \"", Av(name),
                     "\" is reserved for the registry's own count"));
  }
  std::vector<const std::pair<std::string, std::string>*> sorted;
  sorted.reserve(labels.size());
  for (const auto& label : labels) {
    const std::string& label_name = label.first;
    if (!ValidLabelName(label_name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          Av(method), ": labels: a label name must be [a-zA-Z_][a-zA-Z0-9_]*, got \"",
          Shown(label_name), "\""));
    }
    if (absl::StartsWith(label_name, "__")) {
      return absl::InvalidArgumentError(absl::StrCat(
          Av(method), ": labels: label names starting with \"__\" are reserved, got \"",
          Shown(label_name), "\""));
    }
    if (type == MetricType::kHistogram && label_name == "le") {
      return absl::InvalidArgumentError(
          absl::StrCat(Av(method), ": labels: \"le\" is reserved for a histogram's buckets"));
    }
    sorted.push_back(&label);
  }
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i]->first == sorted[i - 1]->first) {
      return absl::InvalidArgumentError(absl::StrCat(Av(method), ": labels: label \"",
                                                     sorted[i]->first, "\" is given twice"));
    }
  }
  size_t bytes = 8 + name.size();
  for (const auto* label : sorted) bytes += 8 + label->first.size() + label->second.size();
  if (bytes > kMaxSeriesKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        Av(method), ": labels: the name and labels take ", bytes, " bytes, more than the ",
        kMaxSeriesKeyBytes, " a series may have"));
  }
  std::string key;
  key.reserve(bytes);
  AppendString(&key, name);
  AppendU32(&key, static_cast<uint32_t>(sorted.size()));
  for (const auto* label : sorted) {
    AppendString(&key, label->first);
    AppendString(&key, label->second);
  }
  return key;
}

bool DecodeSeriesKey(std::string_view key, DecodedSeries* out) {
  out->labels.clear();
  if (!ReadString(&key, &out->name)) return false;
  uint32_t count = 0;
  if (!ReadU32(&key, &count) || count > key.size() / 8) return false;
  for (uint32_t i = 0; i < count; ++i) {
    std::string_view label_name, value;
    if (!ReadString(&key, &label_name) || !ReadString(&key, &value)) return false;
    out->labels.emplace_back(label_name, value);
  }
  return key.empty();
}

std::string FamilyRecord(std::string_view name, std::string_view help) {
  std::string record;
  AppendString(&record, name);
  AppendString(&record, help);
  return record;
}

bool DecodeFamilyRecord(std::string_view record, std::string_view* name, std::string_view* help) {
  return ReadString(&record, name) && ReadString(&record, help) && record.empty();
}

uint64_t HashBytes(std::string_view bytes, uint64_t seed) {
  return XXH3_64bits_withSeed(bytes.data(), bytes.size(), seed);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
