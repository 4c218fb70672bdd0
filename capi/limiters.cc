// The four admission objects (rate limiter, leaky bucket, concurrency limiter, token budget) and
// what they hand out (permits, reservations). The verbs are docs/architecture.md's: try_acquire /
// try_reserve decide now; the old names forward to the same code under their own name.
#include "capi/internal.h"
#include "capi/params.h"

using namespace sluice_capi;  // NOLINT: the C entry points below use the helpers unqualified

namespace {

// A keyed call answered by a decision: the handle and key checked, then `decide(key)`.
template <typename Handle, typename Decide>
int DecideFor(const char* function, const Handle* handle, const char* handle_name,
              const char* key, size_t key_len, sluice_decision* out, Decide&& decide) {
  return Guard(function, [&](const char* fn) -> int {
    if (handle == nullptr) return NullArgument(fn, handle_name);
    if (int rc = CheckKey(fn, key, key_len); rc != SLUICE_OK) return rc;
    absl::StatusOr<sluice::Decision> d = decide(Bytes(key, key_len));
    if (!d.ok()) return FromStatus(fn, d.status());
    ToC(*d, out);
    return SLUICE_OK;
  });
}

int RateLimiterTryAcquire(const char* function, sluice_rate_limiter* limiter, const char* key,
                          size_t key_len, int64_t cost, sluice_decision* out) {
  return DecideFor(function, limiter, "limiter", key, key_len, out,
                   [&](std::string_view k) { return limiter->rep->TryAcquire(k, cost); });
}

int RateLimiterTryAcquireAt(const char* function, sluice_rate_limiter* limiter, const char* key,
                            size_t key_len, int64_t cost, int64_t now_nanos,
                            sluice_decision* out) {
  return DecideFor(function, limiter, "limiter", key, key_len, out, [&](std::string_view k) {
    return limiter->rep->TryAcquireAt(k, cost, now_nanos);
  });
}

int LeakyBucketTryAcquire(const char* function, sluice_leaky_bucket* bucket, const char* key,
                          size_t key_len, int64_t cost, sluice_decision* out) {
  return DecideFor(function, bucket, "bucket", key, key_len, out,
                   [&](std::string_view k) { return bucket->rep->TryAcquire(k, cost); });
}

int ConcurrencyTryAcquire(const char* function, sluice_concurrency_limiter* limiter,
                          const char* key, size_t key_len, sluice_decision* out,
                          sluice_permit** permit) {
  return Guard(function, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, permit, "permit"); rc != SLUICE_OK) return rc;
    if (limiter == nullptr) return NullArgument(fn, "limiter");
    if (int rc = CheckKey(fn, key, key_len); rc != SLUICE_OK) return rc;
    sluice::ConcurrencyLimiter::Permit p = limiter->rep->TryAcquire(Bytes(key, key_len));
    ToC(p.decision(), out);
    if (p) *permit = new sluice_permit{std::move(p)};
    return SLUICE_OK;
  });
}

int TokenBudgetTryReserve(const char* function, sluice_token_budget* budget, const char* key,
                          size_t key_len, int64_t estimate, sluice_decision* out,
                          sluice_reservation** reservation) {
  return Guard(function, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, reservation, "reservation"); rc != SLUICE_OK) return rc;
    if (budget == nullptr) return NullArgument(fn, "budget");
    if (int rc = CheckKey(fn, key, key_len); rc != SLUICE_OK) return rc;
    auto r = budget->rep->TryReserve(Bytes(key, key_len), estimate);
    if (!r.ok()) return FromStatus(fn, r.status());
    ToC(r->decision(), out);
    if (*r) *reservation = new sluice_reservation{*std::move(r)};
    return SLUICE_OK;
  });
}

// Every limiter's create: its parameters, then the scope options beside them (the Redis store,
// and the windows of the two that have windows).
template <ObjectKind kKind, typename Object, typename Handle>
int CreateLimiter(const char* function, const sluice_options* options, const sluice_clock* clock,
                  Handle** out) {
  using Options = std::conditional_t<TakesWindows(kKind), WindowedOptions<Object>,
                                     typename Object::Options>;
  return CreateHandle<kKind, Options>(function, options, out, [&](Options& o) {
    o.cluster.store = options->redis;
    if constexpr (TakesWindows(kKind)) {
      o.windows = options->windows;
      for (sluice::Window& w : o.windows) w.kind = o.window_kind;
    }
    return Object::Create(o, ClockOf(clock));
  });
}

}  // namespace

extern "C" {

// ---- rate limiter ------------------------------------------------------------------------------

int sluice_rate_limiter_create(const sluice_options* options, const sluice_clock* clock,
                               sluice_rate_limiter** out) {
  return CreateLimiter<kRateLimiter, sluice::RateLimiter>(__func__, options, clock, out);
}

void sluice_rate_limiter_destroy(sluice_rate_limiter* limiter) { delete limiter; }

int sluice_rate_limiter_try_acquire(sluice_rate_limiter* limiter, const char* key,
                                    size_t key_len, int64_t cost, sluice_decision* out) {
  return RateLimiterTryAcquire(__func__, limiter, key, key_len, cost, out);
}

int sluice_rate_limiter_try_acquire_at(sluice_rate_limiter* limiter, const char* key,
                                       size_t key_len, int64_t cost, int64_t now_nanos,
                                       sluice_decision* out) {
  return RateLimiterTryAcquireAt(__func__, limiter, key, key_len, cost, now_nanos, out);
}

int sluice_rate_limiter_allow(sluice_rate_limiter* limiter, const char* key, size_t key_len,
                              int64_t cost) {
  int allowed = 0;  // errors refuse, as RateLimiter::Allow's do
  Guard(__func__, [&](const char* fn) -> int {
    if (limiter == nullptr) return NullArgument(fn, "limiter");
    if (int rc = CheckKey(fn, key, key_len); rc != SLUICE_OK) return rc;
    allowed = limiter->rep->Allow(Bytes(key, key_len), cost) ? 1 : 0;
    return SLUICE_OK;
  });
  return allowed;
}

int sluice_rate_limiter_acquire(sluice_rate_limiter* limiter, const char* key, size_t key_len,
                                int64_t cost, sluice_decision* out) {
  return RateLimiterTryAcquire(__func__, limiter, key, key_len, cost, out);
}

int sluice_rate_limiter_acquire_at(sluice_rate_limiter* limiter, const char* key, size_t key_len,
                                   int64_t cost, int64_t now_nanos, sluice_decision* out) {
  return RateLimiterTryAcquireAt(__func__, limiter, key, key_len, cost, now_nanos, out);
}

// ---- leaky bucket ------------------------------------------------------------------------------

int sluice_leaky_bucket_create(const sluice_options* options, const sluice_clock* clock,
                               sluice_leaky_bucket** out) {
  return CreateLimiter<kLeakyBucket, sluice::LeakyBucket>(__func__, options, clock, out);
}

void sluice_leaky_bucket_destroy(sluice_leaky_bucket* bucket) { delete bucket; }

int sluice_leaky_bucket_try_acquire(sluice_leaky_bucket* bucket, const char* key, size_t key_len,
                                    int64_t cost, sluice_decision* out) {
  return LeakyBucketTryAcquire(__func__, bucket, key, key_len, cost, out);
}

int sluice_leaky_bucket_acquire(sluice_leaky_bucket* bucket, const char* key, size_t key_len,
                                int64_t cost, sluice_decision* out) {
  return LeakyBucketTryAcquire(__func__, bucket, key, key_len, cost, out);
}

// ---- concurrency limiter -----------------------------------------------------------------------

int sluice_concurrency_limiter_create(const sluice_options* options, const sluice_clock* clock,
                                      sluice_concurrency_limiter** out) {
  return CreateLimiter<kConcurrency, sluice::ConcurrencyLimiter>(__func__, options, clock, out);
}

void sluice_concurrency_limiter_destroy(sluice_concurrency_limiter* limiter) { delete limiter; }

int sluice_concurrency_limiter_try_acquire(sluice_concurrency_limiter* limiter, const char* key,
                                           size_t key_len, sluice_decision* out,
                                           sluice_permit** permit) {
  return ConcurrencyTryAcquire(__func__, limiter, key, key_len, out, permit);
}

int sluice_concurrency_limiter_acquire(sluice_concurrency_limiter* limiter, const char* key,
                                       size_t key_len, sluice_decision* out,
                                       sluice_permit** permit) {
  return ConcurrencyTryAcquire(__func__, limiter, key, key_len, out, permit);
}

int64_t sluice_concurrency_limiter_in_flight(sluice_concurrency_limiter* limiter,
                                             const char* key, size_t key_len) {
  if (limiter == nullptr || CheckKey(__func__, key, key_len) != SLUICE_OK) return -1;
  return limiter->rep->InFlight(Bytes(key, key_len));
}

int sluice_permit_release(sluice_permit* permit) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (permit == nullptr) return NullArgument(fn, "permit");
    return FromStatus(fn, permit->rep.Release());
  });
}

int sluice_permit_renew(sluice_permit* permit, int64_t lease_nanos) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (permit == nullptr) return NullArgument(fn, "permit");
    if (lease_nanos < 0) return Invalid(fn, absl::StrCat("lease_nanos must be >= 0, got ", lease_nanos));
    return FromStatus(fn, lease_nanos == 0 ? permit->rep.Renew()
                                           : permit->rep.Renew(absl::Nanoseconds(lease_nanos)));
  });
}

void sluice_permit_destroy(sluice_permit* permit) { delete permit; }

// ---- token budget ------------------------------------------------------------------------------

int sluice_token_budget_create(const sluice_options* options, const sluice_clock* clock,
                               sluice_token_budget** out) {
  return CreateLimiter<kTokenBudget, sluice::TokenBudget>(__func__, options, clock, out);
}

void sluice_token_budget_destroy(sluice_token_budget* budget) { delete budget; }

int sluice_token_budget_try_reserve(sluice_token_budget* budget, const char* key, size_t key_len,
                                    int64_t estimate, sluice_decision* out,
                                    sluice_reservation** reservation) {
  return TokenBudgetTryReserve(__func__, budget, key, key_len, estimate, out, reservation);
}

int sluice_token_budget_reserve(sluice_token_budget* budget, const char* key, size_t key_len,
                                int64_t estimate, sluice_decision* out,
                                sluice_reservation** reservation) {
  return TokenBudgetTryReserve(__func__, budget, key, key_len, estimate, out, reservation);
}

int sluice_token_budget_charge(sluice_token_budget* budget, const char* key, size_t key_len,
                               int64_t tokens, sluice_decision* out) {
  return DecideFor(__func__, budget, "budget", key, key_len, out,
                   [&](std::string_view k) { return budget->rep->Charge(k, tokens); });
}

int sluice_reservation_settle(sluice_reservation* reservation, int64_t actual,
                              sluice_decision* out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (reservation == nullptr) return NullArgument(fn, "reservation");
    auto d = reservation->rep.Settle(actual);
    if (!d.ok()) return FromStatus(fn, d.status());
    ToC(*d, out);
    return SLUICE_OK;
  });
}

int sluice_reservation_cancel(sluice_reservation* reservation) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (reservation == nullptr) return NullArgument(fn, "reservation");
    return FromStatus(fn, reservation->rep.Cancel());
  });
}

void sluice_reservation_destroy(sluice_reservation* reservation) { delete reservation; }

}  // extern "C"
