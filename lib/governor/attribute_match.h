// Internal: a rule's match compiled for speed (equals sets, parsed networks), and the request's
// attributes as the matcher and the key builder read them.
#ifndef SLUICE_LIB_GOVERNOR_ATTRIBUTE_MATCH_H_
#define SLUICE_LIB_GOVERNOR_ATTRIBUTE_MATCH_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "sluice/governor.h"
#include "sluice/policy.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Debian's Abseil has its own string_view: the views this layer hands to absl:: functions.
inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

// An IPv6 address (IPv4 as ::ffff:a.b.c.d) and a prefix length over those 128 bits.
struct IpNetwork {
  std::array<uint8_t, 16> address{};
  int prefix_bits = 128;
  bool Contains(const std::array<uint8_t, 16>& ip) const;
};

// "10.0.0.0/8", "2001:db8::/32", or one address. InvalidArgument naming `field`.
absl::StatusOr<IpNetwork> ParseIpNetwork(absl::string_view text, absl::string_view field);
// An address in IPv6 form, or nullopt if `text` is not one.
std::optional<std::array<uint8_t, 16>> ParseIpAddress(std::string_view text);

// The request's attributes, looked up by name (the first occurrence wins); the client address
// is parsed once, on first use.
class RequestView {
 public:
  explicit RequestView(absl::Span<const Attribute> attributes) : attributes_(attributes) {}
  // The value, or nullopt when absent.
  std::optional<std::string_view> Find(std::string_view name) const;
  const std::optional<std::array<uint8_t, 16>>& ip() const;

 private:
  absl::Span<const Attribute> attributes_;
  mutable bool ip_parsed_ = false;
  mutable std::optional<std::array<uint8_t, 16>> ip_;
};

// One compiled AttributeFilter.
class CompiledFilter {
 public:
  static absl::StatusOr<CompiledFilter> Compile(const AttributeFilter& filter,
                                                absl::string_view field);
  bool Holds(const RequestView& request) const;

 private:
  bool Test(const RequestView& request) const;
  std::string attribute_;
  bool is_ip_ = false;
  bool any_value_ = false;  // equals contains "*"
  absl::flat_hash_set<std::string> equals_;
  std::vector<std::string> prefix_;
  std::vector<IpNetwork> cidr_;
  bool absent_ = false;
  bool negate_ = false;
};

// A compiled RuleMatch: any item whose filters all hold.
class CompiledMatch {
 public:
  static absl::StatusOr<CompiledMatch> Compile(const RuleMatch& match, absl::string_view field);
  bool Holds(const RequestView& request) const;

 private:
  std::vector<std::vector<CompiledFilter>> any_of_;
};

// The rule's key: the values of `attributes` joined by '/' (an absent one is empty; '/' and '%'
// inside a value are written %2F and %25), or "*" when the rule has no key attributes.
void BuildKey(const RequestView& request, absl::Span<const std::string> attributes,
              std::string* key);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_GOVERNOR_ATTRIBUTE_MATCH_H_
