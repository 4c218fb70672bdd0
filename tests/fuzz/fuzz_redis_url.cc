// Fuzz target: RedisOptionsFromUrl and RedisNodesFromString (sluice/redis_store.h) on arbitrary
// bytes (see fuzz_llm_request.cc for how it runs). Invariants:
//   * they never crash (bad %-escapes, unclosed brackets, huge ports, NUL and non-UTF-8 bytes);
//   * a refusal is InvalidArgument named after the function, with no control byte in it;
//   * no password reaches a message: the password and sentinel_password the URL would give with
//     a known-good tail are never in the message of a refused variant of it;
//   * an accepted URL gives options RedisStore::Create accepts, and parsing is deterministic.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/match.h"
#include "fuzz_support.h"
#include "sluice/redis_store.h"

namespace {

void CheckRefusal(const absl::Status& status, std::string_view who) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  FUZZ_CHECK(absl::StartsWith(status.message(), absl::string_view(who.data(), who.size())));
  for (const char c : status.message()) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = sluice_fuzz::View(data, size);
  const absl::string_view url(input.data(), input.size());
  const absl::StatusOr<sluice::RedisOptions> parsed = sluice::RedisOptionsFromUrl(url);
  const absl::StatusOr<sluice::RedisOptions> again = sluice::RedisOptionsFromUrl(url);
  FUZZ_CHECK(parsed.status() == again.status());
  if (parsed.ok()) {
    FUZZ_CHECK(sluice::RedisStore::Create(*parsed).ok());
  } else {
    CheckRefusal(parsed.status(), "sluice.RedisOptionsFromUrl: ");
  }

  // The input as a password: a URL that is wrong elsewhere (a bad port) must not echo it, as
  // the data nodes' password nor as the sentinels'. Only inputs a URL can carry unescaped in
  // that place count (no '@', '?', '&', '/' or ':'), and only long enough to be told apart.
  if (input.size() >= 6 && input.find_first_of("@?&/:%#") == std::string_view::npos) {
    // Marked at both ends, so that only an echo of it can match (not, say, the scheme).
    const std::string secret = "ZqZ" + std::string(input) + "ZqZ";
    for (const std::string& url : {"redis://u:" + secret + "@h:port/0",
                                   "redis+sentinel://s:x/m?sentinel_password=" + secret,
                                   "redis://" + secret + "@h?bogus=1"}) {
      const absl::StatusOr<sluice::RedisOptions> refused = sluice::RedisOptionsFromUrl(url);
      FUZZ_CHECK(!refused.ok());
      FUZZ_CHECK(!absl::StrContains(refused.status().message(), secret));
    }
  }

  const absl::StatusOr<std::vector<sluice::RedisNode>> nodes =
      sluice::RedisNodesFromString(url, 26379);
  if (nodes.ok()) {
    FUZZ_CHECK(!nodes->empty());
    for (const sluice::RedisNode& node : *nodes) {
      FUZZ_CHECK(!node.host.empty());
      FUZZ_CHECK(node.port >= 1 && node.port <= 65535);
    }
  } else {
    CheckRefusal(nodes.status(), "sluice.RedisNodesFromString: ");
  }
  return 0;
}
