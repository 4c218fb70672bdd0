// Names in a policy: of its objects (rules, stores, upstreams, fallbacks) and of request
// attributes (policy_sections.h).
#include <algorithm>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "policy/policy_sections.h"

namespace sluice {
inline namespace v1 {
namespace internal {

bool IsPolicyName(absl::string_view name, size_t max_size) {
  if (name.empty() || name.size() > max_size) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

bool ReadPolicyName(const Fields& fields, absl::string_view field, std::vector<std::string>* taken,
                    std::string* out) {
  if (!fields.Require(field)) return false;
  std::string name;
  if (!fields.String(field, &name)) return false;
  if (!IsPolicyName(name)) {
    fields.Error(field, absl::StrCat("must be 1 to 100 characters of [A-Za-z0-9._-], got ",
                                     Describe(*fields.Get(field))));
    return false;
  }
  if (std::find(taken->begin(), taken->end(), name) != taken->end()) {
    fields.Error(field, absl::StrCat("\"", name, "\" is used twice (names are unique)"));
    return false;
  }
  taken->push_back(name);
  *out = std::move(name);
  return true;
}

bool NormalizeAttribute(PolicyErrors& errors, int line, const std::string& path,
                        absl::string_view name, std::string* out) {
  if (name.empty()) {
    errors.Add(line, path, "has an empty attribute name");
    return false;
  }
  if (absl::StartsWithIgnoreCase(name, "header.")) {
    std::string header = absl::AsciiStrToLower(name.substr(7));
    if (header.empty()) {
      errors.Add(line, path, "names no header: write header.<name>, e.g. header.x-plan");
      return false;
    }
    *out = absl::StrCat("header.", header);  // HTTP header names are case-insensitive
    return true;
  }
  *out = std::string(name);
  return true;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
