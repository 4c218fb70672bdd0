// The Balancer's state and its pick logic (balancer.cc: endpoints and the public API;
// balancer_pick.cc: filters and strategies).
#ifndef SLUICE_LIB_BALANCER_CORE_H_
#define SLUICE_LIB_BALANCER_CORE_H_

#include <cstdint>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "sluice/internal/mutex.h"
#include "balancing/balancer_endpoint.h"
#include "balancing/cluster_holds.h"
#include "balancing/cluster_loads.h"
#include "balancing/cluster_routes.h"
#include "balancing/endpoint_holds.h"
#include "balancing/prefix_index.h"
#include "balancing/cluster_cursor.h"
#include "balancing/resident_tokens.h"
#include "balancing/shared_route_log.h"
#include "sluice/balancer.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class BalancerCore {
 public:
  BalancerCore(const Balancer::Options& options, const Clock* clock);
  // Detaches the cluster holds' mirror from the clock, which may go with the balancer.
  ~BalancerCore();

  absl::Status Add(const EndpointSpec& spec);
  absl::Status Update(const EndpointSpec& spec);
  absl::Status Remove(std::string_view id);
  absl::Status SetMetrics(std::string_view id, const EngineMetrics& metrics);
  absl::Status Cooldown(std::string_view id, absl::Duration duration, Failure reason);
  absl::Status Eject(std::string_view id, absl::Duration duration);
  absl::Status Restore(std::string_view id);
  absl::StatusOr<Balancer::Pick> PickEndpoint(const PickRequest& request);
  std::vector<EndpointStats> Endpoints() const;

  const Balancer::Options options;
  const Clock* const clock;
  // kPrefixAffinity, or kScored with a prefix weight: picks read and feed the prefix index.
  bool UsesPrefixIndex() const;
  // Host scope (Options::shared_region): called once by Balancer::Create, before any pick.
  void set_host_counts(std::shared_ptr<ConcurrencyLimiter> counts) { host_counts_ = std::move(counts); }
  void set_host_holds(std::shared_ptr<SharedHoldTable> holds) { host_holds_ = std::move(holds); }
  // Host scope with a prefix strategy: called once by Balancer::Create, before any pick.
  void set_route_log(std::unique_ptr<SharedRouteLog> log) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    routes_ = std::move(log);
  }
  // Cluster scope (Options::redis): called once by Balancer::Create, before any pick.
  void set_cluster_holds(std::shared_ptr<ClusterHolds> holds) { cluster_holds_ = std::move(holds); }
  void set_cluster_loads(std::shared_ptr<ClusterLoads> loads) { cluster_loads_ = std::move(loads); }
  // Cluster scope with a prefix strategy: called once by Balancer::Create, before any pick.
  void set_cluster_routes(std::unique_ptr<ClusterRoutes> routes) {
    cluster_routes_ = std::move(routes);
  }
  // Cluster scope with kRoundRobin: called once by Balancer::Create, before any pick.
  void set_cluster_cursor(std::unique_ptr<ClusterCursor> cursor) {
    cluster_cursor_ = std::move(cursor);
  }

 private:
  using State = EndpointState;

  // The endpoints that may take this request, into candidates_; an error when none may.
  absl::Status Filter(const PickRequest& request, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Outlier ejection: ejects the endpoints that reached the threshold, within the cap. A no-op
  // (one atomic load) unless some endpoint reached it since the last pass.
  void EjectOutliers(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Load of candidate i: in flight per unit of weight (host-wide with a shared region).
  double LoadOf(size_t i) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return loads_[i]; }
  // Each strategy returns an index into candidates_ and sets matched_ for prefix strategies.
  size_t RoundRobin() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  size_t SmoothWeighted() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  size_t PowerOfTwo() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  size_t PrefixAffinity(absl::Span<const uint64_t> blocks) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `match` (over the slots `offered`) is affinity although it may end at a branch
  // (see Options::min_shared_affinity_blocks).
  bool SharedMatchCounts(absl::Span<const uint64_t> blocks, const PrefixIndex::Match& match,
                         uint64_t offered) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  size_t Scored(absl::Span<const uint64_t> blocks, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  size_t ConsistentHash(std::string_view key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The least-loaded candidate among those `eligible` accepts; ties go to the smaller prefix
  // index, then at random.
  template <typename Eligible>
  size_t LeastLoaded(Eligible eligible) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  int64_t CapacityOf(const State& s) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records in the prefix index and the KV estimate that `blocks` (a request of `tokens`
  // tokens) went to `e`, taking over the conversation it continues.
  void RecordRoute(const State& e, absl::Span<const uint64_t> blocks, double tokens, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Host and cluster scope: records the routes the host's (and the fleet's) other balancers
  // took, as far as they have been read since the last pick.
  void ReplayOthersRoutes(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // KV pressure (prefix strategies): finds the conversation this request continues and marks
  // each candidate whose KV cache it would overflow, into session_ and kv_full_.
  void AssessKv(const PickRequest& request, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Candidate i's projected KV use with this request, as a share of its capacity: the larger of
  // its fresh engine metric and this balancer's estimate.
  double KvShare(size_t i, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<State>* Find(std::string_view id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RebuildRing() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<const CompletionPolicy> policy_;
  // Host scope: in-flight counts shared through a region (null in process scope). Set once,
  // before the first pick.
  std::shared_ptr<ConcurrencyLimiter> host_counts_;
  // Host scope: cooldowns and ejections shared through a second region (null in process scope).
  std::shared_ptr<SharedHoldTable> host_holds_;
  // Host scope with a prefix strategy: the routes every process on the host appends and replays
  // (null otherwise).
  std::unique_ptr<SharedRouteLog> routes_ ABSL_GUARDED_BY(mu_);
  // Cluster scope: cooldowns and ejections mirrored from Redis (null otherwise).
  std::shared_ptr<ClusterHolds> cluster_holds_;
  // Cluster scope: other hosts' in-flight counts (null otherwise). Set once, before the first
  // pick; thread-safe itself.
  std::shared_ptr<ClusterLoads> cluster_loads_;
  // Cluster scope with a prefix strategy: the fleet's routes through Redis (null otherwise). Set
  // once, before the first pick; thread-safe itself.
  std::unique_ptr<ClusterRoutes> cluster_routes_;
  // Cluster scope with kRoundRobin: the fleet's round-robin turns (null otherwise). Set once,
  // before the first pick; thread-safe itself.
  std::unique_ptr<ClusterCursor> cluster_cursor_;
  mutable Mutex mu_;
  std::vector<std::shared_ptr<State>> endpoints_ ABSL_GUARDED_BY(mu_);
  PrefixIndex index_ ABSL_GUARDED_BY(mu_){PrefixIndex::kDefaultGroupBlocks};
  ResidentTokens resident_ ABSL_GUARDED_BY(mu_);
  uint64_t free_slots_ ABSL_GUARDED_BY(mu_) = ~uint64_t{0};
  std::vector<std::pair<uint64_t, State*>> ring_ ABSL_GUARDED_BY(mu_);  // sorted by hash
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  uint64_t round_robin_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // Per-pick scratch, kept to avoid allocating on every pick.
  std::vector<State*> candidates_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> owners_ ABSL_GUARDED_BY(mu_);  // candidate i is endpoints_[owners_[i]]
  std::vector<double> loads_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> in_flight_ ABSL_GUARDED_BY(mu_);
  int64_t matched_ ABSL_GUARDED_BY(mu_) = 0;
  struct KvAssessment {  // the current pick's
    double tokens = 0;          // the request's prompt tokens
    uint64_t session_key = 0;   // the conversation it continues (0: none)
    ResidentTokens::Session session;
    bool any_room = false;      // some candidate has room for it
  };
  KvAssessment kv_ ABSL_GUARDED_BY(mu_);
  std::vector<char> kv_full_ ABSL_GUARDED_BY(mu_);  // per candidate
  struct Signals {  // kScored's inputs for one candidate
    double queue, kv, kv_estimate, load, prefix;
    int64_t held;  // leading blocks it holds
    bool has_kv;
  };
  std::vector<Signals> signals_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_BALANCER_CORE_H_
