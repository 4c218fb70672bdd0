// Cache keys, cached answers, the response cache, and its experimental single-flight fetch
// (sluice/cache_key.h, sluice/response_cache.h, sluice/single_flight.h).
#include "capi/internal.h"
#include "capi/params.h"

using namespace sluice_capi;  // NOLINT: the C entry points below use the helpers unqualified

namespace sluice_capi {

int AnswerFromC(const char* function, const char* body, size_t body_len, const char* const* chunks,
                const size_t* chunk_lens, size_t chunk_count, int64_t ttl_nanos,
                sluice::CachedResponse* out) {
  if (body == nullptr && body_len != 0) return NullArgument(function, "body");
  if (chunk_count > 0 && (chunks == nullptr || chunk_lens == nullptr)) {
    return NullArgument(function, "chunks or chunk_lens");
  }
  if (ttl_nanos < 0) return Invalid(function, "ttl_nanos must be >= 0");
  out->body = std::string(Bytes(body, body_len));
  out->streamed = chunk_count > 0;
  for (size_t i = 0; i < chunk_count; ++i) {
    if (chunks[i] == nullptr && chunk_lens[i] != 0) return NullArgument(function, "chunks[i]");
    out->chunks.emplace_back(Bytes(chunks[i], chunk_lens[i]));
  }
  return SLUICE_OK;
}

}  // namespace sluice_capi

namespace {

// A fetch call that only the leader may make.
int NotLeader(const char* function) {
  return Fail(SLUICE_FAILED_PRECONDITION, absl::StrCat(function, ": not the leader"));
}

}  // namespace

extern "C" {

// ---- keys and answers --------------------------------------------------------------------------

int sluice_cache_key_create(const char* body, size_t body_len, const char* name_space,
                            size_t name_space_len, sluice_cache_key** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (body == nullptr && body_len != 0) return NullArgument(fn, "body");
    if (int rc = CheckKey(fn, name_space, name_space_len, "name_space"); rc != SLUICE_OK) {
      return rc;
    }
    absl::StatusOr<sluice::CacheKey> key =
        sluice::MakeCacheKey(Bytes(body, body_len), Bytes(name_space, name_space_len));
    if (!key.ok()) return FromStatus(fn, key.status());
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

// ---- the cache ---------------------------------------------------------------------------------

int sluice_response_cache_create(const sluice_options* options, const sluice_clock* clock,
                                 sluice_response_cache** out) {
  return CreateHandle<kCache, sluice::ResponseCache::Options>(
      __func__, options, out, [&](sluice::ResponseCache::Options& o) {
        o.redis = options->redis;
        return sluice::ResponseCache::Create(o, ClockOf(clock));
      });
}

void sluice_response_cache_destroy(sluice_response_cache* cache) { delete cache; }

int sluice_response_cache_get(sluice_response_cache* cache, const sluice_cache_key* key,
                              sluice_cached_answer** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (cache == nullptr) return NullArgument(fn, "cache");
    if (key == nullptr) return NullArgument(fn, "key");
    std::shared_ptr<const sluice::CachedResponse> hit = cache->rep->Get(key->rep);
    if (hit != nullptr) *out = new sluice_cached_answer{std::move(hit)};
    return SLUICE_OK;
  });
}

int sluice_response_cache_put(sluice_response_cache* cache, const sluice_cache_key* key,
                              const char* body, size_t body_len, const char* const* chunks,
                              const size_t* chunk_lens, size_t chunk_count, int64_t ttl_nanos,
                              uint8_t* stored) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (cache == nullptr) return NullArgument(fn, "cache");
    if (key == nullptr) return NullArgument(fn, "key");
    sluice::CachedResponse r;
    if (int rc = AnswerFromC(fn, body, body_len, chunks, chunk_lens, chunk_count, ttl_nanos, &r);
        rc != SLUICE_OK) {
      return rc;
    }
    const bool ok = cache->rep->Put(key->rep, std::move(r), absl::Nanoseconds(ttl_nanos));
    if (stored != nullptr) *stored = ok ? 1 : 0;
    return SLUICE_OK;
  });
}

int sluice_response_cache_erase(sluice_response_cache* cache, const sluice_cache_key* key) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (cache == nullptr) return NullArgument(fn, "cache");
    if (key == nullptr) return NullArgument(fn, "key");
    if (cache->rep->Erase(key->rep)) return SLUICE_OK;
    return Fail(SLUICE_NOT_FOUND, absl::StrCat(fn, ": no entry"));
  });
}

int sluice_response_cache_stats(const sluice_response_cache* cache, sluice_cache_stats* out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (cache == nullptr) return NullArgument(fn, "cache");
    if (out == nullptr) return NullArgument(fn, "out");
    const sluice::ResponseCache::Stats s = cache->rep->stats();
    *out = sluice_cache_stats{.hits = s.hits,
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

// ---- single flight (experimental) --------------------------------------------------------------

int sluice_response_cache_fetch(sluice_response_cache* cache, const sluice_cache_key* key,
                                sluice_fetch** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (cache == nullptr) return NullArgument(fn, "cache");
    if (key == nullptr) return NullArgument(fn, "key");
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
  return Guard(__func__, [&](const char* fn) -> int {
    if (fetch == nullptr) return NullArgument(fn, "fetch");
    if (!fetch->rep.wait || !fetch->rep.wait->ready()) {
      return Fail(SLUICE_FAILED_PRECONDITION, absl::StrCat(fn, ": the wait is not over"));
    }
    sluice::FetchResult next = fetch->rep.wait->Result();
    fetch->rep = std::move(next);
    return SLUICE_OK;
  });
}

int sluice_fetch_answer(const sluice_fetch* fetch, sluice_cached_answer** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (fetch == nullptr) return NullArgument(fn, "fetch");
    if (fetch->rep.hit == nullptr) {
      return Fail(SLUICE_FAILED_PRECONDITION, absl::StrCat(fn, ": not a hit"));
    }
    *out = new sluice_cached_answer{fetch->rep.hit};
    return SLUICE_OK;
  });
}

int sluice_fetch_complete(sluice_fetch* fetch, const char* body, size_t body_len,
                          const char* const* chunks, const size_t* chunk_lens, size_t chunk_count,
                          int64_t ttl_nanos, uint8_t store, uint8_t* stored) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (fetch == nullptr) return NullArgument(fn, "fetch");
    sluice::CachedResponse r;
    if (int rc = AnswerFromC(fn, body, body_len, chunks, chunk_lens, chunk_count, ttl_nanos, &r);
        rc != SLUICE_OK) {
      return rc;
    }
    if (!fetch->rep.lead) return NotLeader(fn);
    const bool ok =
        fetch->rep.lead->Complete(std::move(r), absl::Nanoseconds(ttl_nanos), store != 0);
    fetch->rep.lead.reset();
    if (stored != nullptr) *stored = ok ? 1 : 0;
    return SLUICE_OK;
  });
}

int sluice_fetch_append(sluice_fetch* fetch, const char* chunk, size_t len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (fetch == nullptr) return NullArgument(fn, "fetch");
    if (chunk == nullptr && len != 0) return NullArgument(fn, "chunk");
    if (!fetch->rep.lead) return NotLeader(fn);
    fetch->rep.lead->Append(std::string(Bytes(chunk, len)));
    return SLUICE_OK;
  });
}

int sluice_fetch_complete_stream(sluice_fetch* fetch, int64_t ttl_nanos, uint8_t store,
                                 uint8_t* stored) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (fetch == nullptr) return NullArgument(fn, "fetch");
    if (ttl_nanos < 0) return Invalid(fn, "ttl_nanos must be >= 0");
    if (!fetch->rep.lead) return NotLeader(fn);
    const bool ok = fetch->rep.lead->CompleteStream(absl::Nanoseconds(ttl_nanos), store != 0);
    fetch->rep.lead.reset();
    if (stored != nullptr) *stored = ok ? 1 : 0;
    return SLUICE_OK;
  });
}

int sluice_fetch_take_chunks(sluice_fetch* fetch, sluice_cached_answer** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (fetch == nullptr) return NullArgument(fn, "fetch");
    if (!fetch->rep.wait) {
      return Fail(SLUICE_FAILED_PRECONDITION, absl::StrCat(fn, ": not waiting"));
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
