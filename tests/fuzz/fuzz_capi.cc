// Fuzz target: the C ABI's byte-taking calls (include/sluice/sluice.h) on arbitrary bytes, through
// libsluice_c as a C program calls them (see fuzz_llm_request.cc for how it runs). The input is
// the body / text argument; an empty input is passed as (NULL, 0). Invariants: every call returns
// a status the header allows, with a message when it fails, and what it returns is consistent:
//   * sluice_cache_key_create: the canonical bytes start with the namespace and 0x1F;
//   * sluice_balancer_update_metrics + sluice_balancer_pick / _pick_model on a scored balancer of
//     two endpoints: a pick is one of them;
//   * sluice_classify is a sluice_failure; sluice_parse_retry_after is >= 0 when it succeeds;
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = size == 0 ? nullptr : reinterpret_cast<const char*>(data);
  CacheKey(text, size);
  Balancer(text, size);
  const int failure = sluice_classify(400, SLUICE_TRANSPORT_NONE, text, size);
  FUZZ_CHECK(failure >= SLUICE_FAIL_NONE && failure <= SLUICE_FAIL_CLIENT);
  int64_t nanos = -1;
  const int rc = sluice_parse_retry_after(text, size, 1'800'000'000'000'000'000, &nanos);
  CheckStatus(rc);
  if (rc == SLUICE_OK) FUZZ_CHECK(nanos >= 0);
  return 0;
}
