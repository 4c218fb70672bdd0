/* -----------------------------------------------------------------------------
 * File: sluice/c.h  --  the C ABI of sluice
 * -----------------------------------------------------------------------------
 *
 * A stable C interface to sluice's admission objects, for C programs and for any language with a
 * C FFI. Link `sluice::sluice_c` (libsluice_c.so).
 *
 * Conventions (after leveldb's c.h and zstd.h):
 *  1. Objects are opaque handles. Every `sluice_X_create` has a `sluice_X_destroy`; destroy
 *     accepts NULL and does nothing with it.
 *  2. Every fallible function returns an `int` status: SLUICE_OK (0) or one of the pinned
 *     `sluice_status` codes below. `sluice_status_name(code)` names it and
 *     `sluice_last_error_message()` gives this thread's detail for the last failure.
 *  3. Strings are `(const char* ptr, size_t len)` pairs and need not be NUL-terminated; a NULL
 *     ptr is allowed only with len 0. Keys are at most SLUICE_MAX_KEY_LEN bytes.
 *  4. Booleans are `uint8_t`. Times are int64 nanoseconds; durations must be >= 0 and rates > 0.
 *  5. Every argument is checked: NULL handles or out-pointers, bad lengths and bad numbers return
 *     SLUICE_INVALID_ARGUMENT, never crash. No C++ exception crosses this interface.
 *  6. Options are set on a `sluice_options` handle through pinned parameter numbers
 *     (`sluice_options_set`) and windows (`sluice_options_add_window`); each create function
 *     reads what it needs and rejects parameters it does not use, naming them.
 *  7. A create function sets *out to NULL before anything else (when out is not NULL), so a
 *     failed create leaves NULL; error messages start with the function's name.
 *  8. One verb per meaning, in every language (docs/architecture.md, "Verbs"): `try_acquire` /
 *     `try_reserve` decide now and never wait; `allow` is the yes/no fast path. Old names stay
 *     for one release as SLUICE_DEPRECATED functions that do the same (define
 *     SLUICE_DISABLE_DEPRECATE_WARNINGS to silence the warnings).
 *  9. Declarations marked SLUICE_EXPERIMENTAL (the section "Experimental" at the end: the
 *     response cache's single-flight fetch and live streams, the Governor) may change between
 *     minor releases, as the declarations of zstd.h's ZSTD_STATIC_LINKING_ONLY section do. They
 *     are declared for every caller; the marker says what is not yet stable.
 * 10. Bytes a function makes for the caller (sluice_include_usage_in_stream,
 *     sluice_governor_metrics_text) are a malloc'd,
 *     NUL-terminated copy with its length; free it with sluice_free (not free(): the library
 *     may use another C runtime than the caller, as leveldb_free says).
 *
 * Example:
 *
 *   sluice_options* o = sluice_options_create();
 *   sluice_options_add_window(o, 100, 60LL * 1000000000, 0);       // 100 per minute
 *   sluice_rate_limiter* rl = NULL;
 *   if (sluice_rate_limiter_create(o, NULL, &rl) != SLUICE_OK) {
 *     fprintf(stderr, "%s\n", sluice_last_error_message());
 *   }
 *   sluice_options_destroy(o);
 *   sluice_decision d;
 *   if (sluice_rate_limiter_try_acquire(rl, "tenant-1", 8, 1, &d) == SLUICE_OK && !d.allowed) {
 *     ... 429, Retry-After: d.retry_after_nanos ...
 *   }
 *   sluice_rate_limiter_destroy(rl);
 *
 * Thread-safety: limiters, buckets and budgets are safe to share between threads. A permit or a
 * reservation is used by one thread at a time, and so is a usage reader (single-owner; see
 * "usage metering"). An options handle is not thread-safe.
 */
#ifndef SLUICE_C_H_
#define SLUICE_C_H_

#include <stddef.h>
#include <stdint.h>

#include "sluice/version.h"

#ifndef SLUICE_API
#if defined(_WIN32)
#if defined(SLUICE_BUILDING_C_API)
#define SLUICE_API __declspec(dllexport)
#else
#define SLUICE_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define SLUICE_API __attribute__((visibility("default")))
#else
#define SLUICE_API
#endif
#endif

/* An old name kept for one release: it still works and warns at compile time. */
#ifndef SLUICE_DEPRECATED
#if defined(SLUICE_DISABLE_DEPRECATE_WARNINGS)
#define SLUICE_DEPRECATED(message)
#elif defined(__GNUC__) || defined(__clang__)
#define SLUICE_DEPRECATED(message) __attribute__((deprecated(message)))
#elif defined(_MSC_VER)
#define SLUICE_DEPRECATED(message) __declspec(deprecated(message))
#else
#define SLUICE_DEPRECATED(message)
#endif
#endif
/* The same for an enumerator (GCC >= 6 and clang accept the attribute there). */
#ifndef SLUICE_DEPRECATED_ENUMERATOR
#if !defined(SLUICE_DISABLE_DEPRECATE_WARNINGS) && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 6))
#define SLUICE_DEPRECATED_ENUMERATOR(message) __attribute__((deprecated(message)))
#else
#define SLUICE_DEPRECATED_ENUMERATOR(message)
#endif
#endif
/* Marks a declaration of the "Experimental" section: it may change between minor releases. */
#ifndef SLUICE_EXPERIMENTAL
#define SLUICE_EXPERIMENTAL
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_MAX_KEY_LEN 65536

/* ---- status codes: values are pinned and never change meaning --------------------------- */
typedef enum sluice_status {
  SLUICE_OK = 0,
  SLUICE_INVALID_ARGUMENT = 1,   /* a bad argument or option; the message names it */
  SLUICE_RESOURCE_EXHAUSTED = 2, /* a bounded table is full (max_keys), or /dev/shm has no room
                                    for a new shared region */
  SLUICE_FAILED_PRECONDITION = 3,/* e.g. releasing a permit whose lease was reclaimed */
  SLUICE_UNAVAILABLE = 4,        /* a shared store cannot be reached (later scopes) */
  SLUICE_DEADLINE_EXCEEDED = 5,  /* a wait ran out of time (later scopes) */
  SLUICE_OUT_OF_MEMORY = 6,
  SLUICE_INTERNAL = 7,           /* a bug in sluice */
  SLUICE_NOT_FOUND = 8,          /* e.g. removing a shared region that does not exist */
  SLUICE_ALREADY_EXISTS = 9,     /* e.g. adding a balancer endpoint twice */
  SLUICE_ABORTED = 10,           /* a stream broke after its first byte reached the client */
  SLUICE_PERMISSION_DENIED = 11  /* Redis refused the credentials or an ACL denies a command */
  /* New codes may be added; treat unknown codes as errors. */
} sluice_status;

/* The name of a status code ("SLUICE_INVALID_ARGUMENT"); "SLUICE_UNKNOWN" for others. Static. */
SLUICE_API const char* sluice_status_name(int status);
/* This thread's message for the last failed call ("" if none). Valid until this thread's next
 * sluice call. */
SLUICE_API const char* sluice_last_error_message(void);

/* ---- version ---------------------------------------------------------------------------- */
/* The library's version at run time: compare with SLUICE_VERSION_NUMBER from sluice/version.h. */
SLUICE_API int sluice_version_number(void);
SLUICE_API const char* sluice_version_string(void);

/* ---- memory ----------------------------------------------------------------------------- */
/* Frees bytes a sluice function handed out (convention 10). NULL does nothing. */
SLUICE_API void sluice_free(void* ptr);

/* ---- decisions -------------------------------------------------------------------------- */
/* Mirrors sluice::Decision (sluice/decision.h). This layout is part of the ABI: fields are
 * never reordered or removed; new information comes through new functions. */
typedef struct sluice_decision {
  uint8_t allowed;
  int64_t limit;
  int64_t remaining;
  int64_t retry_after_nanos;
  int64_t reset_after_nanos;
  int64_t delay_nanos;
  int64_t window_nanos;
} sluice_decision;

/* ---- clocks ----------------------------------------------------------------------------- */
/* Pass NULL wherever a clock is taken to use the process's steady clock. A manual clock moves
 * only when told to (tests, simulations). It must outlive every object created with it. Clocks
 * read in [0, 2^62] ns: a start outside that range is SLUICE_INVALID_ARGUMENT, and an advance
 * (negative moves the clock back) stops at the range's ends instead of wrapping. */
typedef struct sluice_clock sluice_clock;
SLUICE_API int sluice_manual_clock_create(int64_t start_nanos, sluice_clock** out);
SLUICE_API int sluice_manual_clock_advance(sluice_clock* clock, int64_t nanos);
SLUICE_API int64_t sluice_clock_now_nanos(const sluice_clock* clock); /* NULL: steady clock */
SLUICE_API void sluice_clock_destroy(sluice_clock* clock);

/* ---- options ---------------------------------------------------------------------------- */
typedef struct sluice_options sluice_options;

/* Parameter numbers are pinned. Durations are nanoseconds. capi/params.def lists each one once
 * (its kind, the objects that take it, the C++ option it sets); the library checks at build time
 * that this enum and that table agree. */
typedef enum sluice_param {
  SLUICE_PARAM_MAX_KEYS = 100,      /* all objects; default 1048576 */
  SLUICE_PARAM_WINDOW_KIND = 101,   /* rate limiter: a sluice_window_kind for every window added;
                                       default SLUICE_WINDOW_GCRA (token budget: GCRA only) */
  SLUICE_PARAM_RATE = 200,          /* leaky bucket: units per `per`; required */
  SLUICE_PARAM_PER_NANOS = 201,     /* leaky bucket; default 1 s */
  SLUICE_PARAM_BURST = 202,         /* leaky bucket; default 1 */
  SLUICE_PARAM_MAX_WAIT_NANOS = 203,/* leaky bucket; default 1 s */
  SLUICE_PARAM_MAX_IN_FLIGHT = 300, /* concurrency limiter; required */
  SLUICE_PARAM_LEASE_NANOS = 301,   /* concurrency limiter; default 10 min */
  SLUICE_PARAM_RETRY_AFTER_NANOS = 302,/* concurrency limiter; default 1 s */
  /* Host scope (string): the shared-memory region of the object's state (sluice/shared_region.h) */
  SLUICE_PARAM_SHARED_REGION = 400,
  /* Cluster scope, for sluice_redis_store_create (sluice/redis_store.h) */
  SLUICE_PARAM_REDIS_HOST = 500,            /* string; default "127.0.0.1" */
  SLUICE_PARAM_REDIS_PORT = 501,            /* default 6379 */
  SLUICE_PARAM_REDIS_UNIX_SOCKET = 502,     /* string */
  SLUICE_PARAM_REDIS_USERNAME = 503,        /* string */
  SLUICE_PARAM_REDIS_PASSWORD = 504,        /* string */
  SLUICE_PARAM_REDIS_DB = 505,              /* default 0 */
  SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS = 506,   /* default 200 ms */
  SLUICE_PARAM_REDIS_COMMAND_TIMEOUT_NANOS = 507,   /* default 5 ms */
  SLUICE_PARAM_REDIS_RECONNECT_INTERVAL_NANOS = 508,/* default 100 ms */
  SLUICE_PARAM_REDIS_KEY_PREFIX = 509,      /* string; default "sluice" */
  /* EXPERIMENTAL (the URL grammar may still grow): string, a connection URL
   * (sluice::RedisOptionsFromUrl: redis://, rediss://, unix://, redis+sentinel://,
   * redis+cluster://, ...). Sets every field the URL names; read before every other
   * SLUICE_PARAM_REDIS_*, so that a parameter set with it wins over the URL. */
  SLUICE_PARAM_REDIS_URL = 510,
  SLUICE_PARAM_REDIS_TLS = 511,             /* 0 or not 0; default 0 (plain TCP) */
  SLUICE_PARAM_REDIS_TLS_CA_FILE = 512,     /* string; default the system's CAs */
  SLUICE_PARAM_REDIS_TLS_SERVER_NAME = 513, /* string; default the host connected to */
  SLUICE_PARAM_REDIS_TLS_CERT_FILE = 514,   /* string; a client certificate (with KEY_FILE) */
  SLUICE_PARAM_REDIS_TLS_KEY_FILE = 515,    /* string */
  SLUICE_PARAM_REDIS_TLS_VERIFY_PEER = 516, /* 0 or not 0; default 1. 0 accepts any certificate */
  SLUICE_PARAM_REDIS_SENTINEL_MASTER = 517, /* string: the service name; selects Sentinel */
  SLUICE_PARAM_REDIS_SENTINELS = 518,       /* string "h:p,h:p" (IPv6 in []; port 26379) */
  SLUICE_PARAM_REDIS_SENTINEL_USERNAME = 519, /* string: the sentinels' own ACL user */
  SLUICE_PARAM_REDIS_SENTINEL_PASSWORD = 520, /* string: the sentinels' own password */
  SLUICE_PARAM_REDIS_CLUSTER_NODES = 521,   /* string "h:p,h:p" (IPv6 in []; port 6379); selects
                                             * Redis Cluster */
  /* Cluster scope, for any of the four objects (with sluice_options_set_redis_store) */
  /* string: the object's Redis namespace (sluice::ClusterOptions::redis_name): required in
   * cluster scope for the four limiters and the balancer (its shared cooldowns); for the
   * response cache, its Redis tier's (default "cache"). One name for every object (it was two,
   * see the deprecated aliases below). */
  SLUICE_PARAM_REDIS_NAME = 600,
  /* Deprecated aliases of SLUICE_PARAM_REDIS_NAME, read as before for one release. CLUSTER_RULE
   * is the same number; the cache still reads CACHE_REDIS_NAME (906), but not with REDIS_NAME. */
  SLUICE_PARAM_CLUSTER_RULE SLUICE_DEPRECATED_ENUMERATOR("use SLUICE_PARAM_REDIS_NAME") = 600,
  SLUICE_PARAM_CLUSTER_ON_FAILURE = 601,    /* a sluice_failure_mode; default SLUICE_FAILURE_LOCAL */
  SLUICE_PARAM_CLUSTER_LOCAL_SHARE = 602,   /* processes sharing the rule; REQUIRED (>= 1) with
                                               SLUICE_FAILURE_LOCAL (the default failure mode):
                                               each admits limit / share while Redis is down */
  SLUICE_PARAM_CLUSTER_MODE = 603,          /* a sluice_cluster_mode; default SLUICE_CLUSTER_STRICT */
  SLUICE_PARAM_CLUSTER_LEASE_UNITS = 604,   /* leased mode; default 0: 1% of the smallest burst */
  SLUICE_PARAM_CLUSTER_LEASE_TTL_NANOS = 605,/* leased mode; default 0: 1% of the shortest period */
  /* The balancer (sluice/balancer.h has every default and rule). Weights are in thousandths. */
  SLUICE_PARAM_BALANCER_STRATEGY = 700,     /* a sluice_balancer_strategy; default LEAST_REQUEST */
  SLUICE_PARAM_BALANCER_SEED = 701,         /* default 0: random */
  SLUICE_PARAM_BALANCER_BLOCK_CHARS = 702,  /* default 128 */
  SLUICE_PARAM_BALANCER_MAX_BLOCKS = 703,   /* default 256 */
  SLUICE_PARAM_BALANCER_KV_CAPACITY_BLOCKS = 704, /* default 16384 */
  SLUICE_PARAM_BALANCER_IMBALANCE_ABS = 705,      /* default 2 */
  SLUICE_PARAM_BALANCER_WEIGHT_PREFIX_MILLI = 706,    /* default 3000 */
  SLUICE_PARAM_BALANCER_WEIGHT_QUEUE_MILLI = 707,     /* default 2000 */
  SLUICE_PARAM_BALANCER_WEIGHT_KV_CACHE_MILLI = 708,  /* default 2000 */
  SLUICE_PARAM_BALANCER_WEIGHT_IN_FLIGHT_MILLI = 709, /* default 1000 */
  SLUICE_PARAM_BALANCER_METRICS_MAX_AGE_NANOS = 710,  /* default 2 s */
  SLUICE_PARAM_BALANCER_FAILURES_BEFORE_COOLDOWN = 711,        /* default 1 */
  SLUICE_PARAM_BALANCER_COOLDOWN_RATE_LIMITED_NANOS = 712,     /* default 60 s */
  SLUICE_PARAM_BALANCER_COOLDOWN_AUTH_NANOS = 713,             /* default 10 s */
  SLUICE_PARAM_BALANCER_COOLDOWN_CONNECTION_NANOS = 714,       /* default 10 s */
  SLUICE_PARAM_BALANCER_COOLDOWN_TIMEOUT_NANOS = 715,          /* default 0 */
  SLUICE_PARAM_BALANCER_COOLDOWN_SERVER_NANOS = 716,           /* default 0 */
  SLUICE_PARAM_BALANCER_OUTLIER_CONSECUTIVE_FAILURES = 717,    /* default 5; 0 disables */
  SLUICE_PARAM_BALANCER_OUTLIER_BASE_EJECTION_NANOS = 718,     /* default 30 s */
  SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_NANOS = 719,      /* default 300 s */
  SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_PERCENT = 720,    /* default 10 */
  SLUICE_PARAM_BALANCER_SCORE_LOAD_SLACK_MILLI = 721,          /* default 4000 (4 requests) */
  SLUICE_PARAM_BALANCER_KV_SESSION_HALF_LIFE_NANOS = 722,      /* default 30 s */
  SLUICE_PARAM_BALANCER_KV_FULL_USAGE_MILLI = 723,             /* default 900 (0.9) */
  /* Experimental. With sluice_options_set_redis_store and SLUICE_PARAM_REDIS_NAME (required
   * then): cooldowns, ejections, in-flight counts and (prefix strategies) routes shared
   * fleet-wide through Redis, read again when older than this. Default 250 ms, in [1 ms, 1 min]. */
  SLUICE_PARAM_BALANCER_REDIS_REFRESH_NANOS = 724,
  SLUICE_PARAM_BALANCER_MIN_SHARED_AFFINITY_BLOCKS = 725,      /* default 16 */
  /* The fallback policy (sluice/fallback_policy.h has every default and rule). */
  SLUICE_PARAM_FALLBACK_MAX_RETRIES_PER_TARGET = 800,  /* default 1 */
  SLUICE_PARAM_FALLBACK_DEADLINE_NANOS = 801,          /* default 120 s */
  SLUICE_PARAM_FALLBACK_ATTEMPT_TIMEOUT_NANOS = 802,   /* default 0: the deadline only */
  SLUICE_PARAM_FALLBACK_BACKOFF_BASE_NANOS = 803,      /* default 25 ms */
  SLUICE_PARAM_FALLBACK_BACKOFF_MAX_NANOS = 804,       /* default 250 ms */
  SLUICE_PARAM_FALLBACK_RETRY_BUDGET_RATIO_MILLI = 805,/* default 200 (20 %) */
  SLUICE_PARAM_FALLBACK_RETRY_BUDGET_MIN = 806,        /* default 3 */
  SLUICE_PARAM_FALLBACK_CONTEXT_LENGTH_TARGET = 807,   /* string: a target's name; default none */
  /* Every target's circuit breaker (sluice/circuit_breaker.h). Ratios are in thousandths. */
  SLUICE_PARAM_BREAKER_CONSECUTIVE_FAILURES = 820,     /* default 5; 0 disables */
  SLUICE_PARAM_BREAKER_FAILURE_RATIO_MILLI = 821,      /* default 500; 0 disables */
  SLUICE_PARAM_BREAKER_SLOW_CALL_RATIO_MILLI = 822,    /* default 0 (disabled) */
  SLUICE_PARAM_BREAKER_SLOW_CALL_NANOS = 823,          /* default 30 s */
  SLUICE_PARAM_BREAKER_WINDOW_NANOS = 824,             /* default 10 s */
  SLUICE_PARAM_BREAKER_MINIMUM_CALLS = 825,            /* default 10 */
  SLUICE_PARAM_BREAKER_OPEN_NANOS = 826,               /* default 5 s */
  SLUICE_PARAM_BREAKER_OPEN_MULTIPLIER_MILLI = 827,    /* default 2000 */
  SLUICE_PARAM_BREAKER_MAX_OPEN_NANOS = 828,           /* default 5 min */
  SLUICE_PARAM_BREAKER_HALF_OPEN_PROBES = 829,         /* default 3 */
  /* What a failure does: SLUICE_PARAM_FALLBACK_ACTION + a sluice_failure (1..9), the value a
   * sluice_fallback_action. E.g. SLUICE_PARAM_FALLBACK_ACTION + SLUICE_FAIL_SERVER. */
  SLUICE_PARAM_FALLBACK_ACTION = 840,
  /* The response cache (sluice/response_cache.h). */
  SLUICE_PARAM_CACHE_MAX_BYTES = 900,              /* default 256 MiB */
  SLUICE_PARAM_CACHE_SHARDS = 901,                 /* default 16 (a power of two) */
  SLUICE_PARAM_CACHE_DEFAULT_TTL_NANOS = 902,      /* default 1 hour */
  SLUICE_PARAM_CACHE_PROTECTED_SHARE_MILLI = 903,  /* default 800 */
  SLUICE_PARAM_CACHE_ADMISSION = 904,              /* 1 (default): TinyLFU on; 0: off */
  SLUICE_PARAM_CACHE_STORE_TOOL_CALLS = 905,       /* 1 (default): store answers calling tools */
  /* Deprecated: SLUICE_PARAM_REDIS_NAME (see above). */
  SLUICE_PARAM_CACHE_REDIS_NAME SLUICE_DEPRECATED_ENUMERATOR("use SLUICE_PARAM_REDIS_NAME") = 906,
  /* Usage metering (sluice/usage.h; the section "usage metering" below). */
  SLUICE_PARAM_USAGE_MAX_EVENT_BYTES = 1000,          /* usage reader; default 1 MiB; >= 1 */
  SLUICE_PARAM_ESTIMATE_TOKENS_PER_MESSAGE = 1100,    /* estimates; default 3; >= 0 */
  SLUICE_PARAM_ESTIMATE_TOKENS_PER_REQUEST = 1101,    /* estimates; default 3; >= 0 */
  SLUICE_PARAM_ESTIMATE_TOKENS_PER_IMAGE = 1102,      /* estimates; default 765; >= 0 */
  SLUICE_PARAM_ESTIMATE_CJK_CHARS_PER_TOKEN_MILLI = 1103, /* estimates; default 1200; > 0 */
  SLUICE_PARAM_ESTIMATE_SCALE_MILLI = 1104            /* estimates; default 1000; >= 0 */
} sluice_param;

/* How a window counts (sluice/window.h, WindowKind). SLUICE_WINDOW_SLIDING: at most `limit` in
 * any interval of `period_nanos`, exactly; 1 <= limit <= SLUICE_MAX_SLIDING_LIMIT, burst 0 (or
 * the limit); rate limiters only, strict cluster mode only; a host region then takes per key
 * 8 * (3 + limit) bytes per window (size SLUICE_PARAM_MAX_KEYS: the default is 1048576 keys). */
typedef enum sluice_window_kind {
  SLUICE_WINDOW_GCRA = 0,
  SLUICE_WINDOW_SLIDING = 1
} sluice_window_kind;
#define SLUICE_MAX_SLIDING_LIMIT 1000

/* Leased mode is for rate limiters only (sluice/cluster.h states its overshoot bound). */
typedef enum sluice_cluster_mode {
  SLUICE_CLUSTER_STRICT = 0,
  SLUICE_CLUSTER_LEASED = 1
} sluice_cluster_mode;

typedef enum sluice_failure_mode {
  SLUICE_FAILURE_ALLOW = 0,
  SLUICE_FAILURE_DENY = 1,
  SLUICE_FAILURE_LOCAL = 2
} sluice_failure_mode;

/* ---- cluster scope (sluice/redis_store.h) ---------------------------------------------- */
typedef struct sluice_redis_store sluice_redis_store;
/* Reads the SLUICE_PARAM_REDIS_* parameters. Does not connect yet (the background thread
 * connects on first use). */
SLUICE_API int sluice_redis_store_create(const sluice_options* options, sluice_redis_store** out);
/* Objects using the store keep it alive; destroying the handle drops only this reference. */
SLUICE_API void sluice_redis_store_destroy(sluice_redis_store* store);

SLUICE_API sluice_options* sluice_options_create(void); /* NULL only when out of memory */
SLUICE_API void sluice_options_destroy(sluice_options* options);
/* SLUICE_INVALID_ARGUMENT for an unknown parameter number. Values are checked at create. */
SLUICE_API int sluice_options_set(sluice_options* options, int param, int64_t value);
/* Sets a string parameter (SLUICE_PARAM_SHARED_REGION, SLUICE_PARAM_REDIS_HOST, ...);
 * `(value, len)`, len 0 clears it. SLUICE_INVALID_ARGUMENT for a parameter that is not a string. */
SLUICE_API int sluice_options_set_string(sluice_options* options, int param, const char* value,
                                         size_t len);
/* Removes a shared-memory region; SLUICE_NOT_FOUND if there is none by that name. */
SLUICE_API int sluice_shared_region_remove(const char* name, size_t len);
/* Cluster scope: the store an object keeps its state in (NULL clears it). */
SLUICE_API int sluice_options_set_redis_store(sluice_options* options, sluice_redis_store* store);
/* Adds a window (rate limiter, token budget): `limit` per `period_nanos`, burst 0 = limit. Its
 * kind is SLUICE_PARAM_WINDOW_KIND's, the same for every window of the object. */
SLUICE_API int sluice_options_add_window(sluice_options* options, int64_t limit,
                                         int64_t period_nanos, int64_t burst);

/* ---- rate limiter (sluice/rate_limiter.h) ---------------------------------------------- */
typedef struct sluice_rate_limiter sluice_rate_limiter;
SLUICE_API int sluice_rate_limiter_create(const sluice_options* options, const sluice_clock* clock,
                                          sluice_rate_limiter** out);
SLUICE_API void sluice_rate_limiter_destroy(sluice_rate_limiter* limiter);
/* Takes `cost` from every window of the key, or nothing; never waits. `out` may be NULL. A
 * refusal is SLUICE_OK with out->allowed == 0. (RateLimiter::TryAcquire) */
SLUICE_API int sluice_rate_limiter_try_acquire(sluice_rate_limiter* limiter, const char* key,
                                               size_t key_len, int64_t cost, sluice_decision* out);
/* The same at an explicit time on the limiter's clock. */
SLUICE_API int sluice_rate_limiter_try_acquire_at(sluice_rate_limiter* limiter, const char* key,
                                                  size_t key_len, int64_t cost, int64_t now_nanos,
                                                  sluice_decision* out);
/* The yes/no fast path (RateLimiter::Allow): 1 when `cost` was taken, 0 when it was not. Never
 * negative: an error (a NULL limiter, a bad key or cost, a Redis configuration error) is a 0,
 * as in C++, with sluice_last_error_message() naming it when this layer found it. Callers that
 * must tell an error from a refusal call sluice_rate_limiter_try_acquire. */
SLUICE_API int sluice_rate_limiter_allow(sluice_rate_limiter* limiter, const char* key,
                                         size_t key_len, int64_t cost);
/* Deprecated names of sluice_rate_limiter_try_acquire(_at): the same calls. */
SLUICE_API SLUICE_DEPRECATED("use sluice_rate_limiter_try_acquire")
int sluice_rate_limiter_acquire(sluice_rate_limiter* limiter, const char* key, size_t key_len,
                                int64_t cost, sluice_decision* out);
SLUICE_API SLUICE_DEPRECATED("use sluice_rate_limiter_try_acquire_at")
int sluice_rate_limiter_acquire_at(sluice_rate_limiter* limiter, const char* key, size_t key_len,
                                   int64_t cost, int64_t now_nanos, sluice_decision* out);

/* ---- leaky bucket (sluice/leaky_bucket.h) ---------------------------------------------- */
typedef struct sluice_leaky_bucket sluice_leaky_bucket;
SLUICE_API int sluice_leaky_bucket_create(const sluice_options* options, const sluice_clock* clock,
                                          sluice_leaky_bucket** out);
SLUICE_API void sluice_leaky_bucket_destroy(sluice_leaky_bucket* bucket);
/* Books `cost`; never waits. Allowed: wait out->delay_nanos, then go. Refused:
 * out->retry_after_nanos. (LeakyBucket::TryAcquire) */
SLUICE_API int sluice_leaky_bucket_try_acquire(sluice_leaky_bucket* bucket, const char* key,
                                               size_t key_len, int64_t cost, sluice_decision* out);
/* Deprecated name of sluice_leaky_bucket_try_acquire: the same call. */
SLUICE_API SLUICE_DEPRECATED("use sluice_leaky_bucket_try_acquire")
int sluice_leaky_bucket_acquire(sluice_leaky_bucket* bucket, const char* key, size_t key_len,
                                int64_t cost, sluice_decision* out);

/* ---- concurrency limiter (sluice/concurrency_limiter.h) -------------------------------- */
typedef struct sluice_concurrency_limiter sluice_concurrency_limiter;
typedef struct sluice_permit sluice_permit;
SLUICE_API int sluice_concurrency_limiter_create(const sluice_options* options,
                                                 const sluice_clock* clock,
                                                 sluice_concurrency_limiter** out);
/* REQUIRES: every permit of the limiter has been destroyed. */
SLUICE_API void sluice_concurrency_limiter_destroy(sluice_concurrency_limiter* limiter);
/* Takes a slot if one is free; never waits. *permit is set to NULL first; on SLUICE_OK it is a
 * new permit when out->allowed. (ConcurrencyLimiter::TryAcquire) */
SLUICE_API int sluice_concurrency_limiter_try_acquire(sluice_concurrency_limiter* limiter,
                                                      const char* key, size_t key_len,
                                                      sluice_decision* out,
                                                      sluice_permit** permit);
/* Deprecated name of sluice_concurrency_limiter_try_acquire: the same call. */
SLUICE_API SLUICE_DEPRECATED("use sluice_concurrency_limiter_try_acquire")
int sluice_concurrency_limiter_acquire(sluice_concurrency_limiter* limiter, const char* key,
                                       size_t key_len, sluice_decision* out,
                                       sluice_permit** permit);
/* Permits held for the key (expired leases excluded); -1 if an argument is bad. */
SLUICE_API int64_t sluice_concurrency_limiter_in_flight(sluice_concurrency_limiter* limiter,
                                                        const char* key, size_t key_len);
/* SLUICE_FAILED_PRECONDITION if the lease had expired and was reclaimed. Idempotent. */
SLUICE_API int sluice_permit_release(sluice_permit* permit);
/* Extends the lease to `lease_nanos` from now (0: the limiter's lease). */
SLUICE_API int sluice_permit_renew(sluice_permit* permit, int64_t lease_nanos);
/* Releases the slot if still held, then frees the handle. */
SLUICE_API void sluice_permit_destroy(sluice_permit* permit);

/* ---- token budget (sluice/token_budget.h) ---------------------------------------------- */
typedef struct sluice_token_budget sluice_token_budget;
typedef struct sluice_reservation sluice_reservation;
SLUICE_API int sluice_token_budget_create(const sluice_options* options, const sluice_clock* clock,
                                          sluice_token_budget** out);
/* REQUIRES: every reservation of the budget has been destroyed. */
SLUICE_API void sluice_token_budget_destroy(sluice_token_budget* budget);
/* Reserves `estimate` tokens; never waits. *reservation is set to NULL first; on SLUICE_OK it
 * is new when out->allowed. (TokenBudget::TryReserve) */
SLUICE_API int sluice_token_budget_try_reserve(sluice_token_budget* budget, const char* key,
                                               size_t key_len, int64_t estimate,
                                               sluice_decision* out,
                                               sluice_reservation** reservation);
/* Deprecated name of sluice_token_budget_try_reserve: the same call. */
SLUICE_API SLUICE_DEPRECATED("use sluice_token_budget_try_reserve")
int sluice_token_budget_reserve(sluice_token_budget* budget, const char* key, size_t key_len,
                                int64_t estimate, sluice_decision* out,
                                sluice_reservation** reservation);
/* Charges after the fact; may put the key in debt. */
SLUICE_API int sluice_token_budget_charge(sluice_token_budget* budget, const char* key,
                                          size_t key_len, int64_t tokens, sluice_decision* out);
/* Replaces the estimate with the real usage; `out` (may be NULL) gets the balance. */
SLUICE_API int sluice_reservation_settle(sluice_reservation* reservation, int64_t actual,
                                         sluice_decision* out);
SLUICE_API int sluice_reservation_cancel(sluice_reservation* reservation);
/* An unsettled reservation stays charged as estimated. */
SLUICE_API void sluice_reservation_destroy(sluice_reservation* reservation);

/* ---- balancer (sluice/balancer.h) ------------------------------------------------------- */
typedef enum sluice_balancer_strategy {
  SLUICE_BALANCER_ROUND_ROBIN = 0,
  SLUICE_BALANCER_WEIGHTED_ROUND_ROBIN = 1,
  SLUICE_BALANCER_LEAST_REQUEST = 2,
  SLUICE_BALANCER_PREFIX_AFFINITY = 3,
  SLUICE_BALANCER_SCORED = 4,
  SLUICE_BALANCER_CONSISTENT_HASH = 5
} sluice_balancer_strategy;

/* Deprecated with sluice_pick_complete: the failure classes before sluice_failure was the one
 * vocabulary. Each maps onto a sluice_failure: RATE_LIMITED, AUTH, SERVER, CLIENT, TIMEOUT by
 * name, CONNECTION to SLUICE_FAIL_CONNECT, ABANDONED to SLUICE_FAIL_ABANDONED. */
typedef enum sluice_outcome_error {
  SLUICE_OUTCOME_NONE = 0,
  SLUICE_OUTCOME_RATE_LIMITED = 1,
  SLUICE_OUTCOME_AUTH = 2,
  SLUICE_OUTCOME_CONNECTION = 3,
  SLUICE_OUTCOME_TIMEOUT = 4,
  SLUICE_OUTCOME_SERVER = 5,
  SLUICE_OUTCOME_CLIENT = 6,
  SLUICE_OUTCOME_ABANDONED = 7
} sluice_outcome_error;

typedef struct sluice_balancer sluice_balancer;
typedef struct sluice_pick sluice_pick;
/* Reads the SLUICE_PARAM_BALANCER_* parameters, and for host-shared state (in-flight counts,
 * cooldowns, ejections, the round-robin cursor, prefix strategies' routes)
 * SLUICE_PARAM_SHARED_REGION (with SLUICE_PARAM_MAX_IN_FLIGHT, default 256, and
 * SLUICE_PARAM_LEASE_NANOS, default 10 min); with a store (sluice_options_set_redis_store),
 * SLUICE_PARAM_REDIS_NAME and SLUICE_PARAM_BALANCER_REDIS_REFRESH_NANOS (experimental):
 * cooldowns, ejections, in-flight counts and routes shared by every host. Thread-safe, like
 * the C++ object. */
SLUICE_API int sluice_balancer_create(const sluice_options* options, const sluice_clock* clock,
                                      sluice_balancer** out);
/* Picks made by the balancer stay valid after it is destroyed. */
SLUICE_API void sluice_balancer_destroy(sluice_balancer* balancer);
/* `model` (may be empty) restricts the endpoint to requests for that model. kv_capacity_blocks
 * 0: the balancer's default. SLUICE_ALREADY_EXISTS if the id is taken. */
SLUICE_API int sluice_balancer_add_endpoint(sluice_balancer* balancer, const char* id, size_t id_len,
                                            int64_t weight, int64_t max_concurrency,
                                            int64_t kv_capacity_blocks, const char* model,
                                            size_t model_len);
SLUICE_API int sluice_balancer_remove_endpoint(sluice_balancer* balancer, const char* id,
                                               size_t id_len);
/* Feeds the endpoint's scraped vLLM / SGLang Prometheus text. */
SLUICE_API int sluice_balancer_update_metrics(sluice_balancer* balancer, const char* id,
                                              size_t id_len, const char* text, size_t text_len);
/* Requests the endpoint has in flight, or -1 if there is no endpoint by that id. */
SLUICE_API int64_t sluice_balancer_in_flight(const sluice_balancer* balancer, const char* id,
                                             size_t id_len);
/* Picks for a raw OpenAI-style JSON body (parsed: model, prefix). `affinity_key` may be empty.
 * SLUICE_INVALID_ARGUMENT for a malformed body (the message names the field), SLUICE_NOT_FOUND
 * when no endpoint serves the model, SLUICE_RESOURCE_EXHAUSTED when all are at max
 * concurrency, SLUICE_UNAVAILABLE when all are cooling down. */
SLUICE_API int sluice_balancer_pick(sluice_balancer* balancer, const char* body, size_t body_len,
                                    const char* affinity_key, size_t affinity_key_len,
                                    sluice_pick** out);
/* The same for a model name alone (may be empty: any endpoint). */
SLUICE_API int sluice_balancer_pick_model(sluice_balancer* balancer, const char* model,
                                          size_t model_len, const char* affinity_key,
                                          size_t affinity_key_len, sluice_pick** out);
/* The chosen endpoint's id; not NUL-terminated, valid while the pick lives. */
SLUICE_API const char* sluice_pick_endpoint_id(const sluice_pick* pick, size_t* len);
/* Leading prefix blocks the endpoint was believed to hold (Pick::matched_blocks). */
SLUICE_API int64_t sluice_pick_matched_blocks(const sluice_pick* pick);
/* Reports how the attempt ended (Pick::Complete; only the first report counts). `failure` is a
 * sluice_failure (below): SLUICE_FAIL_NONE classifies `http_status` as sluice_classify does
 * (2xx/3xx success, 429 rate limited, 401/403 auth, 5xx server, other 4xx client); any other
 * class is taken as stated (a transport failure has http_status 0). */
SLUICE_API int sluice_pick_complete_failure(sluice_pick* pick, int http_status, int failure,
                                            int64_t ttft_nanos, int64_t latency_nanos);
/* Deprecated: the same with `error` a sluice_outcome_error (mapped onto sluice_failure). The
 * number of the class cannot change under this name (the ABI), hence the new function. */
SLUICE_API SLUICE_DEPRECATED("use sluice_pick_complete_failure")
int sluice_pick_complete(sluice_pick* pick, int http_status, int error, int64_t ttft_nanos,
                         int64_t latency_nanos);
/* A pick destroyed without sluice_pick_complete counts as abandoned. */
SLUICE_API void sluice_pick_destroy(sluice_pick* pick);

/* ---- failures (sluice/failure.h) -------------------------------------------------------- */
typedef enum sluice_transport_error {
  SLUICE_TRANSPORT_NONE = 0,
  SLUICE_TRANSPORT_CONNECT = 1,
  SLUICE_TRANSPORT_TIMEOUT = 2,
  SLUICE_TRANSPORT_RESET = 3
} sluice_transport_error;

typedef enum sluice_failure {
  SLUICE_FAIL_NONE = 0,
  SLUICE_FAIL_CONNECT = 1,
  SLUICE_FAIL_TIMEOUT = 2,
  SLUICE_FAIL_RESET = 3,
  SLUICE_FAIL_RATE_LIMITED = 4,
  SLUICE_FAIL_SERVER = 5,
  SLUICE_FAIL_AUTH = 6,
  SLUICE_FAIL_CONTEXT_LENGTH = 7,
  SLUICE_FAIL_CONTENT_FILTER = 8,
  SLUICE_FAIL_CLIENT = 9,
  SLUICE_FAIL_ABANDONED = 10 /* the caller gave the attempt up unreported (a destroyed pick) */
} sluice_failure;

/* The failure class of an outcome (a sluice_failure); -1 if `transport` is not one. */
SLUICE_API int sluice_classify(int http_status, int transport, const char* error_body,
                               size_t error_body_len);
/* A Retry-After value ("120", "1.5", an HTTP-date) as nanoseconds from `now_unix_nanos`.
 * SLUICE_INVALID_ARGUMENT if it is malformed. */
SLUICE_API int sluice_parse_retry_after(const char* value, size_t len, int64_t now_unix_nanos,
                                        int64_t* out_nanos);

/* ---- fallback policy (sluice/fallback_policy.h) ----------------------------------------- */
typedef enum sluice_fallback_action {
  SLUICE_ACTION_RETRY_SAME = 0,
  SLUICE_ACTION_NEXT_TARGET = 1,
  SLUICE_ACTION_FATAL = 2
} sluice_fallback_action;

typedef enum sluice_step_kind {
  SLUICE_STEP_ATTEMPT = 0,
  SLUICE_STEP_SUCCEEDED = 1,
  SLUICE_STEP_FAILED = 2
} sluice_step_kind;

typedef enum sluice_breaker_state {
  SLUICE_BREAKER_CLOSED = 0,
  SLUICE_BREAKER_OPEN = 1,
  SLUICE_BREAKER_HALF_OPEN = 2
} sluice_breaker_state;

/* One target of the chain. The balancer (may be NULL) is shared: the policy keeps it alive. */
typedef struct sluice_fallback_target {
  const char* name;
  size_t name_len;
  const char* model; /* may be NULL with model_len 0 */
  size_t model_len;
  sluice_balancer* balancer;
} sluice_fallback_target;

/* Where the call stands (FallbackPolicy::Step). Part of the ABI, like sluice_decision. */
typedef struct sluice_fallback_step {
  int kind;                 /* a sluice_step_kind */
  int64_t attempt;          /* attempts handed out so far */
  int64_t target_index;     /* SLUICE_STEP_ATTEMPT: the target, in the order given to create */
  int64_t delay_nanos;      /* wait this long before sending */
  int64_t timeout_nanos;    /* the attempt's limit after the delay; -1: none */
  uint8_t retry;            /* the same target as the previous attempt */
  int failure;              /* the previous attempt's sluice_failure */
  int status;               /* SLUICE_STEP_FAILED: why (a sluice_status); SLUICE_OK otherwise */
  int64_t retry_after_nanos;/* SLUICE_STEP_FAILED with SLUICE_UNAVAILABLE: when to come back */
} sluice_fallback_step;

typedef struct sluice_fallback_policy sluice_fallback_policy;
typedef struct sluice_fallback_call sluice_fallback_call;
/* Reads the SLUICE_PARAM_FALLBACK_*, SLUICE_PARAM_BREAKER_* and action parameters. */
SLUICE_API int sluice_fallback_policy_create(const sluice_options* options,
                                             const sluice_fallback_target* targets,
                                             size_t target_count, const sluice_clock* clock,
                                             sluice_fallback_policy** out);
/* Calls made by the policy stay valid after it is destroyed. */
SLUICE_API void sluice_fallback_policy_destroy(sluice_fallback_policy* policy);
/* A target's breaker state (a sluice_breaker_state), or -1 for a bad argument. */
SLUICE_API int sluice_fallback_policy_breaker_state(const sluice_fallback_policy* policy,
                                                    size_t target_index);
/* Starts a call (deadline_nanos 0: the policy's); `step` (may be NULL) gets its first step. */
SLUICE_API int sluice_fallback_policy_begin(sluice_fallback_policy* policy, int64_t deadline_nanos,
                                            sluice_fallback_call** out, sluice_fallback_step* step);
/* The current step's target name, model and (balanced targets) endpoint id; not
 * NUL-terminated, valid until the next call on `call`. */
SLUICE_API const char* sluice_fallback_call_target(const sluice_fallback_call* call, size_t* len);
SLUICE_API const char* sluice_fallback_call_model(const sluice_fallback_call* call, size_t* len);
SLUICE_API const char* sluice_fallback_call_endpoint(const sluice_fallback_call* call, size_t* len);
/* Reports the current attempt's outcome; `step` gets the next step. A failed call's message is
 * sluice_last_error_message() right after the step that ended it. */
SLUICE_API int sluice_fallback_call_next(sluice_fallback_call* call, int http_status, int transport,
                                         const char* error_body, size_t error_body_len,
                                         int64_t retry_after_nanos, int64_t latency_nanos,
                                         sluice_fallback_step* step);
/* Streaming: the current attempt's first byte reached the client; no fallback from now on. */
SLUICE_API int sluice_fallback_call_mark_first_byte(sluice_fallback_call* call);
/* An unfinished call gives back what it holds. */
SLUICE_API void sluice_fallback_call_destroy(sluice_fallback_call* call);

/* ---- response cache (sluice/cache_key.h, sluice/response_cache.h, sluice/single_flight.h) - */
typedef struct sluice_cache_key sluice_cache_key;
/* The key of an OpenAI-style request body: RFC 8785 canonical JSON without the fields that do
 * not decide the answer, prefixed by `name_space` (may be empty), hashed with XXH3-128.
 * SLUICE_INVALID_ARGUMENT names the JSON error. */
SLUICE_API int sluice_cache_key_create(const char* body, size_t body_len, const char* name_space,
                                       size_t name_space_len, sluice_cache_key** out);
SLUICE_API void sluice_cache_key_destroy(sluice_cache_key* key);
SLUICE_API int sluice_cache_key_digest(const sluice_cache_key* key, uint64_t* hi, uint64_t* lo);
/* The namespace, 0x1F, and the canonical request; valid while the key lives. */
SLUICE_API const char* sluice_cache_key_canonical(const sluice_cache_key* key, size_t* len);

/* A stored answer: a body, or the SSE chunks of a streamed answer. Immutable; valid until
 * destroyed, even after its entry is evicted. */
typedef struct sluice_cached_answer sluice_cached_answer;
SLUICE_API uint8_t sluice_cached_answer_streamed(const sluice_cached_answer* answer);
SLUICE_API const char* sluice_cached_answer_body(const sluice_cached_answer* answer, size_t* len);
SLUICE_API size_t sluice_cached_answer_chunk_count(const sluice_cached_answer* answer);
/* NULL (len 0) for an index out of range. */
SLUICE_API const char* sluice_cached_answer_chunk(const sluice_cached_answer* answer, size_t index,
                                                  size_t* len);
SLUICE_API void sluice_cached_answer_destroy(sluice_cached_answer* answer);

typedef struct sluice_response_cache sluice_response_cache;
/* Reads the SLUICE_PARAM_CACHE_* parameters. Thread-safe, like the C++ object. */
SLUICE_API int sluice_response_cache_create(const sluice_options* options,
                                            const sluice_clock* clock,
                                            sluice_response_cache** out);
/* Answers and fetches made by the cache stay valid after it is destroyed. */
SLUICE_API void sluice_response_cache_destroy(sluice_response_cache* cache);
/* *out is the stored answer, or NULL on a miss. */
SLUICE_API int sluice_response_cache_get(sluice_response_cache* cache, const sluice_cache_key* key,
                                         sluice_cached_answer** out);
/* Stores a body (`chunk_count` 0) or `chunk_count` SSE chunks for `ttl_nanos` (0: the default).
 * *stored (may be NULL) is 0 when it was not stored (too large, or turned away by TinyLFU). */
SLUICE_API int sluice_response_cache_put(sluice_response_cache* cache, const sluice_cache_key* key,
                                         const char* body, size_t body_len,
                                         const char* const* chunks, const size_t* chunk_lens,
                                         size_t chunk_count, int64_t ttl_nanos, uint8_t* stored);
/* Removes the key's entry (in the Redis tier too). */
SLUICE_API int sluice_response_cache_erase(sluice_response_cache* cache,
                                           const sluice_cache_key* key);

/* Counters of a cache (see ResponseCache::Stats in sluice/response_cache.h). */
typedef struct sluice_cache_stats {
  int64_t hits;
  int64_t misses;
  int64_t inserts;
  int64_t rejected;           /* turned away by the W-TinyLFU admission filter */
  int64_t evictions;
  int64_t expirations;
  int64_t collisions;         /* digest matches whose canonical bytes differed */
  int64_t merged_waits;       /* misses that waited for another caller's upstream call */
  int64_t leader_failovers;   /* leaders that gave up and passed the lead on */
  int64_t skipped_tool_calls; /* answers not stored because they call tools */
  int64_t redis_hits;         /* the Redis tier (SLUICE_PARAM_REDIS_NAME) */
  int64_t redis_misses;
  int64_t redis_writes;
  int64_t redis_errors;       /* Redis down, slow, or an unreadable record: never an error here */
  int64_t entries;
  int64_t bytes;              /* keys, answers and per-entry overhead: never above max_bytes */
} sluice_cache_stats;
SLUICE_API int sluice_response_cache_stats(const sluice_response_cache* cache,
                                           sluice_cache_stats* out);

/* ---- usage metering (sluice/usage.h) ---------------------------------------------------- */
/* How many tokens a call used, read from the provider's answer (streamed or not), and how many
 * its prompt will use, estimated from the request: what a token budget settles and reserves.
 * sluice/usage.h is the contract (each provider's fields, the SSE rules, saturation) and
 * docs/usage.md has the measured error of the estimate.
 *
 * Example (a gateway relaying a streamed OpenAI answer):
 *
 *   char* body = NULL;
 *   size_t body_len = 0;
 *   if (sluice_include_usage_in_stream(req, req_len, &body, &body_len) != SLUICE_OK) {
 *     ... not JSON: send `req` as it is ...
 *   }
 *   int64_t estimate = 0;
 *   sluice_estimate_prompt_tokens(body, body_len, NULL, &estimate);
 *   ... sluice_token_budget_try_reserve(budget, key, key_len, estimate + max_tokens, &d, &r) ...
 *   sluice_usage_reader* reader = NULL;
 *   sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, NULL, &reader);
 *   while ((n = read_upstream(buf, sizeof buf)) > 0) {
 *     sluice_usage_reader_feed(reader, buf, (size_t)n);
 *     write_client(buf, n);
 *   }
 *   sluice_usage usage;
 *   uint8_t found = 0;
 *   sluice_usage_reader_finish(reader, &usage, &found);
 *   sluice_reservation_settle(r, found ? usage.total_tokens : estimate + max_tokens, NULL);
 *   sluice_usage_reader_destroy(reader);
 *   sluice_free(body);
 *
 * Hostile answers never fail a call: bytes that cannot be read (not JSON, invalid UTF-8, a NUL,
 * an event over SLUICE_PARAM_USAGE_MAX_EVENT_BYTES, a negative or non-numeric count) are skipped
 * and counted in the reader's stats.
 *
 * Thread-safety: a reader is single-owner: one thread at a time feeds it, finishes it or reads
 * its stats (like the C++ UsageReader, it is not synchronized). A call that overlaps another
 * call on the same reader is refused with SLUICE_FAILED_PRECONDITION ("the reader is in use")
 * and changes nothing, instead of racing; destroying a reader while another thread uses it is
 * the caller's bug. The other functions share no state and are safe from any thread. */

/* Whose answer is read (sluice::Provider; sluice/usage.h maps each one's fields). */
typedef enum sluice_provider {
  SLUICE_PROVIDER_AUTO = 0,               /* detected from the first event (or body) */
  SLUICE_PROVIDER_OPENAI_CHAT = 1,        /* also Azure OpenAI, vLLM, DashScope compatible mode */
  SLUICE_PROVIDER_OPENAI_COMPLETIONS = 2,
  SLUICE_PROVIDER_OPENAI_RESPONSES = 3,
  SLUICE_PROVIDER_ANTHROPIC = 4,
  SLUICE_PROVIDER_GEMINI = 5,             /* also Vertex AI */
  SLUICE_PROVIDER_DASHSCOPE = 6           /* DashScope's native API */
} sluice_provider;
/* "auto", "openai_chat", "openai_completions", "openai_responses", "anthropic", "gemini",
 * "dashscope"; "unknown" for any other value. Static. */
SLUICE_API const char* sluice_provider_name(int provider);

/* The counts a provider reported (bits of sluice_usage.present). */
typedef enum sluice_usage_field {
  SLUICE_USAGE_PROMPT_TOKENS = 1 << 0,
  SLUICE_USAGE_COMPLETION_TOKENS = 1 << 1,
  SLUICE_USAGE_TOTAL_TOKENS = 1 << 2,
  SLUICE_USAGE_CACHED_TOKENS = 1 << 3,
  SLUICE_USAGE_CACHE_CREATION_TOKENS = 1 << 4,
  SLUICE_USAGE_REASONING_TOKENS = 1 << 5
} sluice_usage_field;

/* Counts saturate at 2^62, and so do their sums: a caller may add a few without overflow. */
#define SLUICE_USAGE_MAX_TOKENS ((int64_t)1 << 62)

/* The tokens one call used (sluice::Usage). Part of the ABI, like sluice_decision: fields are
 * never reordered or removed. A count whose bit is clear in `present` was not reported and
 * reads 0 (total_tokens then reads prompt_tokens + completion_tokens). */
typedef struct sluice_usage {
  int64_t prompt_tokens;         /* every prompt token, cached ones included */
  int64_t completion_tokens;     /* every generated token, reasoning ones included */
  int64_t total_tokens;          /* as reported, else prompt + completion */
  int64_t cached_tokens;         /* read from the prompt cache (part of prompt_tokens) */
  int64_t cache_creation_tokens; /* written to the prompt cache (Anthropic; part of prompt) */
  int64_t reasoning_tokens;      /* "thinking" tokens (part of completion_tokens) */
  uint32_t present;              /* sluice_usage_field bits; never 0 in a usage found */
  int provider;                  /* a sluice_provider: AUTO resolved to the one detected */
} sluice_usage;

/* What a reader skipped or read (UsageReader::Stats); for logs and tests. */
typedef struct sluice_usage_stats {
  int64_t events;           /* SSE events with data, and JSON elements, seen */
  int64_t usage_reports;    /* events that carried a usage object that was read */
  int64_t malformed_events; /* data that is not a JSON object (other than [DONE]) */
  int64_t oversized_events; /* dropped for exceeding SLUICE_PARAM_USAGE_MAX_EVENT_BYTES */
  int64_t rejected_counts;  /* counts ignored: negative, fractional, not a number */
} sluice_usage_stats;

/* Reads one answer fed in chunks (sluice::UsageReader). */
typedef struct sluice_usage_reader sluice_usage_reader;
/* `provider` is a sluice_provider. `options` may be NULL (every default); it may hold only
 * SLUICE_PARAM_USAGE_MAX_EVENT_BYTES, the most bytes one event's data (or one JSON element, or a
 * plain JSON body) may hold: a larger event is dropped as it arrives, so memory stays bounded
 * (default 1 MiB; raise it for the Responses API's long `response.completed`). */
SLUICE_API int sluice_usage_reader_create(int provider, const sluice_options* options,
                                          sluice_usage_reader** out);
SLUICE_API void sluice_usage_reader_destroy(sluice_usage_reader* reader);
/* Reads the next `len` bytes of the answer, cut anywhere (inside "data:", a JSON string, a UTF-8
 * sequence, a CRLF): any chunking gives the same usage. (NULL, 0) reads nothing.
 * SLUICE_FAILED_PRECONDITION after sluice_usage_reader_finish. */
SLUICE_API int sluice_usage_reader_feed(sluice_usage_reader* reader, const char* data,
                                        size_t len);
/* Ends the answer. When it reported a count, *found = 1 and *out is its usage; when it reported
 * none (an OpenAI stream without stream_options.include_usage, a cut-off stream), *found = 0 and
 * *out is all zeros (present 0, provider AUTO): SLUICE_OK either way. `found` may be NULL
 * (out->present tells). Calling it again gives the same result. */
SLUICE_API int sluice_usage_reader_finish(sluice_usage_reader* reader, sluice_usage* out,
                                          uint8_t* found);
/* The reader's counters so far (after finish too). */
SLUICE_API int sluice_usage_reader_stats(const sluice_usage_reader* reader,
                                         sluice_usage_stats* out);

/* The usage of a whole answer in memory (a JSON body, or a whole SSE stream): a reader fed
 * `body` at once, its SLUICE_PARAM_USAGE_MAX_EVENT_BYTES raised to the body's size. *out and
 * *found as sluice_usage_reader_finish gives them. */
SLUICE_API int sluice_read_usage(const char* body, size_t body_len, int provider,
                                 sluice_usage* out, uint8_t* found);

/* For an OpenAI-style chat or completions request with "stream": true: *out is the body with
 * "stream_options": {"include_usage": true}, so that the stream ends with a usage chunk. Any
 * other JSON object (not streaming, already asking for it, a Responses API request) comes back
 * unchanged, byte for byte. *out is a malloc'd NUL-terminated copy of *out_len bytes, freed
 * with sluice_free; *out = NULL and *out_len = 0 first. SLUICE_INVALID_ARGUMENT when the body is
 * not a JSON object or its "stream" / "stream_options" has the wrong type (the message names
 * it). Send the result to OpenAI-compatible APIs only: Anthropic's refuses the member. */
SLUICE_API int sluice_include_usage_in_stream(const char* body, size_t body_len, char** out,
                                              size_t* out_len);

/* A cheap estimate of a request body's prompt tokens (sluice::EstimatePromptTokens: OpenAI chat,
 * completions and Responses, Anthropic, Gemini and DashScope requests; other bytes are costed as
 * text), for sluice_token_budget_try_reserve before the call: add the answer's max_tokens to
 * reserve a whole call. *out is in [0, SLUICE_USAGE_MAX_TOKENS]. `options` may be NULL (every
 * default) and may hold only the SLUICE_PARAM_ESTIMATE_* parameters; a value out of their range
 * is SLUICE_INVALID_ARGUMENT, naming it. Any bytes are read (not JSON, invalid UTF-8). */
SLUICE_API int sluice_estimate_prompt_tokens(const char* body, size_t body_len,
                                             const sluice_options* options, int64_t* out);
/* The text part of the estimate alone: the tokens of `text` (no per-message overheads). */
SLUICE_API int sluice_estimate_text_tokens(const char* text, size_t text_len,
                                           const sluice_options* options, int64_t* out);

/* =========================================================================================
 * Experimental: may change between minor releases
 * =========================================================================================
 * The response cache's single flight and live streams (ResponseCache::Fetch, sluice/
 * single_flight.h): young, fd-based, and likely to change shape with the C++ Pending API. Each
 * declaration carries SLUICE_EXPERIMENTAL (zstd.h keeps such declarations in its
 * ZSTD_STATIC_LINKING_ONLY section; here they stay declared for every caller, so that programs
 * using them keep building). */

/* Single flight: a lookup that merges identical concurrent misses. With a Redis tier, a miss in
 * process is first a WAIT for Redis's answer (a HIT, or the LEAD on a Redis miss).
 *
 * Streams are tailed live: the leader calls sluice_fetch_append with each SSE chunk as it
 * relays it, then sluice_fetch_complete_stream; once a follower has called
 * sluice_fetch_take_chunks, its fd becomes readable at each chunk, and each call gives it the
 * chunks it has not had yet. A follower that never calls it is woken when the wait is over.
 * After the wait, a HIT's chunks from sluice_fetch_chunks_taken on are still to send. */
typedef enum sluice_fetch_kind {
  SLUICE_FETCH_HIT = 0,   /* sluice_fetch_answer has the stored answer */
  SLUICE_FETCH_LEAD = 1,  /* call upstream, then sluice_fetch_complete (destroying: gives up) */
  SLUICE_FETCH_WAIT = 2,  /* wait for sluice_fetch_fd to be readable, then sluice_fetch_resume */
  SLUICE_FETCH_BROKEN = 3 /* after the wait: the stream this follower tailed broke off */
} sluice_fetch_kind;
typedef struct sluice_fetch sluice_fetch;
/* *out is set to NULL first, then to the fetch (a HIT, the LEAD or a WAIT). */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_response_cache_fetch(sluice_response_cache* cache, const sluice_cache_key* key,
                                sluice_fetch** out);
/* A sluice_fetch_kind, or -1 for NULL. */
SLUICE_API SLUICE_EXPERIMENTAL int sluice_fetch_kind_of(const sluice_fetch* fetch);
/* SLUICE_FETCH_WAIT: an eventfd, readable once the leader finished (and, for a tailing
 * follower, at each chunk); -1 otherwise. */
SLUICE_API SLUICE_EXPERIMENTAL int sluice_fetch_fd(const sluice_fetch* fetch);
/* SLUICE_FETCH_WAIT: 1 once the wait is over (sluice_fetch_resume may be called), else 0. */
SLUICE_API SLUICE_EXPERIMENTAL uint8_t sluice_fetch_ready(const sluice_fetch* fetch);
/* After the wait: becomes SLUICE_FETCH_HIT (the leader's answer), SLUICE_FETCH_LEAD (the
 * leader gave up; this caller is next) or SLUICE_FETCH_BROKEN. SLUICE_FAILED_PRECONDITION if
 * the wait is not over. */
SLUICE_API SLUICE_EXPERIMENTAL int sluice_fetch_resume(sluice_fetch* fetch);
/* SLUICE_FETCH_HIT: a new handle on the answer. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_fetch_answer(const sluice_fetch* fetch, sluice_cached_answer** out);
/* SLUICE_FETCH_LEAD: hands the answer (a body, or `chunk_count` SSE chunks) to every follower
 * and, if `store`, stores it. *stored (may be NULL) says whether it was stored. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_fetch_complete(sluice_fetch* fetch, const char* body, size_t body_len,
                          const char* const* chunks, const size_t* chunk_lens, size_t chunk_count,
                          int64_t ttl_nanos, uint8_t store, uint8_t* stored);
/* SLUICE_FETCH_LEAD: streams one SSE chunk to the followers now. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_fetch_append(sluice_fetch* fetch, const char* chunk, size_t len);
/* SLUICE_FETCH_LEAD: completes with the appended chunks as the streamed answer (`store` 0 for a
 * stream that did not end well: followers get what there was, nothing is stored). */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_fetch_complete_stream(sluice_fetch* fetch, int64_t ttl_nanos, uint8_t store,
                                 uint8_t* stored);
/* SLUICE_FETCH_WAIT: the leader's chunks this follower has not taken yet, as a streamed answer
 * (possibly with no chunks). Quiets the fd until the next chunk. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_fetch_take_chunks(sluice_fetch* fetch, sluice_cached_answer** out);
/* How many chunks sluice_fetch_take_chunks has given out (0 for NULL). */
SLUICE_API SLUICE_EXPERIMENTAL size_t sluice_fetch_chunks_taken(const sluice_fetch* fetch);
/* A lead destroyed without completing gives up: the next follower leads. */
SLUICE_API SLUICE_EXPERIMENTAL void sluice_fetch_destroy(sluice_fetch* fetch);

/* ---- Governor (sluice/governor.h, sluice/policy.h) -------------------------------------------
 * Experimental: one object that runs a declarative policy (YAML or JSON: rules with matches,
 * keys and limits, upstreams, fallback chains, the response cache) and one call per request.
 * The policy language is young; these declarations follow it (SLUICE_EXPERIMENTAL).
 *
 *   sluice_governor* g = NULL;
 *   if (sluice_governor_create(yaml, yaml_len, "policy.yaml", 11, NULL, &g) != SLUICE_OK) {
 *     fprintf(stderr, "%s\n", sluice_last_error_message());  // "policy.yaml:12: rules[0]..."
 *   }
 *   sluice_attribute attributes[] = {{"tenant", 6, tenant, tenant_len}, {"model", 5, "m", 1}};
 *   sluice_admission* a = NULL;
 *   sluice_governor_admit(g, attributes, 2, body, body_len, -1, &a);
 *   if (!sluice_admission_allowed(a)) {
 *     size_t n = 0;
 *     sluice_admission_headers(a, SLUICE_HEADERS_ALL, &n);
 *     ... 429 with headers 0..n-1 of sluice_admission_header ...
 *   } else {
 *     ... call the model, read its usage ...
 *     sluice_admission_settle(a, usage_total_tokens);
 *   }
 *   sluice_admission_destroy(a);
 *   sluice_governor_destroy(g);
 *
 * Thread-safety: a governor is safe to share between threads (admit, reload and the key-limit
 * calls may run concurrently). An admission is used by one thread at a time.
 * Lifetimes: an admission keeps the policy it was admitted under alive; it stays fully usable
 * (settle, release, cached answers, begin_call) after a reload and after its governor is
 * destroyed. Destroy functions free the handle: set your pointer to NULL after destroying it
 * (destroying twice is undefined; destroying NULL does nothing). */
typedef struct sluice_governor sluice_governor;
typedef struct sluice_admission sluice_admission;

/* One request attribute (sluice::Attribute): "tenant", "app", "api_key", "end_user", "model",
 * "provider", "route", "ip", "header.<lower-case name>" or the caller's own. (ptr, len) strings
 * of at most SLUICE_MAX_KEY_LEN bytes each; any bytes (NUL and non-UTF-8 included). */
typedef struct sluice_attribute {
  const char* name;
  size_t name_len;
  const char* value;
  size_t value_len;
} sluice_attribute;

/* One window of a rule's limits (sluice::Window): `limit` per `period_nanos`, burst 0 = limit,
 * `kind` a sluice_window_kind. */
typedef struct sluice_window {
  int64_t limit;
  int64_t period_nanos;
  int64_t burst;
  int kind;
} sluice_window;

/* A rule's limits for one key (sluice::RuleLimits). The windows follow the rule's shape (as many
 * as the rule has, of the same kind); a count of 0 keeps none. shaping_rate 0: no shaping (then
 * the shaping_* fields other than the rate are not read). */
typedef struct sluice_rule_limits {
  const sluice_window* requests; /* may be NULL with request_count 0 */
  size_t request_count;          /* 0 to 8 */
  const sluice_window* tokens;   /* may be NULL with token_count 0; GCRA only */
  size_t token_count;            /* 0 to 8 */
  int64_t concurrency;           /* requests in flight at once; 0: no cap */
  int64_t shaping_rate;          /* requests per shaping_per_nanos; 0: no shaping */
  int64_t shaping_per_nanos;     /* 0: 1 s */
  int64_t shaping_burst;         /* 0: 1 */
  int64_t shaping_max_wait_nanos;/* 0: 1 s */
} sluice_rule_limits;

/* Which headers sluice_admission_headers renders (sluice::HeaderStyle); combine with `|`. */
typedef enum sluice_header_style {
  SLUICE_HEADERS_IETF = 1,        /* RateLimit-Policy and RateLimit */
  SLUICE_HEADERS_X_RATELIMIT = 2, /* X-RateLimit-Limit, -Remaining, -Reset */
  SLUICE_HEADERS_RETRY_AFTER = 4, /* Retry-After, on refusals only */
  SLUICE_HEADERS_ALL = 7
} sluice_header_style;

/* Parses a YAML (or JSON) policy and builds every object it names. `source` (may be empty:
 * "<string>") names the text in errors. `clock` NULL: the steady clock; a manual clock must
 * outlive the governor and its admissions. SLUICE_INVALID_ARGUMENT lists every error of the
 * policy, each naming the source, its line and the field ("policy.yaml:14: rules[1].requests[0]
 * .limit must be > 0, got 0"). */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_governor_create(const char* policy_text, size_t policy_len, const char* source,
                           size_t source_len, const sluice_clock* clock, sluice_governor** out);
/* The same from a file; an empty path reads the file named by $SLUICE_CONFIG. SLUICE_NOT_FOUND
 * or SLUICE_PERMISSION_DENIED name the path; a path holding a NUL byte is
 * SLUICE_INVALID_ARGUMENT. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_governor_create_from_file(const char* path, size_t path_len, const sluice_clock* clock,
                                     sluice_governor** out);
/* Admissions made by the governor stay valid after it is destroyed. */
SLUICE_API SLUICE_EXPERIMENTAL void sluice_governor_destroy(sluice_governor* governor);
/* Replaces the policy atomically: rules whose name, key, scope and limits are unchanged keep
 * their state. On any error the running policy is untouched (the errors as for create). */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_governor_reload(sluice_governor* governor, const char* policy_text, size_t policy_len,
                           const char* source, size_t source_len);
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_governor_reload_from_file(sluice_governor* governor, const char* path, size_t path_len);
/* Decides a request against every rule that matches (Governor::Admit); never waits in process
 * and host scope. `attributes` may be NULL with count 0; a name given twice: the first wins.
 * `body` (may be empty) is the OpenAI-style request body the cache key and the token estimate
 * read. `token_estimate` < 0: estimated from the body. *out is set to NULL first, then to the
 * admission: a refusal is SLUICE_OK with sluice_admission_allowed 0 (and an error that refused
 * the request, such as a full key table, is sluice_admission_status). Errors are bad arguments
 * only. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_governor_admit(sluice_governor* governor, const sluice_attribute* attributes,
                          size_t attribute_count, const char* body, size_t body_len,
                          int64_t token_estimate, sluice_admission** out);
/* Sets the limits of one key value of rule `rule` at run time (Governor::SetKeyLimits), or
 * clears them back to the policy's. This process only. SLUICE_NOT_FOUND names an unknown rule;
 * SLUICE_INVALID_ARGUMENT names the bad field of `limits`. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_governor_set_key_limits(sluice_governor* governor, const char* rule, size_t rule_len,
                                   const char* key, size_t key_len,
                                   const sluice_rule_limits* limits);
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_governor_clear_key_limits(sluice_governor* governor, const char* rule, size_t rule_len,
                                     const char* key, size_t key_len);
/* 1 when a rule is in cluster scope, so admit may wait for Redis; 0 otherwise or for NULL. */
SLUICE_API SLUICE_EXPERIMENTAL
uint8_t sluice_governor_waits_for_redis(const sluice_governor* governor);
/* The Prometheus text exposition (format 0.0.4) of every object the governor owns
 * (Governor::MetricsText; docs/policy.md, "Metrics"): a malloc'd, NUL-terminated copy in *out
 * and its length in *out_len, freed with sluice_free (convention 10). On error *out is NULL. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_governor_metrics_text(const sluice_governor* governor, char** out, size_t* out_len);
/* 1 when the request may go (after sluice_admission_delay_nanos); 0 when refused or NULL. */
SLUICE_API SLUICE_EXPERIMENTAL uint8_t sluice_admission_allowed(const sluice_admission* admission);
/* The binding decision: the refusing rule's, or when allowed the matched rule with the least
 * left; a request no rule matched is allowed with an empty decision. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_admission_decision(const sluice_admission* admission, sluice_decision* out);
/* The binding rule's name (empty if none matched, or for NULL); not NUL-terminated, valid while
 * the admission lives. */
SLUICE_API SLUICE_EXPERIMENTAL
const char* sluice_admission_rule(const sluice_admission* admission, size_t* len);
/* Why the request was refused when no limit refused it (a Redis configuration error, a full key
 * table): that status, with sluice_last_error_message() naming it; SLUICE_OK otherwise.
 * SLUICE_INVALID_ARGUMENT for NULL. */
SLUICE_API SLUICE_EXPERIMENTAL int sluice_admission_status(const sluice_admission* admission);
/* Shaping: wait this long before sending (0 when no shaping rule matched, or for NULL). */
SLUICE_API SLUICE_EXPERIMENTAL
int64_t sluice_admission_delay_nanos(const sluice_admission* admission);
/* Tokens reserved for the request (0 when no token rule matched, or for NULL). */
SLUICE_API SLUICE_EXPERIMENTAL
int64_t sluice_admission_token_estimate(const sluice_admission* admission);
/* The rules the request matched, in policy order: their count (0 for NULL), and the name of
 * one (NULL, len 0, for an index out of range); valid while the admission lives. */
SLUICE_API SLUICE_EXPERIMENTAL
size_t sluice_admission_matched_count(const sluice_admission* admission);
SLUICE_API SLUICE_EXPERIMENTAL
const char* sluice_admission_matched_rule(const sluice_admission* admission, size_t index,
                                          size_t* len);
/* Renders the binding decision as HTTP headers of `styles` (sluice_header_style bits, at least
 * one; the policy named after the rule) into the admission; *count gets their number. Each
 * rendering replaces the last. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_admission_headers(sluice_admission* admission, unsigned styles, size_t* count);
/* Header `index` of the last rendering: name and value, not NUL-terminated, valid until the
 * next rendering or destroy. SLUICE_INVALID_ARGUMENT for an index out of range. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_admission_header(const sluice_admission* admission, size_t index, const char** name,
                            size_t* name_len, const char** value, size_t* value_len);
/* Settles the token reservations with what the call used (a key whose call used more goes into
 * debt) and releases the permits. Only the first settle counts. */
SLUICE_API SLUICE_EXPERIMENTAL int sluice_admission_settle(sluice_admission* admission,
                                                           int64_t total_tokens);
/* The call never reached a provider: gives the token reservations back and releases the
 * permits (the request stays counted). */
SLUICE_API SLUICE_EXPERIMENTAL int sluice_admission_cancel(sluice_admission* admission);
/* Releases the permits; unsettled reservations stay charged as estimated. Idempotent. */
SLUICE_API SLUICE_EXPERIMENTAL int sluice_admission_release(sluice_admission* admission);
/* Releases what is held (as sluice_admission_release), then frees the handle. */
SLUICE_API SLUICE_EXPERIMENTAL void sluice_admission_destroy(sluice_admission* admission);
/* The request's cached answer: *out is set to NULL first, then to a new answer handle on a hit
 * (destroy it with sluice_cached_answer_destroy); it stays NULL on a miss, when the policy has no
 * cache, the cache skips the model, or the body is empty or not JSON. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_admission_cached_answer(sluice_admission* admission, sluice_cached_answer** out);
/* Stores the answer (a body, or `chunk_count` SSE chunks) under the request's key; *stored (may
 * be NULL) is set to 0 first, and stays 0 when it was not stored (no cache, a refused request,
 * a model the cache skips, too large, turned away by TinyLFU). */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_admission_store_answer(sluice_admission* admission, const char* body, size_t body_len,
                                  const char* const* chunks, const size_t* chunk_lens,
                                  size_t chunk_count, uint8_t* stored);
/* Starts the fallback call for the request's model (the policy's chain naming it, else its chain
 * without models), as sluice_fallback_policy_begin does; deadline_nanos 0: the chain's.
 * SLUICE_NOT_FOUND when the policy has no chain for it; SLUICE_FAILED_PRECONDITION for a refused
 * request. The call stays valid after the admission and the governor are destroyed. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_admission_begin_call(sluice_admission* admission, int64_t deadline_nanos,
                                sluice_fallback_call** out, sluice_fallback_step* step);

/* ---- Balancer administration (sluice/balancer.h: Cooldown, Eject, Restore, Endpoints) --------
 * Experimental (SLUICE_EXPERIMENTAL): for an operator's console or a key-rotation job. With
 * SLUICE_PARAM_SHARED_REGION they act host-wide: every process whose balancer uses the region and
 * the endpoint id sees the result at its next pick. Thread-safe, like the C++ object. */

/* Keeps the endpoint out of picks for `duration_nanos` from now, as after a failure of class
 * `failure` (a sluice_failure; SLUICE_FAIL_NONE: an administered cooldown without a class). The
 * later end wins: a shorter cooldown than the current one changes nothing (restore first).
 * SLUICE_INVALID_ARGUMENT unless 0 < duration_nanos <= 1 day and `failure` is a sluice_failure;
 * SLUICE_NOT_FOUND for an id the balancer has not added. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_balancer_cooldown(sluice_balancer* balancer, const char* id, size_t id_len,
                             int64_t duration_nanos, int failure);
/* Ejects the endpoint for `duration_nanos` (the same bounds), whatever the outlier ejection cap
 * says; it counts towards that cap. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_balancer_eject(sluice_balancer* balancer, const char* id, size_t id_len,
                          int64_t duration_nanos);
/* Ends the endpoint's cooldown and ejection now. SLUICE_NOT_FOUND for an unknown id. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_balancer_restore(sluice_balancer* balancer, const char* id, size_t id_len);

/* What the balancer knows about one endpoint (sluice::EndpointStats, the fields an admin page
 * shows). Times are nanoseconds on the balancer's clock; 0: not cooling down / not ejected /
 * never failed. */
typedef struct sluice_endpoint_state {
  int64_t in_flight;             /* this process's picks */
  int64_t host_in_flight;        /* every process's, with a shared region; else in_flight */
  int64_t picks;
  int64_t completions;
  int64_t errors;
  int64_t cooldown_until_nanos;  /* host-wide with a shared region */
  int64_t ejected_until_nanos;   /* host-wide with a shared region */
  int64_t times_ejected;
  int64_t last_failure_at_nanos; /* this process's last failed completion */
  int32_t cooldown_reason;       /* a sluice_failure; SLUICE_FAIL_NONE when not cooling down */
  int32_t last_failure;          /* a sluice_failure; SLUICE_FAIL_NONE before the first */
} sluice_endpoint_state;
/* Fills *out for endpoint `id` (zeroed first). SLUICE_NOT_FOUND for an unknown id. */
SLUICE_API SLUICE_EXPERIMENTAL
int sluice_balancer_endpoint_state(const sluice_balancer* balancer, const char* id, size_t id_len,
                                   sluice_endpoint_state* out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SLUICE_C_H_ */
