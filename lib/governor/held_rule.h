// Internal: what an Admission holds of one rule (sluice/governor.h declares it opaque).
#ifndef SLUICE_LIB_GOVERNOR_HELD_RULE_H_
#define SLUICE_LIB_GOVERNOR_HELD_RULE_H_

#include "governor/rule_state.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct HeldRule {
  RuleState* rule = nullptr;  // alive while the Admission's snapshot is
  Taken taken;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_GOVERNOR_HELD_RULE_H_
