// Printing the harness's tables.
#ifndef SLUICE_BENCHMARKS_HARNESS_REPORT_H_
#define SLUICE_BENCHMARKS_HARNESS_REPORT_H_

#include <ostream>

#include "dify_burst.h"

namespace harness {

void PrintReport(const Scenario& scenario, Outcome& outcome, std::ostream& os);

}  // namespace harness

#endif  // SLUICE_BENCHMARKS_HARNESS_REPORT_H_
