// JSON pieces shared by sluice's parsers and exposed for the tests: RFC 8785 (JCS)'s ECMAScript
// number form, name order and string escapes, and the guard every simdjson input goes through.
#ifndef SLUICE_LIB_CANONICAL_JSON_H_
#define SLUICE_LIB_CANONICAL_JSON_H_

#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

// Every file that parses with simdjson includes this one. simdjson's classes change layout with
// SIMDJSON_THREADS_ENABLED, which CMakeLists.txt pins on for sluice and for its consumers alike
// (one program keeps one copy of simdjson's inline functions): built without it, sluice's parsers
// would disagree with any consumer that also uses simdjson.
#ifndef SIMDJSON_THREADS_ENABLED
#error "sluice is built with SIMDJSON_THREADS_ENABLED=1 (see CMakeLists.txt)"
#endif

namespace sluice {
inline namespace v1 {
namespace internal {

// `text`, or an empty view with a non-null pointer when `text.data()` is nullptr. simdjson copies
// its input with memcpy, whose source must not be null even for 0 bytes (undefined behaviour),
// and std::string_view(nullptr, 0) is a valid empty view that callers (the C ABI's (NULL, 0))
// do pass.
inline std::string_view NonNull(std::string_view text) {
  return text.data() != nullptr ? text : std::string_view("", 0);
}

// Appends `value` as ECMAScript's Number.prototype.toString prints it (-0 as 0).
// REQUIRES: `value` is finite.
void AppendJcsNumber(double value, std::string& out);

// Whether member name `a` sorts before `b` by UTF-16 code units. REQUIRES: valid UTF-8.
bool Utf16Less(std::string_view a, std::string_view b);

// Appends `s` as a JSON string with RFC 8785's minimal escapes. REQUIRES: valid UTF-8.
void AppendJsonString(std::string_view s, std::string& out);

// Appends the canonical form (RFC 8785) of `json`, which must be an object, leaving out its
// top-level members whose names `skip` accepts. InvalidArgument if `json` is not valid JSON
// ("JSON: ...") or not an object ("request body: not a JSON object").
absl::Status AppendCanonicalObject(std::string_view json,
                                   absl::FunctionRef<bool(std::string_view)> skip,
                                   std::string& out);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CANONICAL_JSON_H_
