#include "sluice/rate_limiter.h"

#include "absl/strings/str_cat.h"

#include "admission/admission_options.h"
#include "admission/gcra_backend.h"

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
  absl::StatusOr<std::unique_ptr<internal::GcraBackend>> backend = internal::OpenGcraBackend(
      {.object = kName, .windows = options.windows, .compiled = *std::move(windows),
       .scope = &options, .clock = clock, .no_lease_reason = {}, .sliding_allowed = true});
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<RateLimiter>(new RateLimiter(options, *std::move(backend)));
}

RateLimiter::RateLimiter(const Options& options, std::unique_ptr<internal::GcraBackend> backend)
    : options_(options), backend_(std::move(backend)) {}

RateLimiter::~RateLimiter() = default;

absl::StatusOr<Decision> RateLimiter::TryAcquire(std::string_view key, int64_t cost) {
  return TryAcquireAt(key, cost, backend_->clock().NowNanos());
}

absl::StatusOr<Decision> RateLimiter::TryAcquireAt(std::string_view key, int64_t cost,
                                                   int64_t now_nanos) {
  if (absl::Status s = internal::CheckCost(kName, "cost", cost, false, backend_->windows());
      !s.ok()) {
    return s;
  }
  return backend_->Admit(internal::DigestKey(key), cost, now_nanos);
}

absl::StatusOr<PendingDecision> RateLimiter::Start(std::string_view key, int64_t cost) {
  if (absl::Status s = internal::CheckCost(kName, "cost", cost, false, backend_->windows());
      !s.ok()) {
    return s;
  }
  return backend_->StartAdmit(internal::DigestKey(key), cost, backend_->clock().NowNanos());
}

bool RateLimiter::Allow(std::string_view key, int64_t cost) {
  if (cost < 1 || cost > backend_->min_burst()) return false;
  return backend_->Allow(internal::DigestKey(key), cost, backend_->clock().NowNanos());
}

std::optional<bool> RateLimiter::AllowWithoutWaiting(std::string_view key, int64_t cost) {
  if (cost < 1 || cost > backend_->min_burst()) return false;
  return backend_->AllowWithoutWaiting(internal::DigestKey(key), cost,
                                       backend_->clock().NowNanos());
}

Decision RateLimiter::Peek(std::string_view key) { return StartPeek(key).Get(); }

PendingDecision RateLimiter::StartPeek(std::string_view key) {
  return backend_->StartPeek(internal::DigestKey(key), backend_->clock().NowNanos());
}

int64_t RateLimiter::DropIdleKeys() { return backend_->DropIdle(backend_->clock().NowNanos()); }
int64_t RateLimiter::key_count() const { return backend_->key_count(); }
int64_t RateLimiter::memory_bytes() const { return backend_->memory_bytes(); }
int64_t RateLimiter::failure_mode_decisions() const { return backend_->failure_mode_decisions(); }
int64_t RateLimiter::leased_local_decisions() const { return backend_->local_decisions(); }
int64_t RateLimiter::lease_round_trips() const { return backend_->round_trips(); }

}  // namespace v1
}  // namespace sluice
