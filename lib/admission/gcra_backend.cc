// OpenGcraBackend: the one place a GCRA object's scope is read.
#include "admission/gcra_backend.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "admission/leased_gcra.h"
#include "admission/redis_gcra.h"
#include "admission/sliding_log_backend.h"
#include "stores/shared_table.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// The shared table behind `shared_region`, created for `object` with these windows (opening it
// with other windows fails).
absl::StatusOr<std::unique_ptr<SharedTable>> OpenSharedCells(absl::string_view object,
                                                             const std::string& shared_region,
                                                             const std::vector<GcraWindow>& windows,
                                                             int64_t max_keys) {
  RegionSpec spec;
  spec.kind = std::string(object);
  spec.description = "windows=[";
  for (size_t i = 0; i < windows.size(); ++i) {
    absl::StrAppend(&spec.description, i ? ", " : "", windows[i].limit, " per ",
                    windows[i].period_nanos, "ns burst ", windows[i].burst);
  }
  spec.description += "]";
  auto table = SharedTable::Open(shared_region, std::move(spec), static_cast<int>(windows.size()),
                                 max_keys, kFreshGcraCell);
  if (!table.ok()) {
    return absl::Status(table.status().code(),
                        absl::StrCat(object, ": ", table.status().message()));
  }
  return table;
}

// Leased mode's lease size and time to live, validated, 0 (auto) resolved.
struct LeaseSettings {
  int64_t units = 0;
  absl::Duration ttl;
};
absl::StatusOr<LeaseSettings> CheckLease(absl::string_view object, const ClusterOptions& cluster,
                                         const std::vector<GcraWindow>& windows) {
  int64_t shortest = windows[0].period_nanos;
  int64_t min_burst = windows[0].burst;
  for (const auto& w : windows) {
    shortest = std::min(shortest, w.period_nanos);
    min_burst = std::min(min_burst, w.burst);
  }
  LeaseSettings lease{cluster.lease_units, cluster.lease_ttl};
  if (lease.units == 0) lease.units = std::max<int64_t>(1, min_burst / 100);
  if (lease.units < 1 || lease.units > LeasedGcra::kMaxLeaseUnits) {
    return absl::InvalidArgumentError(absl::StrCat(
        object, ": cluster.lease_units must be 0 (auto) or 1 to ", LeasedGcra::kMaxLeaseUnits,
        ", got ", cluster.lease_units));
  }
  // The overshoot bound is limit * ttl / period: a ttl beyond the period would make it a limit.
  const absl::Duration longest = std::max(absl::Milliseconds(1), absl::Nanoseconds(shortest));
  if (lease.ttl != absl::ZeroDuration() &&
      (lease.ttl < absl::Milliseconds(1) || lease.ttl > longest)) {
    return absl::InvalidArgumentError(absl::StrCat(
        object, ": cluster.lease_ttl must be 0 (auto) or between 1ms and the shortest window's ",
        "period (", absl::FormatDuration(longest), "), got ", absl::FormatDuration(lease.ttl)));
  }
  if (lease.ttl == absl::ZeroDuration()) {
    lease.ttl = std::max(absl::Milliseconds(1), absl::Nanoseconds(shortest / 100));
  }
  return lease;
}

}  // namespace

GcraBackend::GcraBackend(std::vector<GcraWindow> windows, const Clock* clock)
    : windows_(std::move(windows)),
      min_burst_(std::min_element(windows_.begin(), windows_.end(),
                                  [](const GcraWindow& a, const GcraWindow& b) {
                                    return a.burst < b.burst;
                                  })->burst),
      clock_(clock),
      id_([] {
        static std::atomic<uint64_t> next{1};
        return next.fetch_add(1, std::memory_order_relaxed);
      }()) {}

absl::StatusOr<std::shared_ptr<const KeyWindows>> GcraBackend::CompileKeyWindows(
    absl::string_view object, const std::vector<Window>& object_windows,
    const std::vector<Window>& windows) const {
  if (windows.size() != object_windows.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        object, ": windows must hold as many windows as Options::windows (", object_windows.size(),
        "), got ", windows.size()));
  }
  auto k = std::make_shared<KeyWindows>();
  k->owner = id_;
  k->source = windows;
  for (size_t i = 0; i < windows.size(); ++i) {
    const std::string prefix = absl::StrCat(object, ": windows[", i, "].");
    const Window& w = windows[i];
    if (w.kind != object_windows[i].kind) {
      return absl::InvalidArgumentError(absl::StrCat(
          prefix, "kind must be Options::windows[", i, "]'s (",
          object_windows[i].kind == WindowKind::kSliding ? "kSliding" : "kGcra", ")"));
    }
    if (w.kind == WindowKind::kSliding) {
      absl::StatusOr<GcraWindow> compiled = CompileWindow(w, prefix);  // limit, period
      if (!compiled.ok()) return compiled.status();
      if (w.burst != 0 && w.burst != w.limit) {
        return absl::InvalidArgumentError(absl::StrCat(
            prefix, "burst must be 0 (or the limit) for a sliding window, got ", w.burst));
      }
      if (w.limit > object_windows[i].limit) {
        return absl::InvalidArgumentError(absl::StrCat(
            prefix, "limit must be at most Options::windows[", i, "].limit ",
            object_windows[i].limit, " (a key's log keeps that many times), got ", w.limit));
      }
      k->gcra.push_back(*compiled);
      k->sliding.push_back({w.limit, compiled->period_nanos});
      continue;
    }
    absl::StatusOr<GcraWindow> compiled = CompileWindowAtScale(w, windows_[i].scale, prefix);
    if (!compiled.ok()) return compiled.status();
    k->exact = k->exact && compiled->exact;
    k->gcra.push_back(*compiled);
  }
  k->min_burst = std::min_element(k->gcra.begin(), k->gcra.end(),
                                  [](const GcraWindow& a, const GcraWindow& b) {
                                    return a.burst < b.burst;
                                  })->burst;
  if (absl::Status s = CompileForScope(object, k.get()); !s.ok()) return s;
  return std::shared_ptr<const KeyWindows>(std::move(k));
}

absl::StatusOr<std::unique_ptr<GcraBackend>> OpenGcraBackend(const GcraSpec& spec) {
  absl::StatusOr<bool> sliding = AreSliding(spec.object, spec.windows);
  if (!sliding.ok()) return sliding.status();
  if (*sliding) {
    if (!spec.sliding_allowed) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec.object, ": windows[0].kind must be kGcra (only a RateLimiter takes sliding ",
          "windows: they keep one timestamp per admission, too many for token or shaping ",
          "windows)"));
    }
    return OpenSlidingBackend(spec);
  }
  const ScopeOptions& scope = *spec.scope;
  const ClusterOptions& cluster = scope.cluster;
  if (cluster.store != nullptr) {
    const bool leased = cluster.mode == ClusterMode::kLeased;
    if (leased && !spec.no_lease_reason.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec.object, ": cluster.mode must be kStrict (", spec.no_lease_reason, ")"));
    }
    absl::StatusOr<LeaseSettings> lease = LeaseSettings{};
    if (leased) lease = CheckLease(spec.object, cluster, spec.compiled);
    if (!lease.ok()) return lease.status();
    if (!scope.shared_region.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.object, ": shared_region and cluster.store are two scopes; set one"));
    }
    absl::StatusOr<std::unique_ptr<ClusterGcra>> redis =
        ClusterGcra::Create(spec.object, cluster, spec.windows, spec.clock);
    if (!redis.ok()) return redis.status();
    if (!leased) return NewRedisGcraBackend(spec.compiled, spec.clock, *std::move(redis));
    return NewLeasedGcraBackend(spec.compiled, spec.clock, *std::move(redis), lease->units,
                                lease->ttl, scope.max_keys);
  }
  if (!scope.shared_region.empty()) {
    absl::StatusOr<std::unique_ptr<SharedTable>> table =
        OpenSharedCells(spec.object, scope.shared_region, spec.compiled, scope.max_keys);
    if (!table.ok()) return table.status();
    return NewHostGcraBackend(spec.compiled, *std::move(table), spec.clock);
  }
  return NewProcessGcraBackend(spec.compiled, scope.max_keys, spec.clock);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
