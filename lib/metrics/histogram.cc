#include <algorithm>
#include <bit>
#include <cmath>

#include "metrics/metrics_memory.h"
#include "sluice/metrics.h"

namespace sluice {
inline namespace v1 {

void Histogram::Observe(double v) const {
  if (values_ == nullptr || std::isnan(v)) return;
  // The first bound >= v (le is inclusive); the bounds are the bits of increasing doubles.
  const int64_t* first = bounds_;
  const int64_t* last = bounds_ + bound_count_;
  const int64_t* bucket = std::lower_bound(first, last, v, [](int64_t bound_bits, double x) {
    return std::bit_cast<double>(bound_bits) < x;
  });
  internal::Word(values_ + 1 + (bucket - first)).fetch_add(1, std::memory_order_relaxed);
  // The sum: a double in an int64 word, added by compare-and-swap (atomic across processes).
  std::atomic_ref<int64_t> sum = internal::Word(values_);
  int64_t old_bits = sum.load(std::memory_order_relaxed);
  while (!sum.compare_exchange_weak(
      old_bits, std::bit_cast<int64_t>(std::bit_cast<double>(old_bits) + v),
      std::memory_order_relaxed)) {
  }
}

int64_t Histogram::count() const {
  if (values_ == nullptr) return 0;
  int64_t total = 0;
  for (int64_t i = 0; i <= bound_count_; ++i) {
    total += internal::Word(values_ + 1 + i).load(std::memory_order_relaxed);
  }
  return total;
}

double Histogram::sum() const {
  if (values_ == nullptr) return 0;
  return std::bit_cast<double>(internal::Word(values_).load(std::memory_order_relaxed));
}

}  // namespace v1
}  // namespace sluice
