# The layers of lib/, each an object library, and the rule that keeps them layered.
#
#   base        clock, decision, key digests, mutexes, fork hooks, logging, time arithmetic
#   formats     canonical JSON and cache keys, LLM requests, engine metrics, SSE, provider errors
#   stores      process tables, host regions (/dev/shm), Redis (connection thread, errors, keys)
#   admission   RateLimiter, LeakyBucket, TokenBudget, ConcurrencyLimiter over their backends
#   balancing   Balancer: strategies, endpoint state, prefix index
#   fallback    FallbackPolicy, CircuitBreaker, RetryBudget
#   cache       ResponseCache: shards, flights, sketch, Redis tier, records
#   policy      the policy file (sluice/policy.h): YAML reading, durations, sections, checks
#   metrics     Prometheus series, in process or a host region
#   governor    Governor: a Policy built into objects, Admit / Admission, Reload
#
# A layer may include its own headers and those of the layers it DEPENDS on, nothing else:
#   * lib/ headers, by path ("stores/keyed_table.h"): each layer compiles against an include
#     root holding links to its allowed folders only, so including a folder above it fails to
#     compile ("balancing/balancer_core.h: No such file or directory");
#   * public headers ("sluice/balancer.h"): every public header belongs to a layer (the map
#     below), and cmake/check_layers.cmake fails the build of a layer whose sources include a
#     public header of a layer it does not depend on.

# Which layer each public header belongs to.
set(SLUICE_PUBLIC_HEADER_LAYERS
  "clock.h=base" "decision.h=base" "bytes.h=base" "log.h=base" "pending.h=base"
  "failure.h=base" "internal/status_table.h=base" "internal/key_digest.h=base" "internal/mutex.h=base" "version.h=base"
  "cache_key.h=formats" "llm_request.h=formats" "engine_metrics.h=formats" "sse_replay.h=formats"
  "provider_error.h=formats" "usage.h=formats"
  "internal/lease_ref.h=admission"
  "shared_region.h=stores" "redis_store.h=stores"
  "scope.h=admission" "cluster.h=admission" "window.h=admission" "key_limits.h=admission"
  "rate_limiter.h=admission"
  "leaky_bucket.h=admission" "token_budget.h=admission" "concurrency_limiter.h=admission"
  "balancer.h=balancing"
  "fallback_policy.h=fallback" "circuit_breaker.h=fallback" "retry_budget.h=fallback"
  "response_cache.h=cache" "single_flight.h=cache"
  "policy.h=policy" "metrics.h=metrics" "governor.h=governor")

# Build settings every layer compiles with (include paths, definitions, warnings, third-party
# headers); not installed: the static library carries the same usage requirements.
add_library(sluice_layer_settings INTERFACE)
target_include_directories(sluice_layer_settings INTERFACE
  ${PROJECT_SOURCE_DIR}/include ${PROJECT_BINARY_DIR}/generated/include)
target_compile_features(sluice_layer_settings INTERFACE cxx_std_20)
target_compile_definitions(sluice_layer_settings INTERFACE SIMDJSON_THREADS_ENABLED=1)
target_compile_options(sluice_layer_settings INTERFACE -Wall -Wextra -Wpedantic)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  # Host scope claims keys with a 16-byte compare-and-swap; -mcx16 makes it an inline
  # cmpxchg16b, lock-free and therefore atomic across processes (libatomic's fallback is not).
  target_compile_options(sluice_layer_settings INTERFACE -mcx16)
endif()
target_link_libraries(sluice_layer_settings INTERFACE
  absl::status absl::statusor absl::synchronization absl::time absl::flat_hash_map
  absl::strings absl::function_ref absl::int128 absl::str_format
  PkgConfig::XXHASH PkgConfig::HIREDIS OpenSSL::SSL OpenSSL::Crypto simdjson::simdjson
  Threads::Threads)

set(SLUICE_LAYERS "")

# sluice_layer(<name> [DEPENDS <layer>...] SOURCES <file>...)
function(sluice_layer name)
  cmake_parse_arguments(L "" "" "DEPENDS;SOURCES" ${ARGN})
  list(TRANSFORM L_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/lib/${name}/)
  add_library(sluice_${name} OBJECT ${L_SOURCES})
  target_link_libraries(sluice_${name} PRIVATE sluice_layer_settings)
  # The include root of this layer: links to its own folder and the folders it depends on.
  set(root ${PROJECT_BINARY_DIR}/layers/${name})
  file(REMOVE_RECURSE ${root})
  file(MAKE_DIRECTORY ${root})
  foreach(allowed IN LISTS L_DEPENDS ITEMS ${name})
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/lib/${allowed} ${root}/${allowed} SYMBOLIC)
  endforeach()
  target_include_directories(sluice_${name} PRIVATE ${root})
  # The public-header rule, checked whenever a source of the layer changes.
  # (Lists travel "|"-separated: a ";" would split the command line.)
  set(stamp ${PROJECT_BINARY_DIR}/layers/${name}.checked)
  list(JOIN L_DEPENDS "|" allowed)
  list(JOIN SLUICE_PUBLIC_HEADER_LAYERS "|" header_layers)
  file(GLOB headers ${PROJECT_SOURCE_DIR}/lib/${name}/*.h)
  list(JOIN L_SOURCES "|" sources)
  if(headers)
    list(JOIN headers "|" header_files)
    string(APPEND sources "|${header_files}")
  endif()
  add_custom_command(
    OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND} "-DLAYER=${name}" "-DALLOWED=${allowed}|${name}"
            "-DHEADER_LAYERS=${header_layers}" "-DSOURCES=${sources}"
            "-DSTAMP=${stamp}" -P ${PROJECT_SOURCE_DIR}/cmake/check_layers.cmake
    DEPENDS ${L_SOURCES} ${headers} ${PROJECT_SOURCE_DIR}/cmake/check_layers.cmake
    COMMENT "Checking that lib/${name} includes no public header of a layer above it"
    VERBATIM)
  add_custom_target(sluice_${name}_layer_check DEPENDS ${stamp})
  add_dependencies(sluice_${name} sluice_${name}_layer_check)
  set(SLUICE_LAYERS ${SLUICE_LAYERS} ${name} PARENT_SCOPE)
endfunction()
