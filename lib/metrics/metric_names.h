// Internal: the names and label sets of metric series, checked and encoded.
//
// A series is identified by its canonical key: the metric name and its labels sorted by name,
// each string preceded by its length (u32, little-endian), so that any bytes (NULs, quotes) in a
// label value cannot make two label sets encode alike. The key is hashed (xxHash) to find the
// series' slot and stored in the registry's memory, so that a process that never registered a
// series can still render it.

#ifndef SLUICE_LIB_METRICS_METRIC_NAMES_H_
#define SLUICE_LIB_METRICS_METRIC_NAMES_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "sluice/metrics.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// std::string_view as absl::string_view (Debian's Abseil has its own), for absl::StrCat.
inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

enum class MetricType : int64_t { kCounter = 1, kGauge = 2, kHistogram = 3 };
const char* MetricTypeName(MetricType type);  // "counter", "gauge", "histogram"

inline constexpr std::string_view kDroppedSeriesName = "sluice_metrics_dropped_series_total";
inline constexpr size_t kMaxHelpBytes = 4096;
inline constexpr size_t kMaxSeriesKeyBytes = 16384;

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool ValidMetricName(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*
bool ValidLabelName(std::string_view name);

// The canonical key of a series, or InvalidArgument naming `method`'s bad argument (the checks
// of MetricsRegistry::Get*; the family's type decides whether "le" is reserved).
absl::StatusOr<std::string> SeriesKey(std::string_view method, std::string_view name,
                                      MetricType type, const MetricLabels& labels);

struct DecodedSeries {
  std::string_view name;
  std::vector<std::pair<std::string_view, std::string_view>> labels;  // sorted by name
};
// Decodes a key SeriesKey made (views into `key`). False if it is malformed (memory shared with
// other processes is read defensively).
bool DecodeSeriesKey(std::string_view key, DecodedSeries* out);

// A family's record: its name and help text.
std::string FamilyRecord(std::string_view name, std::string_view help);
bool DecodeFamilyRecord(std::string_view record, std::string_view* name, std::string_view* help);

// xxHash (XXH3) of a family's name or a series' key, seeded apart.
uint64_t HashBytes(std::string_view bytes, uint64_t seed);
inline constexpr uint64_t kFamilySeed = 0x66616d696c79;  // "family"
inline constexpr uint64_t kSeriesSeed = 0x736572696573;  // "series"

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_METRICS_METRIC_NAMES_H_
