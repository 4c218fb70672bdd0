// Walking a policy's YAML nodes with an error list (policy_reader.h).
#include "policy/policy_reader.h"

#include <algorithm>
#include <cmath>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/edit_distance.h"
#include "policy/policy_units.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr size_t kShownScalarBytes = 40;

bool IsScalar(const YAML::Node& node) { return node.IsDefined() && node.IsScalar(); }

std::string TypeError(absl::string_view expected, const YAML::Node& node) {
  return absl::StrCat("must be ", expected, ", got ", Describe(node));
}


}  // namespace

int LineOf(const YAML::Node& node) {
  if (!node.IsDefined()) return 0;
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? 0 : mark.line + 1;
}

std::string Describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "null";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  const std::string& text = node.Scalar();
  std::string shown = absl::CHexEscape(absl::string_view(text).substr(0, kShownScalarBytes));
  return absl::StrCat("\"", shown, text.size() > kShownScalarBytes ? "...\"" : "\"");
}

std::string FieldPath(absl::string_view parent, absl::string_view field) {
  return parent.empty() ? std::string(field) : absl::StrCat(parent, ".", field);
}

std::string ItemPath(absl::string_view parent, size_t index) {
  return absl::StrCat(parent, "[", index, "]");
}

void PolicyErrors::Add(int line, absl::string_view path, absl::string_view problem) {
  const std::string text = path.empty()
                               ? absl::StrCat(source_, ":", line, ": ", problem)
                               : absl::StrCat(source_, ":", line, ": ", path, " ", problem);
  // One error per line: a control character from the document (a field name, a value, or
  // yaml-cpp's message quoting one) is escaped, so it can neither split nor forge a line.
  std::string escaped;
  escaped.reserve(text.size());
  for (const char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      absl::StrAppend(&escaped, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      escaped.push_back(c);
    }
  }
  errors_.emplace_back(line, std::move(escaped));
}

absl::Status PolicyErrors::ToStatus() const {
  if (errors_.empty()) return absl::OkStatus();
  std::vector<std::pair<int, std::string>> sorted = errors_;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<absl::string_view> lines;
  lines.reserve(sorted.size());
  for (const auto& error : sorted) lines.push_back(error.second);
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

bool ReadString(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
                std::string* out) {
  if (!IsScalar(node)) {
    errors.Add(LineOf(node), path, TypeError("a string", node));
    return false;
  }
  *out = node.Scalar();
  return true;
}

bool ReadInt(PolicyErrors& errors, const YAML::Node& node, const std::string& path, int64_t min,
             int64_t max, int64_t* out) {
  const std::string range = max == INT64_MAX ? absl::StrCat(">= ", min)
                                             : absl::StrCat("in [", min, ", ", max, "]");
  int64_t value = 0;
  if (!IsScalar(node) || !ParseWholeNumber(node.Scalar(), &value)) {
    // A long run of digits is a number beyond int64: say so rather than "not an integer".
    absl::string_view text = IsScalar(node) ? absl::string_view(node.Scalar()) : absl::string_view();
    if (!text.empty() && (text.front() == '-' || text.front() == '+')) text.remove_prefix(1);
    const bool digits = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
      return absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '_';
    });
    errors.Add(LineOf(node), path,
               digits ? absl::StrCat("must be an integer ", range, ", got ", Describe(node))
                      : TypeError("an integer", node));
    return false;
  }
  if (value < min || value > max) {
    errors.Add(LineOf(node), path, absl::StrCat("must be ", range, ", got ", value));
    return false;
  }
  *out = value;
  return true;
}

bool ReadDouble(PolicyErrors& errors, const YAML::Node& node, const std::string& path, double min,
                double max, double* out) {
  double value = 0;
  if (!IsScalar(node) || !absl::SimpleAtod(node.Scalar(), &value) || !std::isfinite(value)) {
    errors.Add(LineOf(node), path, TypeError("a number", node));
    return false;
  }
  if (!(value >= min && value <= max)) {
    errors.Add(LineOf(node), path, absl::StrCat("must be in [", min, ", ", max, "], got ", value));
    return false;
  }
  *out = value;
  return true;
}

bool ReadBool(PolicyErrors& errors, const YAML::Node& node, const std::string& path, bool* out) {
  if (IsScalar(node)) {
    const std::string lower = absl::AsciiStrToLower(node.Scalar());
    if (lower == "true" || lower == "false") {
      *out = lower == "true";
      return true;
    }
  }
  errors.Add(LineOf(node), path, TypeError("true or false", node));
  return false;
}

bool ReadDuration(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
                  absl::Duration min, absl::Duration max, absl::Duration* out) {
  if (!IsScalar(node)) {
    errors.Add(LineOf(node), path, TypeError("a duration like 250ms, 1.5s, 1m, 1h or 1d", node));
    return false;
  }
  absl::StatusOr<absl::Duration> value = ParseDuration(node.Scalar());
  if (!value.ok()) {
    int64_t bare = 0;
    errors.Add(LineOf(node), path,
               ParseWholeNumber(node.Scalar(), &bare)
                   ? absl::StrCat(value.status().message(), " (add a unit: ", node.Scalar(), "s)")
                   : std::string(value.status().message()));
    return false;
  }
  if (*value < min || *value > max) {
    errors.Add(LineOf(node), path,
               absl::StrCat("must be in [", absl::FormatDuration(min), ", ",
                            absl::FormatDuration(max), "], got ", node.Scalar()));
    return false;
  }
  *out = *value;
  return true;
}

bool ReadStringList(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
                    bool single_ok, std::vector<std::string>* out) {
  if (single_ok && IsScalar(node)) {
    *out = {node.Scalar()};
    return true;
  }
  if (!node.IsDefined() || !node.IsSequence()) {
    errors.Add(LineOf(node), path,
               TypeError(single_ok ? "a string or a list of strings" : "a list of strings", node));
    return false;
  }
  std::vector<std::string> values;
  bool ok = true;
  for (size_t i = 0; i < node.size(); ++i) {
    std::string value;
    if (ReadString(errors, node[i], ItemPath(path, i), &value)) {
      values.push_back(std::move(value));
    } else {
      ok = false;
    }
  }
  if (ok) *out = std::move(values);
  return ok;
}

bool ReadChoice(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
                std::initializer_list<absl::string_view> names, size_t* index) {
  if (IsScalar(node)) {
    size_t i = 0;
    for (absl::string_view name : names) {
      if (node.Scalar() == name) {
        *index = i;
        return true;
      }
      ++i;
    }
  }
  std::string problem = TypeError(absl::StrCat("one of ", absl::StrJoin(names, ", ")), node);
  if (IsScalar(node)) {
    if (absl::string_view near = NearestName(node.Scalar(), names); !near.empty()) {
      absl::StrAppend(&problem, " (did you mean ", near, "?)");
    }
  }
  errors.Add(LineOf(node), path, problem);
  return false;
}

bool ExpectList(PolicyErrors& errors, const YAML::Node& node, const std::string& path) {
  if (node.IsDefined() && node.IsSequence()) return true;
  errors.Add(LineOf(node), path, TypeError("a list", node));
  return false;
}

absl::string_view NearestName(absl::string_view name,
                             std::initializer_list<absl::string_view> known) {
  absl::string_view best;
  size_t best_distance = 3;  // at most two edits
  for (absl::string_view candidate : known) {
    const size_t distance = EditDistance(name, candidate);
    if (distance < best_distance && distance < candidate.size()) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

Fields::Fields(PolicyErrors& errors, const YAML::Node& node, std::string path,
               std::initializer_list<absl::string_view> known)
    : errors_(errors), path_(std::move(path)), line_(internal::LineOf(node)) {
  if (!node.IsDefined() || !node.IsMap()) {
    errors_.Add(line_, path_, TypeError("a mapping", node));
    return;
  }
  ok_ = true;
  absl::flat_hash_set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;  // a copy: `it->` points into a temporary proxy
    if (!IsScalar(key)) {
      errors_.Add(internal::LineOf(key), path_, absl::StrCat("has a key that is not a name: ", Describe(key)));
      continue;
    }
    const std::string& name = key.Scalar();
    const std::string field_path = FieldPath(path_, name);
    if (!seen.insert(name).second) {
      errors_.Add(internal::LineOf(key), field_path, "is set twice");
      continue;
    }
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string problem = "unknown field";
      if (name == "<<") {
        problem = "unknown field (YAML merge keys are not supported: repeat the fields)";
      } else if (absl::string_view near = NearestName(name, known); !near.empty()) {
        problem = absl::StrCat("unknown field (did you mean ", near, "?)");
      } else {
        problem = absl::StrCat("unknown field (known: ", absl::StrJoin(known, ", "), ")");
      }
      errors_.Add(internal::LineOf(key), field_path, problem);
      continue;
    }
    fields_.emplace_back(name, it->second);
  }
}

const YAML::Node* Fields::Get(absl::string_view name) const {
  for (const auto& field : fields_) {
    if (field.first == name) return &field.second;
  }
  return nullptr;
}

int Fields::LineOf(absl::string_view name) const {
  const YAML::Node* node = Get(name);
  const int line = node != nullptr ? internal::LineOf(*node) : 0;
  return line > 0 ? line : line_;
}

bool Fields::Require(absl::string_view name) const {
  if (Has(name)) return true;
  errors_.Add(line_, PathOf(name), "is required");
  return false;
}

void Fields::Error(absl::string_view name, absl::string_view problem) const {
  errors_.Add(LineOf(name), PathOf(name), problem);
}

bool Fields::String(absl::string_view name, std::string* out) const {
  const YAML::Node* node = Get(name);
  return node == nullptr || ReadString(errors_, *node, PathOf(name), out);
}
bool Fields::Int(absl::string_view name, int64_t min, int64_t max, int64_t* out) const {
  const YAML::Node* node = Get(name);
  return node == nullptr || ReadInt(errors_, *node, PathOf(name), min, max, out);
}
bool Fields::Int(absl::string_view name, int min, int max, int* out) const {
  int64_t value = *out;
  if (!Int(name, int64_t{min}, int64_t{max}, &value)) return false;
  *out = static_cast<int>(value);
  return true;
}
bool Fields::Double(absl::string_view name, double min, double max, double* out) const {
  const YAML::Node* node = Get(name);
  return node == nullptr || ReadDouble(errors_, *node, PathOf(name), min, max, out);
}
bool Fields::Bool(absl::string_view name, bool* out) const {
  const YAML::Node* node = Get(name);
  return node == nullptr || ReadBool(errors_, *node, PathOf(name), out);
}
bool Fields::Duration(absl::string_view name, absl::Duration min, absl::Duration max,
                      absl::Duration* out) const {
  const YAML::Node* node = Get(name);
  return node == nullptr || ReadDuration(errors_, *node, PathOf(name), min, max, out);
}
bool Fields::StringList(absl::string_view name, bool single_ok,
                        std::vector<std::string>* out) const {
  const YAML::Node* node = Get(name);
  return node == nullptr || ReadStringList(errors_, *node, PathOf(name), single_ok, out);
}
bool Fields::Choice(absl::string_view name, std::initializer_list<absl::string_view> names,
                    size_t* index) const {
  const YAML::Node* node = Get(name);
  return node == nullptr || ReadChoice(errors_, *node, PathOf(name), names, index);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
