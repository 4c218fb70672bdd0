// ParsePolicy: the document's top level, then each section in the order references need
// (stores and upstreams before the rules, fallbacks and cache that name them).
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "policy/policy_reader.h"
#include "policy/policy_sections.h"
#include "sluice/policy.h"
#include "yaml-cpp/yaml.h"

namespace sluice {
inline namespace v1 {
namespace {

using internal::Fields;
using internal::PolicyErrors;

void ReadDocument(PolicyErrors& errors, const YAML::Node& document, Policy* policy) {
  if (!document.IsDefined() || document.IsNull()) {
    errors.Add(1, "", "is empty: a policy is a mapping that starts with version: 1");
    return;
  }
  Fields fields(errors, document, "",
                {"version", "name", "stores", "rules", "upstreams", "fallbacks", "cache",
                 "metrics"});
  if (!fields.ok()) return;  // "must be a mapping, got ..."
  int64_t version = 0;
  if (fields.Require("version") && fields.Int("version", 0, INT64_MAX, &version) &&
      version != 1) {
    fields.Error("version", absl::StrCat("must be 1 (the only version), got ", version));
  }
  if (fields.String("name", &policy->name) && fields.Has("name") &&
      !internal::IsPolicyName(policy->name)) {
    fields.Error("name", absl::StrCat("must be 1 to 100 characters of [A-Za-z0-9._-], got ",
                                      internal::Describe(*fields.Get("name"))));
  }
  if (const YAML::Node* n = fields.Get("stores")) internal::ReadStores(errors, *n, policy);
  if (const YAML::Node* n = fields.Get("upstreams")) internal::ReadUpstreams(errors, *n, policy);
  if (const YAML::Node* n = fields.Get("rules")) internal::ReadRules(errors, *n, policy);
  if (const YAML::Node* n = fields.Get("fallbacks")) internal::ReadFallbacks(errors, *n, policy);
  if (const YAML::Node* n = fields.Get("cache")) internal::ReadCache(errors, *n, policy);
  if (const YAML::Node* n = fields.Get("metrics")) internal::ReadMetrics(errors, *n, policy);
}

}  // namespace

absl::StatusOr<Policy> ParsePolicy(std::string_view text, std::string_view source) {
  Policy policy;
  policy.source = std::string(source);
  PolicyErrors errors(policy.source);
  // yaml-cpp reports syntax errors (and nesting deeper than it allows) by throwing; nothing it
  // throws may escape, whatever the input.
  try {
    const std::vector<YAML::Node> documents = YAML::LoadAll(std::string(text));
    if (documents.size() > 1) {
      errors.Add(internal::LineOf(documents[1]), "",
                 absl::StrCat("holds ", documents.size(),
                              " YAML documents: a policy is one (remove the ---)"));
    } else {
      ReadDocument(errors, documents.empty() ? YAML::Node() : documents.front(), &policy);
    }
  } catch (const YAML::Exception& e) {
    errors.Add(e.mark.is_null() ? 1 : e.mark.line + 1, "",
               absl::StrCat("is not valid YAML: ", e.msg));
  } catch (const std::exception& e) {
    errors.Add(1, "", absl::StrCat("could not be read: ", e.what()));
  }
  if (absl::Status status = errors.ToStatus(); !status.ok()) return status;
  return policy;
}

}  // namespace v1
}  // namespace sluice
