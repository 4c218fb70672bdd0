#include <utility>

#include "absl/strings/str_cat.h"
#include "governor/governor_snapshot.h"
#include "governor/held_rule.h"
#include "sluice/cache_key.h"
#include "sluice/governor.h"

namespace sluice {
inline namespace v1 {

Admission::Admission() = default;
Admission::Admission(Admission&&) noexcept = default;

Admission& Admission::operator=(Admission&& other) noexcept {
  if (this != &other) {
    Release();
    snapshot_ = std::move(other.snapshot_);
    held_ = std::move(other.held_);
    other.held_.clear();
    allowed_ = other.allowed_;
    decision_ = other.decision_;
    decision_delay_nanos_ = other.decision_delay_nanos_;
    rule_ = other.rule_;
    status_ = std::move(other.status_);
    matched_ = std::move(other.matched_);
    model_ = std::move(other.model_);
    cache_namespace_ = std::move(other.cache_namespace_);
    body_ = std::move(other.body_);
    cache_key_ = std::move(other.cache_key_);
    cacheable_ = other.cacheable_;
    settled_ = other.settled_;
    token_estimate_ = other.token_estimate_;
  }
  return *this;
}

Admission::~Admission() { Release(); }

std::vector<std::pair<std::string, std::string>> Admission::Headers(unsigned styles) const {
  return RateLimitHeaders(decision_, styles, rule_.empty() ? std::string_view("sluice") : rule_);
}

const CacheKey* Admission::CacheKeyOf() {
  if (!cacheable_ || !snapshot_) return nullptr;
  if (!cache_key_) {
    absl::StatusOr<CacheKey> key =
        MakeCacheKey(body_, cache_namespace_, snapshot_->policy->cache->key);
    if (!key.ok()) {
      cacheable_ = false;  // not JSON: never cached
      return nullptr;
    }
    cache_key_ = *std::move(key);
  }
  return &*cache_key_;
}

std::shared_ptr<const CachedResponse> Admission::CachedAnswer() {
  const CacheKey* key = CacheKeyOf();
  if (key == nullptr) return nullptr;
  return snapshot_->cache.cache->Get(*key);
}

bool Admission::StoreAnswer(CachedResponse response) {
  if (!allowed_) return false;
  const CacheKey* key = CacheKeyOf();
  if (key == nullptr) return false;
  return snapshot_->cache.cache->Put(*key, std::move(response));
}

absl::StatusOr<FallbackPolicy::Call> Admission::BeginCall(
    const FallbackPolicy::CallOptions& options) {
  if (!snapshot_) return absl::FailedPreconditionError("sluice.Admission: empty admission");
  if (!allowed_) return absl::FailedPreconditionError("sluice.Admission: the request was refused");
  const internal::SharedFallback* chain = snapshot_->FallbackFor(model_);
  if (chain == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("sluice.Admission: no fallback chain for model \"", model_, "\""));
  }
  return chain->policy->Begin(options);
}

absl::Status Admission::Settle(const Usage& usage) { return Settle(usage.total_tokens); }

absl::Status Admission::Settle(int64_t total_tokens) {
  if (total_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sluice.Admission.settle: tokens must be >= 0, got ", total_tokens));
  }
  absl::Status first_error;
  if (!settled_) {
    settled_ = true;
    for (internal::HeldRule& held : held_) {
      if (!held.taken.reservation) continue;
      const int64_t estimate = held.taken.reservation.estimate();
      absl::StatusOr<Decision> settled = held.taken.reservation.Settle(total_tokens);
      if (!settled.ok() && first_error.ok()) first_error = settled.status();
      const internal::RuleSeries& series = held.rule->series();
      series.tokens_settled.Add(total_tokens);
      if (estimate > total_tokens) series.tokens_refunded.Add(estimate - total_tokens);
      if (total_tokens > estimate) series.tokens_over_estimate.Add(total_tokens - estimate);
    }
  }
  Release();
  return first_error;
}

void Admission::Cancel() {
  for (internal::HeldRule& held : held_) {
    if (!held.taken.reservation) continue;
    held.rule->series().tokens_refunded.Add(held.taken.reservation.estimate());
    (void)held.taken.reservation.Cancel();
  }
  settled_ = true;
  Release();
}

void Admission::Release() {
  for (internal::HeldRule& held : held_) {
    if (!held.taken.permit) continue;
    (void)held.taken.permit.Release();
    held.rule->series().in_flight.Add(-1);
  }
  held_.clear();  // unsettled reservations stay charged as estimated
}

}  // namespace v1
}  // namespace sluice
