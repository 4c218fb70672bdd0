#include "sluice/metrics.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "metrics/exposition.h"
#include "metrics/metrics_registry_impl.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
constexpr size_t kMaxBounds = 256;

int64_t WordsOf(size_t bytes) { return static_cast<int64_t>((bytes + 7) / 8); }

absl::Status CheckBounds(const std::vector<double>& bounds) {
  if (bounds.empty() || bounds.size() > kMaxBounds) {
    return absl::InvalidArgumentError(
        absl::StrCat("sluice.MetricsRegistry.GetHistogram: bounds must hold 1 to ", kMaxBounds,
                     " upper bounds, got ", bounds.size()));
  }
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sluice.MetricsRegistry.GetHistogram: bounds must be finite (+Inf is added), got ",
          FormatDouble(bounds[i])));
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sluice.MetricsRegistry.GetHistogram: bounds must be strictly increasing, got ",
          FormatDouble(bounds[i - 1]), " then ", FormatDouble(bounds[i])));
    }
  }
  return absl::OkStatus();
}
}  // namespace

MetricsRegistryImpl::MetricsRegistryImpl(std::shared_ptr<MetricsMemory> memory)
    : memory_(std::move(memory)),
      fork_hooks_(
          [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
            collectors_mu_.lock();
            create_mu_.lock();
          },
          [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
            create_mu_.unlock();
            collectors_mu_.unlock();
          },
          [this] {
            create_mu_.ResetInForkChild();
            collectors_mu_.ResetInForkChild();
          }) {}

absl::Status MetricsRegistryImpl::Stuck(std::string_view method, std::string_view what) const {
  return absl::UnavailableError(absl::StrCat(
      Av(method), ": another live process has been creating ", Av(what), " for ",
      absl::FormatDuration(MetricsMemory::kCreationWait),
      " (stopped?); retry, or stop that process"));
}

absl::Status MetricsRegistryImpl::Family(std::string_view method, std::string_view name,
                                         std::string_view help, MetricType type, bool* dropped) {
  if (help.size() > kMaxHelpBytes) {
    return absl::InvalidArgumentError(absl::StrCat(Av(method), ": help must be at most ",
                                                   kMaxHelpBytes, " bytes, got ", help.size()));
  }
  const std::string record = FamilyRecord(name, help);
  MetricsMemory& memory = *memory_;
  const MetricsMemory::Claim claim = memory.FindOrCreate(
      MetricsMemory::Table::kFamilies, HashBytes(name, kFamilySeed),
      [&](const int64_t* slot) {
        std::string_view their_name, their_help;
        return DecodeFamilyRecord(memory.BytesAt(slot[2]), &their_name, &their_help) &&
               their_name == name;
      },
      [&](int64_t* slot) {
        const int64_t offset = memory.StoreBytes(record);
        if (offset < 0) return false;
        slot[2] = offset;
        slot[3] = static_cast<int64_t>(type);
        return true;
      });
  switch (claim.outcome) {
    case MetricsMemory::Outcome::kFound: {
      std::string_view their_name, their_help;
      DecodeFamilyRecord(memory.BytesAt(claim.slot[2]), &their_name, &their_help);
      const auto their_type = static_cast<MetricType>(claim.slot[3]);
      if (their_type != type) {
        return absl::InvalidArgumentError(absl::StrCat(
            Av(method), ": name \"", Av(name), "\" is registered as a ", MetricTypeName(their_type),
            ", not a ", MetricTypeName(type)));
      }
      if (their_help != help) {
        return absl::InvalidArgumentError(absl::StrCat(
            Av(method), ": help of \"", Av(name), "\" differs from its registered help \"",
            Av(their_help.substr(0, 200)), "\""));
      }
      return absl::OkStatus();
    }
    case MetricsMemory::Outcome::kCreated:
      return absl::OkStatus();
    case MetricsMemory::Outcome::kFull:
    case MetricsMemory::Outcome::kNoRoom:
      *dropped = true;
      return absl::OkStatus();
    case MetricsMemory::Outcome::kStuck:
      break;
  }
  return Stuck(method, absl::StrCat("family \"", Av(name), "\""));
}

absl::StatusOr<int64_t*> MetricsRegistryImpl::Series(std::string_view method,
                                                     std::string_view name,
                                                     std::string_view help, MetricType type,
                                                     const MetricLabels& labels,
                                                     const std::vector<double>& bounds) {
  absl::StatusOr<std::string> key = SeriesKey(method, name, type, labels);
  if (!key.ok()) return key.status();
  MutexLock lock(&create_mu_);
  bool dropped = false;
  if (absl::Status s = Family(method, name, help, type, &dropped); !s.ok()) return s;
  if (dropped) {
    memory_->dropped().fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  const bool histogram = type == MetricType::kHistogram;
  const int64_t n = static_cast<int64_t>(bounds.size());
  const int64_t value_words = histogram ? 1 + n + 1 + (n + 1) : 1;
  MetricsMemory& memory = *memory_;
  const MetricsMemory::Claim claim = memory.FindOrCreate(
      MetricsMemory::Table::kSeries, HashBytes(*key, kSeriesSeed),
      [&](const int64_t* slot) { return memory.BytesAt(slot[2]) == *key; },
      [&](int64_t* slot) {
        const int64_t offset = memory.Allocate(1 + WordsOf(key->size()) + value_words);
        if (offset < 0) return false;
        int64_t* record = memory.WordsAt(offset, 1);
        record[0] = static_cast<int64_t>(key->size());
        std::memcpy(record + 1, key->data(), key->size());
        const int64_t values = offset + 1 + WordsOf(key->size());
        if (histogram) {
          int64_t* block = memory.WordsAt(values, value_words);
          block[0] = n;
          for (int64_t i = 0; i < n; ++i) block[1 + i] = std::bit_cast<int64_t>(bounds[i]);
        }
        slot[2] = offset;
        slot[3] = values;
        return true;
      });
  switch (claim.outcome) {
    case MetricsMemory::Outcome::kFound:
    case MetricsMemory::Outcome::kCreated:
      break;
    case MetricsMemory::Outcome::kFull:
    case MetricsMemory::Outcome::kNoRoom:
      memory_->dropped().fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    case MetricsMemory::Outcome::kStuck:
      return Stuck(method, absl::StrCat("a series of \"", Av(name), "\""));
  }
  int64_t* block = memory.WordsAt(claim.slot[3], value_words);
  if (block == nullptr) {
    return absl::InternalError(absl::StrCat(Av(method), ": the series' values lie outside memory"));
  }
  if (histogram) {
    bool same = block[0] == n;
    for (int64_t i = 0; same && i < n; ++i) {
      same = block[1 + i] == std::bit_cast<int64_t>(bounds[i]);
    }
    if (!same) {
      return absl::InvalidArgumentError(absl::StrCat(
          Av(method), ": bounds differ from those of the existing series of \"", Av(name), "\""));
    }
  }
  return block;
}

absl::StatusOr<Counter> MetricsRegistryImpl::GetCounter(std::string_view name,
                                                        std::string_view help,
                                                        const MetricLabels& labels) {
  absl::StatusOr<int64_t*> cell = Series("sluice.MetricsRegistry.GetCounter", name, help,
                                         MetricType::kCounter, labels, {});
  if (!cell.ok()) return cell.status();
  if (*cell == nullptr) return Counter();
  return Counter(memory_, *cell);
}

absl::StatusOr<Gauge> MetricsRegistryImpl::GetGauge(std::string_view name, std::string_view help,
                                                    const MetricLabels& labels) {
  absl::StatusOr<int64_t*> cell = Series("sluice.MetricsRegistry.GetGauge", name, help,
                                         MetricType::kGauge, labels, {});
  if (!cell.ok()) return cell.status();
  if (*cell == nullptr) return Gauge();
  return Gauge(memory_, *cell);
}

absl::StatusOr<Histogram> MetricsRegistryImpl::GetHistogram(std::string_view name,
                                                            std::string_view help,
                                                            const MetricLabels& labels,
                                                            std::vector<double> bounds) {
  if (bounds.empty()) bounds = DecisionLatencyBounds();
  if (absl::Status s = CheckBounds(bounds); !s.ok()) return s;
  absl::StatusOr<int64_t*> block = Series("sluice.MetricsRegistry.GetHistogram", name, help,
                                          MetricType::kHistogram, labels, bounds);
  if (!block.ok()) return block.status();
  if (*block == nullptr) return Histogram();
  int64_t* values = *block;
  return Histogram(memory_, values + 1, values[0], values + 1 + values[0]);
}

int64_t MetricsRegistryImpl::AddCollector(std::function<void()> fn) {
  MutexLock lock(&collectors_mu_);
  const int64_t id = next_collector_id_++;
  collectors_.emplace(id, std::move(fn));
  return id;
}

void MetricsRegistryImpl::RemoveCollector(int64_t id) {
  MutexLock lock(&collectors_mu_);  // waits for a Render running it
  collectors_.erase(id);
}

void MetricsRegistryImpl::RunCollectors() {
  MutexLock lock(&collectors_mu_);
  for (auto& [id, fn] : collectors_) {
    if (fn) fn();
  }
}

}  // namespace internal

std::vector<double> DecisionLatencyBounds() {
  return {1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5,
          5e-5, 1e-4,   2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2};
}

absl::StatusOr<int64_t> SharedRegionBytesForMetrics(int64_t max_series) {
  if (max_series < 1 || max_series > kMaxMetricsSeries) {
    return absl::InvalidArgumentError(
        absl::StrCat("sluice.SharedRegionBytesForMetrics: max_series must be 1 to ",
                     kMaxMetricsSeries, ", got ", max_series));
  }
  return internal::SharedRegion::BytesFor(internal::MetricsMemory::WordsFor(max_series));
}

absl::StatusOr<std::shared_ptr<MetricsRegistry>> MetricsRegistry::Create(const Options& options) {
  if (options.max_series < 1 || options.max_series > kMaxMetricsSeries) {
    return absl::InvalidArgumentError(
        absl::StrCat("sluice.MetricsRegistry: max_series must be 1 to ", kMaxMetricsSeries,
                     ", got ", options.max_series));
  }
  absl::StatusOr<std::shared_ptr<internal::MetricsMemory>> memory =
      internal::MetricsMemory::Create(options.shared_region, options.max_series);
  if (!memory.ok()) return memory.status();
  return std::shared_ptr<MetricsRegistry>(new MetricsRegistry(
      std::make_unique<internal::MetricsRegistryImpl>(*std::move(memory))));
}

MetricsRegistry::MetricsRegistry(std::unique_ptr<internal::MetricsRegistryImpl> impl)
    : impl_(std::move(impl)) {}
MetricsRegistry::~MetricsRegistry() = default;

absl::StatusOr<Counter> MetricsRegistry::GetCounter(std::string_view name, std::string_view help,
                                                    const MetricLabels& labels) {
  return impl_->GetCounter(name, help, labels);
}
absl::StatusOr<Gauge> MetricsRegistry::GetGauge(std::string_view name, std::string_view help,
                                                const MetricLabels& labels) {
  return impl_->GetGauge(name, help, labels);
}
absl::StatusOr<Histogram> MetricsRegistry::GetHistogram(std::string_view name,
                                                        std::string_view help,
                                                        const MetricLabels& labels,
                                                        std::vector<double> bounds) {
  return impl_->GetHistogram(name, help, labels, std::move(bounds));
}
int64_t MetricsRegistry::AddCollector(std::function<void()> fn) {
  return impl_->AddCollector(std::move(fn));
}
void MetricsRegistry::RemoveCollector(int64_t id) { impl_->RemoveCollector(id); }
std::string MetricsRegistry::Render() const {
  impl_->RunCollectors();
  return impl_->Render();
}
int64_t MetricsRegistry::series_count() const { return impl_->memory().series_count(); }
int64_t MetricsRegistry::dropped_series() const {
  return impl_->memory().dropped().load(std::memory_order_relaxed);
}
int64_t MetricsRegistry::memory_bytes() const { return impl_->memory().memory_bytes(); }

}  // namespace v1
}  // namespace sluice
