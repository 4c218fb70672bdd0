// -----------------------------------------------------------------------------
// File: sluice/cache_key.h
// -----------------------------------------------------------------------------
//
// The key a response cache files an LLM answer under: the same question gives the same key
// whatever its JSON looks like, and a different question never shares one.
//
// `CanonicalizeJson` writes any JSON text in the RFC 8785 (JCS) canonical form:
//   * no insignificant whitespace;
//   * object members sorted by the UTF-16 code units of their names, recursively; arrays keep
//     their order;
//   * numbers with a fraction or an exponent as ECMAScript prints their double (the shortest
//     form that reads back the same: 4.50 -> 4.5, 1E30 -> 1e+30, 2e-3 -> 0.002, -0.0 -> 0,
//     1e20 -> 100000000000000000000); integer literals (no fraction, no exponent) keep their
//     digits whatever their size, -0 as 0. Within 2^53 both rules agree with RFC 8785; beyond,
//     this departs from it on purpose (a `seed` of 2^53 + 1 must not become 2^53), and an
//     integer literal past 64 bits is accepted too;
//   * the output is a fixed point: it canonicalises to itself (an integer-valued double below
//     1e21 prints as an integer literal, which reads back as the same digits);
//   * strings with minimal escapes (\" \\ \b \f \n \r \t, other controls as \u00xx).
// Duplicate member names (which I-JSON forbids) are an error, as is anything that is not JSON
// (an empty view too, std::string_view(nullptr, 0) included).
//
// `MakeCacheKey` canonicalises an OpenAI-style request body without the top-level fields that
// do not decide the answer (`CacheKeyOptions::excluded_fields`: user, stream, metadata, ...),
// prefixes a namespace (a tenant, an app), and hashes the result with XXH3-128. The key keeps the
// canonical bytes, so a cache can compare them on a hit: a hash collision can never serve the
// wrong answer.
//
// Example:
//
//   absl::StatusOr<sluice::CacheKey> key = sluice::MakeCacheKey(body, "tenant-7/app-3");
//   if (!key.ok()) return BadRequest(key.status().message());   // names the JSON error
//   // key->digest_hi / digest_lo index the cache; key->canonical verifies a hit.
//
// Thread-safety: free functions without shared state; safe from any thread.

#ifndef SLUICE_CACHE_KEY_H_
#define SLUICE_CACHE_KEY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice {
inline namespace v1 {

struct CacheKeyOptions {
  // Top-level request fields that do not decide the answer, left out of the key. Default: user,
  // stream, stream_options, metadata, store, request_id, timeout, service_tier, and sluice's
  // own per-request cache controls (cache).
  std::vector<std::string> excluded_fields = {"user",       "stream",  "stream_options",
                                              "metadata",   "store",   "request_id",
                                              "timeout",    "service_tier", "cache"};
};

struct CacheKey {
  // XXH3-128 of `canonical`.
  uint64_t digest_hi = 0;
  uint64_t digest_lo = 0;
  // The namespace, a 0x1F separator, then the canonical request: what a hit is verified against.
  std::string canonical;

  // The digest as 32 lowercase hex digits (hi, then lo): how logs and Redis name the key.
  std::string DigestHex() const;

  friend bool operator==(const CacheKey& a, const CacheKey& b) {
    return a.digest_hi == b.digest_hi && a.digest_lo == b.digest_lo && a.canonical == b.canonical;
  }
};

// The RFC 8785 form of `json` (see the file comment). Errors: InvalidArgument naming what is
// wrong (bad JSON, invalid UTF-8, a duplicate member name, a number with a fraction or an
// exponent beyond the double range).
absl::StatusOr<std::string> CanonicalizeJson(std::string_view json);

// The cache key of an OpenAI-style request body (a JSON object). Errors: as CanonicalizeJson,
// and InvalidArgument when the body is not a JSON object.
absl::StatusOr<CacheKey> MakeCacheKey(std::string_view body, std::string_view name_space = {},
                                      const CacheKeyOptions& options = CacheKeyOptions());

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_CACHE_KEY_H_
