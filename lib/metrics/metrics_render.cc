// MetricsRegistry::Render: every ready family and series of the registry's memory (in host scope,
// whichever process made them), read defensively, in the text exposition format 0.0.4.
#include <algorithm>
#include <bit>
#include <map>

#include "absl/strings/str_cat.h"
#include "metrics/exposition.h"
#include "metrics/metrics_registry_impl.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
struct SeriesView {
  std::string_view key;  // sorts the series of a family: stable, by their labels
  DecodedSeries decoded;
  const int64_t* values;
};
struct FamilyView {
  std::string_view help;
  MetricType type;
  std::vector<SeriesView> series;
};

void AppendHistogram(std::string* out, std::string_view name, const LabelViews& labels,
                     const int64_t* block) {
  const int64_t n = block[0];
  const int64_t* bounds = block + 1;
  const double sum = std::bit_cast<double>(Word(const_cast<int64_t*>(block + 1 + n)).load(
      std::memory_order_relaxed));
  const int64_t* buckets = block + 2 + n;
  int64_t cumulative = 0;
  for (int64_t i = 0; i <= n; ++i) {
    cumulative += Word(const_cast<int64_t*>(buckets + i)).load(std::memory_order_relaxed);
    const std::string le = i < n ? FormatDouble(std::bit_cast<double>(bounds[i])) : "+Inf";
    AppendSample(out, name, "_bucket", labels, "le", le, absl::StrCat(cumulative));
  }
  AppendSample(out, name, "_sum", labels, "", "", FormatDouble(sum));
  // The +Inf bucket's count, so that _count always equals it.
  AppendSample(out, name, "_count", labels, "", "", absl::StrCat(cumulative));
}
}  // namespace

std::string MetricsRegistryImpl::Render() const {
  const MetricsMemory& memory = *memory_;
  std::map<std::string_view, FamilyView> families;
  memory.ForEachReady(MetricsMemory::Table::kFamilies, [&](const int64_t* slot) {
    std::string_view name, help;
    const auto type = static_cast<MetricType>(slot[3]);
    if (!DecodeFamilyRecord(memory.BytesAt(slot[2]), &name, &help)) return;
    if (type != MetricType::kCounter && type != MetricType::kGauge &&
        type != MetricType::kHistogram) {
      return;
    }
    families.emplace(name, FamilyView{help, type, {}});
  });
  memory.ForEachReady(MetricsMemory::Table::kSeries, [&](const int64_t* slot) {
    SeriesView view{memory.BytesAt(slot[2]), {}, nullptr};
    if (!DecodeSeriesKey(view.key, &view.decoded)) return;
    auto family = families.find(view.decoded.name);
    if (family == families.end()) return;
    if (family->second.type == MetricType::kHistogram) {
      const int64_t* count = memory.WordsAt(slot[3], 1);
      if (count == nullptr || *count < 1 || *count > 256 ||
          memory.WordsAt(slot[3], 1 + *count + 1 + *count + 1) == nullptr) {
        return;
      }
      view.values = count;
    } else {
      view.values = memory.WordsAt(slot[3], 1);
      if (view.values == nullptr) return;
    }
    family->second.series.push_back(std::move(view));
  });

  std::string out;
  bool dropped_written = false;
  auto write_dropped = [&] {
    AppendFamilyHeader(&out, kDroppedSeriesName,
                       "Series registrations refused because the registry was full "
                       "(max_series or its string space).",
                       "counter");
    AppendSample(&out, kDroppedSeriesName, "", {}, "", "",
                 absl::StrCat(memory.dropped().load(std::memory_order_relaxed)));
    dropped_written = true;
  };
  for (auto& [name, family] : families) {
    if (family.series.empty()) continue;  // its first series was dropped
    if (!dropped_written && name > kDroppedSeriesName) write_dropped();
    std::sort(family.series.begin(), family.series.end(),
              [](const SeriesView& a, const SeriesView& b) { return a.key < b.key; });
    AppendFamilyHeader(&out, name, family.help, MetricTypeName(family.type));
    for (const SeriesView& series : family.series) {
      const LabelViews& labels = series.decoded.labels;
      if (family.type == MetricType::kHistogram) {
        AppendHistogram(&out, name, labels, series.values);
      } else {
        const int64_t value =
            Word(const_cast<int64_t*>(series.values)).load(std::memory_order_relaxed);
        AppendSample(&out, name, "", labels, "", "", absl::StrCat(value));
      }
    }
  }
  if (!dropped_written) write_dropped();
  return out;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
