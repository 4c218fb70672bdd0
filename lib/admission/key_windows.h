// Internal: per-key windows (sluice::KeyLimits), compiled once by the object that will use them.
//
// A KeyLimits replaces an object's windows for one call. It is compiled for its object's scope:
// GCRA windows at the object's scale per window (so a key's TAT means the same under either
// limits), sliding windows checked against the object's log capacity, the Redis scripts'
// arguments formatted once. The backends read it through `const KeyWindows*` (nullptr: the
// object's own windows), so the calls without per-key limits pay one pointer test.
#ifndef SLUICE_LIB_ADMISSION_KEY_WINDOWS_H_
#define SLUICE_LIB_ADMISSION_KEY_WINDOWS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "admission/gcra.h"
#include "admission/sliding_log.h"
#include "sluice/window.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct KeyWindows {
  uint64_t owner = 0;                  // GcraBackend::id() of the object that compiled them
  std::vector<Window> source;          // as the caller gave them
  std::vector<GcraWindow> gcra;        // at the object's scales: cost checks, local GCRA
  int64_t min_burst = 0;               // the largest cost these limits can ever admit
  bool exact = true;                   // every GCRA emission interval is exact at its scale
  std::vector<SlidingWindow> sliding;  // sliding backends: limit <= the object's, any period
  std::vector<std::string> redis_args;  // Redis strict: the scripts' per-window arguments
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_ADMISSION_KEY_WINDOWS_H_
