// Process and host scope for sliding windows: the rings live in this process (LockedTable) or in
// a host region (SharedTable, a lock word per key), so every call decides at once.
#include "admission/sliding_log_backend.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "admission/admission_options.h"
#include "sluice/rate_limiter.h"
#include "stores/locked_table.h"
#include "stores/shared_key_lock.h"
#include "stores/shared_table.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

absl::Status NotForSliding(absl::string_view what) {
  return absl::InternalError(absl::StrCat(
      "sluice: ", what, " is not defined on sliding windows (LeakyBucket and TokenBudget refuse "
      "them at Create)"));
}

// Process scope: a key's rings in a LockedTable; time from the table's creation; idle keys are
// dropped when room is needed and by DropIdle.
class ProcessRings {
 public:
  ProcessRings(const SlidingLog& log, int64_t max_keys, const Clock& clock)
      : log_(log), table_(log.cells(), max_keys), epoch_nanos_(clock.NowNanos()) {}
  int64_t epoch_nanos() const { return epoch_nanos_; }
  template <typename Fn>
  absl::Status Visit(const KeyDigest& d, int64_t now_nanos, int64_t now_ticks, Fn&& fn) {
    return table_.Visit(
        d, now_nanos, [&](const int64_t* cells) { return log_.IsIdle(cells, now_ticks); }, fn);
  }
  template <typename Fn>
  bool VisitExisting(const KeyDigest& d, Fn&& fn) {
    return table_.VisitExisting(d, fn);
  }
  int64_t DropIdle(int64_t now_ticks) {
    return table_.DropIdle([&](const int64_t* cells) { return log_.IsIdle(cells, now_ticks); });
  }
  int64_t size() const { return table_.size(); }
  int64_t memory_bytes() const { return table_.memory_bytes(); }

 private:
  const SlidingLog& log_;
  LockedTable table_;
  const int64_t epoch_nanos_;
};

// Host scope: a key's slot in a SharedTable is [lock word, rings...]; time from the region's
// epoch, common to every process; slots are never freed (see shared_table.h).
class HostRings {
 public:
  HostRings(const SlidingLog& log, std::unique_ptr<SharedTable> table)
      : log_(log), table_(std::move(table)) {}
  int64_t epoch_nanos() const { return table_->epoch_nanos(); }
  template <typename Fn>
  absl::Status Visit(const KeyDigest& d, int64_t, int64_t, Fn&& fn) {
    return table_->Visit(d, [&](int64_t* cells) { Locked(cells, fn); });
  }
  template <typename Fn>
  bool VisitExisting(const KeyDigest& d, Fn&& fn) {
    return table_->VisitExisting(d, [&](int64_t* cells) { Locked(cells, fn); });
  }
  int64_t DropIdle(int64_t) { return 0; }
  int64_t size() const { return table_->size(); }
  int64_t memory_bytes() const { return table_->memory_bytes(); }

 private:
  template <typename Fn>
  void Locked(int64_t* cells, Fn&& fn) {
    if (SharedKeyLock::Lock(cells) == SharedKeyLock::Taken::kTookOver) {
      log_.Repair(cells + 1);  // its holder died, perhaps mid-Admit
    }
    fn(cells + 1);
    SharedKeyLock::Unlock(cells);
  }

  const SlidingLog& log_;
  const std::unique_ptr<SharedTable> table_;
};

template <typename Rings>
class LocalSlidingBackend final : public SlidingBackendBase {
 public:
  template <typename MakeRings>
  LocalSlidingBackend(std::vector<SlidingWindow> windows, std::vector<GcraWindow> compiled,
                      const Clock* clock, MakeRings&& make_rings)
      : SlidingBackendBase(std::move(compiled), clock),
        log_(std::move(windows)),
        rings_(make_rings(log_)) {}

  absl::StatusOr<Decision> Admit(const KeyDigest& d, int64_t cost, int64_t now_nanos,
                                 const KeyWindows* limits) override {
    Decision decision;
    if (absl::Status s = Decide(d, cost, now_nanos, &decision, true, limits); !s.ok()) return s;
    return decision;
  }
  absl::StatusOr<PendingDecision> StartAdmit(const KeyDigest& d, int64_t cost, int64_t now_nanos,
                                             const KeyWindows* limits) override {
    absl::StatusOr<Decision> decision = Admit(d, cost, now_nanos, limits);
    if (!decision.ok()) return decision.status();
    return PendingDecision(*decision);
  }
  bool Allow(const KeyDigest& d, int64_t cost, int64_t now_nanos,
             const KeyWindows* limits) override {
    Decision decision;
    return Decide(d, cost, now_nanos, &decision, false, limits).ok() && decision.allowed;
  }
  std::optional<bool> AllowWithoutWaiting(const KeyDigest& d, int64_t cost, int64_t now_nanos,
                                          const KeyWindows* limits) override {
    return Allow(d, cost, now_nanos, limits);
  }
  absl::Status Refund(const KeyDigest& d, int64_t cost, int64_t charged_at_nanos, int64_t,
                      const KeyWindows*) override {
    const int64_t at = SlidingLog::Ticks(charged_at_nanos, rings_->epoch_nanos());
    rings_->VisitExisting(d, [&](int64_t* cells) { log_.Refund(cells, cost, at); });
    return absl::OkStatus();
  }

  PendingDecision StartPeek(const KeyDigest& d, int64_t now_nanos,
                            const KeyWindows* limits) override {
    const int64_t now = SlidingLog::Ticks(now_nanos, rings_->epoch_nanos());
    const SlidingWindow* key = limits != nullptr ? limits->sliding.data() : nullptr;
    Decision out;
    if (!rings_->VisitExisting(d, [&](int64_t* cells) { out = log_.Peek(cells, now, key); })) {
      out = log_.Peek(nullptr, now, key);
    }
    return PendingDecision(out);
  }

  int64_t DropIdle(int64_t now_nanos) override {
    return rings_->DropIdle(SlidingLog::Ticks(now_nanos, rings_->epoch_nanos()));
  }
  int64_t key_count() const override { return rings_->size(); }
  int64_t memory_bytes() const override { return rings_->memory_bytes(); }

 protected:
  absl::Status CompileForScope(absl::string_view, KeyWindows* k) const override {
    for (const SlidingWindow& w : k->sliding) log_.NoteKeyPeriod(w.period_nanos);
    return absl::OkStatus();
  }

 private:
  absl::Status Decide(const KeyDigest& d, int64_t cost, int64_t now_nanos, Decision* out,
                      bool detailed, const KeyWindows* limits) {
    if (cost < 1 || cost > log_.min_limit()) {  // RateLimiter checks; the ring relies on it
      return absl::InvalidArgumentError(absl::StrCat(
          "sluice: cost must be 1 to the smallest sliding limit ", log_.min_limit(), ", got ",
          cost));
    }
    const int64_t epoch = rings_->epoch_nanos();
    const int64_t now = SlidingLog::Ticks(now_nanos, epoch);
    const SlidingWindow* key = limits != nullptr ? limits->sliding.data() : nullptr;
    int64_t recorded = 0;
    absl::Status s = rings_->Visit(d, now_nanos, now, [&](int64_t* cells) {
      log_.Admit(cells, cost, now, out, detailed, key, &recorded);
    });
    // Back on the caller's clock, for Refund (which turns it into the same ticks).
    if (s.ok() && out->allowed) {
      out->charged_at_nanos = recorded - SlidingLog::kTickOffset + epoch;
    }
    return s;
  }

  const SlidingLog log_;
  const std::unique_ptr<Rings> rings_;  // after log_: it refers to it
};

std::string Describe(const std::vector<SlidingWindow>& windows) {
  std::string text = "sliding windows=[";
  for (size_t i = 0; i < windows.size(); ++i) {
    absl::StrAppend(&text, i ? ", " : "", windows[i].limit, " per ", windows[i].period_nanos,
                    "ns");
  }
  return text + "]";
}

}  // namespace

absl::StatusOr<Decision> SlidingBackendBase::Queue(const KeyDigest&, int64_t, int64_t, int64_t) {
  return NotForSliding("Queue");
}
absl::StatusOr<PendingDecision> SlidingBackendBase::StartQueue(const KeyDigest&, int64_t,
                                                               int64_t, int64_t) {
  return NotForSliding("Queue");
}
absl::StatusOr<Decision> SlidingBackendBase::Adjust(const KeyDigest&, int64_t, int64_t,
                                                    const KeyWindows*) {
  return NotForSliding("Adjust");
}
absl::StatusOr<PendingDecision> SlidingBackendBase::StartAdjust(const KeyDigest&, int64_t,
                                                                int64_t, const KeyWindows*) {
  return NotForSliding("Adjust");
}

int64_t HostSlidingCells(const std::vector<SlidingWindow>& windows) {
  int64_t cells = 1;  // the lock word
  for (const SlidingWindow& w : windows) cells += 1 + w.limit;
  return cells;
}

std::unique_ptr<GcraBackend> NewProcessSlidingBackend(std::vector<SlidingWindow> windows,
                                                      std::vector<GcraWindow> compiled,
                                                      int64_t max_keys, const Clock* clock) {
  return std::make_unique<LocalSlidingBackend<ProcessRings>>(
      std::move(windows), std::move(compiled), clock, [&](const SlidingLog& log) {
        return std::make_unique<ProcessRings>(log, max_keys, *clock);
      });
}

absl::StatusOr<std::unique_ptr<GcraBackend>> OpenSlidingBackend(const GcraSpec& spec) {
  absl::StatusOr<std::vector<SlidingWindow>> windows =
      CompileSlidingWindows(spec.object, spec.windows);
  if (!windows.ok()) return windows.status();
  const ScopeOptions& scope = *spec.scope;
  if (scope.cluster.store != nullptr) {
    if (scope.cluster.mode == ClusterMode::kLeased) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec.object, ": cluster.mode must be kStrict with sliding windows (a lease hands out ",
          "units to spend later; a sliding window must know when each admission happened)"));
    }
    if (!scope.shared_region.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.object, ": shared_region and cluster.store are two scopes; set one"));
    }
    return NewRedisSlidingBackend(spec, *std::move(windows));
  }
  if (!scope.shared_region.empty()) {
    // Reserved whole at creation: with the default max_keys (2^20), one window of limit 1000
    // would take 7.8 GiB. A careless default must not eat the host's memory.
    absl::StatusOr<int64_t> words =
        SharedTable::WordsFor(static_cast<int>(HostSlidingCells(*windows)), scope.max_keys);
    absl::StatusOr<int64_t> bytes =
        words.ok() ? SharedRegion::BytesFor(*words) : absl::StatusOr<int64_t>(words.status());
    if (bytes.ok() && *bytes > kMaxSlidingRegionBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec.object, ": max_keys must be lower for sliding windows in host scope: the region ",
          "would take ", *bytes, " bytes for max_keys ", scope.max_keys, ", more than ",
          kMaxSlidingRegionBytes, " (see SharedRegionBytesForSlidingWindows)"));
    }
    RegionSpec region;
    region.kind = std::string(spec.object);
    region.description = Describe(*windows);
    absl::StatusOr<std::unique_ptr<SharedTable>> table =
        SharedTable::Open(scope.shared_region, std::move(region),
                          static_cast<int>(HostSlidingCells(*windows)), scope.max_keys, 0);
    if (!table.ok()) {
      return absl::Status(table.status().code(),
                          absl::StrCat(spec.object, ": ", table.status().message()));
    }
    return std::unique_ptr<GcraBackend>(std::make_unique<LocalSlidingBackend<HostRings>>(
        *std::move(windows), spec.compiled, spec.clock,
        [&](const SlidingLog& log) {
          return std::make_unique<HostRings>(log, *std::move(table));
        }));
  }
  return NewProcessSlidingBackend(*std::move(windows), spec.compiled, scope.max_keys, spec.clock);
}

}  // namespace internal

absl::StatusOr<int64_t> SharedRegionBytesForSlidingWindows(const std::vector<Window>& windows,
                                                           int64_t max_keys) {
  constexpr absl::string_view kName = "sluice.SharedRegionBytesForSlidingWindows";
  absl::StatusOr<std::vector<internal::GcraWindow>> compiled =
      internal::CompileWindows(kName, windows, max_keys);
  if (!compiled.ok()) return compiled.status();
  for (size_t i = 0; i < windows.size(); ++i) {
    if (windows[i].kind != WindowKind::kSliding) {
      return absl::InvalidArgumentError(
          absl::StrCat(kName, ": windows[", i, "].kind must be kSliding"));
    }
  }
  absl::StatusOr<std::vector<internal::SlidingWindow>> sliding =
      internal::CompileSlidingWindows(kName, windows);
  if (!sliding.ok()) return sliding.status();
  absl::StatusOr<int64_t> words = internal::SharedTable::WordsFor(
      static_cast<int>(internal::HostSlidingCells(*sliding)), max_keys);
  if (!words.ok()) {
    return absl::Status(words.status().code(), absl::StrCat(kName, ": ", words.status().message()));
  }
  return internal::SharedRegion::BytesFor(*words);
}

}  // namespace v1
}  // namespace sluice
