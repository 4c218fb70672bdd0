// What every file of the C ABI (include/sluice/c.h) shares: the handle structs, each a one-field
// wrapper around its C++ object (leveldb's db/c.cc pattern), and the guard that keeps C++ from
// crossing the boundary: every entry point runs inside Guard(), which turns statuses and
// exceptions into pinned codes and a thread-local message that starts with the C function's name.
#ifndef SLUICE_CAPI_INTERNAL_H_
#define SLUICE_CAPI_INTERNAL_H_

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "sluice/c.h"
#include "sluice/governor.h"
#include "sluice/sluice.hpp"
#include "sluice/usage.h"

// ---- handles -----------------------------------------------------------------------------------

struct sluice_clock {
  sluice::ManualClock rep;
};
struct sluice_redis_store {
  std::shared_ptr<sluice::RedisStore> rep;
};
// The parameter bag (capi/options.cc): values by pinned number, read by each create function.
struct sluice_options {
  absl::flat_hash_map<int, int64_t> params;
  absl::flat_hash_map<int, std::string> strings;
  std::vector<sluice::Window> windows;
  std::shared_ptr<sluice::RedisStore> redis;
};
struct sluice_rate_limiter {
  std::unique_ptr<sluice::RateLimiter> rep;
};
struct sluice_leaky_bucket {
  std::unique_ptr<sluice::LeakyBucket> rep;
};
struct sluice_concurrency_limiter {
  std::unique_ptr<sluice::ConcurrencyLimiter> rep;
};
struct sluice_permit {
  sluice::ConcurrencyLimiter::Permit rep;
};
struct sluice_token_budget {
  std::unique_ptr<sluice::TokenBudget> rep;
};
struct sluice_reservation {
  sluice::TokenBudget::Reservation rep;
};
struct sluice_balancer {
  std::shared_ptr<sluice::Balancer> rep;  // shared with fallback policies that route through it
};
struct sluice_pick {
  sluice::Balancer::Pick rep;
};
struct sluice_fallback_policy {
  std::unique_ptr<sluice::FallbackPolicy> rep;
};
struct sluice_fallback_call {
  sluice::FallbackPolicy::Call rep;
};
struct sluice_cache_key {
  sluice::CacheKey rep;
};
struct sluice_cached_answer {
  std::shared_ptr<const sluice::CachedResponse> rep;
};
struct sluice_response_cache {
  std::unique_ptr<sluice::ResponseCache> rep;
};
struct sluice_fetch {
  sluice::FetchResult rep;
  size_t chunks_taken = 0;  // kept across sluice_fetch_resume
};
// A usage reader (capi/usage.cc). C++'s UsageReader is not synchronized and its Feed after
// Finish is a REQUIRES; the C handle refuses both instead: `in_use` turns an overlapping call
// from another thread into SLUICE_FAILED_PRECONDITION, `result` marks it finished.
struct sluice_usage_reader {
  explicit sluice_usage_reader(sluice::UsageReader reader) : rep(std::move(reader)) {}
  sluice::UsageReader rep;
  std::optional<absl::StatusOr<sluice::Usage>> result;  // set by the first finish
  mutable std::atomic<bool> in_use{false};
};
struct sluice_governor {
  std::unique_ptr<sluice::Governor> rep;
};
struct sluice_admission {
  sluice::Admission rep;  // holds its policy snapshot: outlives the governor
  std::vector<std::pair<std::string, std::string>> headers;  // sluice_admission_headers' last
};

namespace sluice_capi {

// ---- errors (capi/status.cc) -------------------------------------------------------------------

// Sets this thread's message; returns `code`.
int Fail(int code, std::string message);
// SLUICE_OK, or the status's C code (include/sluice/internal/status_table.h) with the message
// "<function>: <status message>".
int FromStatus(const char* function, const absl::Status& status);

inline int NullArgument(const char* function, const char* name) {
  return Fail(SLUICE_INVALID_ARGUMENT, absl::StrCat(function, ": ", name, " is NULL"));
}
inline int Invalid(const char* function, absl::string_view what) {
  return Fail(SLUICE_INVALID_ARGUMENT, absl::StrCat(function, ": ", what));
}

// Runs `body(function)`, mapping any exception to a status: nothing C++ crosses the C boundary.
// The body takes the C function's name as an argument because `__func__` inside a lambda is
// "operator()".
template <typename Body>
int Guard(const char* function, Body&& body) {
  try {
    return body(function);
  } catch (const std::bad_alloc&) {
    return Fail(SLUICE_OUT_OF_MEMORY, absl::StrCat(function, ": out of memory"));
  } catch (const std::exception& e) {
    return Fail(SLUICE_INTERNAL, absl::StrCat(function, ": ", e.what()));
  } catch (...) {
    return Fail(SLUICE_INTERNAL, absl::StrCat(function, ": unknown exception"));
  }
}

// The prologue of every function that hands out a new handle: *out = NULL first, so that a
// failure leaves NULL; SLUICE_INVALID_ARGUMENT if `out` itself is NULL.
template <typename Handle>
int ClearOut(const char* function, Handle** out, const char* name = "out") {
  if (out == nullptr) return NullArgument(function, name);
  *out = nullptr;
  return SLUICE_OK;
}

// ---- arguments ---------------------------------------------------------------------------------

// A (ptr, len) key: NULL only with len 0, at most SLUICE_MAX_KEY_LEN bytes.
inline int CheckKey(const char* function, const char* key, size_t key_len,
                    const char* name = "key") {
  if (key == nullptr && key_len != 0) {
    return Invalid(function, absl::StrCat(name, " is NULL but ", name, "_len is ", key_len));
  }
  if (key_len > SLUICE_MAX_KEY_LEN) {
    return Invalid(function,
                   absl::StrCat(name, "_len ", key_len, " exceeds SLUICE_MAX_KEY_LEN"));
  }
  return SLUICE_OK;
}

// A (ptr, len) string the caller vouched for (CheckKey, or a NULL check).
inline std::string_view Bytes(const char* ptr, size_t len) {
  return len == 0 ? std::string_view() : std::string_view(ptr, len);
}

// Hands out a view as (pointer, *len); `len` may be NULL.
inline const char* View(std::string_view v, size_t* len) {
  if (len != nullptr) *len = v.size();
  return v.data();
}

inline const sluice::Clock* ClockOf(const sluice_clock* clock) {
  return clock == nullptr ? sluice::Clock::Steady() : &clock->rep;
}

// Copies a decision out; `out` may be NULL.
void ToC(const sluice::Decision& d, sluice_decision* out);

// Copies a fallback step out (`out` may be NULL); a failed step's status becomes this thread's
// message (capi/fallback.cc).
void StepToC(const char* function, const sluice::FallbackPolicy::Step& step,
             sluice_fallback_step* out);

// A cache answer from C: a body (`chunk_count` 0) or SSE chunks; errors name the bad argument
// (capi/cache.cc).
int AnswerFromC(const char* function, const char* body, size_t body_len, const char* const* chunks,
                const size_t* chunk_lens, size_t chunk_count, int64_t ttl_nanos,
                sluice::CachedResponse* out);

}  // namespace sluice_capi

#endif  // SLUICE_CAPI_INTERNAL_H_
