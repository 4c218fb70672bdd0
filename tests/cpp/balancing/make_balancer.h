// The balancer the balancing tests start from: a strategy, a clock, a fixed seed (so random
// tie-breaks repeat), and the test's other options.
#ifndef SLUICE_TESTS_BALANCING_MAKE_BALANCER_H_
#define SLUICE_TESTS_BALANCING_MAKE_BALANCER_H_

#include <memory>

#include "sluice/balancer.h"
#include "test_support.h"

namespace sluice_test {

inline std::unique_ptr<sluice::Balancer> MakeBalancer(sluice::Balancer::Strategy strategy,
                                                      const sluice::Clock* clock,
                                                      sluice::Balancer::Options o = {}) {
  o.strategy = strategy;
  o.seed = 42;
  return Value(sluice::Balancer::Create(o, clock));
}

}  // namespace sluice_test

#endif  // SLUICE_TESTS_BALANCING_MAKE_BALANCER_H_
