// The Zipf request streams the cache benchmarks and the harness draw from.
#ifndef SLUICE_BENCHMARKS_ZIPF_H_
#define SLUICE_BENCHMARKS_ZIPF_H_

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace bench {

// Draws ids 0..n-1 with P(i) proportional to 1 / (i + 1)^s (inverse CDF, a binary search).
class Zipf {
 public:
  Zipf(int n, double s) : cdf_(static_cast<size_t>(n)) {
    double sum = 0;
    for (int i = 0; i < n; ++i) cdf_[static_cast<size_t>(i)] = sum += 1.0 / std::pow(i + 1, s);
    for (double& c : cdf_) c /= sum;
  }
  int operator()(std::mt19937_64& rng) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<int>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

}  // namespace bench

#endif  // SLUICE_BENCHMARKS_ZIPF_H_
