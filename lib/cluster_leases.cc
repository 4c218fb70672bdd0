#include "cluster_leases.h"

#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cluster_keys.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

// KEYS[1]: the key's sorted set of leases. ARGV: max_in_flight, lease (us), lease id, epoch.
// Returns {granted, held, granted ? lease : time until the soonest lease ends}.
const std::string kAcquireScript = R"lua(
local t = redis.call('TIME')
local now = (tonumber(t[1]) - tonumber(ARGV[4])) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, held, math.max(tonumber(first[2]) - now, 1)}
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) / 1000) + 1)
return {1, held + 1, lease}
)lua";

// ARGV: lease (us), lease id, epoch. Returns {renewed}.
const std::string kRenewScript = R"lua(
local t = redis.call('TIME')
local now = (tonumber(t[1]) - tonumber(ARGV[3])) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return {0} end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) / 1000) + 1)
return {1}
)lua";

// ARGV: lease id, epoch. Returns {was held} (an expired lease counts as not held).
const std::string kReleaseScript = R"lua(
local t = redis.call('TIME')
local now = (tonumber(t[1]) - tonumber(ARGV[2])) * 1000000 + tonumber(t[2])
local ends = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if ends and tonumber(ends) > now then return {1} end
return {0}
)lua";

// ARGV: epoch. Returns {unexpired leases}.
const std::string kInFlightScript = R"lua(
local t = redis.call('TIME')
local now = (tonumber(t[1]) - tonumber(ARGV[1])) * 1000000 + tonumber(t[2])
return {redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')}
)lua";

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
  if (absl::ToInt64Nanoseconds(lease) % 1000 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        object, ": lease must be a whole number of microseconds in cluster scope, got ",
        absl::FormatDuration(lease)));
  }
  return std::unique_ptr<ClusterLeases>(new ClusterLeases(cluster, lease));
}

ClusterLeases::ClusterLeases(const ClusterOptions& cluster, absl::Duration lease)
    : cluster_(cluster),
      lease_us_(absl::StrCat(absl::ToInt64Microseconds(lease))),
      reply_timeout_(ReplyTimeout(cluster)) {}

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

std::vector<std::string> ClusterLeases::Key(const KeyDigest& d) const {
  return {absl::StrCat(KeyTag(cluster_, d), ":c")};
}

std::shared_ptr<PendingReply> ClusterLeases::StartAcquire(const KeyDigest& d,
                                                          int64_t max_in_flight,
                                                          uint64_t lease_id, bool want_fd) {
  return cluster_.store->RunScript(
      kAcquireScript, Key(d),
      {absl::StrCat(max_in_flight), lease_us_, Hex(lease_id), absl::StrCat(kRedisEpochUnixSeconds)},
      want_fd);
}

std::shared_ptr<PendingReply> ClusterLeases::StartRelease(const KeyDigest& d, uint64_t lease_id) {
  return cluster_.store->RunScript(kReleaseScript, Key(d),
                                   {Hex(lease_id), absl::StrCat(kRedisEpochUnixSeconds)},
                                   /*want_fd=*/false);
}

std::shared_ptr<PendingReply> ClusterLeases::StartRenew(const KeyDigest& d, uint64_t lease_id,
                                                        absl::Duration lease, bool want_fd) {
  return cluster_.store->RunScript(kRenewScript, Key(d),
                                   {absl::StrCat(absl::ToInt64Microseconds(lease)), Hex(lease_id),
                                    absl::StrCat(kRedisEpochUnixSeconds)},
                                   want_fd);
}

std::shared_ptr<PendingReply> ClusterLeases::StartInFlight(const KeyDigest& d) {
  return cluster_.store->RunScript(kInFlightScript, Key(d),
                                   {absl::StrCat(kRedisEpochUnixSeconds)}, /*want_fd=*/false);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
