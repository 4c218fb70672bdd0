// ParsePolicy: the document's top level, then each section in the order references need
// (stores and upstreams before the rules, fallbacks and cache that name them).
#include <exception>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "policy/policy_reader.h"
#include "policy/policy_sections.h"
#include "sluice/policy.h"
#include "yaml-cpp/anchor.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace sluice {
inline namespace v1 {
namespace {

using internal::Fields;
using internal::PolicyErrors;

// Where the stream's first two documents start (a policy is one document). Reads at most two,
// through an event handler that builds nothing, so it ends on every input.
struct DocumentStarts {
  int count = 0;
  int first_pos = -1;
  int second_pos = -1;
  int second_line = 1;
};

class DocumentCounter : public YAML::EventHandler {
 public:
  explicit DocumentCounter(DocumentStarts* starts) : starts_(starts) {}
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++starts_->count == 1) {
      starts_->first_pos = mark.pos;
    } else if (starts_->count == 2) {
      starts_->second_pos = mark.pos;
      starts_->second_line = mark.line + 1;
    }
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

 private:
  DocumentStarts* starts_;
};

DocumentStarts FindDocuments(const std::string& yaml) {
  DocumentStarts starts;
  std::istringstream in(yaml);
  YAML::Parser parser(in);
  DocumentCounter counter(&starts);
  for (int i = 0; i < 2 && parser.HandleNextDocument(counter); ++i) {
  }
  return starts;
}

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
  const std::string yaml(text);
  // yaml-cpp reports syntax errors (and nesting deeper than it allows) by throwing; nothing it
  // throws may escape, whatever the input.
  try {
    const DocumentStarts starts = FindDocuments(yaml);
    if (starts.count > 1 && starts.second_pos == starts.first_pos) {
      // yaml-cpp 0.7 reads a stray token (",") as endless empty documents (its LoadAll never
      // returns: jbeder/yaml-cpp#1040, fixed upstream by #1319).
      errors.Add(starts.second_line, "",
                 "is not valid YAML: a token where no document can start (a stray ','?)");
    } else if (starts.count > 1) {
      errors.Add(starts.second_line, "",
                 "starts a second YAML document: a policy is one (remove the ---)");
    } else {
      ReadDocument(errors, YAML::Load(yaml), &policy);
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
