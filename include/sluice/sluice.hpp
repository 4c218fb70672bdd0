// -----------------------------------------------------------------------------
// File: sluice/sluice.hpp
// -----------------------------------------------------------------------------
//
// The whole C++ API in one include. sluice governs AI traffic from inside the process that sends
// or serves it:
//
//   RateLimiter         requests per key, several windows at once (GCRA)   sluice/rate_limiter.h
//   LeakyBucket         shaping: a steady departure rate, a bounded wait   sluice/leaky_bucket.h
//   ConcurrencyLimiter  in-flight cap per key, RAII permits that are leases
//                                                           sluice/concurrency_limiter.h
//   TokenBudget         LLM tokens per key: reserve, then settle           sluice/token_budget.h
//   Balancer            pick an endpoint: least request, prefix affinity, ... sluice/balancer.h
//   FallbackPolicy      a chain of targets, breakers, retry budget, deadline sluice/fallback_policy.h
//   CircuitBreaker      stop calling a failing target; probe its recovery  sluice/circuit_breaker.h
//   RetryBudget         retries at most a share of requests in flight      sluice/retry_budget.h
//   Classify            what failed: status, transport, provider body      sluice/provider_error.h
//   MakeCacheKey        RFC 8785 canonical request key, XXH3-128           sluice/cache_key.h
//   ResponseCache       answers in memory: byte-bounded, TinyLFU + SLRU     sluice/response_cache.h
//   Decision            the one answer type, and HTTP headers from it      sluice/decision.h
//   Clock, ManualClock  injected time                                      sluice/clock.h
//   RemoveSharedRegion  host scope: state shared by the processes of a host sluice/shared_region.h
//   RedisStore          cluster scope: state in Redis, shared by every host sluice/redis_store.h
//
// The C ABI is sluice/c.h; the Python package is `import sluice`.

#ifndef SLUICE_SLUICE_HPP_
#define SLUICE_SLUICE_HPP_

#include "sluice/balancer.h"
#include "sluice/bytes.h"
#include "sluice/cache_key.h"
#include "sluice/circuit_breaker.h"
#include "sluice/clock.h"
#include "sluice/cluster.h"
#include "sluice/concurrency_limiter.h"
#include "sluice/decision.h"
#include "sluice/engine_metrics.h"
#include "sluice/failure.h"
#include "sluice/key_limits.h"
#include "sluice/provider_error.h"
#include "sluice/fallback_policy.h"
#include "sluice/leaky_bucket.h"
#include "sluice/llm_request.h"
#include "sluice/governor.h"
#include "sluice/metrics.h"
#include "sluice/policy.h"
#include "sluice/rate_limiter.h"
#include "sluice/response_cache.h"
#include "sluice/retry_budget.h"
#include "sluice/redis_store.h"
#include "sluice/shared_region.h"
#include "sluice/single_flight.h"
#include "sluice/sse_replay.h"
#include "sluice/token_budget.h"
#include "sluice/version.h"
#include "sluice/window.h"

#endif  // SLUICE_SLUICE_HPP_
