#include "sluice/rate_limiter.h"

#include "admission_options.h"
#include "gcra.h"

namespace sluice {
inline namespace v1 {

namespace {
constexpr absl::string_view kName = "sluice.RateLimiter";
}  // namespace

absl::StatusOr<std::unique_ptr<RateLimiter>> RateLimiter::Create(const Options& options,
                                                                 const Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("sluice.RateLimiter: clock is null");
  absl::StatusOr<std::vector<internal::GcraWindow>> windows =
      internal::CompileWindows(kName, options.windows, options.max_keys);
  if (!windows.ok()) return windows.status();
  auto shared =
      internal::OpenSharedCells(kName, options.shared_region, *windows, options.max_keys);
  if (!shared.ok()) return shared.status();
  return std::unique_ptr<RateLimiter>(new RateLimiter(
      options, std::make_unique<internal::GcraKeyedState>(*std::move(windows), options.max_keys,
                                                          clock, *std::move(shared))));
}

RateLimiter::RateLimiter(const Options& options, std::unique_ptr<internal::GcraKeyedState> state)
    : options_(options), state_(std::move(state)) {}

RateLimiter::~RateLimiter() = default;

absl::StatusOr<Decision> RateLimiter::TryAcquire(std::string_view key, int64_t cost) {
  return TryAcquireAt(key, cost, state_->clock().NowNanos());
}

absl::StatusOr<Decision> RateLimiter::TryAcquireAt(std::string_view key, int64_t cost,
                                                   int64_t now_nanos) {
  if (absl::Status s = internal::CheckCost(kName, "cost", cost, false, state_->windows());
      !s.ok()) {
    return s;
  }
  Decision decision;
  absl::Status s = state_->Admit(internal::DigestKey(key), cost, now_nanos, &decision);
  if (!s.ok()) return s;
  return decision;
}

bool RateLimiter::Allow(std::string_view key, int64_t cost) {
  if (cost < 1 || cost > state_->min_burst()) return false;
  Decision decision;
  return state_
             ->Admit(internal::DigestKey(key), cost, state_->clock().NowNanos(), &decision,
                     /*detailed=*/false)
             .ok() &&
         decision.allowed;
}

Decision RateLimiter::Peek(std::string_view key) {
  return state_->Peek(internal::DigestKey(key), state_->clock().NowNanos());
}

int64_t RateLimiter::DropIdleKeys() { return state_->DropIdle(state_->clock().NowNanos()); }
int64_t RateLimiter::key_count() const { return state_->key_count(); }
int64_t RateLimiter::memory_bytes() const { return state_->memory_bytes(); }

}  // namespace v1
}  // namespace sluice
