// -----------------------------------------------------------------------------
// File: sluice/metrics.h
// -----------------------------------------------------------------------------
//
// `MetricsRegistry` keeps counters, gauges and histograms and renders them in the Prometheus text
// exposition format 0.0.4. With `shared_region` set, the series live in shared memory
// (/dev/shm/sluice.<name>), so every process on the host that opens the same name adds into the
// same numbers, and any one process (any Gunicorn worker answering /metrics) renders the whole
// host's totals, including series that only other processes registered. No prometheus_client
// multiprocess directory, no files per worker.
//
// Example:
//
//   sluice::MetricsRegistry::Options options;
//   options.shared_region = "dify-metrics";   // the same name in every worker; "" = this process
//   auto registry = sluice::MetricsRegistry::Create(options).value();
//   sluice::Counter allowed = registry->GetCounter(
//       "sluice_decisions_total", "Admission decisions.", {{"outcome", "allowed"}}).value();
//   allowed.Add();                                             // one relaxed atomic add
//   sluice::Histogram latency = registry->GetHistogram(
//       "sluice_decision_seconds", "Decision latency.", {}).value();  // DecisionLatencyBounds()
//   latency.Observe(2.5e-6);
//   std::string body = registry->Render();                     // text/plain; version=0.0.4
//
// Series. A series is a metric name plus a label set (labels are sorted by name, so their order in
// the call does not matter). Get* finds the series or makes it; call it once and keep the handle:
// the handle's operations are single atomic instructions, Get* hashes and probes.
//
// Capacity. At most `max_series` series, and the names, help texts, labels and histogram buckets
// must fit the registry's string space (kMetricsBytesPerSeries bytes per series on average, fixed
// at creation). A series that does not fit gets a no-op handle (operator bool is false) and is
// counted in `sluice_metrics_dropped_series_total`, which every Render includes. Series are never
// removed.
//
// Host scope (shared_region set). The region follows sluice/shared_region.h (reserved at creation,
// flock'd creation, a crashed creator's file taken over). It takes
// SharedRegionBytesForMetrics(max_series) bytes, all reserved at creation: 600 to 690 bytes per
// series (kMetricsBytesPerSeries of strings and values, two 32-byte slots at a load of 3/8 to 3/4)
// plus 4 KiB; 2.5 MiB for the default 4096 series. A 64 MiB /dev/shm (Docker's default) holds a
// registry of 90,000 series.
// Series are created by a compare-and-swap on a slot's state word, so two processes creating the
// same series get one slot; a process killed while creating a series leaves a slot that the next
// process creating that series takes over (its owner is recognised as dead by its pid: processes
// sharing a region must share a pid namespace, as a Gunicorn's workers do).
//  * Counters and histograms add the whole host's observations.
//  * Gauges are host-wide too: Add(+1)/Add(-1) from every process sum to the host's value, and
//    Set(v) sets the host-wide value (the last writer wins). A process killed between an Add(+1)
//    and its Add(-1) leaves its +1 behind for good: keep Add/Sub gauges for counts that tolerate
//    that, and Set values owned by one place from a collector (AddCollector).
//  * Every process must create the region with the same max_series (FailedPrecondition otherwise).
//
// fork(). Handles stay valid in a child: in host scope they still point at the shared series; in
// process scope the child has its own copy of the values as they were at the fork.
//
// Thread-safety: MetricsRegistry and every handle are safe for concurrent use by any number of
// threads. Handles are copyable and keep the series' memory alive (a shared_ptr), so a handle may
// outlive its registry (it then updates series nobody renders).

#ifndef SLUICE_METRICS_H_
#define SLUICE_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice {
inline namespace v1 {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class MetricsRegistry;

namespace internal {
class MetricsMemory;
class MetricsRegistryImpl;
}  // namespace internal

// The string space each series may use on average (names, help, labels, buckets): a series
// whose strings do not fit what is left is dropped (see Capacity above).
inline constexpr int64_t kMetricsBytesPerSeries = 512;

// The largest max_series a registry accepts.
inline constexpr int64_t kMaxMetricsSeries = int64_t{1} << 20;

// The bytes of /dev/shm a host-scope registry of `max_series` series takes, header included.
// InvalidArgument naming max_series unless 1 <= max_series <= kMaxMetricsSeries. Thread-safe.
absl::StatusOr<int64_t> SharedRegionBytesForMetrics(int64_t max_series);

// The default histogram bounds, in seconds: 100 ns to 10 ms in 1-2.5-5 steps (16 bounds), for
// the time one admission decision takes.
std::vector<double> DecisionLatencyBounds();

// A monotonic count. A handle: copyable, cheap. A default-constructed handle (or one for a series
// that did not fit) ignores Add and reads 0.
class Counter {
 public:
  Counter() = default;
  // Adds `n` (one relaxed atomic add). Precondition: n >= 0; a negative n is ignored (a counter
  // never goes down). The count wraps after 2^63 - 1.
  void Add(int64_t n = 1) const {
    if (cell_ != nullptr && n >= 0) {
      std::atomic_ref<int64_t>(*cell_).fetch_add(n, std::memory_order_relaxed);
    }
  }
  int64_t value() const {
    return cell_ == nullptr ? 0 : std::atomic_ref<int64_t>(*cell_).load(std::memory_order_relaxed);
  }
  explicit operator bool() const { return cell_ != nullptr; }

 private:
  friend class internal::MetricsRegistryImpl;
  Counter(std::shared_ptr<const internal::MetricsMemory> memory, int64_t* cell)
      : memory_(std::move(memory)), cell_(cell) {}
  std::shared_ptr<const internal::MetricsMemory> memory_;  // keeps `cell_` mapped
  int64_t* cell_ = nullptr;
};

// A value that goes up and down. In host scope it is one host-wide value (see the file comment).
class Gauge {
 public:
  Gauge() = default;
  void Set(int64_t v) const {
    if (cell_ != nullptr) std::atomic_ref<int64_t>(*cell_).store(v, std::memory_order_relaxed);
  }
  // Adds `n` (negative to subtract); wraps on overflow.
  void Add(int64_t n) const {
    if (cell_ != nullptr) std::atomic_ref<int64_t>(*cell_).fetch_add(n, std::memory_order_relaxed);
  }
  int64_t value() const {
    return cell_ == nullptr ? 0 : std::atomic_ref<int64_t>(*cell_).load(std::memory_order_relaxed);
  }
  explicit operator bool() const { return cell_ != nullptr; }

 private:
  friend class internal::MetricsRegistryImpl;
  Gauge(std::shared_ptr<const internal::MetricsMemory> memory, int64_t* cell)
      : memory_(std::move(memory)), cell_(cell) {}
  std::shared_ptr<const internal::MetricsMemory> memory_;
  int64_t* cell_ = nullptr;
};

// Observations counted in fixed buckets (upper bounds `le`, +Inf last), with their sum.
class Histogram {
 public:
  Histogram() = default;
  // Counts `v`, in the unit of the bounds (e.g. seconds), in the first bucket whose bound is
  // >= v. A NaN is ignored (it would make the host-wide sum NaN for good); infinities count in
  // the first or last bucket and make the sum infinite, as in Prometheus.
  void Observe(double v) const;
  // The observations counted, and their sum (0 for a no-op handle).
  int64_t count() const;
  double sum() const;
  explicit operator bool() const { return values_ != nullptr; }

 private:
  friend class internal::MetricsRegistryImpl;
  Histogram(std::shared_ptr<const internal::MetricsMemory> memory, const int64_t* bounds,
            int64_t bound_count, int64_t* values)
      : memory_(std::move(memory)), bounds_(bounds), bound_count_(bound_count), values_(values) {}
  std::shared_ptr<const internal::MetricsMemory> memory_;
  const int64_t* bounds_ = nullptr;  // bound_count_ doubles, stored as their bits
  int64_t bound_count_ = 0;
  int64_t* values_ = nullptr;  // the sum's bits, then bound_count_ + 1 bucket counts
};

// sluice::MetricsRegistry
class MetricsRegistry {
 public:
  struct Options {
    // Host scope: the series live in /dev/shm/sluice.<name>, shared by every process that opens
    // it (sluice/shared_region.h; the name is 1 to 200 of [A-Za-z0-9._-]). Empty (the default):
    // this process only.
    std::string shared_region;
    // The most series (name + labels combinations) kept; a new series beyond it gets a no-op
    // handle and is counted in sluice_metrics_dropped_series_total. Default 4096, in
    // [1, kMaxMetricsSeries].
    int64_t max_series = 4096;
  };

  // Errors: InvalidArgument naming the field; for a shared_region, the errors of
  // sluice/shared_region.h (ResourceExhausted when /dev/shm has no room, FailedPrecondition when
  // the region was made with another max_series).
  static absl::StatusOr<std::shared_ptr<MetricsRegistry>> Create(const Options& options);

  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Finds or makes a series. Errors, InvalidArgument naming the argument:
  //  * `name` is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), or is
  //    sluice_metrics_dropped_series_total (the registry's own);
  //  * a label name is not [a-zA-Z_][a-zA-Z0-9_]*, starts with "__" (reserved), repeats, or is
  //    "le" on a histogram;
  //  * `name` was registered earlier (in any process sharing the region) with another type or
  //    another help text;
  //  * `help` is longer than 4096 bytes, or name and labels take more than 16384 bytes.
  // Label values are any bytes: Render escapes them and replaces invalid UTF-8 with U+FFFD.
  // In host scope, Unavailable if another live process has been creating the same series for
  // over a second (stopped in a debugger?).
  absl::StatusOr<Counter> GetCounter(std::string_view name, std::string_view help,
                                     const MetricLabels& labels);
  absl::StatusOr<Gauge> GetGauge(std::string_view name, std::string_view help,
                                 const MetricLabels& labels);
  // `bounds`: 1 to 256 strictly increasing finite upper bounds (+Inf is added); empty means
  // DecisionLatencyBounds(). InvalidArgument naming bounds otherwise, or when the series exists
  // with other bounds.
  absl::StatusOr<Histogram> GetHistogram(std::string_view name, std::string_view help,
                                         const MetricLabels& labels,
                                         std::vector<double> bounds = {});

  // `fn` runs at the start of every Render (for values owned elsewhere: cache bytes, breaker
  // state), typically to Set gauges. Returns an id for RemoveCollector. Collectors run one at a
  // time, in the order added; `fn` must not call Render, AddCollector or RemoveCollector.
  int64_t AddCollector(std::function<void()> fn);
  // After it returns, collector `id` is not running and never runs again (so whatever it
  // captured may go). Unknown ids are ignored.
  void RemoveCollector(int64_t id);

  // The text exposition format 0.0.4: # HELP and # TYPE once per family, families sorted by
  // name, series sorted by their labels; histograms as _bucket{le=...} (cumulative), _sum and
  // _count. In host scope: every series of the region, whichever process registered it.
  std::string Render() const;

  int64_t series_count() const;    // series created (host-wide in host scope)
  int64_t dropped_series() const;  // registrations refused for want of room
  int64_t memory_bytes() const;    // bytes of the series' memory (the region's size)

 private:
  explicit MetricsRegistry(std::unique_ptr<internal::MetricsRegistryImpl> impl);
  std::unique_ptr<internal::MetricsRegistryImpl> impl_;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_METRICS_H_
