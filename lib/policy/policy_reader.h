// Internal: walking a YAML document for sluice/policy.h. Every read names the field's path
// ("rules[1].requests[0].limit") and reports a problem with the node's line into one error list,
// so a parse collects every error instead of stopping at the first.
#ifndef SLUICE_LIB_POLICY_POLICY_READER_H_
#define SLUICE_LIB_POLICY_POLICY_READER_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "yaml-cpp/yaml.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// The 1-based line of `node`, or 0 when it has none (a node built in code).
int LineOf(const YAML::Node& node);

// How a node is named in "got ..." (a quoted, shortened scalar; "a list"; "a mapping"; "null").
std::string Describe(const YAML::Node& node);

// "<parent>.<field>" (or "<field>" at the top level) and "<parent>[<i>]".
std::string FieldPath(absl::string_view parent, absl::string_view field);
std::string ItemPath(absl::string_view parent, size_t index);

// The error list of one parse.
class PolicyErrors {
 public:
  explicit PolicyErrors(std::string source) : source_(std::move(source)) {}
  // Records "<source>:<line>: <path> <problem>" (the path is left out when empty).
  void Add(int line, absl::string_view path, absl::string_view problem);
  bool empty() const { return errors_.empty(); }
  size_t size() const { return errors_.size(); }
  // OK, or InvalidArgument listing every error by line (stable: same line keeps its order).
  absl::Status ToStatus() const;

 private:
  std::string source_;
  std::vector<std::pair<int, std::string>> errors_;
};

// Scalar readers: each reports into `errors` and returns false when the node is not a value of
// the type (and range) asked for. `path` names the field.
bool ReadString(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
                std::string* out);
bool ReadInt(PolicyErrors& errors, const YAML::Node& node, const std::string& path, int64_t min,
             int64_t max, int64_t* out);
bool ReadDouble(PolicyErrors& errors, const YAML::Node& node, const std::string& path, double min,
                double max, double* out);
bool ReadBool(PolicyErrors& errors, const YAML::Node& node, const std::string& path, bool* out);
// A duration ("250ms", "1.5s", "1m", "1h", "1d"; see policy_durations.h) in [min, max].
bool ReadDuration(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
                  absl::Duration min, absl::Duration max, absl::Duration* out);
// A list of strings; with `single_ok`, one string stands for a list of one.
bool ReadStringList(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
                    bool single_ok, std::vector<std::string>* out);
// One of `names` (spelled as in the file); `*index` is its position.
bool ReadChoice(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
                std::initializer_list<absl::string_view> names, size_t* index);
// Whether `node` is a sequence; reports "must be a list" otherwise.
bool ExpectList(PolicyErrors& errors, const YAML::Node& node, const std::string& path);

// The fields of one mapping, checked against those the section knows: a node that is not a
// mapping, a key that is not a plain string, a duplicate and an unknown field (with the nearest
// known name as a suggestion) are reported on construction; `ok()` is false only for the first.
// The typed getters read a field when present (leaving `*out` as it was when absent) and return
// false only when it is present and wrong.
class Fields {
 public:
  Fields(PolicyErrors& errors, const YAML::Node& node, std::string path,
         std::initializer_list<absl::string_view> known);

  bool ok() const { return ok_; }
  int line() const { return line_; }
  const std::string& path() const { return path_; }
  PolicyErrors& errors() const { return errors_; }
  std::string PathOf(absl::string_view name) const { return FieldPath(path_, name); }

  // The field's value, or nullptr when absent.
  const YAML::Node* Get(absl::string_view name) const;
  bool Has(absl::string_view name) const { return Get(name) != nullptr; }
  // The field's line, or the mapping's when the field is absent.
  int LineOf(absl::string_view name) const;
  // Reports "<path>.<name> is required" (at the mapping's line) when the field is absent.
  bool Require(absl::string_view name) const;
  // Reports "<path>.<name> <problem>" at the field's line (the mapping's when absent).
  void Error(absl::string_view name, absl::string_view problem) const;

  bool String(absl::string_view name, std::string* out) const;
  bool Int(absl::string_view name, int64_t min, int64_t max, int64_t* out) const;
  bool Int(absl::string_view name, int min, int max, int* out) const;
  bool Double(absl::string_view name, double min, double max, double* out) const;
  bool Bool(absl::string_view name, bool* out) const;
  bool Duration(absl::string_view name, absl::Duration min, absl::Duration max,
                absl::Duration* out) const;
  bool StringList(absl::string_view name, bool single_ok, std::vector<std::string>* out) const;
  bool Choice(absl::string_view name, std::initializer_list<absl::string_view> names,
              size_t* index) const;

 private:
  PolicyErrors& errors_;
  std::string path_;
  int line_ = 0;
  bool ok_ = false;
  std::vector<std::pair<std::string, YAML::Node>> fields_;
};

// The known name nearest to `name` by edit distance, when close enough to be a typo; else "".
absl::string_view NearestName(absl::string_view name, std::initializer_list<absl::string_view> known);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_POLICY_POLICY_READER_H_
