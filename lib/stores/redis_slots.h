// Internal: Redis Cluster's key slots: which slot a key hashes to, and which master serves it
// (the map a cluster node reports with CLUSTER SLOTS).
//
// A key's slot is CRC16 (XMODEM) of the key, or of its hash tag (the text between the first '{'
// and the next '}', when not empty), modulo 16384: https://redis.io/docs/reference/cluster-spec/
// ("Keys distribution model"). sluice's keys are all tagged, so a script's keys share one slot.
#ifndef SLUICE_LIB_STORES_REDIS_SLOTS_H_
#define SLUICE_LIB_STORES_REDIS_SLOTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stores/redis_link.h"

struct redisReply;

namespace sluice {
inline namespace v1 {
namespace internal {

inline constexpr int kClusterSlots = 16384;

// The slot `key` belongs to.
int KeySlot(absl::string_view key);

// Which master serves each slot. Not thread-safe (the connection thread's).
class SlotMap {
 public:
  // Reads a CLUSTER SLOTS reply. A master given with an empty host is `asked`'s host (Redis
  // answers "" for "the address you reached me at"). Errors: Internal for a malformed reply.
  static absl::StatusOr<SlotMap> FromClusterSlots(const redisReply& reply,
                                                  const RedisEndpoint& asked);

  // The master of `slot` (an index into masters()), or -1 if no master serves it.
  int OwnerOf(int slot) const { return owner_[slot]; }
  // Records that `at` serves `slot` now (a MOVED redirection ahead of the next refresh).
  void Assign(int slot, const RedisEndpoint& at);
  const std::vector<RedisEndpoint>& masters() const { return masters_; }
  // How many slots no master serves.
  int uncovered() const;
  bool empty() const { return masters_.empty(); }

 private:
  int IndexOf(const RedisEndpoint& at);
  std::vector<RedisEndpoint> masters_;
  std::vector<int16_t> owner_ = std::vector<int16_t>(kClusterSlots, -1);
};

// Parses a redirection: "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" (the host
// may be an IPv6 literal, unbracketed, or empty: the node that answered). False if `error` is
// neither.
struct Redirection {
  bool ask = false;
  int slot = 0;
  RedisEndpoint to;
};
bool ParseRedirection(absl::string_view error, const RedisEndpoint& answered, Redirection* out);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_STORES_REDIS_SLOTS_H_
