// A rule's `match`: filters on request attributes, ANDed, or an `any_of` list of such groups
// tried in order (a first-match OR, like Higress's rule_items). See docs/policy.md.
#include <arpa/inet.h>

#include <algorithm>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "policy/policy_sections.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr absl::string_view kFilterForms =
    "a value, a list of values, or a mapping of tests (equals, prefix, cidr, absent, negate)";

// One attribute's filter from its value in the match mapping.
bool ReadFilter(PolicyErrors& errors, const YAML::Node& value, const std::string& path,
                AttributeFilter* filter) {
  if (value.IsDefined() && value.IsScalar()) {
    filter->equals = {value.Scalar()};
    return true;
  }
  if (value.IsDefined() && value.IsSequence()) {
    if (!ReadStringList(errors, value, path, false, &filter->equals)) return false;
    if (filter->equals.empty()) {
      errors.Add(LineOf(value), path, "must list at least one value");
      return false;
    }
    return true;
  }
  if (!value.IsDefined() || !value.IsMap()) {
    errors.Add(LineOf(value), path, absl::StrCat("must be ", kFilterForms, ", got ",
                                                 Describe(value)));
    return false;
  }
  Fields tests(errors, value, path, {"equals", "prefix", "cidr", "absent", "negate"});
  if (!tests.ok()) return false;
  bool ok = tests.StringList("equals", true, &filter->equals) &&
            tests.StringList("prefix", true, &filter->prefix);
  ok = tests.StringList("cidr", true, &filter->cidr) && ok;
  ok = tests.Bool("absent", &filter->absent) && ok;
  ok = tests.Bool("negate", &filter->negate) && ok;
  for (absl::string_view list : {"equals", "prefix", "cidr"}) {
    const YAML::Node* node = tests.Get(list);
    if (node != nullptr && node->IsSequence() && node->size() == 0) {
      tests.Error(list, "must list at least one value");
      ok = false;
    }
  }
  if (filter->absent && (tests.Has("equals") || tests.Has("prefix") || tests.Has("cidr"))) {
    tests.Error("absent", "cannot be combined with equals, prefix or cidr (an absent attribute "
                          "has no value to test)");
    ok = false;
  }
  if (tests.Has("cidr") && filter->attribute != "ip") {
    tests.Error("cidr", absl::StrCat("applies only to the attribute ip, not ", filter->attribute));
    ok = false;
  }
  for (size_t i = 0; i < filter->cidr.size(); ++i) {
    if (std::string problem = CheckCidr(filter->cidr[i]); !problem.empty()) {
      const YAML::Node& node = *tests.Get("cidr");
      errors.Add(node.IsSequence() ? LineOf(node[i]) : LineOf(node),
                 node.IsSequence() ? ItemPath(tests.PathOf("cidr"), i) : tests.PathOf("cidr"),
                 problem);
      ok = false;
    }
  }
  return ok;
}

// One group of filters (ANDed): a mapping from attribute names to filters.
bool ReadFilters(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
                 std::vector<AttributeFilter>* out) {
  if (!node.IsDefined() || !node.IsMap()) {
    errors.Add(LineOf(node), path, absl::StrCat("must be a mapping of attribute filters, got ",
                                                Describe(node)));
    return false;
  }
  bool ok = true;
  std::vector<AttributeFilter> filters;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;  // a copy: `it->` points into a temporary proxy
    if (!key.IsDefined() || !key.IsScalar()) {
      errors.Add(LineOf(key), path, absl::StrCat("has a key that is not an attribute name: ",
                                                 Describe(key)));
      ok = false;
      continue;
    }
    const std::string raw_path = FieldPath(path, key.Scalar());
    if (key.Scalar() == "any_of") {
      errors.Add(LineOf(key), raw_path,
                 "must be the only field of match (any_of lists groups of filters; put the "
                 "other filters in each group; groups do not nest)");
      ok = false;
      continue;
    }
    AttributeFilter filter;
    if (!NormalizeAttribute(errors, LineOf(key), raw_path, key.Scalar(), &filter.attribute)) {
      ok = false;
      continue;
    }
    const std::string filter_path = FieldPath(path, filter.attribute);
    bool duplicate = false;
    for (const AttributeFilter& other : filters) duplicate |= other.attribute == filter.attribute;
    if (duplicate) {
      errors.Add(LineOf(key), filter_path,
                 "is filtered twice (put every test of one attribute in one mapping)");
      ok = false;
      continue;
    }
    if (ReadFilter(errors, it->second, filter_path, &filter)) {
      filters.push_back(std::move(filter));
    } else {
      ok = false;
    }
  }
  if (ok) *out = std::move(filters);
  return ok;
}

}  // namespace

std::string CheckCidr(absl::string_view cidr) {
  const size_t slash = cidr.find('/');
  const std::string address(cidr.substr(0, slash));
  unsigned char bytes[16];
  int bits = 0;
  if (inet_pton(AF_INET, address.c_str(), bytes) == 1) {
    bits = 32;
  } else if (inet_pton(AF_INET6, address.c_str(), bytes) == 1) {
    bits = 128;
  } else {
    return absl::StrCat("must be an IPv4 or IPv6 address or network (10.0.0.0/8, 2001:db8::/32), "
                        "got \"", absl::CHexEscape(cidr.substr(0, 60)), "\"");
  }
  if (slash == absl::string_view::npos) return "";
  const absl::string_view length = cidr.substr(slash + 1);
  int prefix = -1;
  const bool digits = !length.empty() && length.size() <= 3 &&
                      std::all_of(length.begin(), length.end(), [](char c) {
                        return absl::ascii_isdigit(static_cast<unsigned char>(c));
                      });
  if (!digits || !absl::SimpleAtoi(length, &prefix) || prefix > bits) {
    return absl::StrCat("has a prefix length that is not in [0, ", bits, "]: \"",
                        absl::CHexEscape(cidr.substr(0, 60)), "\"");
  }
  return "";
}

void ReadMatch(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
               RuleMatch* out) {
  if (!node.IsDefined() || !node.IsMap()) {
    errors.Add(LineOf(node), path,
               absl::StrCat("must be a mapping of attribute filters or {any_of: [...]}, got ",
                            Describe(node)));
    return;
  }
  const YAML::Node any_of = node["any_of"];
  if (!any_of.IsDefined() || node.size() != 1) {
    std::vector<AttributeFilter> filters;
    if (ReadFilters(errors, node, path, &filters) && !filters.empty()) {
      out->any_of = {std::move(filters)};
    }
    return;
  }
  const std::string list_path = FieldPath(path, "any_of");
  if (!ExpectList(errors, any_of, list_path)) return;
  if (any_of.size() == 0) {
    errors.Add(LineOf(any_of), list_path,
               "must list at least one group of filters (leave match out to match every request)");
    return;
  }
  std::vector<std::vector<AttributeFilter>> groups;
  bool ok = true;
  size_t i = 0;
  for (auto it = any_of.begin(); it != any_of.end(); ++it, ++i) {
    std::vector<AttributeFilter> filters;
    if (ReadFilters(errors, *it, ItemPath(list_path, i), &filters)) {
      groups.push_back(std::move(filters));
    } else {
      ok = false;
    }
  }
  if (ok) out->any_of = std::move(groups);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
