// -----------------------------------------------------------------------------
// File: sluice/retry_budget.h
// -----------------------------------------------------------------------------
//
// `RetryBudget` keeps retries from multiplying load when a provider fails: retries in flight
// may be at most `ratio` of the requests in flight, or `min_retries`, whichever is more. With the
// defaults (Envoy's: 20 %, minimum 3), an outage under 100 concurrent requests costs at most 20
// retries at a time instead of a retry for every request.
//
// `FullJitterBackoff` is the delay before retry n: uniform in [0, min(max, base x 2^n)] (AWS's
// "full jitter"), or the provider's Retry-After when it gave one.
//
// Example:
//
//   sluice::RetryBudget budget;                      // 20 %, min 3
//   sluice::RetryBudget::Request request(budget);    // counted while the request is in flight
//   ... the first attempt failed ...
//   if (sluice::RetryBudget::Retry retry = budget.TryRetry(); retry) {
//     ... send the retry; the token is returned when `retry` goes out of scope ...
//   }
//
// Thread-safety: every method may be called from any thread at once (two atomic counters).
// `Request` and `Retry` tokens are values owned by one thread at a time.

#ifndef SLUICE_RETRY_BUDGET_H_
#define SLUICE_RETRY_BUDGET_H_

#include <atomic>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {

// sluice::RetryBudget
class RetryBudget {
 public:
  struct Options {
    // Retries in flight as a share of requests in flight. Default 0.2. In [0, 1e6].
    double ratio = 0.2;
    // Retries in flight always allowed. Default 3. >= 0.
    int64_t min_retries = 3;
  };

  // A request in flight, counted from construction to destruction (or Release).
  class Request {
   public:
    Request() = default;
    explicit Request(RetryBudget& budget) : budget_(&budget) { budget.active_.fetch_add(1); }
    Request(Request&& o) noexcept : budget_(std::exchange(o.budget_, nullptr)) {}
    Request& operator=(Request&& o) noexcept {
      if (this != &o) Release(), budget_ = std::exchange(o.budget_, nullptr);
      return *this;
    }
    ~Request() { Release(); }
    void Release() {
      if (budget_ != nullptr) std::exchange(budget_, nullptr)->active_.fetch_sub(1);
    }

   private:
    RetryBudget* budget_ = nullptr;
  };

  // A retry in flight; empty (false) when the budget refused it.
  class Retry {
   public:
    Retry() = default;
    Retry(Retry&& o) noexcept : budget_(std::exchange(o.budget_, nullptr)) {}
    Retry& operator=(Retry&& o) noexcept {
      if (this != &o) Release(), budget_ = std::exchange(o.budget_, nullptr);
      return *this;
    }
    ~Retry() { Release(); }
    explicit operator bool() const { return budget_ != nullptr; }
    void Release() {
      if (budget_ != nullptr) std::exchange(budget_, nullptr)->retries_.fetch_sub(1);
    }

   private:
    friend class RetryBudget;
    explicit Retry(RetryBudget* budget) : budget_(budget) {}
    RetryBudget* budget_ = nullptr;
  };

  // Errors: InvalidArgument naming the field (prefixed by `prefix`).
  static absl::Status Validate(const Options& options, std::string_view prefix = "");
  // The defaults (20 %, minimum 3).
  RetryBudget();
  // REQUIRES: Validate(options).ok().
  explicit RetryBudget(Options options) : options_(options) {}
  RetryBudget(const RetryBudget&) = delete;
  RetryBudget& operator=(const RetryBudget&) = delete;

  // A retry token if retries in flight stay within max(min_retries, ratio x requests in flight);
  // an empty one (counted in refused()) otherwise.
  Retry TryRetry();

  int64_t requests_in_flight() const { return active_.load(std::memory_order_relaxed); }
  int64_t retries_in_flight() const { return retries_.load(std::memory_order_relaxed); }
  int64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  const Options& options() const { return options_; }

 private:
  const Options options_;
  std::atomic<int64_t> active_{0};
  std::atomic<int64_t> retries_{0};
  std::atomic<int64_t> refused_{0};
};

// The delay before retry `retry` (0-based): `unit` (uniform in [0, 1)) x min(max, base x 2^retry);
// at least `retry_after` when that is positive (the provider asked for it).
absl::Duration FullJitterBackoff(int64_t retry, absl::Duration base, absl::Duration max,
                                 absl::Duration retry_after, double unit);

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_RETRY_BUDGET_H_
