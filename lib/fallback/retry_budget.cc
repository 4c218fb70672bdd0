#include "sluice/retry_budget.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace sluice {
inline namespace v1 {

RetryBudget::RetryBudget() : RetryBudget(Options()) {}

absl::Status RetryBudget::Validate(const Options& o, std::string_view prefix) {
  if (!(o.ratio >= 0 && o.ratio <= 1e6)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sluice.RetryBudget: ", std::string(prefix), "ratio must be in [0, 1e6]"));
  }
  if (o.min_retries < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sluice.RetryBudget: ", std::string(prefix), "min_retries must be >= 0"));
  }
  return absl::OkStatus();
}

RetryBudget::Retry RetryBudget::TryRetry() {
  // Optimistic: take a slot, then give it back if that went over the budget. Concurrent callers
  // can only under-admit, never over-admit.
  const int64_t taken = retries_.fetch_add(1, std::memory_order_acq_rel) + 1;
  const double active = static_cast<double>(active_.load(std::memory_order_acquire));
  const double allowed = std::max(static_cast<double>(options_.min_retries),
                                  std::floor(options_.ratio * active));
  if (static_cast<double>(taken) > allowed) {
    retries_.fetch_sub(1, std::memory_order_acq_rel);
    refused_.fetch_add(1, std::memory_order_relaxed);
    return Retry();
  }
  return Retry(this);
}

absl::Duration FullJitterBackoff(int64_t retry, absl::Duration base, absl::Duration max,
                                 absl::Duration retry_after, double unit) {
  const double cap = std::min(absl::ToDoubleNanoseconds(max),
                              absl::ToDoubleNanoseconds(base) *
                                  std::exp2(static_cast<double>(std::min<int64_t>(retry, 62))));
  const double drawn = std::clamp(unit, 0.0, 1.0) * std::max(0.0, cap);
  const absl::Duration jitter = absl::Nanoseconds(static_cast<int64_t>(drawn));
  // A provider's Retry-After is a floor: waiting less only earns another 429.
  return std::max(jitter, retry_after);
}

}  // namespace v1
}  // namespace sluice
