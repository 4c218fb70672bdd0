// RFC 8785 (JCS) pieces, shared with the SSE replay and exposed for the tests: the ECMAScript
// number form, the name order, the string escapes.
#ifndef SLUICE_LIB_CANONICAL_JSON_H_
#define SLUICE_LIB_CANONICAL_JSON_H_

#include <string>
#include <string_view>

namespace sluice {
inline namespace v1 {
namespace internal {

// Appends `value` as ECMAScript's Number.prototype.toString prints it (-0 as 0).
// REQUIRES: `value` is finite.
void AppendJcsNumber(double value, std::string& out);

// Whether member name `a` sorts before `b` by UTF-16 code units. REQUIRES: valid UTF-8.
bool Utf16Less(std::string_view a, std::string_view b);

// Appends `s` as a JSON string with RFC 8785's minimal escapes. REQUIRES: valid UTF-8.
void AppendJsonString(std::string_view s, std::string& out);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CANONICAL_JSON_H_
