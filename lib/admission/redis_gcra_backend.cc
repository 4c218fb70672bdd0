// Cluster scope: the GCRA cells live in Redis. Strict mode asks Redis for every decision (one
// EVALSHA, see redis_gcra.h); leased mode decides locally from units leased in Redis and asks
// only when its lease of a key runs out (see leased_gcra.h).
#include <memory>
#include <optional>
#include <utility>

#include "admission/gcra_backend.h"
#include "admission/leased_gcra.h"
#include "admission/redis_gcra.h"
#include "stores/redis_pending.h"
#include "absl/strings/str_cat.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

class RedisStrictGcraBackend : public GcraBackend {
 public:
  RedisStrictGcraBackend(std::vector<GcraWindow> windows, const Clock* clock,
                         std::unique_ptr<ClusterGcra> redis)
      : GcraBackend(std::move(windows), clock), redis_(std::move(redis)) {}

  absl::StatusOr<Decision> Admit(const KeyDigest& d, int64_t cost, int64_t,
                                 const KeyWindows* limits) override {
    return redis_->Finish(
        d, cost, redis_->Start(d, cost, /*want_fd=*/false, Args(limits))->Wait(timeout()),
        Key(limits));
  }
  absl::StatusOr<PendingDecision> StartAdmit(const KeyDigest& d, int64_t cost, int64_t,
                                             const KeyWindows* limits) override {
    ClusterGcra* redis = redis_.get();
    return WaitForReply<Decision>(
        redis->Start(d, cost, /*want_fd=*/true, Args(limits)), timeout(),
        [redis, d, cost, key = Copy(limits)](const auto& reply, absl::Status* error) {
          return redis->OrRefusal(redis->Finish(d, cost, reply, Key(key)), error);
        });
  }
  bool Allow(const KeyDigest& d, int64_t cost, int64_t now_nanos,
             const KeyWindows* limits) override {
    absl::StatusOr<Decision> decision = Admit(d, cost, now_nanos, limits);
    return decision.ok() && decision->allowed;
  }
  std::optional<bool> AllowWithoutWaiting(const KeyDigest&, int64_t, int64_t,
                                          const KeyWindows*) override {
    return std::nullopt;
  }
  absl::Status Refund(const KeyDigest& d, int64_t cost, int64_t charged_at_nanos, int64_t,
                      const KeyWindows* limits) override {
    return redis_->FinishRefund(
        redis_->StartRefund(d, cost, charged_at_nanos, /*want_fd=*/false, Args(limits))
            ->Wait(timeout()));
  }

  absl::StatusOr<Decision> Queue(const KeyDigest& d, int64_t cost, int64_t max_wait_nanos,
                                 int64_t) override {
    return redis_->FinishQueue(
        d, cost, max_wait_nanos,
        redis_->StartQueue(d, cost, max_wait_nanos, /*want_fd=*/false)->Wait(timeout()));
  }
  absl::StatusOr<PendingDecision> StartQueue(const KeyDigest& d, int64_t cost,
                                             int64_t max_wait_nanos, int64_t) override {
    ClusterGcra* redis = redis_.get();
    return WaitForReply<Decision>(
        redis->StartQueue(d, cost, max_wait_nanos, /*want_fd=*/true), timeout(),
        [redis, d, cost, max_wait_nanos](const auto& reply, absl::Status* error) {
          return redis->OrRefusal(redis->FinishQueue(d, cost, max_wait_nanos, reply), error);
        });
  }

  absl::StatusOr<Decision> Adjust(const KeyDigest& d, int64_t delta, int64_t,
                                  const KeyWindows* limits) override {
    return redis_->FinishAdjust(
        d, delta, redis_->StartAdjust(d, delta, /*want_fd=*/false, Args(limits))->Wait(timeout()),
        Key(limits));
  }
  absl::StatusOr<PendingDecision> StartAdjust(const KeyDigest& d, int64_t delta, int64_t,
                                              const KeyWindows* limits) override {
    ClusterGcra* redis = redis_.get();
    return WaitForReply<Decision>(
        redis->StartAdjust(d, delta, /*want_fd=*/true, Args(limits)), timeout(),
        [redis, d, delta, key = Copy(limits)](const auto& reply, absl::Status* error) {
          return redis->OrRefusal(redis->FinishAdjust(d, delta, reply, Key(key)), error);
        });
  }

  PendingDecision StartPeek(const KeyDigest& d, int64_t, const KeyWindows* limits) override {
    ClusterGcra* redis = redis_.get();
    return WaitForReply<Decision>(
        redis->StartPeek(d, /*want_fd=*/true, Args(limits)), timeout(),
        [redis, d, key = Copy(limits)](const auto& reply, absl::Status* error) {
          return redis->OrRefusal(redis->FinishPeek(d, reply, Key(key)), error);
        });
  }

  // Nothing is kept here: the keys live in Redis, with their own expiry.
  int64_t DropIdle(int64_t) override { return 0; }
  int64_t key_count() const override { return 0; }
  int64_t memory_bytes() const override { return 0; }
  int64_t failure_mode_decisions() const override { return redis_->failure_decisions(); }

 protected:
  absl::Status CompileForScope(absl::string_view object, KeyWindows* k) const override {
    return redis_->CompileArgs(object, k->source, &k->redis_args);
  }
  static const ClusterGcra::WindowArgs* Args(const KeyWindows* limits) {
    return limits != nullptr ? &limits->redis_args : nullptr;
  }
  // The per-key windows a reply describes; a copy for replies decoded later (the caller's
  // KeyLimits may be gone by then). Empty, and no allocation, without per-key limits.
  static const GcraWindow* Key(const KeyWindows* limits) {
    return limits != nullptr ? limits->gcra.data() : nullptr;
  }
  static std::vector<GcraWindow> Copy(const KeyWindows* limits) {
    return limits != nullptr ? limits->gcra : std::vector<GcraWindow>();
  }
  static const GcraWindow* Key(const std::vector<GcraWindow>& copy) {
    return copy.empty() ? nullptr : copy.data();
  }
  ClusterGcra* redis() const { return redis_.get(); }
  absl::Duration timeout() const { return redis_->reply_timeout(); }

 private:
  const std::unique_ptr<ClusterGcra> redis_;
};

// Leased mode only changes how a RateLimiter admits; peeks go to Redis as in strict mode (the
// factory refuses leased mode for LeakyBucket and TokenBudget).
class RedisLeasedGcraBackend final : public RedisStrictGcraBackend {
 public:
  RedisLeasedGcraBackend(std::vector<GcraWindow> windows, const Clock* clock,
                         std::unique_ptr<ClusterGcra> redis, int64_t lease_units,
                         absl::Duration ttl, int64_t max_keys)
      : RedisStrictGcraBackend(std::move(windows), clock, std::move(redis)),
        leased_(this->redis(), lease_units, ttl, this->windows()[0].limit,
                this->windows()[0].period_nanos, clock, max_keys) {}

  // Per-key limits are refused at CompileForScope, so `limits` is always null here.
  absl::StatusOr<Decision> Admit(const KeyDigest& d, int64_t cost, int64_t,
                                 const KeyWindows*) override {
    return leased_.Decide(d, cost);
  }
  // Leased decisions carry no charge time (kNoCharge): a refund gives nothing back, and the
  // units stay spent from the lease. Conservative: the leased bound is unchanged.
  absl::Status Refund(const KeyDigest&, int64_t, int64_t, int64_t,
                      const KeyWindows*) override {
    return absl::OkStatus();
  }
  absl::StatusOr<PendingDecision> StartAdmit(const KeyDigest& d, int64_t cost, int64_t,
                                             const KeyWindows*) override {
    Decision local;
    if (leased_.TryLocal(d, cost, &local)) return PendingDecision(local);
    LeasedGcra::Ticket ticket;
    std::shared_ptr<PendingReply> reply = leased_.StartLease(d, cost, /*want_fd=*/true, &ticket);
    ClusterGcra* redis = this->redis();
    LeasedGcra* leased = &leased_;
    return WaitForReply<Decision>(
        std::move(reply), timeout(),
        [redis, leased, d, cost, ticket](const auto& reply, absl::Status* error) {
          return redis->OrRefusal(leased->FinishLease(d, cost, ticket, reply), error);
        });
  }
  std::optional<bool> AllowWithoutWaiting(const KeyDigest& d, int64_t cost, int64_t,
                                          const KeyWindows*) override {
    Decision local;
    if (leased_.TryLocal(d, cost, &local)) return local.allowed;
    return std::nullopt;
  }

  int64_t local_decisions() const override { return leased_.local_decisions(); }
  int64_t round_trips() const override { return leased_.leases(); }

 protected:
  absl::Status CompileForScope(absl::string_view object, KeyWindows*) const override {
    return absl::FailedPreconditionError(absl::StrCat(
        object, ": per-key limits need cluster.mode kStrict (cluster.mode is kLeased: a lease is ",
        "sized and expires for the object's own windows)"));
  }

 private:
  LeasedGcra leased_;
};

}  // namespace

std::unique_ptr<GcraBackend> NewRedisGcraBackend(std::vector<GcraWindow> windows,
                                                 const Clock* clock,
                                                 std::unique_ptr<ClusterGcra> redis) {
  return std::make_unique<RedisStrictGcraBackend>(std::move(windows), clock, std::move(redis));
}

std::unique_ptr<GcraBackend> NewLeasedGcraBackend(std::vector<GcraWindow> windows,
                                                  const Clock* clock,
                                                  std::unique_ptr<ClusterGcra> redis,
                                                  int64_t lease_units, absl::Duration ttl,
                                                  int64_t max_keys) {
  return std::make_unique<RedisLeasedGcraBackend>(std::move(windows), clock, std::move(redis),
                                                  lease_units, ttl, max_keys);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
