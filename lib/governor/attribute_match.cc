#include "governor/attribute_match.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sluice {
inline namespace v1 {
namespace internal {

bool IpNetwork::Contains(const std::array<uint8_t, 16>& ip) const {
  int full = prefix_bits / 8;
  if (std::memcmp(ip.data(), address.data(), full) != 0) return false;
  int rest = prefix_bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xFF << (8 - rest));
  return (ip[full] & mask) == (address[full] & mask);
}

std::optional<std::array<uint8_t, 16>> ParseIpAddress(std::string_view text) {
  // inet_pton needs a NUL-terminated string; addresses are short (45 characters at most).
  char buffer[64];
  if (text.empty() || text.size() >= sizeof(buffer)) return std::nullopt;
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  std::array<uint8_t, 16> out{};
  in_addr v4;
  if (inet_pton(AF_INET, buffer, &v4) == 1) {
    out[10] = 0xFF;
    out[11] = 0xFF;
    std::memcpy(out.data() + 12, &v4, 4);
    return out;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, buffer, &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    return out;
  }
  return std::nullopt;
}

absl::StatusOr<IpNetwork> ParseIpNetwork(absl::string_view text, absl::string_view field) {
  absl::string_view address = text;
  std::optional<int> bits;
  if (size_t slash = text.find('/'); slash != absl::string_view::npos) {
    address = text.substr(0, slash);
    int parsed = -1;
    if (!absl::SimpleAtoi(text.substr(slash + 1), &parsed) || parsed < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " has a bad prefix length: \"", text, "\""));
    }
    bits = parsed;
  }
  std::optional<std::array<uint8_t, 16>> ip = ParseIpAddress(std::string_view(address.data(), address.size()));
  if (!ip) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be an IPv4 or IPv6 address or network, got \"", text, "\""));
  }
  bool v4 = address.find(':') == absl::string_view::npos;
  int max_bits = v4 ? 32 : 128;
  int prefix = bits.value_or(max_bits);
  if (prefix > max_bits) {
    return absl::InvalidArgumentError(absl::StrCat(field, " prefix length must be <= ", max_bits,
                                                   ", got ", prefix, " in \"", text, "\""));
  }
  IpNetwork network;
  network.address = *ip;
  network.prefix_bits = v4 ? 96 + prefix : prefix;
  return network;
}

std::optional<std::string_view> RequestView::Find(std::string_view name) const {
  for (const Attribute& attribute : attributes_) {
    if (attribute.name == name) return attribute.value;
  }
  return std::nullopt;
}

const std::optional<std::array<uint8_t, 16>>& RequestView::ip() const {
  if (!ip_parsed_) {
    ip_parsed_ = true;
    if (std::optional<std::string_view> text = Find("ip")) ip_ = ParseIpAddress(*text);
  }
  return ip_;
}

absl::StatusOr<CompiledFilter> CompiledFilter::Compile(const AttributeFilter& filter,
                                                       absl::string_view field) {
  CompiledFilter out;
  if (filter.attribute.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".attribute must not be empty"));
  }
  out.attribute_ = filter.attribute;
  // Header names are case-insensitive: the policy and the caller both use lower case.
  if (absl::StartsWith(out.attribute_, "header.")) absl::AsciiStrToLower(&out.attribute_);
  out.is_ip_ = out.attribute_ == "ip";
  for (const std::string& value : filter.equals) {
    if (value == "*") out.any_value_ = true;
    out.equals_.insert(value);
  }
  out.prefix_ = filter.prefix;
  if (!filter.cidr.empty() && !out.is_ip_) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".cidr applies to the attribute \"ip\" only, not \"", filter.attribute, "\""));
  }
  for (size_t i = 0; i < filter.cidr.size(); ++i) {
    absl::StatusOr<IpNetwork> network =
        ParseIpNetwork(filter.cidr[i], absl::StrCat(field, ".cidr[", i, "]"));
    if (!network.ok()) return network.status();
    out.cidr_.push_back(*network);
  }
  out.absent_ = filter.absent;
  out.negate_ = filter.negate;
  return out;
}

bool CompiledFilter::Test(const RequestView& request) const {
  std::optional<std::string_view> value = request.Find(attribute_);
  if (absent_) return !value.has_value();
  if (!value) return false;
  if (!equals_.empty() && !any_value_ && !equals_.contains(AbslView(*value))) return false;
  if (!prefix_.empty()) {
    bool any = false;
    for (const std::string& p : prefix_) any = any || absl::StartsWith(AbslView(*value), p);
    if (!any) return false;
  }
  if (!cidr_.empty()) {
    const std::optional<std::array<uint8_t, 16>>& ip = request.ip();
    if (!ip) return false;
    bool any = false;
    for (const IpNetwork& network : cidr_) any = any || network.Contains(*ip);
    if (!any) return false;
  }
  return true;
}

bool CompiledFilter::Holds(const RequestView& request) const {
  return Test(request) != negate_;
}

absl::StatusOr<CompiledMatch> CompiledMatch::Compile(const RuleMatch& match,
                                                     absl::string_view field) {
  CompiledMatch out;
  for (size_t i = 0; i < match.any_of.size(); ++i) {
    std::vector<CompiledFilter> item;
    for (size_t j = 0; j < match.any_of[i].size(); ++j) {
      absl::StatusOr<CompiledFilter> filter = CompiledFilter::Compile(
          match.any_of[i][j], absl::StrCat(field, ".any_of[", i, "][", j, "]"));
      if (!filter.ok()) return filter.status();
      item.push_back(*std::move(filter));
    }
    out.any_of_.push_back(std::move(item));
  }
  return out;
}

bool CompiledMatch::Holds(const RequestView& request) const {
  if (any_of_.empty()) return true;
  for (const std::vector<CompiledFilter>& item : any_of_) {
    bool all = true;
    for (const CompiledFilter& filter : item) {
      if (!filter.Holds(request)) {
        all = false;
        break;
      }
    }
    if (all) return true;
  }
  return false;
}

void BuildKey(const RequestView& request, absl::Span<const std::string> attributes,
              std::string* key) {
  key->clear();
  if (attributes.empty()) {
    key->push_back('*');
    return;
  }
  for (size_t i = 0; i < attributes.size(); ++i) {
    if (i > 0) key->push_back('/');
    std::optional<std::string_view> value = request.Find(attributes[i]);
    if (!value) continue;
    // '/' separates the values and '%' escapes: "a/b"+"c" and "a"+"b/c" stay two keys, so one
    // tenant can never spend another's limit by choosing its name.
    for (char c : *value) {
      if (c == '/') {
        key->append("%2F");
      } else if (c == '%') {
        key->append("%25");
      } else {
        key->push_back(c);
      }
    }
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
