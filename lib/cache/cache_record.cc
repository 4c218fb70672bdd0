#include "cache/cache_record.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr std::string_view kMagic = "SLC1";
constexpr uint8_t kStreamed = 1;

void PutU32(std::string& out, size_t n) {
  const auto v = static_cast<uint32_t>(n);
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

void PutBytes(std::string& out, std::string_view bytes) {
  PutU32(out, bytes.size());
  out.append(bytes);
}

// Reads from the front of `in`, failing (with the name of what it read) when `in` is too short.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  absl::StatusOr<uint32_t> U32(std::string_view what) {
    if (in_.size() < 4) return Short(what);
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in_[static_cast<size_t>(i)]);
    in_.remove_prefix(4);
    return v;
  }

  absl::StatusOr<std::string_view> Bytes(std::string_view what) {
    absl::StatusOr<uint32_t> n = U32(what);
    if (!n.ok()) return n.status();
    if (in_.size() < *n) return Short(what);
    std::string_view out = in_.substr(0, *n);
    in_.remove_prefix(*n);
    return out;
  }

  std::string_view rest() const { return in_; }
  void Skip(size_t n) { in_.remove_prefix(n); }

 private:
  static absl::Status Short(std::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("sluice cache record: truncated ", std::string(what)));
  }
  std::string_view in_;
};

}  // namespace

std::string EncodeCacheRecord(std::string_view canonical, const CachedResponse& response) {
  std::string out;
  out.reserve(kMagic.size() + 1 + 12 + canonical.size() +
              static_cast<size_t>(response.bytes()) + 4 * response.chunks.size());
  out.append(kMagic);
  out.push_back(static_cast<char>(response.streamed ? kStreamed : 0));
  PutBytes(out, canonical);
  PutBytes(out, response.body);
  PutU32(out, response.chunks.size());
  for (const std::string& chunk : response.chunks) PutBytes(out, chunk);
  return out;
}

absl::StatusOr<DecodedCacheRecord> DecodeCacheRecord(std::string_view bytes) {
  if (bytes.substr(0, kMagic.size()) != kMagic || bytes.size() < kMagic.size() + 1) {
    return absl::InvalidArgumentError("sluice cache record: not a record (magic)");
  }
  const auto flags = static_cast<uint8_t>(bytes[kMagic.size()]);
  if ((flags & ~kStreamed) != 0) {
    return absl::InvalidArgumentError("sluice cache record: unknown flags");
  }
  Reader in(bytes);
  in.Skip(kMagic.size() + 1);
  DecodedCacheRecord record;
  record.response.streamed = (flags & kStreamed) != 0;
  absl::StatusOr<std::string_view> canonical = in.Bytes("canonical");
  if (!canonical.ok()) return canonical.status();
  record.canonical = std::string(*canonical);
  absl::StatusOr<std::string_view> body = in.Bytes("body");
  if (!body.ok()) return body.status();
  record.response.body = std::string(*body);
  absl::StatusOr<uint32_t> count = in.U32("chunk count");
  if (!count.ok()) return count.status();
  // Every chunk needs at least its length: a count the rest cannot hold is rejected up front.
  if (*count > in.rest().size() / 4) {
    return absl::InvalidArgumentError("sluice cache record: truncated chunks");
  }
  record.response.chunks.reserve(*count);
  for (uint32_t i = 0; i < *count; ++i) {
    absl::StatusOr<std::string_view> chunk = in.Bytes("chunk");
    if (!chunk.ok()) return chunk.status();
    record.response.chunks.emplace_back(*chunk);
  }
  if (!in.rest().empty()) {
    return absl::InvalidArgumentError("sluice cache record: trailing bytes");
  }
  return record;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
