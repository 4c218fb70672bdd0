// Cluster scope: leases in Redis (ClusterLeases, see redis_leases.h). While Redis cannot answer,
// acquires follow the failure mode (FailureModePolicy): kAllow admits without a lease, kDeny
// refuses, kLocal takes a lease from this process's share of the cap in a local table, and the
// permit remembers which (LeaseRef::Holder) so its release and renewal go to the same place.
#include <algorithm>
#include <array>
#include <atomic>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "admission/admission_options.h"
#include "admission/failure_mode.h"
#include "admission/lease_backend.h"
#include "admission/redis_leases.h"
#include "base/time_arithmetic.h"
#include "stores/lease_table.h"
#include "stores/redis_errors.h"
#include "stores/redis_pending.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr absl::string_view kName = "sluice.ConcurrencyLimiter";

class RedisLeaseBackend final : public LeaseBackend {
 public:
  RedisLeaseBackend(const LeaseSettings& settings, std::unique_ptr<ClusterLeases> redis,
                    const ClusterOptions& cluster, int64_t max_keys)
      : LeaseBackend(settings),
        redis_(std::move(redis)),
        failure_mode_(cluster),
        local_(LeaseSettings{failure_mode_.LocalShare(settings.max_in_flight), settings.lease,
                             settings.retry_after, settings.clock},
               std::make_unique<LeaseTable>(max_keys)) {}

  void Acquire(const KeyDigest& d, int64_t, int64_t max_in_flight, LeaseGrant* out) override {
    const uint64_t lease_id = ClusterLeases::NewLeaseId();
    *out = Finish(d, lease_id, max_in_flight,
                  redis_->StartAcquire(d, max_in_flight, lease_id, /*want_fd=*/false)
                      ->Wait(redis_->reply_timeout()));
  }

  Pending<ConcurrencyLimiter::Permit> StartAcquire(const KeyDigest& d, int64_t,
                                                   int64_t max_in_flight, bool want_fd,
                                                   const PermitMaker& make) override {
    const uint64_t lease_id = ClusterLeases::NewLeaseId();
    return WaitForReply<ConcurrencyLimiter::Permit>(
        redis_->StartAcquire(d, max_in_flight, lease_id, want_fd), redis_->reply_timeout(),
        [this, d, lease_id, max_in_flight, make](const auto& reply, absl::Status* error) {
          LeaseGrant grant = Finish(d, lease_id, max_in_flight, reply);
          *error = grant.error;
          return make(grant);
        });
  }

  absl::Status Release(const LeaseRef& lease) override {
    if (lease.holder != LeaseRef::Holder::kRedis) return local_.Release(lease);
    HeldThroughRedis(lease.digest).fetch_sub(1, std::memory_order_relaxed);
    // Sent, not awaited. If Redis cannot be reached, the store keeps it and sends it once Redis
    // answers again, until the lease would have ended anyway.
    const int64_t left = lease.expires_at_nanos - settings().clock->NowNanos();
    const int64_t now = Clock::Steady()->NowNanos();
    redis_->StartRelease(lease.digest, lease.lease_id, left > 0 ? SaturatingAdd(now, left) : 0);
    return absl::OkStatus();
  }

  Pending<absl::Status> StartRenew(LeaseRef* lease, absl::Duration ttl,
                                   int64_t now_nanos) override {
    if (lease->holder != LeaseRef::Holder::kRedis) return local_.StartRenew(lease, ttl, now_nanos);
    if (ttl > ClusterLeases::kMaxLease) {
      return Pending<absl::Status>(absl::InvalidArgumentError(absl::StrCat(
          kName, ": lease must be at most ", absl::FormatDuration(ClusterLeases::kMaxLease),
          " in cluster scope, got ", absl::FormatDuration(ttl))));
    }
    lease->expires_at_nanos = AddDuration(now_nanos, ttl);  // Redis's clock rules; an estimate
    return WaitForReply<absl::Status>(
        redis_->StartRenew(lease->digest, lease->lease_id, std::max(ttl, absl::Microseconds(1)),
                           /*want_fd=*/true),
        redis_->reply_timeout(), [](const auto& reply, absl::Status* error) -> absl::Status {
          if (!reply.ok()) {
            if (IsTransportError(reply.status())) {
              return absl::UnavailableError(
                  absl::StrCat(kName, ": renew: ", reply.status().message()));
            }
            *error = reply.status();  // a configuration error: the permit is kept
            return reply.status();
          }
          if (reply->size() == 1 && (*reply)[0] == 1) return absl::OkStatus();
          if (reply->size() == 1 && (*reply)[0] == 0) return LeaseExpiredError();
          *error = absl::InternalError(absl::StrCat(kName, ": renew: an impossible reply"));
          return *error;
        });
  }

  Pending<int64_t> StartInFlight(const KeyDigest& d, int64_t) override {
    ClusterLeases* redis = redis_.get();
    return WaitForReply<int64_t>(
        redis->StartInFlight(d, /*want_fd=*/true), redis->reply_timeout(),
        [redis](const auto& reply, absl::Status* error) -> int64_t {
          if (!reply.ok()) {
            if (!IsTransportError(reply.status())) *error = reply.status();
            return -1;
          }
          if (reply->size() != 1 || (*reply)[0] < 0) {
            *error = redis->Impossible("an in-flight count");
            return -1;
          }
          return (*reply)[0];
        });
  }

  // Redis reclaims on every acquire; these are the failure mode's local leases.
  int64_t ReclaimExpired(int64_t now_nanos) override { return local_.ReclaimExpired(now_nanos); }
  int64_t failure_mode_decisions() const override { return failure_mode_.decisions(); }

 private:
  // The grant for Redis's `reply`, or the failure mode's.
  LeaseGrant Finish(const KeyDigest& d, uint64_t lease_id, int64_t max_in_flight,
                    const absl::StatusOr<std::vector<int64_t>>& reply) {
    LeaseGrant out;
    out.decision.limit = max_in_flight;
    absl::Status failed = reply.status();
    if (reply.ok()) {
      absl::StatusOr<ClusterLeases::Acquired> acquired = redis_->DecodeAcquire(*reply);
      if (acquired.ok()) {
        out.decision.allowed = acquired->granted;
        out.decision.remaining = std::max<int64_t>(0, max_in_flight - acquired->held);
        if (!out.decision.allowed) {
          out.decision.retry_after_nanos =
              std::max<int64_t>(1, absl::ToInt64Nanoseconds(settings().retry_after));
          out.decision.reset_after_nanos = acquired->micros * 1000;  // a slot frees by then
          return out;
        }
        out.lease = {LeaseRef::Holder::kRedis, d, lease_id,
                     SaturatingAdd(settings().clock->NowNanos(), acquired->micros * 1000)};
        HeldThroughRedis(d).fetch_add(1, std::memory_order_relaxed);
        return out;
      }
      // An impossible reply: whatever it took, nobody holds; release it.
      redis_->StartRelease(d, lease_id, /*retry_until_nanos=*/0);
      failed = acquired.status();
    }
    switch (failure_mode_.OnFailure(failed)) {
      case FailureModePolicy::Verdict::kError:  // Redis answered: a configuration error
        out.error = failed;
        out.decision.retry_after_nanos = failure_mode_.retry_after_nanos();
        return out;
      case FailureModePolicy::Verdict::kAllow:
        out.decision.allowed = true;
        out.lease = {LeaseRef::Holder::kUnbacked, d, lease_id,
                     AddDuration(settings().clock->NowNanos(), settings().lease)};
        return out;
      case FailureModePolicy::Verdict::kDeny:
        out.decision.retry_after_nanos = failure_mode_.retry_after_nanos();
        return out;
      case FailureModePolicy::Verdict::kLocal:
        break;
    }
    // This process's share of the call's cap (of Options::max_in_flight without one), less the
    // permits it still holds through Redis: those callers still run, and counting only the
    // local table let each process admit a whole share on top of them when Redis died (12
    // at once against a cap of 6 in the Dify end-to-end benchmark).
    const int64_t share = failure_mode_.LocalShare(max_in_flight);
    const int64_t held = std::max<int64_t>(0, HeldThroughRedis(d).load(std::memory_order_relaxed));
    if (held >= share) {
      out.decision.limit = max_in_flight;
      out.decision.retry_after_nanos = failure_mode_.retry_after_nanos();
      return out;
    }
    LeaseGrant local;
    local_.Acquire(d, settings().clock->NowNanos(), share - held, &local);
    return local;
  }

  // This process's permits granted by Redis and not yet released, per key: hashed into a fixed
  // table of counters (lock-free, so a fork() child never inherits a held lock; two keys that
  // share a counter only make each other's failure-mode share smaller).
  static constexpr size_t kHeldCounters = 4096;
  std::atomic<int64_t>& HeldThroughRedis(const KeyDigest& d) {
    return held_through_redis_[d.lo % kHeldCounters];
  }
  std::array<std::atomic<int64_t>, kHeldCounters> held_through_redis_{};

  const std::unique_ptr<ClusterLeases> redis_;
  FailureModePolicy failure_mode_;
  TableLeases local_;  // FailureMode::kLocal
};

}  // namespace

std::unique_ptr<LeaseBackend> NewRedisLeaseBackend(const LeaseSettings& settings,
                                                   std::unique_ptr<ClusterLeases> redis,
                                                   const ClusterOptions& cluster,
                                                   int64_t max_keys) {
  return std::make_unique<RedisLeaseBackend>(settings, std::move(redis), cluster, max_keys);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
