// Fuzz target: ParseEngineMetrics on arbitrary bytes (see fuzz_llm_request.cc for how it runs).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "sluice/engine_metrics.h"

namespace {
void CheckGauge(const std::optional<double>& v, double max) {
  if (v && (!std::isfinite(*v) || *v < 0 || *v > max)) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<sluice::EngineMetrics> m = sluice::ParseEngineMetrics(text);
  if (!m.ok()) {
    if (m.status().message().find("line ") == std::string_view::npos) std::abort();
    return 0;
  }
  CheckGauge(m->waiting, HUGE_VAL);
  CheckGauge(m->running, HUGE_VAL);
  CheckGauge(m->kv_usage, 1.0);
  return 0;
}
