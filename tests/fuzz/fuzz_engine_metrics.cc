// Fuzz target: ParseEngineMetrics on arbitrary bytes (see fuzz_llm_request.cc for how it runs),
// and the scored balancer fed with the result. Parsed values are finite and within their
// documented bounds, and the scored strategy never sends every pick to a candidate whose queue
// is larger than another's (what one +inf queue once did).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "sluice/balancer.h"
#include "sluice/engine_metrics.h"

namespace {

void CheckGauge(const std::optional<double>& v, double max) {
  FUZZ_CHECK(!v || (std::isfinite(*v) && *v >= 0 && *v <= max));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = sluice_fuzz::View(data, size);
  absl::StatusOr<sluice::EngineMetrics> m = sluice::ParseEngineMetrics(text);
  if (!m.ok()) {
    FUZZ_CHECK(m.status().message().find("line ") != std::string_view::npos);
    return 0;
  }
  CheckGauge(m->waiting, sluice::kEngineMetricsMaxRequests);
  CheckGauge(m->running, sluice::kEngineMetricsMaxRequests);
  CheckGauge(m->kv_usage, 1.0);

  // Endpoint "scraped" (added first) gets these metrics; "calm" waits for 1 request less than
  // "scraped" (or for 1 when scraped reports nothing), with the same KV use. Every pick must go
  // to the candidate with the shorter queue.
  sluice::ManualClock clock;
  sluice::Balancer::Options options;
  options.strategy = sluice::Balancer::Strategy::kScored;
  options.seed = 7;
  std::unique_ptr<sluice::Balancer> b = sluice::Balancer::Create(options, &clock).value();
  FUZZ_CHECK(b->AddEndpoint({.id = "scraped"}).ok() && b->AddEndpoint({.id = "calm"}).ok());
  FUZZ_CHECK(b->UpdateMetrics("scraped", text).ok());
  const double queue = m->waiting.value_or(0) + m->running.value_or(0);
  sluice::EngineMetrics calm = *m;
  calm.running.reset();
  calm.waiting = queue >= 1 ? queue - 1 : 1;
  FUZZ_CHECK(b->SetMetrics("calm", calm).ok());
  const std::string better = queue >= 1 ? "calm" : "scraped";
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<sluice::Balancer::Pick> pick = b->PickEndpoint(sluice::PickRequest{});
    FUZZ_CHECK(pick.ok());
    // Equal within the score's tie tolerance when the queues are close to the maximum.
    if (queue < 1e6) FUZZ_CHECK(pick->endpoint_id() == better);
  }
  return 0;
}
