// Process and host scope: the GCRA cells live in this process or in a host region, so every
// call decides at once and a Start... call returns a ready Pending.
#include <memory>
#include <utility>

#include "admission/gcra.h"
#include "admission/gcra_backend.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

template <typename Cells>
class LocalGcraBackend final : public GcraBackend {
 public:
  LocalGcraBackend(std::vector<GcraWindow> windows, const Clock* clock,
                   std::unique_ptr<Cells> cells)
      : GcraBackend(windows, clock), state_(std::move(windows), clock, std::move(cells)) {}

  absl::StatusOr<Decision> Admit(const KeyDigest& d, int64_t cost, int64_t now_nanos) override {
    Decision decision;
    if (absl::Status s = state_.Admit(d, cost, now_nanos, &decision); !s.ok()) return s;
    return decision;
  }
  absl::StatusOr<PendingDecision> StartAdmit(const KeyDigest& d, int64_t cost,
                                             int64_t now_nanos) override {
    return Ready(Admit(d, cost, now_nanos));
  }
  bool Allow(const KeyDigest& d, int64_t cost, int64_t now_nanos) override {
    Decision decision;
    return state_.Admit(d, cost, now_nanos, &decision, /*detailed=*/false).ok() &&
           decision.allowed;
  }
  std::optional<bool> AllowWithoutWaiting(const KeyDigest& d, int64_t cost,
                                          int64_t now_nanos) override {
    return Allow(d, cost, now_nanos);
  }

  absl::StatusOr<Decision> Queue(const KeyDigest& d, int64_t cost, int64_t max_wait_nanos,
                                 int64_t now_nanos) override {
    Decision decision;
    if (absl::Status s = state_.Queue(d, cost, max_wait_nanos, now_nanos, &decision); !s.ok()) {
      return s;
    }
    return decision;
  }
  absl::StatusOr<PendingDecision> StartQueue(const KeyDigest& d, int64_t cost,
                                             int64_t max_wait_nanos, int64_t now_nanos) override {
    return Ready(Queue(d, cost, max_wait_nanos, now_nanos));
  }

  absl::StatusOr<Decision> Adjust(const KeyDigest& d, int64_t delta, int64_t now_nanos) override {
    Decision decision;
    if (absl::Status s = state_.Adjust(d, delta, now_nanos, &decision); !s.ok()) return s;
    return decision;
  }
  absl::StatusOr<PendingDecision> StartAdjust(const KeyDigest& d, int64_t delta,
                                              int64_t now_nanos) override {
    return Ready(Adjust(d, delta, now_nanos));
  }

  PendingDecision StartPeek(const KeyDigest& d, int64_t now_nanos) override {
    return PendingDecision(state_.Peek(d, now_nanos));
  }

  int64_t DropIdle(int64_t now_nanos) override { return state_.DropIdle(now_nanos); }
  int64_t key_count() const override { return state_.key_count(); }
  int64_t memory_bytes() const override { return state_.memory_bytes(); }

 private:
  static absl::StatusOr<PendingDecision> Ready(absl::StatusOr<Decision> decision) {
    if (!decision.ok()) return decision.status();
    return PendingDecision(*decision);
  }

  GcraState<Cells> state_;
};

}  // namespace

std::unique_ptr<GcraBackend> NewProcessGcraBackend(std::vector<GcraWindow> windows,
                                                   int64_t max_keys, const Clock* clock) {
  const int cells = static_cast<int>(windows.size());
  return std::make_unique<LocalGcraBackend<ProcessCells>>(
      std::move(windows), clock, std::make_unique<ProcessCells>(cells, max_keys, *clock));
}

std::unique_ptr<GcraBackend> NewHostGcraBackend(std::vector<GcraWindow> windows,
                                                std::unique_ptr<SharedTable> table,
                                                const Clock* clock) {
  return std::make_unique<LocalGcraBackend<HostCells>>(
      std::move(windows), clock, std::make_unique<HostCells>(std::move(table)));
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
