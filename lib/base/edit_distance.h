// Internal: how many single-character edits turn one name into another (Levenshtein), for the
// "did you mean" of configuration errors (policy fields, URL options).
#ifndef SLUICE_LIB_BASE_EDIT_DISTANCE_H_
#define SLUICE_LIB_BASE_EDIT_DISTANCE_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace sluice {
inline namespace v1 {
namespace internal {

size_t EditDistance(absl::string_view a, absl::string_view b);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_BASE_EDIT_DISTANCE_H_
