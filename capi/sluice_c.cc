// The C ABI (include/sluice/sluice.h) over the C++ objects. Each handle is a one-field wrapper
// around its C++ object (leveldb's db/c.cc pattern); no exception escapes: every entry point runs
// inside Guard(), which turns statuses and exceptions into pinned codes and a thread-local message.

#include "sluice/sluice.h"

#include <algorithm>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "sluice/sluice.hpp"

using sluice::ConcurrencyLimiter;
using sluice::Decision;
using sluice::LeakyBucket;
using sluice::ManualClock;
using sluice::RateLimiter;
using sluice::TokenBudget;

struct sluice_clock {
  ManualClock rep;
};
struct sluice_redis_store {
  std::shared_ptr<sluice::RedisStore> rep;
};
struct sluice_options {
  absl::flat_hash_map<int, int64_t> params;
  absl::flat_hash_map<int, std::string> strings;
  std::vector<sluice::Window> windows;
  std::shared_ptr<sluice::RedisStore> redis;
};
struct sluice_rate_limiter {
  std::unique_ptr<RateLimiter> rep;
};
struct sluice_leaky_bucket {
  std::unique_ptr<LeakyBucket> rep;
};
struct sluice_concurrency_limiter {
  std::unique_ptr<ConcurrencyLimiter> rep;
};
struct sluice_permit {
  ConcurrencyLimiter::Permit rep;
};
struct sluice_token_budget {
  std::unique_ptr<TokenBudget> rep;
};
struct sluice_reservation {
  TokenBudget::Reservation rep;
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

namespace {

thread_local std::string last_error;

int Fail(int code, std::string message) {
  last_error = std::move(message);
  return code;
}

int FromStatus(const absl::Status& status) {
  if (status.ok()) return SLUICE_OK;
  int code = SLUICE_INTERNAL;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument: code = SLUICE_INVALID_ARGUMENT; break;
    case absl::StatusCode::kResourceExhausted: code = SLUICE_RESOURCE_EXHAUSTED; break;
    case absl::StatusCode::kFailedPrecondition: code = SLUICE_FAILED_PRECONDITION; break;
    case absl::StatusCode::kUnavailable: code = SLUICE_UNAVAILABLE; break;
    case absl::StatusCode::kDeadlineExceeded: code = SLUICE_DEADLINE_EXCEEDED; break;
    case absl::StatusCode::kNotFound: code = SLUICE_NOT_FOUND; break;
    case absl::StatusCode::kAlreadyExists: code = SLUICE_ALREADY_EXISTS; break;
    case absl::StatusCode::kAborted: code = SLUICE_ABORTED; break;
    case absl::StatusCode::kPermissionDenied: code = SLUICE_PERMISSION_DENIED; break;
    default: break;
  }
  return Fail(code, std::string(status.message()));
}

// Runs `body`, mapping any exception to a status: nothing C++ crosses the C boundary.
template <typename Body>
int Guard(const char* function, Body&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(SLUICE_OUT_OF_MEMORY, absl::StrCat(function, ": out of memory"));
  } catch (const std::exception& e) {
    return Fail(SLUICE_INTERNAL, absl::StrCat(function, ": ", e.what()));
  } catch (...) {
    return Fail(SLUICE_INTERNAL, absl::StrCat(function, ": unknown exception"));
  }
}

int NullArgument(const char* function, const char* name) {
  return Fail(SLUICE_INVALID_ARGUMENT, absl::StrCat(function, ": ", name, " is NULL"));
}

int CheckKey(const char* function, const char* key, size_t key_len) {
  if (key == nullptr && key_len != 0) {
    return Fail(SLUICE_INVALID_ARGUMENT,
                absl::StrCat(function, ": key is NULL but key_len is ", key_len));
  }
  if (key_len > SLUICE_MAX_KEY_LEN) {
    return Fail(SLUICE_INVALID_ARGUMENT, absl::StrCat(function, ": key_len ", key_len,
                                                      " exceeds SLUICE_MAX_KEY_LEN"));
  }
  return SLUICE_OK;
}

std::string_view Key(const char* key, size_t key_len) {
  return key_len == 0 ? std::string_view() : std::string_view(key, key_len);
}

// A cache answer from C: a body (`chunk_count` 0) or SSE chunks; errors name the bad argument.
int AnswerFromC(const char* function, const char* body, size_t body_len, const char* const* chunks,
                const size_t* chunk_lens, size_t chunk_count, int64_t ttl_nanos,
                sluice::CachedResponse* out) {
  if (body == nullptr && body_len != 0) return NullArgument(function, "body");
  if (chunk_count > 0 && (chunks == nullptr || chunk_lens == nullptr)) {
    return NullArgument(function, "chunks or chunk_lens");
  }
  if (ttl_nanos < 0) {
    return Fail(SLUICE_INVALID_ARGUMENT, absl::StrCat(function, ": ttl_nanos must be >= 0"));
  }
  out->body = std::string(Key(body, body_len));
  out->streamed = chunk_count > 0;
  for (size_t i = 0; i < chunk_count; ++i) {
    if (chunks[i] == nullptr && chunk_lens[i] != 0) return NullArgument(function, "chunks[i]");
    out->chunks.emplace_back(Key(chunks[i], chunk_lens[i]));
  }
  return SLUICE_OK;
}

void ToC(const Decision& d, sluice_decision* out) {
  if (out == nullptr) return;
  out->allowed = d.allowed ? 1 : 0;
  out->limit = d.limit;
  out->remaining = d.remaining;
  out->retry_after_nanos = d.retry_after_nanos;
  out->reset_after_nanos = d.reset_after_nanos;
  out->delay_nanos = d.delay_nanos;
  out->window_nanos = d.window_nanos;
}

const sluice::Clock* ClockOf(const sluice_clock* clock) {
  return clock == nullptr ? sluice::Clock::Steady() : &clock->rep;
}

const char* ParamName(int param) {
  switch (param) {
    case SLUICE_PARAM_MAX_KEYS: return "SLUICE_PARAM_MAX_KEYS";
    case SLUICE_PARAM_RATE: return "SLUICE_PARAM_RATE";
    case SLUICE_PARAM_PER_NANOS: return "SLUICE_PARAM_PER_NANOS";
    case SLUICE_PARAM_BURST: return "SLUICE_PARAM_BURST";
    case SLUICE_PARAM_MAX_WAIT_NANOS: return "SLUICE_PARAM_MAX_WAIT_NANOS";
    case SLUICE_PARAM_MAX_IN_FLIGHT: return "SLUICE_PARAM_MAX_IN_FLIGHT";
    case SLUICE_PARAM_LEASE_NANOS: return "SLUICE_PARAM_LEASE_NANOS";
    case SLUICE_PARAM_RETRY_AFTER_NANOS: return "SLUICE_PARAM_RETRY_AFTER_NANOS";
    case SLUICE_PARAM_SHARED_REGION: return "SLUICE_PARAM_SHARED_REGION";
    case SLUICE_PARAM_REDIS_HOST: return "SLUICE_PARAM_REDIS_HOST";
    case SLUICE_PARAM_REDIS_PORT: return "SLUICE_PARAM_REDIS_PORT";
    case SLUICE_PARAM_REDIS_UNIX_SOCKET: return "SLUICE_PARAM_REDIS_UNIX_SOCKET";
    case SLUICE_PARAM_REDIS_USERNAME: return "SLUICE_PARAM_REDIS_USERNAME";
    case SLUICE_PARAM_REDIS_PASSWORD: return "SLUICE_PARAM_REDIS_PASSWORD";
    case SLUICE_PARAM_REDIS_DB: return "SLUICE_PARAM_REDIS_DB";
    case SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS: return "SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS";
    case SLUICE_PARAM_REDIS_COMMAND_TIMEOUT_NANOS: return "SLUICE_PARAM_REDIS_COMMAND_TIMEOUT_NANOS";
    case SLUICE_PARAM_REDIS_RECONNECT_INTERVAL_NANOS:
      return "SLUICE_PARAM_REDIS_RECONNECT_INTERVAL_NANOS";
    case SLUICE_PARAM_REDIS_KEY_PREFIX: return "SLUICE_PARAM_REDIS_KEY_PREFIX";
    case SLUICE_PARAM_CLUSTER_RULE: return "SLUICE_PARAM_CLUSTER_RULE";
    case SLUICE_PARAM_CLUSTER_ON_FAILURE: return "SLUICE_PARAM_CLUSTER_ON_FAILURE";
    case SLUICE_PARAM_CLUSTER_LOCAL_SHARE: return "SLUICE_PARAM_CLUSTER_LOCAL_SHARE";
    case SLUICE_PARAM_CLUSTER_MODE: return "SLUICE_PARAM_CLUSTER_MODE";
    case SLUICE_PARAM_CLUSTER_LEASE_UNITS: return "SLUICE_PARAM_CLUSTER_LEASE_UNITS";
    case SLUICE_PARAM_CLUSTER_LEASE_TTL_NANOS: return "SLUICE_PARAM_CLUSTER_LEASE_TTL_NANOS";
    case SLUICE_PARAM_BALANCER_STRATEGY: return "SLUICE_PARAM_BALANCER_STRATEGY";
    case SLUICE_PARAM_BALANCER_SEED: return "SLUICE_PARAM_BALANCER_SEED";
    case SLUICE_PARAM_BALANCER_BLOCK_CHARS: return "SLUICE_PARAM_BALANCER_BLOCK_CHARS";
    case SLUICE_PARAM_BALANCER_MAX_BLOCKS: return "SLUICE_PARAM_BALANCER_MAX_BLOCKS";
    case SLUICE_PARAM_BALANCER_KV_CAPACITY_BLOCKS: return "SLUICE_PARAM_BALANCER_KV_CAPACITY_BLOCKS";
    case SLUICE_PARAM_BALANCER_IMBALANCE_ABS: return "SLUICE_PARAM_BALANCER_IMBALANCE_ABS";
    case SLUICE_PARAM_BALANCER_WEIGHT_PREFIX_MILLI: return "SLUICE_PARAM_BALANCER_WEIGHT_PREFIX_MILLI";
    case SLUICE_PARAM_BALANCER_WEIGHT_QUEUE_MILLI: return "SLUICE_PARAM_BALANCER_WEIGHT_QUEUE_MILLI";
    case SLUICE_PARAM_BALANCER_WEIGHT_KV_CACHE_MILLI: return "SLUICE_PARAM_BALANCER_WEIGHT_KV_CACHE_MILLI";
    case SLUICE_PARAM_BALANCER_WEIGHT_IN_FLIGHT_MILLI: return "SLUICE_PARAM_BALANCER_WEIGHT_IN_FLIGHT_MILLI";
    case SLUICE_PARAM_BALANCER_METRICS_MAX_AGE_NANOS: return "SLUICE_PARAM_BALANCER_METRICS_MAX_AGE_NANOS";
    case SLUICE_PARAM_BALANCER_FAILURES_BEFORE_COOLDOWN: return "SLUICE_PARAM_BALANCER_FAILURES_BEFORE_COOLDOWN";
    case SLUICE_PARAM_BALANCER_COOLDOWN_RATE_LIMITED_NANOS: return "SLUICE_PARAM_BALANCER_COOLDOWN_RATE_LIMITED_NANOS";
    case SLUICE_PARAM_BALANCER_COOLDOWN_AUTH_NANOS: return "SLUICE_PARAM_BALANCER_COOLDOWN_AUTH_NANOS";
    case SLUICE_PARAM_BALANCER_COOLDOWN_CONNECTION_NANOS: return "SLUICE_PARAM_BALANCER_COOLDOWN_CONNECTION_NANOS";
    case SLUICE_PARAM_BALANCER_COOLDOWN_TIMEOUT_NANOS: return "SLUICE_PARAM_BALANCER_COOLDOWN_TIMEOUT_NANOS";
    case SLUICE_PARAM_BALANCER_COOLDOWN_SERVER_NANOS: return "SLUICE_PARAM_BALANCER_COOLDOWN_SERVER_NANOS";
    case SLUICE_PARAM_BALANCER_OUTLIER_CONSECUTIVE_FAILURES: return "SLUICE_PARAM_BALANCER_OUTLIER_CONSECUTIVE_FAILURES";
    case SLUICE_PARAM_BALANCER_OUTLIER_BASE_EJECTION_NANOS: return "SLUICE_PARAM_BALANCER_OUTLIER_BASE_EJECTION_NANOS";
    case SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_NANOS: return "SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_NANOS";
    case SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_PERCENT: return "SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_PERCENT";
    case SLUICE_PARAM_FALLBACK_MAX_RETRIES_PER_TARGET: return "SLUICE_PARAM_FALLBACK_MAX_RETRIES_PER_TARGET";
    case SLUICE_PARAM_FALLBACK_DEADLINE_NANOS: return "SLUICE_PARAM_FALLBACK_DEADLINE_NANOS";
    case SLUICE_PARAM_FALLBACK_ATTEMPT_TIMEOUT_NANOS: return "SLUICE_PARAM_FALLBACK_ATTEMPT_TIMEOUT_NANOS";
    case SLUICE_PARAM_FALLBACK_BACKOFF_BASE_NANOS: return "SLUICE_PARAM_FALLBACK_BACKOFF_BASE_NANOS";
    case SLUICE_PARAM_FALLBACK_BACKOFF_MAX_NANOS: return "SLUICE_PARAM_FALLBACK_BACKOFF_MAX_NANOS";
    case SLUICE_PARAM_FALLBACK_RETRY_BUDGET_RATIO_MILLI: return "SLUICE_PARAM_FALLBACK_RETRY_BUDGET_RATIO_MILLI";
    case SLUICE_PARAM_FALLBACK_RETRY_BUDGET_MIN: return "SLUICE_PARAM_FALLBACK_RETRY_BUDGET_MIN";
    case SLUICE_PARAM_FALLBACK_CONTEXT_LENGTH_TARGET: return "SLUICE_PARAM_FALLBACK_CONTEXT_LENGTH_TARGET";
    case SLUICE_PARAM_BREAKER_CONSECUTIVE_FAILURES: return "SLUICE_PARAM_BREAKER_CONSECUTIVE_FAILURES";
    case SLUICE_PARAM_BREAKER_FAILURE_RATIO_MILLI: return "SLUICE_PARAM_BREAKER_FAILURE_RATIO_MILLI";
    case SLUICE_PARAM_BREAKER_SLOW_CALL_RATIO_MILLI: return "SLUICE_PARAM_BREAKER_SLOW_CALL_RATIO_MILLI";
    case SLUICE_PARAM_BREAKER_SLOW_CALL_NANOS: return "SLUICE_PARAM_BREAKER_SLOW_CALL_NANOS";
    case SLUICE_PARAM_BREAKER_WINDOW_NANOS: return "SLUICE_PARAM_BREAKER_WINDOW_NANOS";
    case SLUICE_PARAM_BREAKER_MINIMUM_CALLS: return "SLUICE_PARAM_BREAKER_MINIMUM_CALLS";
    case SLUICE_PARAM_BREAKER_OPEN_NANOS: return "SLUICE_PARAM_BREAKER_OPEN_NANOS";
    case SLUICE_PARAM_BREAKER_OPEN_MULTIPLIER_MILLI: return "SLUICE_PARAM_BREAKER_OPEN_MULTIPLIER_MILLI";
    case SLUICE_PARAM_BREAKER_MAX_OPEN_NANOS: return "SLUICE_PARAM_BREAKER_MAX_OPEN_NANOS";
    case SLUICE_PARAM_BREAKER_HALF_OPEN_PROBES: return "SLUICE_PARAM_BREAKER_HALF_OPEN_PROBES";
    case SLUICE_PARAM_CACHE_MAX_BYTES: return "SLUICE_PARAM_CACHE_MAX_BYTES";
    case SLUICE_PARAM_CACHE_SHARDS: return "SLUICE_PARAM_CACHE_SHARDS";
    case SLUICE_PARAM_CACHE_DEFAULT_TTL_NANOS: return "SLUICE_PARAM_CACHE_DEFAULT_TTL_NANOS";
    case SLUICE_PARAM_CACHE_PROTECTED_SHARE_MILLI: return "SLUICE_PARAM_CACHE_PROTECTED_SHARE_MILLI";
    case SLUICE_PARAM_CACHE_ADMISSION: return "SLUICE_PARAM_CACHE_ADMISSION";
    case SLUICE_PARAM_CACHE_STORE_TOOL_CALLS: return "SLUICE_PARAM_CACHE_STORE_TOOL_CALLS";
    case SLUICE_PARAM_CACHE_REDIS_NAME: return "SLUICE_PARAM_CACHE_REDIS_NAME";
    default:
      if (param > SLUICE_PARAM_FALLBACK_ACTION &&
          param <= SLUICE_PARAM_FALLBACK_ACTION + static_cast<int>(SLUICE_FAIL_CLIENT)) {
        return "SLUICE_PARAM_FALLBACK_ACTION + failure";
      }
      return nullptr;
  }
}

// Reads the options an object understands; rejects parameters (and windows) it does not.
class OptionReader {
 public:
  // `accepted`: the parameters of the object; the cluster parameters (and a Redis store) are
  // accepted by every object with `accepts_cluster`; `accepts_store` takes a store alone.
  OptionReader(const char* function, const sluice_options* options,
               std::initializer_list<int> accepted, bool accepts_windows,
               bool accepts_cluster = true, bool accepts_store = false)
      : function_(function), options_(options) {
    constexpr int kClusterParams[] = {
        SLUICE_PARAM_CLUSTER_RULE,  SLUICE_PARAM_CLUSTER_ON_FAILURE,
        SLUICE_PARAM_CLUSTER_LOCAL_SHARE, SLUICE_PARAM_CLUSTER_MODE,
        SLUICE_PARAM_CLUSTER_LEASE_UNITS, SLUICE_PARAM_CLUSTER_LEASE_TTL_NANOS};
    auto check = [&](int param) {
      const bool cluster = std::find(std::begin(kClusterParams), std::end(kClusterParams),
                                     param) != std::end(kClusterParams);
      if (error_.empty() && std::find(accepted.begin(), accepted.end(), param) == accepted.end() &&
          !(cluster && accepts_cluster)) {
        error_ = absl::StrCat(function, ": ", ParamName(param), " (", param,
                              ") does not apply to this object");
      }
    };
    for (const auto& [param, value] : options->params) check(param);
    for (const auto& [param, value] : options->strings) check(param);
    // Parameters held in an int: a value beyond its range is refused, never truncated (a port of
    // 2^32 + 6379 would otherwise read as 6379).
    for (int param : {SLUICE_PARAM_REDIS_PORT, SLUICE_PARAM_REDIS_DB}) {
      auto it = options->params.find(param);
      if (error_.empty() && it != options->params.end() &&
          (it->second < std::numeric_limits<int>::min() ||
           it->second > std::numeric_limits<int>::max())) {
        error_ = absl::StrCat(function, ": ", ParamName(param), " must fit in an int, got ",
                              it->second);
      }
    }
    if (!error_.empty()) return;
    if (!accepts_cluster && !accepts_store && options->redis != nullptr) {
      error_ = absl::StrCat(function, ": a Redis store does not apply to this object");
    }
    if (!accepts_windows && !options->windows.empty()) {
      error_ = absl::StrCat(function, ": windows do not apply to this object");
    }
  }
  bool ok() const { return error_.empty(); }
  int Error() const { return Fail(SLUICE_INVALID_ARGUMENT, error_); }

  // The cluster scope options (the store and SLUICE_PARAM_CLUSTER_*).
  int GetCluster(sluice::ClusterOptions* cluster) const {
    cluster->store = options_->redis;
    Get(SLUICE_PARAM_CLUSTER_RULE, &cluster->redis_name);
    Get(SLUICE_PARAM_CLUSTER_LOCAL_SHARE, &cluster->local_share);
    int64_t mode = SLUICE_FAILURE_LOCAL;
    Get(SLUICE_PARAM_CLUSTER_ON_FAILURE, &mode);
    if (mode < SLUICE_FAILURE_ALLOW || mode > SLUICE_FAILURE_LOCAL) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(function_, ": SLUICE_PARAM_CLUSTER_ON_FAILURE must be a "
                                          "sluice_failure_mode, got ", mode));
    }
    cluster->on_failure = static_cast<sluice::FailureMode>(mode);
    int64_t cluster_mode = SLUICE_CLUSTER_STRICT;
    Get(SLUICE_PARAM_CLUSTER_MODE, &cluster_mode);
    if (cluster_mode != SLUICE_CLUSTER_STRICT && cluster_mode != SLUICE_CLUSTER_LEASED) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(function_, ": SLUICE_PARAM_CLUSTER_MODE must be a "
                                          "sluice_cluster_mode, got ", cluster_mode));
    }
    cluster->mode = cluster_mode == SLUICE_CLUSTER_LEASED ? sluice::ClusterMode::kLeased
                                                          : sluice::ClusterMode::kStrict;
    Get(SLUICE_PARAM_CLUSTER_LEASE_UNITS, &cluster->lease_units);
    Get(SLUICE_PARAM_CLUSTER_LEASE_TTL_NANOS, &cluster->lease_ttl);
    return SLUICE_OK;
  }

  void Get(int param, int64_t* field) const {
    auto it = options_->params.find(param);
    if (it != options_->params.end()) *field = it->second;
  }
  void Get(int param, int* field) const {
    auto it = options_->params.find(param);
    // Clamped, never truncated (the int parameters are range-checked on construction).
    if (it != options_->params.end()) {
      *field = static_cast<int>(std::clamp<int64_t>(it->second, std::numeric_limits<int>::min(),
                                                    std::numeric_limits<int>::max()));
    }
  }
  void Get(int param, std::string* field) const {
    auto it = options_->strings.find(param);
    if (it != options_->strings.end()) *field = it->second;
  }
  void Get(int param, absl::Duration* field) const {
    auto it = options_->params.find(param);
    if (it != options_->params.end()) *field = absl::Nanoseconds(it->second);
  }

 private:
  const char* function_;
  const sluice_options* options_;
  std::string error_;
};

}  // namespace

extern "C" {

const char* sluice_status_name(int status) {
  switch (status) {
    case SLUICE_OK: return "SLUICE_OK";
    case SLUICE_INVALID_ARGUMENT: return "SLUICE_INVALID_ARGUMENT";
    case SLUICE_RESOURCE_EXHAUSTED: return "SLUICE_RESOURCE_EXHAUSTED";
    case SLUICE_FAILED_PRECONDITION: return "SLUICE_FAILED_PRECONDITION";
    case SLUICE_UNAVAILABLE: return "SLUICE_UNAVAILABLE";
    case SLUICE_DEADLINE_EXCEEDED: return "SLUICE_DEADLINE_EXCEEDED";
    case SLUICE_OUT_OF_MEMORY: return "SLUICE_OUT_OF_MEMORY";
    case SLUICE_INTERNAL: return "SLUICE_INTERNAL";
    case SLUICE_NOT_FOUND: return "SLUICE_NOT_FOUND";
    case SLUICE_ALREADY_EXISTS: return "SLUICE_ALREADY_EXISTS";
    case SLUICE_ABORTED: return "SLUICE_ABORTED";
    case SLUICE_PERMISSION_DENIED: return "SLUICE_PERMISSION_DENIED";
    default: return "SLUICE_UNKNOWN";
  }
}

const char* sluice_last_error_message(void) { return last_error.c_str(); }

int sluice_version_number(void) { return SLUICE_VERSION_NUMBER; }
const char* sluice_version_string(void) { return SLUICE_VERSION_STRING; }

// ---- clocks ----------------------------------------------------------------------------------

int sluice_manual_clock_create(int64_t start_nanos, sluice_clock** out) {
  return Guard(__func__, [&]() -> int {
    if (out == nullptr) return NullArgument(__func__, "out");
    *out = nullptr;
    if (start_nanos < 0 || start_nanos > sluice::kMaxClockNanos) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(__func__, ": start_nanos must be in [0, 2^62], got ", start_nanos));
    }
    *out = new sluice_clock{ManualClock(start_nanos)};
    return SLUICE_OK;
  });
}

int sluice_manual_clock_advance(sluice_clock* clock, int64_t nanos) {
  if (clock == nullptr) return NullArgument(__func__, "clock");
  clock->rep.AdvanceNanos(nanos);  // stops at 0 and 2^62: never wraps
  return SLUICE_OK;
}

int64_t sluice_clock_now_nanos(const sluice_clock* clock) { return ClockOf(clock)->NowNanos(); }

void sluice_clock_destroy(sluice_clock* clock) { delete clock; }

// ---- options ---------------------------------------------------------------------------------

sluice_options* sluice_options_create(void) { return new (std::nothrow) sluice_options; }

void sluice_options_destroy(sluice_options* options) { delete options; }

int sluice_options_set(sluice_options* options, int param, int64_t value) {
  return Guard(__func__, [&]() -> int {
    if (options == nullptr) return NullArgument(__func__, "options");
    if (ParamName(param) == nullptr) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(__func__, ": unknown parameter number ", param));
    }
    options->params[param] = value;
    return SLUICE_OK;
  });
}

namespace {
bool IsStringParam(int param) {
  switch (param) {
    case SLUICE_PARAM_SHARED_REGION:
    case SLUICE_PARAM_REDIS_HOST:
    case SLUICE_PARAM_REDIS_UNIX_SOCKET:
    case SLUICE_PARAM_REDIS_USERNAME:
    case SLUICE_PARAM_REDIS_PASSWORD:
    case SLUICE_PARAM_REDIS_KEY_PREFIX:
    case SLUICE_PARAM_CLUSTER_RULE:
    case SLUICE_PARAM_FALLBACK_CONTEXT_LENGTH_TARGET:
    case SLUICE_PARAM_CACHE_REDIS_NAME:
      return true;
    default:
      return false;
  }
}
}  // namespace

int sluice_options_set_string(sluice_options* options, int param, const char* value, size_t len) {
  return Guard(__func__, [&]() -> int {
    if (options == nullptr) return NullArgument(__func__, "options");
    if (value == nullptr && len != 0) return NullArgument(__func__, "value");
    if (!IsStringParam(param)) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(__func__, ": parameter ", param, " is not a string parameter"));
    }
    if (len == 0) {
      options->strings.erase(param);
    } else {
      options->strings[param] = std::string(value, len);
    }
    return SLUICE_OK;
  });
}

int sluice_options_set_redis_store(sluice_options* options, sluice_redis_store* store) {
  if (options == nullptr) return NullArgument(__func__, "options");
  options->redis = store == nullptr ? nullptr : store->rep;
  return SLUICE_OK;
}

int sluice_redis_store_create(const sluice_options* options, sluice_redis_store** out) {
  return Guard(__func__, [&]() -> int {
    if (out == nullptr) return NullArgument(__func__, "out");
    *out = nullptr;
    if (options == nullptr) return NullArgument(__func__, "options");
    OptionReader reader(__func__, options,
                        {SLUICE_PARAM_REDIS_HOST, SLUICE_PARAM_REDIS_PORT,
                         SLUICE_PARAM_REDIS_UNIX_SOCKET, SLUICE_PARAM_REDIS_USERNAME,
                         SLUICE_PARAM_REDIS_PASSWORD, SLUICE_PARAM_REDIS_DB,
                         SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS,
                         SLUICE_PARAM_REDIS_COMMAND_TIMEOUT_NANOS,
                         SLUICE_PARAM_REDIS_RECONNECT_INTERVAL_NANOS,
                         SLUICE_PARAM_REDIS_KEY_PREFIX},
                        false);
    if (!reader.ok()) return reader.Error();
    sluice::RedisOptions o;
    reader.Get(SLUICE_PARAM_REDIS_HOST, &o.host);
    reader.Get(SLUICE_PARAM_REDIS_PORT, &o.port);
    reader.Get(SLUICE_PARAM_REDIS_UNIX_SOCKET, &o.unix_socket);
    reader.Get(SLUICE_PARAM_REDIS_USERNAME, &o.username);
    reader.Get(SLUICE_PARAM_REDIS_PASSWORD, &o.password);
    reader.Get(SLUICE_PARAM_REDIS_DB, &o.db);
    reader.Get(SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS, &o.connect_timeout);
    reader.Get(SLUICE_PARAM_REDIS_COMMAND_TIMEOUT_NANOS, &o.command_timeout);
    reader.Get(SLUICE_PARAM_REDIS_RECONNECT_INTERVAL_NANOS, &o.reconnect_interval);
    reader.Get(SLUICE_PARAM_REDIS_KEY_PREFIX, &o.key_prefix);
    auto store = sluice::RedisStore::Create(o);
    if (!store.ok()) return FromStatus(store.status());
    *out = new sluice_redis_store{*std::move(store)};
    return SLUICE_OK;
  });
}

void sluice_redis_store_destroy(sluice_redis_store* store) { delete store; }

int sluice_shared_region_remove(const char* name, size_t len) {
  return Guard(__func__, [&]() -> int {
    if (name == nullptr && len != 0) return NullArgument(__func__, "name");
    return FromStatus(sluice::RemoveSharedRegion(len == 0 ? "" : std::string(name, len)));
  });
}

int sluice_options_add_window(sluice_options* options, int64_t limit, int64_t period_nanos,
                              int64_t burst) {
  return Guard(__func__, [&]() -> int {
    if (options == nullptr) return NullArgument(__func__, "options");
    options->windows.push_back({limit, absl::Nanoseconds(period_nanos), burst});
    return SLUICE_OK;
  });
}

// ---- rate limiter ----------------------------------------------------------------------------

int sluice_rate_limiter_create(const sluice_options* options, const sluice_clock* clock,
                               sluice_rate_limiter** out) {
  return Guard(__func__, [&]() -> int {
    if (out == nullptr) return NullArgument(__func__, "out");
    *out = nullptr;
    if (options == nullptr) return NullArgument(__func__, "options");
    OptionReader reader(__func__, options,
                        {SLUICE_PARAM_MAX_KEYS, SLUICE_PARAM_SHARED_REGION}, true);
    if (!reader.ok()) return reader.Error();
    RateLimiter::Options o;
    o.windows = options->windows;
    reader.Get(SLUICE_PARAM_SHARED_REGION, &o.shared_region);
    reader.Get(SLUICE_PARAM_MAX_KEYS, &o.max_keys);
    if (int rc = reader.GetCluster(&o.cluster); rc != SLUICE_OK) return rc;
    auto limiter = RateLimiter::Create(o, ClockOf(clock));
    if (!limiter.ok()) return FromStatus(limiter.status());
    *out = new sluice_rate_limiter{*std::move(limiter)};
    return SLUICE_OK;
  });
}

void sluice_rate_limiter_destroy(sluice_rate_limiter* limiter) { delete limiter; }

namespace {
// `now_nanos` null: read the limiter's clock.
int RateLimiterAcquire(const char* function, sluice_rate_limiter* limiter, const char* key,
                       size_t key_len, int64_t cost, const int64_t* now_nanos,
                       sluice_decision* out) {
  return Guard(function, [&]() -> int {
    if (limiter == nullptr) return NullArgument(function, "limiter");
    if (int rc = CheckKey(function, key, key_len); rc != SLUICE_OK) return rc;
    auto d = now_nanos == nullptr ? limiter->rep->TryAcquire(Key(key, key_len), cost)
                                  : limiter->rep->TryAcquireAt(Key(key, key_len), cost, *now_nanos);
    if (!d.ok()) return FromStatus(d.status());
    ToC(*d, out);
    return SLUICE_OK;
  });
}
}  // namespace

int sluice_rate_limiter_acquire(sluice_rate_limiter* limiter, const char* key, size_t key_len,
                                int64_t cost, sluice_decision* out) {
  return RateLimiterAcquire(__func__, limiter, key, key_len, cost, nullptr, out);
}

int sluice_rate_limiter_acquire_at(sluice_rate_limiter* limiter, const char* key, size_t key_len,
                                   int64_t cost, int64_t now_nanos, sluice_decision* out) {
  return RateLimiterAcquire(__func__, limiter, key, key_len, cost, &now_nanos, out);
}

// ---- leaky bucket ----------------------------------------------------------------------------

int sluice_leaky_bucket_create(const sluice_options* options, const sluice_clock* clock,
                               sluice_leaky_bucket** out) {
  return Guard(__func__, [&]() -> int {
    if (out == nullptr) return NullArgument(__func__, "out");
    *out = nullptr;
    if (options == nullptr) return NullArgument(__func__, "options");
    OptionReader reader(__func__, options,
                        {SLUICE_PARAM_MAX_KEYS, SLUICE_PARAM_RATE, SLUICE_PARAM_PER_NANOS,
                         SLUICE_PARAM_BURST, SLUICE_PARAM_MAX_WAIT_NANOS,
                         SLUICE_PARAM_SHARED_REGION},
                        false);
    if (!reader.ok()) return reader.Error();
    LeakyBucket::Options o;
    reader.Get(SLUICE_PARAM_SHARED_REGION, &o.shared_region);
    reader.Get(SLUICE_PARAM_RATE, &o.rate);
    reader.Get(SLUICE_PARAM_PER_NANOS, &o.per);
    reader.Get(SLUICE_PARAM_BURST, &o.burst);
    reader.Get(SLUICE_PARAM_MAX_WAIT_NANOS, &o.max_wait);
    reader.Get(SLUICE_PARAM_MAX_KEYS, &o.max_keys);
    if (int rc = reader.GetCluster(&o.cluster); rc != SLUICE_OK) return rc;
    auto bucket = LeakyBucket::Create(o, ClockOf(clock));
    if (!bucket.ok()) return FromStatus(bucket.status());
    *out = new sluice_leaky_bucket{*std::move(bucket)};
    return SLUICE_OK;
  });
}

void sluice_leaky_bucket_destroy(sluice_leaky_bucket* bucket) { delete bucket; }

int sluice_leaky_bucket_acquire(sluice_leaky_bucket* bucket, const char* key, size_t key_len,
                                int64_t cost, sluice_decision* out) {
  return Guard(__func__, [&]() -> int {
    if (bucket == nullptr) return NullArgument(__func__, "bucket");
    if (int rc = CheckKey(__func__, key, key_len); rc != SLUICE_OK) return rc;
    auto d = bucket->rep->TryAcquire(Key(key, key_len), cost);
    if (!d.ok()) return FromStatus(d.status());
    ToC(*d, out);
    return SLUICE_OK;
  });
}

// ---- concurrency limiter ---------------------------------------------------------------------

int sluice_concurrency_limiter_create(const sluice_options* options, const sluice_clock* clock,
                                      sluice_concurrency_limiter** out) {
  return Guard(__func__, [&]() -> int {
    if (out == nullptr) return NullArgument(__func__, "out");
    *out = nullptr;
    if (options == nullptr) return NullArgument(__func__, "options");
    OptionReader reader(__func__, options,
                        {SLUICE_PARAM_MAX_KEYS, SLUICE_PARAM_MAX_IN_FLIGHT,
                         SLUICE_PARAM_LEASE_NANOS, SLUICE_PARAM_RETRY_AFTER_NANOS,
                         SLUICE_PARAM_SHARED_REGION},
                        false);
    if (!reader.ok()) return reader.Error();
    ConcurrencyLimiter::Options o;
    reader.Get(SLUICE_PARAM_SHARED_REGION, &o.shared_region);
    reader.Get(SLUICE_PARAM_MAX_IN_FLIGHT, &o.max_in_flight);
    reader.Get(SLUICE_PARAM_LEASE_NANOS, &o.lease);
    reader.Get(SLUICE_PARAM_RETRY_AFTER_NANOS, &o.retry_after);
    reader.Get(SLUICE_PARAM_MAX_KEYS, &o.max_keys);
    if (int rc = reader.GetCluster(&o.cluster); rc != SLUICE_OK) return rc;
    auto limiter = ConcurrencyLimiter::Create(o, ClockOf(clock));
    if (!limiter.ok()) return FromStatus(limiter.status());
    *out = new sluice_concurrency_limiter{*std::move(limiter)};
    return SLUICE_OK;
  });
}

void sluice_concurrency_limiter_destroy(sluice_concurrency_limiter* limiter) { delete limiter; }

int sluice_concurrency_limiter_acquire(sluice_concurrency_limiter* limiter, const char* key,
                                       size_t key_len, sluice_decision* out,
                                       sluice_permit** permit) {
  return Guard(__func__, [&]() -> int {
    if (permit == nullptr) return NullArgument(__func__, "permit");
    *permit = nullptr;
    if (limiter == nullptr) return NullArgument(__func__, "limiter");
    if (int rc = CheckKey(__func__, key, key_len); rc != SLUICE_OK) return rc;
    ConcurrencyLimiter::Permit p = limiter->rep->TryAcquire(Key(key, key_len));
    ToC(p.decision(), out);
    if (p) *permit = new sluice_permit{std::move(p)};
    return SLUICE_OK;
  });
}

int64_t sluice_concurrency_limiter_in_flight(sluice_concurrency_limiter* limiter,
                                             const char* key, size_t key_len) {
  if (limiter == nullptr || CheckKey(__func__, key, key_len) != SLUICE_OK) return -1;
  return limiter->rep->InFlight(Key(key, key_len));
}

int sluice_permit_release(sluice_permit* permit) {
  if (permit == nullptr) return NullArgument(__func__, "permit");
  return Guard(__func__, [&]() -> int { return FromStatus(permit->rep.Release()); });
}

int sluice_permit_renew(sluice_permit* permit, int64_t lease_nanos) {
  if (permit == nullptr) return NullArgument(__func__, "permit");
  if (lease_nanos < 0) {
    return Fail(SLUICE_INVALID_ARGUMENT,
                absl::StrCat(__func__, ": lease_nanos must be >= 0, got ", lease_nanos));
  }
  return Guard(__func__, [&]() -> int {
    return FromStatus(lease_nanos == 0 ? permit->rep.Renew()
                                       : permit->rep.Renew(absl::Nanoseconds(lease_nanos)));
  });
}

void sluice_permit_destroy(sluice_permit* permit) { delete permit; }

// ---- token budget ----------------------------------------------------------------------------

int sluice_token_budget_create(const sluice_options* options, const sluice_clock* clock,
                               sluice_token_budget** out) {
  return Guard(__func__, [&]() -> int {
    if (out == nullptr) return NullArgument(__func__, "out");
    *out = nullptr;
    if (options == nullptr) return NullArgument(__func__, "options");
    OptionReader reader(__func__, options, {SLUICE_PARAM_MAX_KEYS, SLUICE_PARAM_SHARED_REGION},
                        true);
    if (!reader.ok()) return reader.Error();
    TokenBudget::Options o;
    o.windows = options->windows;
    reader.Get(SLUICE_PARAM_SHARED_REGION, &o.shared_region);
    reader.Get(SLUICE_PARAM_MAX_KEYS, &o.max_keys);
    if (int rc = reader.GetCluster(&o.cluster); rc != SLUICE_OK) return rc;
    auto budget = TokenBudget::Create(o, ClockOf(clock));
    if (!budget.ok()) return FromStatus(budget.status());
    *out = new sluice_token_budget{*std::move(budget)};
    return SLUICE_OK;
  });
}

void sluice_token_budget_destroy(sluice_token_budget* budget) { delete budget; }

int sluice_token_budget_reserve(sluice_token_budget* budget, const char* key, size_t key_len,
                                int64_t estimate, sluice_decision* out,
                                sluice_reservation** reservation) {
  return Guard(__func__, [&]() -> int {
    if (reservation == nullptr) return NullArgument(__func__, "reservation");
    *reservation = nullptr;
    if (budget == nullptr) return NullArgument(__func__, "budget");
    if (int rc = CheckKey(__func__, key, key_len); rc != SLUICE_OK) return rc;
    auto r = budget->rep->TryReserve(Key(key, key_len), estimate);
    if (!r.ok()) return FromStatus(r.status());
    ToC(r->decision(), out);
    if (*r) *reservation = new sluice_reservation{*std::move(r)};
    return SLUICE_OK;
  });
}

int sluice_token_budget_charge(sluice_token_budget* budget, const char* key, size_t key_len,
                               int64_t tokens, sluice_decision* out) {
  return Guard(__func__, [&]() -> int {
    if (budget == nullptr) return NullArgument(__func__, "budget");
    if (int rc = CheckKey(__func__, key, key_len); rc != SLUICE_OK) return rc;
    auto d = budget->rep->Charge(Key(key, key_len), tokens);
    if (!d.ok()) return FromStatus(d.status());
    ToC(*d, out);
    return SLUICE_OK;
  });
}

int sluice_reservation_settle(sluice_reservation* reservation, int64_t actual,
                              sluice_decision* out) {
  if (reservation == nullptr) return NullArgument(__func__, "reservation");
  return Guard(__func__, [&]() -> int {
    auto d = reservation->rep.Settle(actual);
    if (!d.ok()) return FromStatus(d.status());
    ToC(*d, out);
    return SLUICE_OK;
  });
}

int sluice_reservation_cancel(sluice_reservation* reservation) {
  if (reservation == nullptr) return NullArgument(__func__, "reservation");
  return Guard(__func__, [&]() -> int { return FromStatus(reservation->rep.Cancel()); });
}

void sluice_reservation_destroy(sluice_reservation* reservation) { delete reservation; }

// ---- balancer --------------------------------------------------------------------------------

int sluice_balancer_create(const sluice_options* options, const sluice_clock* clock,
                           sluice_balancer** out) {
  return Guard(__func__, [&]() -> int {
    if (options == nullptr) return NullArgument(__func__, "options");
    if (out == nullptr) return NullArgument(__func__, "out");
    OptionReader reader(
        __func__, options,
        {SLUICE_PARAM_BALANCER_STRATEGY, SLUICE_PARAM_BALANCER_SEED,
         SLUICE_PARAM_BALANCER_BLOCK_CHARS, SLUICE_PARAM_BALANCER_MAX_BLOCKS,
         SLUICE_PARAM_BALANCER_KV_CAPACITY_BLOCKS, SLUICE_PARAM_BALANCER_IMBALANCE_ABS,
         SLUICE_PARAM_BALANCER_WEIGHT_PREFIX_MILLI, SLUICE_PARAM_BALANCER_WEIGHT_QUEUE_MILLI,
         SLUICE_PARAM_BALANCER_WEIGHT_KV_CACHE_MILLI, SLUICE_PARAM_BALANCER_WEIGHT_IN_FLIGHT_MILLI,
         SLUICE_PARAM_BALANCER_METRICS_MAX_AGE_NANOS,
         SLUICE_PARAM_BALANCER_FAILURES_BEFORE_COOLDOWN,
         SLUICE_PARAM_BALANCER_COOLDOWN_RATE_LIMITED_NANOS,
         SLUICE_PARAM_BALANCER_COOLDOWN_AUTH_NANOS,
         SLUICE_PARAM_BALANCER_COOLDOWN_CONNECTION_NANOS,
         SLUICE_PARAM_BALANCER_COOLDOWN_TIMEOUT_NANOS,
         SLUICE_PARAM_BALANCER_COOLDOWN_SERVER_NANOS,
         SLUICE_PARAM_BALANCER_OUTLIER_CONSECUTIVE_FAILURES,
         SLUICE_PARAM_BALANCER_OUTLIER_BASE_EJECTION_NANOS,
         SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_NANOS,
         SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_PERCENT, SLUICE_PARAM_SHARED_REGION,
         SLUICE_PARAM_MAX_IN_FLIGHT, SLUICE_PARAM_LEASE_NANOS},
        /*accepts_windows=*/false, /*accepts_cluster=*/false);
    if (!reader.ok()) return reader.Error();
    sluice::Balancer::Options o;
    int64_t strategy = SLUICE_BALANCER_LEAST_REQUEST;
    reader.Get(SLUICE_PARAM_BALANCER_STRATEGY, &strategy);
    if (strategy < SLUICE_BALANCER_ROUND_ROBIN || strategy > SLUICE_BALANCER_CONSISTENT_HASH) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(__func__, ": SLUICE_PARAM_BALANCER_STRATEGY must be a "
                                         "sluice_balancer_strategy, got ", strategy));
    }
    // The C enum's values are the C++ enum's order.
    o.strategy = static_cast<sluice::Balancer::Strategy>(strategy);
    int64_t seed = 0;
    reader.Get(SLUICE_PARAM_BALANCER_SEED, &seed);
    o.seed = static_cast<uint64_t>(seed);
    reader.Get(SLUICE_PARAM_BALANCER_BLOCK_CHARS, &o.prefix_hash.block_chars);
    reader.Get(SLUICE_PARAM_BALANCER_MAX_BLOCKS, &o.prefix_hash.max_blocks);
    reader.Get(SLUICE_PARAM_BALANCER_KV_CAPACITY_BLOCKS, &o.kv_capacity_blocks);
    reader.Get(SLUICE_PARAM_BALANCER_IMBALANCE_ABS, &o.imbalance_abs);
    auto milli = [&](int param, double* weight) {
      constexpr int64_t kUnset = std::numeric_limits<int64_t>::min();
      int64_t v = kUnset;
      reader.Get(param, &v);
      if (v != kUnset) *weight = static_cast<double>(v) / 1000.0;
    };
    milli(SLUICE_PARAM_BALANCER_WEIGHT_PREFIX_MILLI, &o.weights.prefix);
    milli(SLUICE_PARAM_BALANCER_WEIGHT_QUEUE_MILLI, &o.weights.queue);
    milli(SLUICE_PARAM_BALANCER_WEIGHT_KV_CACHE_MILLI, &o.weights.kv_cache);
    milli(SLUICE_PARAM_BALANCER_WEIGHT_IN_FLIGHT_MILLI, &o.weights.in_flight);
    reader.Get(SLUICE_PARAM_BALANCER_METRICS_MAX_AGE_NANOS, &o.metrics_max_age);
    reader.Get(SLUICE_PARAM_BALANCER_FAILURES_BEFORE_COOLDOWN, &o.failures_before_cooldown);
    reader.Get(SLUICE_PARAM_BALANCER_COOLDOWN_RATE_LIMITED_NANOS, &o.cooldown_rate_limited);
    reader.Get(SLUICE_PARAM_BALANCER_COOLDOWN_AUTH_NANOS, &o.cooldown_auth);
    reader.Get(SLUICE_PARAM_BALANCER_COOLDOWN_CONNECTION_NANOS, &o.cooldown_connection);
    reader.Get(SLUICE_PARAM_BALANCER_COOLDOWN_TIMEOUT_NANOS, &o.cooldown_timeout);
    reader.Get(SLUICE_PARAM_BALANCER_COOLDOWN_SERVER_NANOS, &o.cooldown_server);
    reader.Get(SLUICE_PARAM_BALANCER_OUTLIER_CONSECUTIVE_FAILURES, &o.outlier.consecutive_failures);
    reader.Get(SLUICE_PARAM_BALANCER_OUTLIER_BASE_EJECTION_NANOS, &o.outlier.base_ejection_time);
    reader.Get(SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_NANOS, &o.outlier.max_ejection_time);
    int64_t percent = static_cast<int64_t>(o.outlier.max_ejection_percent);
    reader.Get(SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_PERCENT, &percent);
    o.outlier.max_ejection_percent = static_cast<double>(percent);
    reader.Get(SLUICE_PARAM_SHARED_REGION, &o.shared_region);  // host-shared in-flight counts
    reader.Get(SLUICE_PARAM_MAX_IN_FLIGHT, &o.shared_max_in_flight);
    reader.Get(SLUICE_PARAM_LEASE_NANOS, &o.shared_lease);
    absl::StatusOr<std::unique_ptr<sluice::Balancer>> b = sluice::Balancer::Create(o, ClockOf(clock));
    if (!b.ok()) return FromStatus(b.status());
    *out = new sluice_balancer{*std::move(b)};
    return SLUICE_OK;
  });
}

void sluice_balancer_destroy(sluice_balancer* balancer) { delete balancer; }

int sluice_balancer_add_endpoint(sluice_balancer* balancer, const char* id, size_t id_len,
                                 int64_t weight, int64_t max_concurrency,
                                 int64_t kv_capacity_blocks, const char* model, size_t model_len) {
  return Guard(__func__, [&]() -> int {
    if (balancer == nullptr) return NullArgument(__func__, "balancer");
    if (int rc = CheckKey(__func__, id, id_len); rc != SLUICE_OK) return rc;
    if (int rc = CheckKey(__func__, model, model_len); rc != SLUICE_OK) return rc;
    sluice::EndpointSpec e;
    e.id = std::string(Key(id, id_len));
    e.weight = weight;
    e.max_concurrency = max_concurrency;
    e.kv_capacity_blocks = kv_capacity_blocks;
    if (model_len > 0) e.labels.emplace("model", std::string(Key(model, model_len)));
    return FromStatus(balancer->rep->AddEndpoint(e));
  });
}

int sluice_balancer_remove_endpoint(sluice_balancer* balancer, const char* id, size_t id_len) {
  return Guard(__func__, [&]() -> int {
    if (balancer == nullptr) return NullArgument(__func__, "balancer");
    if (int rc = CheckKey(__func__, id, id_len); rc != SLUICE_OK) return rc;
    return FromStatus(balancer->rep->RemoveEndpoint(Key(id, id_len)));
  });
}

int sluice_balancer_update_metrics(sluice_balancer* balancer, const char* id, size_t id_len,
                                   const char* text, size_t text_len) {
  return Guard(__func__, [&]() -> int {
    if (balancer == nullptr) return NullArgument(__func__, "balancer");
    if (int rc = CheckKey(__func__, id, id_len); rc != SLUICE_OK) return rc;
    if (text == nullptr && text_len != 0) return NullArgument(__func__, "text");
    return FromStatus(balancer->rep->UpdateMetrics(Key(id, id_len), Key(text, text_len)));
  });
}

int64_t sluice_balancer_in_flight(const sluice_balancer* balancer, const char* id, size_t id_len) {
  if (balancer == nullptr || (id == nullptr && id_len != 0)) return -1;
  try {
    for (const sluice::EndpointStats& s : balancer->rep->Endpoints()) {
      if (s.id == Key(id, id_len)) return s.in_flight;
    }
  } catch (...) {
  }
  return -1;
}

namespace {
int PickInto(absl::StatusOr<sluice::Balancer::Pick> pick, sluice_pick** out) {
  if (!pick.ok()) return FromStatus(pick.status());
  *out = new sluice_pick{*std::move(pick)};
  return SLUICE_OK;
}

// The C enums mirror the C++ ones value for value; these keep them from drifting apart.
static_assert(static_cast<int>(sluice::Balancer::Strategy::kConsistentHash) ==
              SLUICE_BALANCER_CONSISTENT_HASH);
static_assert(static_cast<int>(sluice::Balancer::Strategy::kPrefixAffinity) ==
              SLUICE_BALANCER_PREFIX_AFFINITY);
}  // namespace

int sluice_balancer_pick(sluice_balancer* balancer, const char* body, size_t body_len,
                         const char* affinity_key, size_t affinity_key_len, sluice_pick** out) {
  return Guard(__func__, [&]() -> int {
    if (balancer == nullptr) return NullArgument(__func__, "balancer");
    if (out == nullptr) return NullArgument(__func__, "out");
    if (body == nullptr && body_len != 0) return NullArgument(__func__, "body");
    if (int rc = CheckKey(__func__, affinity_key, affinity_key_len); rc != SLUICE_OK) return rc;
    absl::StatusOr<sluice::LlmRequest> request = sluice::ParseLlmRequest(Key(body, body_len));
    if (!request.ok()) return FromStatus(request.status());
    return PickInto(balancer->rep->PickEndpoint(*request, Key(affinity_key, affinity_key_len)), out);
  });
}

int sluice_balancer_pick_model(sluice_balancer* balancer, const char* model, size_t model_len,
                               const char* affinity_key, size_t affinity_key_len,
                               sluice_pick** out) {
  return Guard(__func__, [&]() -> int {
    if (balancer == nullptr) return NullArgument(__func__, "balancer");
    if (out == nullptr) return NullArgument(__func__, "out");
    if (int rc = CheckKey(__func__, model, model_len); rc != SLUICE_OK) return rc;
    if (int rc = CheckKey(__func__, affinity_key, affinity_key_len); rc != SLUICE_OK) return rc;
    sluice::PickRequest request;
    request.model = Key(model, model_len);
    request.affinity_key = Key(affinity_key, affinity_key_len);
    return PickInto(balancer->rep->PickEndpoint(request), out);
  });
}

const char* sluice_pick_endpoint_id(const sluice_pick* pick, size_t* len) {
  if (pick == nullptr) {
    if (len != nullptr) *len = 0;
    return "";
  }
  if (len != nullptr) *len = pick->rep.endpoint_id().size();
  return pick->rep.endpoint_id().data();
}

int64_t sluice_pick_matched_blocks(const sluice_pick* pick) {
  return pick == nullptr ? 0 : pick->rep.matched_blocks();
}

int sluice_pick_complete(sluice_pick* pick, int http_status, int error, int64_t ttft_nanos,
                         int64_t latency_nanos) {
  return Guard(__func__, [&]() -> int {
    if (pick == nullptr) return NullArgument(__func__, "pick");
    if (error < SLUICE_OUTCOME_NONE || error > SLUICE_OUTCOME_ABANDONED) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(__func__, ": error must be a sluice_outcome_error, got ", error));
    }
    if (ttft_nanos < 0 || latency_nanos < 0) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(__func__, ": ttft_nanos and latency_nanos must be >= 0"));
    }
    static constexpr sluice::Failure kFailureOf[] = {
        sluice::Failure::kNone,    sluice::Failure::kRateLimited, sluice::Failure::kAuth,
        sluice::Failure::kConnect, sluice::Failure::kTimeout,     sluice::Failure::kServer,
        sluice::Failure::kClient,  sluice::Failure::kAbandoned};  // by sluice_outcome_error
    static_assert(std::size(kFailureOf) == SLUICE_OUTCOME_ABANDONED + 1);
    sluice::AttemptOutcome o;
    o.http_status = http_status;
    o.failure = kFailureOf[error];
    o.ttft = absl::Nanoseconds(ttft_nanos);
    o.latency = absl::Nanoseconds(latency_nanos);
    pick->rep.Complete(o);
    return SLUICE_OK;
  });
}

void sluice_pick_destroy(sluice_pick* pick) { delete pick; }

// ---- failures --------------------------------------------------------------------------------

int sluice_classify(int http_status, int transport, const char* error_body, size_t error_body_len) {
  if (transport < SLUICE_TRANSPORT_NONE || transport > SLUICE_TRANSPORT_RESET) return -1;
  if (error_body == nullptr && error_body_len != 0) return -1;
  try {  // not Guard: the result is a sluice_failure, not a status
    sluice::AttemptOutcome o;
    o.http_status = http_status;
    o.transport = static_cast<sluice::TransportError>(transport);  // the C enum mirrors it
    o.error_body = Key(error_body, error_body_len);
    return static_cast<int>(sluice::Classify(o));
  } catch (...) {
    return -1;
  }
}

int sluice_parse_retry_after(const char* value, size_t len, int64_t now_unix_nanos,
                             int64_t* out_nanos) {
  return Guard(__func__, [&]() -> int {
    if (out_nanos == nullptr) return NullArgument(__func__, "out_nanos");
    if (value == nullptr && len != 0) return NullArgument(__func__, "value");
    std::optional<absl::Duration> d = sluice::ParseRetryAfter(
        Key(value, len), absl::FromUnixNanos(now_unix_nanos));
    if (!d) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(__func__, ": not a Retry-After value: '",
                               std::string(Key(value, len).substr(0, 64)), "'"));
    }
    *out_nanos = absl::ToInt64Nanoseconds(*d);
    return SLUICE_OK;
  });
}

// ---- fallback policy -------------------------------------------------------------------------

namespace {

void StepToC(const sluice::FallbackPolicy::Step& step, sluice_fallback_step* out) {
  if (out == nullptr) return;
  out->kind = static_cast<int>(step.kind);  // the C enum mirrors the C++ order
  out->attempt = step.attempt;
  out->target_index = static_cast<int64_t>(step.target_index);
  out->delay_nanos = absl::ToInt64Nanoseconds(step.delay);
  out->timeout_nanos =
      step.timeout == absl::InfiniteDuration() ? -1 : absl::ToInt64Nanoseconds(step.timeout);
  out->retry = step.retry ? 1 : 0;
  out->failure = static_cast<int>(step.failure);
  out->status = step.status.ok() ? SLUICE_OK : FromStatus(step.status);  // sets the message
  out->retry_after_nanos = absl::ToInt64Nanoseconds(step.retry_after);
}

const char* View(std::string_view v, size_t* len) {
  if (len != nullptr) *len = v.size();
  return v.data();
}

}  // namespace

int sluice_fallback_policy_create(const sluice_options* options,
                                  const sluice_fallback_target* targets, size_t target_count,
                                  const sluice_clock* clock, sluice_fallback_policy** out) {
  return Guard(__func__, [&]() -> int {
    if (options == nullptr) return NullArgument(__func__, "options");
    if (out == nullptr) return NullArgument(__func__, "out");
    if (targets == nullptr && target_count != 0) return NullArgument(__func__, "targets");
    OptionReader reader(
        __func__, options,
        {SLUICE_PARAM_FALLBACK_MAX_RETRIES_PER_TARGET, SLUICE_PARAM_FALLBACK_DEADLINE_NANOS,
         SLUICE_PARAM_FALLBACK_ATTEMPT_TIMEOUT_NANOS, SLUICE_PARAM_FALLBACK_BACKOFF_BASE_NANOS,
         SLUICE_PARAM_FALLBACK_BACKOFF_MAX_NANOS, SLUICE_PARAM_FALLBACK_RETRY_BUDGET_RATIO_MILLI,
         SLUICE_PARAM_FALLBACK_RETRY_BUDGET_MIN, SLUICE_PARAM_FALLBACK_CONTEXT_LENGTH_TARGET,
         SLUICE_PARAM_BREAKER_CONSECUTIVE_FAILURES, SLUICE_PARAM_BREAKER_FAILURE_RATIO_MILLI,
         SLUICE_PARAM_BREAKER_SLOW_CALL_RATIO_MILLI, SLUICE_PARAM_BREAKER_SLOW_CALL_NANOS,
         SLUICE_PARAM_BREAKER_WINDOW_NANOS, SLUICE_PARAM_BREAKER_MINIMUM_CALLS,
         SLUICE_PARAM_BREAKER_OPEN_NANOS, SLUICE_PARAM_BREAKER_OPEN_MULTIPLIER_MILLI,
         SLUICE_PARAM_BREAKER_MAX_OPEN_NANOS, SLUICE_PARAM_BREAKER_HALF_OPEN_PROBES,
         SLUICE_PARAM_FALLBACK_ACTION + 1, SLUICE_PARAM_FALLBACK_ACTION + 2,
         SLUICE_PARAM_FALLBACK_ACTION + 3, SLUICE_PARAM_FALLBACK_ACTION + 4,
         SLUICE_PARAM_FALLBACK_ACTION + 5, SLUICE_PARAM_FALLBACK_ACTION + 6,
         SLUICE_PARAM_FALLBACK_ACTION + 7, SLUICE_PARAM_FALLBACK_ACTION + 8,
         SLUICE_PARAM_FALLBACK_ACTION + 9},
        /*accepts_windows=*/false, /*accepts_cluster=*/false);
    if (!reader.ok()) return reader.Error();
    sluice::FallbackPolicy::Options o;
    for (size_t i = 0; i < target_count; ++i) {
      const sluice_fallback_target& t = targets[i];
      if ((t.name == nullptr && t.name_len != 0) || (t.model == nullptr && t.model_len != 0)) {
        return Fail(SLUICE_INVALID_ARGUMENT,
                    absl::StrCat(__func__, ": targets[", i, "]: a NULL string with a length"));
      }
      o.targets.push_back({.name = std::string(Key(t.name, t.name_len)),
                           .model = std::string(Key(t.model, t.model_len)),
                           .balancer = t.balancer != nullptr ? t.balancer->rep : nullptr,
                           .breaker = std::nullopt});
    }
    reader.Get(SLUICE_PARAM_FALLBACK_MAX_RETRIES_PER_TARGET, &o.max_retries_per_target);
    reader.Get(SLUICE_PARAM_FALLBACK_DEADLINE_NANOS, &o.deadline);
    reader.Get(SLUICE_PARAM_FALLBACK_ATTEMPT_TIMEOUT_NANOS, &o.attempt_timeout);
    reader.Get(SLUICE_PARAM_FALLBACK_BACKOFF_BASE_NANOS, &o.backoff_base);
    reader.Get(SLUICE_PARAM_FALLBACK_BACKOFF_MAX_NANOS, &o.backoff_max);
    reader.Get(SLUICE_PARAM_FALLBACK_RETRY_BUDGET_MIN, &o.retry_budget.min_retries);
    reader.Get(SLUICE_PARAM_FALLBACK_CONTEXT_LENGTH_TARGET, &o.context_length_target);
    auto milli = [&](int param, double* field) {
      constexpr int64_t kUnset = std::numeric_limits<int64_t>::min();
      int64_t v = kUnset;
      reader.Get(param, &v);
      if (v != kUnset) *field = static_cast<double>(v) / 1000.0;
    };
    milli(SLUICE_PARAM_FALLBACK_RETRY_BUDGET_RATIO_MILLI, &o.retry_budget.ratio);
    sluice::CircuitBreaker::Options& b = o.breaker;
    reader.Get(SLUICE_PARAM_BREAKER_CONSECUTIVE_FAILURES, &b.consecutive_failures);
    milli(SLUICE_PARAM_BREAKER_FAILURE_RATIO_MILLI, &b.failure_ratio);
    milli(SLUICE_PARAM_BREAKER_SLOW_CALL_RATIO_MILLI, &b.slow_call_ratio);
    reader.Get(SLUICE_PARAM_BREAKER_SLOW_CALL_NANOS, &b.slow_call_duration);
    reader.Get(SLUICE_PARAM_BREAKER_WINDOW_NANOS, &b.window);
    reader.Get(SLUICE_PARAM_BREAKER_MINIMUM_CALLS, &b.minimum_calls);
    reader.Get(SLUICE_PARAM_BREAKER_OPEN_NANOS, &b.open_time);
    milli(SLUICE_PARAM_BREAKER_OPEN_MULTIPLIER_MILLI, &b.open_time_multiplier);
    reader.Get(SLUICE_PARAM_BREAKER_MAX_OPEN_NANOS, &b.max_open_time);
    reader.Get(SLUICE_PARAM_BREAKER_HALF_OPEN_PROBES, &b.half_open_probes);
    for (int f = SLUICE_FAIL_CONNECT; f <= SLUICE_FAIL_CLIENT; ++f) {
      int64_t action = -1;
      reader.Get(SLUICE_PARAM_FALLBACK_ACTION + f, &action);
      if (action == -1) continue;
      if (action < SLUICE_ACTION_RETRY_SAME || action > SLUICE_ACTION_FATAL) {
        return Fail(SLUICE_INVALID_ARGUMENT,
                    absl::StrCat(__func__, ": SLUICE_PARAM_FALLBACK_ACTION + ", f,
                                 " must be a sluice_fallback_action, got ", action));
      }
      o.actions.Set(static_cast<sluice::Failure>(f),
                    static_cast<sluice::FallbackPolicy::Action>(action));
    }
    absl::StatusOr<std::unique_ptr<sluice::FallbackPolicy>> policy =
        sluice::FallbackPolicy::Create(std::move(o), ClockOf(clock));
    if (!policy.ok()) return FromStatus(policy.status());
    *out = new sluice_fallback_policy{*std::move(policy)};
    return SLUICE_OK;
  });
}

void sluice_fallback_policy_destroy(sluice_fallback_policy* policy) { delete policy; }

int sluice_fallback_policy_breaker_state(const sluice_fallback_policy* policy,
                                         size_t target_index) {
  if (policy == nullptr || target_index >= policy->rep->options().targets.size()) return -1;
  try {  // not Guard: the result is a sluice_breaker_state, not a status
    return static_cast<int>(policy->rep->Targets()[target_index].breaker.state);
  } catch (...) {
    return -1;
  }
}

int sluice_fallback_policy_begin(sluice_fallback_policy* policy, int64_t deadline_nanos,
                                 sluice_fallback_call** out, sluice_fallback_step* step) {
  return Guard(__func__, [&]() -> int {
    if (policy == nullptr) return NullArgument(__func__, "policy");
    if (out == nullptr) return NullArgument(__func__, "out");
    if (deadline_nanos < 0) {
      return Fail(SLUICE_INVALID_ARGUMENT, absl::StrCat(__func__, ": deadline_nanos must be >= 0"));
    }
    sluice::FallbackPolicy::CallOptions call_options;
    call_options.deadline = absl::Nanoseconds(deadline_nanos);
    *out = new sluice_fallback_call{policy->rep->Begin(call_options)};
    StepToC((*out)->rep.step(), step);
    return SLUICE_OK;
  });
}

const char* sluice_fallback_call_target(const sluice_fallback_call* call, size_t* len) {
  return call == nullptr ? View({}, len) : View(call->rep.step().target, len);
}
const char* sluice_fallback_call_model(const sluice_fallback_call* call, size_t* len) {
  return call == nullptr ? View({}, len) : View(call->rep.step().model, len);
}
const char* sluice_fallback_call_endpoint(const sluice_fallback_call* call, size_t* len) {
  return call == nullptr ? View({}, len) : View(call->rep.step().endpoint_id, len);
}

int sluice_fallback_call_next(sluice_fallback_call* call, int http_status, int transport,
                              const char* error_body, size_t error_body_len,
                              int64_t retry_after_nanos, int64_t latency_nanos,
                              sluice_fallback_step* step) {
  return Guard(__func__, [&]() -> int {
    if (call == nullptr) return NullArgument(__func__, "call");
    if (transport < SLUICE_TRANSPORT_NONE || transport > SLUICE_TRANSPORT_RESET) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(__func__, ": transport must be a sluice_transport_error, got ",
                               transport));
    }
    if (error_body == nullptr && error_body_len != 0) return NullArgument(__func__, "error_body");
    if (retry_after_nanos < 0 || latency_nanos < 0) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(__func__, ": retry_after_nanos and latency_nanos must be >= 0"));
    }
    if (call->rep.step().kind != sluice::FallbackPolicy::Step::Kind::kAttempt) {
      return Fail(SLUICE_FAILED_PRECONDITION,
                  absl::StrCat(__func__, ": the call has ended; there is no attempt to report"));
    }
    sluice::AttemptOutcome o;
    o.http_status = http_status;
    o.transport = static_cast<sluice::TransportError>(transport);
    o.error_body = Key(error_body, error_body_len);
    o.retry_after = absl::Nanoseconds(retry_after_nanos);
    o.latency = absl::Nanoseconds(latency_nanos);
    StepToC(call->rep.Next(o), step);
    return SLUICE_OK;
  });
}

int sluice_fallback_call_mark_first_byte(sluice_fallback_call* call) {
  if (call == nullptr) return NullArgument(__func__, "call");
  call->rep.MarkFirstByte();
  return SLUICE_OK;
}

void sluice_fallback_call_destroy(sluice_fallback_call* call) { delete call; }

// ---- response cache --------------------------------------------------------------------------

int sluice_cache_key_create(const char* body, size_t body_len, const char* name_space,
                            size_t name_space_len, sluice_cache_key** out) {
  return Guard(__func__, [&]() -> int {
    if (out == nullptr) return NullArgument(__func__, "out");
    if (body == nullptr && body_len != 0) return NullArgument(__func__, "body");
    if (int rc = CheckKey(__func__, name_space, name_space_len); rc != SLUICE_OK) return rc;
    absl::StatusOr<sluice::CacheKey> key =
        sluice::MakeCacheKey(Key(body, body_len), Key(name_space, name_space_len));
    if (!key.ok()) return FromStatus(key.status());
    *out = new sluice_cache_key{*std::move(key)};
    return SLUICE_OK;
  });
}

void sluice_cache_key_destroy(sluice_cache_key* key) { delete key; }

int sluice_cache_key_digest(const sluice_cache_key* key, uint64_t* hi, uint64_t* lo) {
  if (key == nullptr) return NullArgument(__func__, "key");
  if (hi == nullptr || lo == nullptr) return NullArgument(__func__, "hi or lo");
  *hi = key->rep.digest_hi;
  *lo = key->rep.digest_lo;
  return SLUICE_OK;
}

const char* sluice_cache_key_canonical(const sluice_cache_key* key, size_t* len) {
  return key == nullptr ? View({}, len) : View(key->rep.canonical, len);
}

uint8_t sluice_cached_answer_streamed(const sluice_cached_answer* answer) {
  return answer != nullptr && answer->rep->streamed ? 1 : 0;
}
const char* sluice_cached_answer_body(const sluice_cached_answer* answer, size_t* len) {
  return answer == nullptr ? View({}, len) : View(answer->rep->body, len);
}
size_t sluice_cached_answer_chunk_count(const sluice_cached_answer* answer) {
  return answer == nullptr ? 0 : answer->rep->chunks.size();
}
const char* sluice_cached_answer_chunk(const sluice_cached_answer* answer, size_t index,
                                       size_t* len) {
  if (answer == nullptr || index >= answer->rep->chunks.size()) {
    if (len != nullptr) *len = 0;
    return nullptr;
  }
  return View(answer->rep->chunks[index], len);
}
void sluice_cached_answer_destroy(sluice_cached_answer* answer) { delete answer; }

int sluice_response_cache_create(const sluice_options* options, const sluice_clock* clock,
                                 sluice_response_cache** out) {
  return Guard(__func__, [&]() -> int {
    if (options == nullptr) return NullArgument(__func__, "options");
    if (out == nullptr) return NullArgument(__func__, "out");
    OptionReader reader(__func__, options,
                        {SLUICE_PARAM_CACHE_MAX_BYTES, SLUICE_PARAM_CACHE_SHARDS,
                         SLUICE_PARAM_CACHE_DEFAULT_TTL_NANOS,
                         SLUICE_PARAM_CACHE_PROTECTED_SHARE_MILLI, SLUICE_PARAM_CACHE_ADMISSION,
                         SLUICE_PARAM_CACHE_STORE_TOOL_CALLS, SLUICE_PARAM_CACHE_REDIS_NAME},
                        /*accepts_windows=*/false, /*accepts_cluster=*/false,
                        /*accepts_store=*/true);
    if (!reader.ok()) return reader.Error();
    sluice::ResponseCache::Options o;
    reader.Get(SLUICE_PARAM_CACHE_MAX_BYTES, &o.max_bytes);
    int64_t shards = o.shards;
    reader.Get(SLUICE_PARAM_CACHE_SHARDS, &shards);
    if (shards < 1 || shards > 1024) {
      return Fail(SLUICE_INVALID_ARGUMENT,
                  absl::StrCat(__func__, ": SLUICE_PARAM_CACHE_SHARDS must be in [1, 1024]"));
    }
    o.shards = static_cast<int>(shards);
    reader.Get(SLUICE_PARAM_CACHE_DEFAULT_TTL_NANOS, &o.default_ttl);
    int64_t share = static_cast<int64_t>(o.protected_share * 1000);
    reader.Get(SLUICE_PARAM_CACHE_PROTECTED_SHARE_MILLI, &share);
    o.protected_share = static_cast<double>(share) / 1000.0;
    int64_t admission = 1;
    reader.Get(SLUICE_PARAM_CACHE_ADMISSION, &admission);
    o.admission = admission != 0;
    int64_t store_tool_calls = 1;
    reader.Get(SLUICE_PARAM_CACHE_STORE_TOOL_CALLS, &store_tool_calls);
    o.store_tool_calls = store_tool_calls != 0;
    o.redis = options->redis;
    reader.Get(SLUICE_PARAM_CACHE_REDIS_NAME, &o.redis_name);
    absl::StatusOr<std::unique_ptr<sluice::ResponseCache>> cache =
        sluice::ResponseCache::Create(o, ClockOf(clock));
    if (!cache.ok()) return FromStatus(cache.status());
    *out = new sluice_response_cache{*std::move(cache)};
    return SLUICE_OK;
  });
}

void sluice_response_cache_destroy(sluice_response_cache* cache) { delete cache; }

int sluice_response_cache_get(sluice_response_cache* cache, const sluice_cache_key* key,
                              sluice_cached_answer** out) {
  return Guard(__func__, [&]() -> int {
    if (cache == nullptr) return NullArgument(__func__, "cache");
    if (key == nullptr) return NullArgument(__func__, "key");
    if (out == nullptr) return NullArgument(__func__, "out");
    std::shared_ptr<const sluice::CachedResponse> hit = cache->rep->Get(key->rep);
    *out = hit == nullptr ? nullptr : new sluice_cached_answer{std::move(hit)};
    return SLUICE_OK;
  });
}

int sluice_response_cache_put(sluice_response_cache* cache, const sluice_cache_key* key,
                              const char* body, size_t body_len, const char* const* chunks,
                              const size_t* chunk_lens, size_t chunk_count, int64_t ttl_nanos,
                              uint8_t* stored) {
  return Guard(__func__, [&]() -> int {
    if (cache == nullptr) return NullArgument(__func__, "cache");
    if (key == nullptr) return NullArgument(__func__, "key");
    sluice::CachedResponse r;
    if (int rc = AnswerFromC(__func__, body, body_len, chunks, chunk_lens, chunk_count, ttl_nanos,
                             &r);
        rc != SLUICE_OK) {
      return rc;
    }
    const bool ok = cache->rep->Put(key->rep, std::move(r), absl::Nanoseconds(ttl_nanos));
    if (stored != nullptr) *stored = ok ? 1 : 0;
    return SLUICE_OK;
  });
}

int sluice_response_cache_stats(const sluice_response_cache* cache,
                                sluice_cache_stats* out) {
  return Guard(__func__, [&]() -> int {
    if (cache == nullptr) return NullArgument(__func__, "cache");
    if (out == nullptr) return NullArgument(__func__, "out");
    const sluice::ResponseCache::Stats s = cache->rep->stats();
    *out = sluice_cache_stats{
        .hits = s.hits,
        .misses = s.misses,
        .inserts = s.inserts,
        .rejected = s.rejected,
        .evictions = s.evictions,
        .expirations = s.expirations,
        .collisions = s.collisions,
        .merged_waits = s.merged_waits,
        .leader_failovers = s.leader_failovers,
        .skipped_tool_calls = s.skipped_tool_calls,
        .redis_hits = s.redis_hits,
        .redis_misses = s.redis_misses,
        .redis_writes = s.redis_writes,
        .redis_errors = s.redis_errors,
        .entries = s.entries,
        .bytes = s.bytes};
    return SLUICE_OK;
  });
}

int sluice_response_cache_erase(sluice_response_cache* cache, const sluice_cache_key* key) {
  return Guard(__func__, [&]() -> int {
    if (cache == nullptr) return NullArgument(__func__, "cache");
    if (key == nullptr) return NullArgument(__func__, "key");
    return cache->rep->Erase(key->rep) ? SLUICE_OK
                                        : Fail(SLUICE_NOT_FOUND, absl::StrCat(__func__, ": no entry"));
  });
}

int sluice_response_cache_fetch(sluice_response_cache* cache, const sluice_cache_key* key,
                                sluice_fetch** out) {
  return Guard(__func__, [&]() -> int {
    if (cache == nullptr) return NullArgument(__func__, "cache");
    if (key == nullptr) return NullArgument(__func__, "key");
    if (out == nullptr) return NullArgument(__func__, "out");
    *out = new sluice_fetch{cache->rep->Fetch(key->rep)};
    return SLUICE_OK;
  });
}

int sluice_fetch_kind_of(const sluice_fetch* fetch) {
  if (fetch == nullptr) return -1;
  if (fetch->rep.hit != nullptr) return SLUICE_FETCH_HIT;
  if (fetch->rep.lead) return SLUICE_FETCH_LEAD;
  if (fetch->rep.wait) return SLUICE_FETCH_WAIT;
  if (fetch->rep.broken) return SLUICE_FETCH_BROKEN;
  return -1;  // a lead that was completed
}

int sluice_fetch_fd(const sluice_fetch* fetch) {
  return fetch != nullptr && fetch->rep.wait ? fetch->rep.wait->fd() : -1;
}

uint8_t sluice_fetch_ready(const sluice_fetch* fetch) {
  return fetch != nullptr && fetch->rep.wait && fetch->rep.wait->ready() ? 1 : 0;
}

int sluice_fetch_resume(sluice_fetch* fetch) {
  return Guard(__func__, [&]() -> int {
    if (fetch == nullptr) return NullArgument(__func__, "fetch");
    if (!fetch->rep.wait || !fetch->rep.wait->ready()) {
      return Fail(SLUICE_FAILED_PRECONDITION, absl::StrCat(__func__, ": the wait is not over"));
    }
    sluice::FetchResult next = fetch->rep.wait->Result();
    fetch->rep = std::move(next);
    return SLUICE_OK;
  });
}

int sluice_fetch_answer(const sluice_fetch* fetch, sluice_cached_answer** out) {
  return Guard(__func__, [&]() -> int {
    if (fetch == nullptr) return NullArgument(__func__, "fetch");
    if (out == nullptr) return NullArgument(__func__, "out");
    if (fetch->rep.hit == nullptr) {
      return Fail(SLUICE_FAILED_PRECONDITION, absl::StrCat(__func__, ": not a hit"));
    }
    *out = new sluice_cached_answer{fetch->rep.hit};
    return SLUICE_OK;
  });
}

int sluice_fetch_complete(sluice_fetch* fetch, const char* body, size_t body_len,
                          const char* const* chunks, const size_t* chunk_lens, size_t chunk_count,
                          int64_t ttl_nanos, uint8_t store, uint8_t* stored) {
  return Guard(__func__, [&]() -> int {
    if (fetch == nullptr) return NullArgument(__func__, "fetch");
    sluice::CachedResponse r;
    if (int rc = AnswerFromC(__func__, body, body_len, chunks, chunk_lens, chunk_count, ttl_nanos,
                             &r);
        rc != SLUICE_OK) {
      return rc;
    }
    if (!fetch->rep.lead) {
      return Fail(SLUICE_FAILED_PRECONDITION, absl::StrCat(__func__, ": not the leader"));
    }
    const bool ok =
        fetch->rep.lead->Complete(std::move(r), absl::Nanoseconds(ttl_nanos), store != 0);
    fetch->rep.lead.reset();
    if (stored != nullptr) *stored = ok ? 1 : 0;
    return SLUICE_OK;
  });
}

int sluice_fetch_append(sluice_fetch* fetch, const char* chunk, size_t len) {
  return Guard(__func__, [&]() -> int {
    if (fetch == nullptr) return NullArgument(__func__, "fetch");
    if (chunk == nullptr && len != 0) return NullArgument(__func__, "chunk");
    if (!fetch->rep.lead) {
      return Fail(SLUICE_FAILED_PRECONDITION, absl::StrCat(__func__, ": not the leader"));
    }
    fetch->rep.lead->Append(std::string(Key(chunk, len)));
    return SLUICE_OK;
  });
}

int sluice_fetch_complete_stream(sluice_fetch* fetch, int64_t ttl_nanos, uint8_t store,
                                 uint8_t* stored) {
  return Guard(__func__, [&]() -> int {
    if (fetch == nullptr) return NullArgument(__func__, "fetch");
    if (ttl_nanos < 0) {
      return Fail(SLUICE_INVALID_ARGUMENT, absl::StrCat(__func__, ": ttl_nanos must be >= 0"));
    }
    if (!fetch->rep.lead) {
      return Fail(SLUICE_FAILED_PRECONDITION, absl::StrCat(__func__, ": not the leader"));
    }
    const bool ok = fetch->rep.lead->CompleteStream(absl::Nanoseconds(ttl_nanos), store != 0);
    fetch->rep.lead.reset();
    if (stored != nullptr) *stored = ok ? 1 : 0;
    return SLUICE_OK;
  });
}

int sluice_fetch_take_chunks(sluice_fetch* fetch, sluice_cached_answer** out) {
  return Guard(__func__, [&]() -> int {
    if (fetch == nullptr) return NullArgument(__func__, "fetch");
    if (out == nullptr) return NullArgument(__func__, "out");
    if (!fetch->rep.wait) {
      return Fail(SLUICE_FAILED_PRECONDITION, absl::StrCat(__func__, ": not waiting"));
    }
    auto taken = std::make_shared<sluice::CachedResponse>();
    taken->streamed = true;
    taken->chunks = fetch->rep.wait->TakeChunks();
    fetch->chunks_taken = fetch->rep.wait->chunks_taken();
    *out = new sluice_cached_answer{std::move(taken)};
    return SLUICE_OK;
  });
}

size_t sluice_fetch_chunks_taken(const sluice_fetch* fetch) {
  return fetch == nullptr ? 0 : fetch->chunks_taken;
}

void sluice_fetch_destroy(sluice_fetch* fetch) { delete fetch; }

}  // extern "C"
