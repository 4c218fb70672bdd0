// Fuzz target: the C ABI's byte-taking calls (include/sluice/sluice.h) on arbitrary bytes, through
// libsluice_c as a C program calls them (see fuzz_llm_request.cc for how it runs). The input is
// the body / text argument; an empty input is passed as (NULL, 0). Invariants: every call returns
// a status the header allows, with a message when it fails, and what it returns is consistent:
//   * sluice_cache_key_create: the canonical bytes start with the namespace and 0x1F;
//   * sluice_balancer_update_metrics + sluice_balancer_pick / _pick_model on a scored balancer of
//     two endpoints: a pick is one of them;
//   * sluice_classify is a sluice_failure; sluice_parse_retry_after is >= 0 when it succeeds;
//   * usage metering: a reader fed the input in two pieces (cut where its first byte says) or
//     byte by byte gives what sluice_read_usage gives at once (found == (present != 0)); the
//     include_usage rewrite hands out NUL-terminated bytes or nothing; estimates are in
//     [0, SLUICE_USAGE_MAX_TOKENS];
//   * (NULL, len > 0) is SLUICE_INVALID_ARGUMENT, never a crash.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "fuzz_support.h"
#include "sluice/sluice.h"

namespace {

void CheckStatus(int rc) {
  FUZZ_CHECK(rc >= SLUICE_OK && rc <= SLUICE_ABORTED);
  if (rc != SLUICE_OK) FUZZ_CHECK(std::strlen(sluice_last_error_message()) > 0);
}

void CheckPick(int rc, sluice_pick* pick) {
  CheckStatus(rc);
  FUZZ_CHECK((rc == SLUICE_OK) == (pick != nullptr));
  if (pick == nullptr) return;
  size_t len = 0;
  const char* id = sluice_pick_endpoint_id(pick, &len);
  const std::string_view endpoint(id, len);
  FUZZ_CHECK(endpoint == "a" || endpoint == "b");
  FUZZ_CHECK(sluice_pick_complete_failure(pick, 200, SLUICE_FAIL_NONE, 1000, 2000) == SLUICE_OK);
  sluice_pick_destroy(pick);
}

void Balancer(const char* text, size_t len) {
  sluice_clock* clock = nullptr;
  FUZZ_CHECK(sluice_manual_clock_create(0, &clock) == SLUICE_OK);
  sluice_options* options = sluice_options_create();
  FUZZ_CHECK(sluice_options_set(options, SLUICE_PARAM_BALANCER_STRATEGY, SLUICE_BALANCER_SCORED) ==
             SLUICE_OK);
  FUZZ_CHECK(sluice_options_set(options, SLUICE_PARAM_BALANCER_SEED, 7) == SLUICE_OK);
  sluice_balancer* balancer = nullptr;
  FUZZ_CHECK(sluice_balancer_create(options, clock, &balancer) == SLUICE_OK);
  sluice_options_destroy(options);
  FUZZ_CHECK(sluice_balancer_add_endpoint(balancer, "a", 1, 1, 0, 0, "m", 1) == SLUICE_OK);
  FUZZ_CHECK(sluice_balancer_add_endpoint(balancer, "b", 1, 1, 0, 0, nullptr, 0) == SLUICE_OK);

  CheckStatus(sluice_balancer_update_metrics(balancer, "a", 1, text, len));
  for (int i = 0; i < 2; ++i) {
    sluice_pick* pick = nullptr;
    int rc = sluice_balancer_pick(balancer, text, len, text, len < 64 ? len : 64, &pick);
    CheckPick(rc, pick);
    pick = nullptr;
    rc = sluice_balancer_pick_model(balancer, "m", 1, text, len < 64 ? len : 64, &pick);
    CheckPick(rc, pick);
  }
  sluice_pick* pick = nullptr;
  FUZZ_CHECK(sluice_balancer_pick(balancer, nullptr, 1, nullptr, 0, &pick) ==
             SLUICE_INVALID_ARGUMENT);
  FUZZ_CHECK(pick == nullptr);
  FUZZ_CHECK(sluice_balancer_update_metrics(balancer, "a", 1, nullptr, 1) == SLUICE_INVALID_ARGUMENT);
  sluice_balancer_destroy(balancer);
  sluice_clock_destroy(clock);
}

void CacheKey(const char* body, size_t len) {
  sluice_cache_key* key = nullptr;
  const int rc = sluice_cache_key_create(body, len, "tenant", 6, &key);
  CheckStatus(rc);
  FUZZ_CHECK((rc == SLUICE_OK) == (key != nullptr));
  if (key != nullptr) {
    size_t canonical_len = 0;
    const char* canonical = sluice_cache_key_canonical(key, &canonical_len);
    FUZZ_CHECK(std::string_view(canonical, canonical_len).substr(0, 7) == "tenant\x1F");
    uint64_t hi = 0, lo = 0;
    FUZZ_CHECK(sluice_cache_key_digest(key, &hi, &lo) == SLUICE_OK);
    sluice_cache_key_destroy(key);
  }
  key = nullptr;
  FUZZ_CHECK(sluice_cache_key_create(nullptr, 3, nullptr, 0, &key) == SLUICE_INVALID_ARGUMENT);
  FUZZ_CHECK(key == nullptr);
}

bool SameUsage(const sluice_usage& a, const sluice_usage& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;  // both fully written by the library (memset first)
}

void Usage(const char* text, size_t len) {
  sluice_usage whole;
  std::memset(&whole, 0, sizeof(whole));
  uint8_t found = 2;
  FUZZ_CHECK(sluice_read_usage(text, len, SLUICE_PROVIDER_AUTO, &whole, &found) == SLUICE_OK);
  FUZZ_CHECK(found <= 1 && (found == 1) == (whole.present != 0));
  // ReadUsage raises max_event_bytes to the body's size; under the 1 MiB default the reader
  // must agree with it however the bytes are cut.
  const size_t cut = len == 0 ? 0 : static_cast<unsigned char>(text[0]) % (len + 1);
  for (int pass = 0; pass < 2 && len <= (size_t{1} << 20); ++pass) {
    sluice_usage_reader* reader = nullptr;
    FUZZ_CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, nullptr, &reader) == SLUICE_OK);
    if (pass == 0) {
      FUZZ_CHECK(sluice_usage_reader_feed(reader, text, cut) == SLUICE_OK);
      FUZZ_CHECK(sluice_usage_reader_feed(reader, len == 0 ? nullptr : text + cut, len - cut) ==
                 SLUICE_OK);
    } else {
      for (size_t i = 0; i < len; ++i) FUZZ_CHECK(sluice_usage_reader_feed(reader, text + i, 1) == SLUICE_OK);
    }
    sluice_usage chunked;
    std::memset(&chunked, 0, sizeof(chunked));
    FUZZ_CHECK(sluice_usage_reader_finish(reader, &chunked, nullptr) == SLUICE_OK);
    FUZZ_CHECK(SameUsage(whole, chunked));
    FUZZ_CHECK(sluice_usage_reader_feed(reader, text, len) == SLUICE_FAILED_PRECONDITION);
    sluice_usage_reader_destroy(reader);
  }
  char* out = nullptr;
  size_t out_len = 0;
  const int rc = sluice_include_usage_in_stream(text, len, &out, &out_len);
  CheckStatus(rc);
  FUZZ_CHECK((rc == SLUICE_OK) == (out != nullptr));
  if (out != nullptr) FUZZ_CHECK(out[out_len] == '\0');
  sluice_free(out);
  int64_t tokens = -1;
  FUZZ_CHECK(sluice_estimate_prompt_tokens(text, len, nullptr, &tokens) == SLUICE_OK);
  FUZZ_CHECK(tokens >= 0 && tokens <= SLUICE_USAGE_MAX_TOKENS);
  FUZZ_CHECK(sluice_estimate_text_tokens(text, len, nullptr, &tokens) == SLUICE_OK);
  FUZZ_CHECK(tokens >= 0 && tokens <= SLUICE_USAGE_MAX_TOKENS);
  FUZZ_CHECK(sluice_read_usage(nullptr, 1, SLUICE_PROVIDER_AUTO, &whole, nullptr) ==
             SLUICE_INVALID_ARGUMENT);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = size == 0 ? nullptr : reinterpret_cast<const char*>(data);
  CacheKey(text, size);
  Balancer(text, size);
  Usage(text, size);
  const int failure = sluice_classify(400, SLUICE_TRANSPORT_NONE, text, size);
  FUZZ_CHECK(failure >= SLUICE_FAIL_NONE && failure <= SLUICE_FAIL_CLIENT);
  int64_t nanos = -1;
  const int rc = sluice_parse_retry_after(text, size, 1'800'000'000'000'000'000, &nanos);
  CheckStatus(rc);
  if (rc == SLUICE_OK) FUZZ_CHECK(nanos >= 0);
  return 0;
}
