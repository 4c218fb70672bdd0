#include "stores/redis_scripts.h"
#include "admission/redis_leases.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "admission/admission_options.h"
#include "stores/redis_keys.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

// KEYS[1]: the key's sorted set of leases; KEYS[2]: its tombstones (ids released before their
// acquire ran). ARGV: max_in_flight, lease (us), lease id, "now" for sluice_now. Returns
// {granted, held, granted ? lease : time until the soonest lease ends}.
const std::string kAcquireScript = WithScriptNow(R"lua(
local now = sluice_now(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
local dead = redis.call('ZSCORE', KEYS[2], ARGV[3])
if dead and tonumber(dead) > now then
  return {0, held, 1}  -- released before it ran: its caller gave up on it
end
if held >= tonumber(ARGV[1]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, held, math.max(tonumber(first[2]) - now, 1)}
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) / 1000) + 1)
return {1, held + 1, lease}
)lua");

// KEYS as for acquire. ARGV: lease (us), lease id, "now". Returns {renewed}.
const std::string kRenewScript = WithScriptNow(R"lua(
local now = sluice_now(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return {0} end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) / 1000) + 1)
return {1}
)lua");

// KEYS as for acquire. ARGV: lease id, "now", tombstone life (us). Returns {was held} (an expired
// lease counts as not held). An id not held gets a tombstone, so that its acquire, if it is still
// on its way, takes nothing when it lands.
const std::string kReleaseScript = WithScriptNow(R"lua(
local now = sluice_now(ARGV[2])
local ends = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ends then
  redis.call('ZREM', KEYS[1], ARGV[1])
  if tonumber(ends) > now then return {1} end
  return {0}
end
local life = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + life, ARGV[1])
redis.call('PEXPIRE', KEYS[2], math.ceil(life / 1000) + 1)
return {0}
)lua");

// KEYS[1] as for acquire. ARGV: "now". Returns {unexpired leases}.
const std::string kInFlightScript = WithScriptNow(R"lua(
local now = sluice_now(ARGV[1])
return {redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')}
)lua");

// How long a tombstone outlives its release: at least the lease, and long enough for an acquire
// held up in a network (TCP retransmissions back off to minutes) to land while it stands.
constexpr absl::Duration kMinTombstone = absl::Minutes(5);

std::string Hex(uint64_t id) { return absl::StrFormat("%016x", id); }

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterLeases>> ClusterLeases::Create(absl::string_view object,
                                                                     const ClusterOptions& cluster,
                                                                     absl::Duration lease) {
  if (absl::Status s = CheckClusterOptions(object, cluster); !s.ok()) return s;
  if (cluster.mode != ClusterMode::kStrict) {
    return absl::InvalidArgumentError(absl::StrCat(
        object, ": cluster.mode must be kStrict (a slot is held, not leased in bulk)"));
  }
  if (lease > kMaxLease || absl::ToInt64Nanoseconds(lease) % 1000 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        object, ": lease must be a whole number of microseconds, at most ",
        absl::FormatDuration(kMaxLease), ", in cluster scope; got ", absl::FormatDuration(lease)));
  }
  return std::unique_ptr<ClusterLeases>(new ClusterLeases(object, cluster, lease));
}

ClusterLeases::ClusterLeases(absl::string_view object, const ClusterOptions& cluster,
                             absl::Duration lease)
    : object_(object),
      cluster_(cluster),
      lease_us_(absl::ToInt64Microseconds(lease)),
      tombstone_us_(absl::StrCat(absl::ToInt64Microseconds(std::max(lease, kMinTombstone)))),
      reply_timeout_(ReplyTimeout(*cluster.store)) {}

uint64_t ClusterLeases::NewLeaseId() {
  // A hash of (a random salt drawn once per process, the pid, a sequence number): distinct within
  // a process by the sequence, across hosts by the salt, and across fork() by the pid.
  static const uint64_t salt = [] {
    uint64_t s = 0;
    if (getrandom(&s, sizeof(s), 0) != sizeof(s)) s = static_cast<uint64_t>(time(nullptr));
    return s;
  }();
  static std::atomic<uint64_t> sequence{0};
  const uint64_t parts[3] = {salt, static_cast<uint64_t>(getpid()),
                             sequence.fetch_add(1, std::memory_order_relaxed)};
  const uint64_t id =
      DigestKey(std::string_view(reinterpret_cast<const char*>(parts), sizeof(parts))).lo;
  return id == 0 ? 1 : id;
}

std::vector<std::string> ClusterLeases::Keys(const KeyDigest& d) const {
  const std::string tag = KeyTag(*cluster_.store, cluster_.redis_name, d);
  return {absl::StrCat(tag, ":c"), absl::StrCat(tag, ":r")};
}

absl::Status ClusterLeases::Impossible(absl::string_view what) const {
  absl::Status s = absl::InternalError(absl::StrCat(
      object_, ": impossible reply from Redis (", what, "): a protocol error or a foreign script"));
  RedisScripts::NoteError(*cluster_.store, s);
  return s;
}

ScriptCall ClusterLeases::ReleaseCall(const KeyDigest& d, uint64_t lease_id) const {
  return {&kReleaseScript, Keys(d), {Hex(lease_id), RedisScripts::ScriptNow(*cluster_.store), tombstone_us_}};
}

std::shared_ptr<PendingReply> ClusterLeases::StartAcquire(const KeyDigest& d,
                                                          int64_t max_in_flight,
                                                          uint64_t lease_id, bool want_fd) {
  Delivery delivery;
  delivery.undo = ReleaseCall(d, lease_id);
  return RedisScripts::Run(*cluster_.store, 
      {&kAcquireScript,
       Keys(d),
       {absl::StrCat(max_in_flight), absl::StrCat(lease_us_), Hex(lease_id),
        RedisScripts::ScriptNow(*cluster_.store)}},
      want_fd, std::move(delivery));
}

absl::StatusOr<ClusterLeases::Acquired> ClusterLeases::DecodeAcquire(
    const std::vector<int64_t>& reply) const {
  // Times are microseconds that become nanoseconds: beyond this they would overflow.
  constexpr int64_t kMaxMicros = std::numeric_limits<int64_t>::max() / 1000;
  if (reply.size() != 3) return Impossible(absl::StrCat(reply.size(), " values"));
  if (reply[0] != 0 && reply[0] != 1) return Impossible("granted is neither 0 nor 1");
  if (reply[1] < 0) return Impossible("a negative count");
  if (reply[2] < 1 || reply[2] > kMaxMicros) return Impossible("a time out of range");
  return Acquired{reply[0] == 1, reply[1], reply[2]};
}

void ClusterLeases::StartRelease(const KeyDigest& d, uint64_t lease_id,
                                 int64_t retry_until_nanos) {
  Delivery delivery;
  delivery.retry_until_nanos = retry_until_nanos;
  (void)RedisScripts::Run(*cluster_.store, ReleaseCall(d, lease_id), /*want_fd=*/false,
                                  std::move(delivery));
}

std::shared_ptr<PendingReply> ClusterLeases::StartRenew(const KeyDigest& d, uint64_t lease_id,
                                                        absl::Duration lease, bool want_fd) {
  return RedisScripts::Run(*cluster_.store, kRenewScript, Keys(d),
                                   {absl::StrCat(absl::ToInt64Microseconds(lease)), Hex(lease_id),
                                    RedisScripts::ScriptNow(*cluster_.store)},
                                   want_fd);
}

std::shared_ptr<PendingReply> ClusterLeases::StartInFlight(const KeyDigest& d, bool want_fd) {
  return RedisScripts::Run(*cluster_.store, kInFlightScript, {Keys(d)[0]}, {RedisScripts::ScriptNow(*cluster_.store)},
                                   want_fd);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
