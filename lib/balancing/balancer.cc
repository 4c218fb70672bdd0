#include "sluice/balancer.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "balancing/balancer_core.h"
#include "base/time_arithmetic.h"
#include "sluice/internal/mutex.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat("sluice.Balancer: ", field, " ", rule));
}

bool Finite(double v) { return std::isfinite(v); }

absl::Status Validate(const Balancer::Options& o) {
  using S = Balancer::Strategy;
  if (o.strategy < S::kRoundRobin || o.strategy > S::kConsistentHash) {
    return Invalid("strategy", "is not a known strategy");
  }
  if (o.prefix_hash.block_chars < 1) return Invalid("prefix_hash.block_chars", "must be >= 1");
  if (o.prefix_hash.max_blocks < 1 || o.prefix_hash.max_blocks > 65536) {
    return Invalid("prefix_hash.max_blocks", "must be in [1, 65536]");
  }
  if (o.kv_capacity_blocks < 1) return Invalid("kv_capacity_blocks", "must be >= 1");
  if (o.imbalance_abs < 0) return Invalid("imbalance_abs", "must be >= 0");
  if (!Finite(o.imbalance_rel) || o.imbalance_rel < 1) return Invalid("imbalance_rel", "must be >= 1");
  if (!Finite(o.hot_spot_sigmas) || o.hot_spot_sigmas < 0) {
    return Invalid("hot_spot_sigmas", "must be >= 0");
  }
  const Balancer::ScoreWeights& w = o.weights;
  for (auto [name, v] : {std::pair{"weights.prefix", w.prefix}, {"weights.queue", w.queue},
                         {"weights.kv_cache", w.kv_cache}, {"weights.in_flight", w.in_flight}}) {
    if (!Finite(v) || v < 0) return Invalid(name, "must be finite and >= 0");
  }
  if (o.strategy == S::kScored && w.prefix + w.queue + w.kv_cache + w.in_flight <= 0) {
    return Invalid("weights", "must not all be 0 with kScored");
  }
  if (!Finite(o.score_load_slack) || o.score_load_slack <= 0) {
    return Invalid("score_load_slack", "must be finite and > 0");
  }
  if (o.metrics_max_age <= absl::ZeroDuration()) return Invalid("metrics_max_age", "must be > 0");
  if (o.kv_session_half_life <= absl::ZeroDuration() ||
      o.kv_session_half_life == absl::InfiniteDuration()) {
    return Invalid("kv_session_half_life", "must be finite and > 0");
  }
  if (!Finite(o.kv_full_usage) || o.kv_full_usage <= 0 || o.kv_full_usage > 1) {
    return Invalid("kv_full_usage", "must be in (0, 1]");
  }
  if (!Finite(o.load_bound) || o.load_bound < 1) return Invalid("load_bound", "must be >= 1");
  if (o.min_shared_affinity_blocks < 1) {
    return Invalid("min_shared_affinity_blocks", "must be >= 1");
  }
  if (o.virtual_nodes < 1 || o.virtual_nodes > 4096) {
    return Invalid("virtual_nodes", "must be in [1, 4096]");
  }
  if (o.failures_before_cooldown < 1) return Invalid("failures_before_cooldown", "must be >= 1");
  if (o.outlier.consecutive_failures < 0) {
    return Invalid("outlier.consecutive_failures", "must be >= 0");
  }
  if (o.outlier.base_ejection_time <= absl::ZeroDuration()) {
    return Invalid("outlier.base_ejection_time", "must be > 0");
  }
  if (o.outlier.max_ejection_time < o.outlier.base_ejection_time) {
    return Invalid("outlier.max_ejection_time", "must be >= outlier.base_ejection_time");
  }
  if (!Finite(o.outlier.max_ejection_percent) || o.outlier.max_ejection_percent < 0 ||
      o.outlier.max_ejection_percent > 100) {
    return Invalid("outlier.max_ejection_percent", "must be in [0, 100]");
  }
  for (auto [name, d] : {std::pair{"cooldown_rate_limited", o.cooldown_rate_limited},
                         {"cooldown_auth", o.cooldown_auth},
                         {"cooldown_connection", o.cooldown_connection},
                         {"cooldown_timeout", o.cooldown_timeout},
                         {"cooldown_server", o.cooldown_server}}) {
    if (d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
      return Invalid(name, "must be finite and >= 0");
    }
  }
  if (!Finite(o.ewma_weight) || o.ewma_weight <= 0 || o.ewma_weight > 1) {
    return Invalid("ewma_weight", "must be in (0, 1]");
  }
  if (!o.shared_region.empty()) {
    if (o.shared_max_in_flight < 1 || o.shared_max_in_flight > 4096) {
      return Invalid("shared_max_in_flight", "must be in [1, 4096]");
    }
    if (o.shared_lease <= absl::ZeroDuration()) return Invalid("shared_lease", "must be > 0");
    // The cooldowns' region is "<shared_region>.endpoints", within the 200 characters of a name.
    if (o.shared_region.size() > 190) {
      return Invalid("shared_region", absl::StrCat("must be at most 190 characters, got ",
                                                   o.shared_region.size()));
    }
  }
  if (o.redis != nullptr) {
    if (absl::Status s = ClusterHolds::Validate(o.redis_name, o.redis_refresh); !s.ok()) return s;
  } else if (!o.redis_name.empty()) {
    return Invalid("redis_name", "needs redis (it names the holds kept there)");
  }
  return absl::OkStatus();
}

absl::Status ValidateEndpoint(const EndpointSpec& e) {
  if (e.id.empty()) return Invalid("endpoint.id", "must not be empty");
  const std::string field = absl::StrCat("endpoint '", e.id, "'.");
  if (e.weight < 1 || e.weight > 1000000) {
    return Invalid(absl::StrCat(field, "weight"), "must be in [1, 1000000]");
  }
  if (e.max_concurrency < 0) return Invalid(absl::StrCat(field, "max_concurrency"), "must be >= 0");
  if (e.kv_capacity_blocks < 0) {
    return Invalid(absl::StrCat(field, "kv_capacity_blocks"), "must be >= 0");
  }
  return absl::OkStatus();
}

std::shared_ptr<const CompletionPolicy> PolicyOf(const Balancer::Options& o, const Clock* clock) {
  auto p = std::make_shared<CompletionPolicy>();
  p->clock = clock;
  p->ewma_weight = o.ewma_weight;
  p->failures_before_cooldown = o.failures_before_cooldown;
  p->cooldown_rate_limited = o.cooldown_rate_limited;
  p->cooldown_auth = o.cooldown_auth;
  p->cooldown_connection = o.cooldown_connection;
  p->cooldown_timeout = o.cooldown_timeout;
  p->cooldown_server = o.cooldown_server;
  p->outlier_base_ejection_nanos = absl::ToInt64Nanoseconds(o.outlier.base_ejection_time);
  p->outlier_consecutive_failures = o.outlier.consecutive_failures;
  return p;
}

}  // namespace

BalancerCore::BalancerCore(const Balancer::Options& o, const Clock* c)
    : options(o),
      clock(c),
      policy_(PolicyOf(o, c)),
      resident_(o.kv_session_half_life, PrefixIndex::kDefaultGroupBlocks),
      rng_(o.seed != 0 ? o.seed : std::random_device()()) {}

bool BalancerCore::UsesPrefixIndex() const {
  return options.strategy == Balancer::Strategy::kPrefixAffinity ||
         (options.strategy == Balancer::Strategy::kScored && options.weights.prefix > 0);
}

BalancerCore::~BalancerCore() {
  if (cluster_holds_ != nullptr) cluster_holds_->Detach();
}

int64_t BalancerCore::CapacityOf(const State& s) const {
  return s.spec->kv_capacity_blocks > 0 ? s.spec->kv_capacity_blocks : options.kv_capacity_blocks;
}

std::shared_ptr<EndpointState>* BalancerCore::Find(std::string_view id) {
  for (auto& e : endpoints_) {
    if (e->spec->id == id) return &e;
  }
  return nullptr;
}

void BalancerCore::RebuildRing() {
  ring_.clear();
  if (options.strategy != Balancer::Strategy::kConsistentHash) return;
  for (const auto& e : endpoints_) {
    const int64_t points = options.virtual_nodes * e->spec->weight;
    for (int64_t v = 0; v < points; ++v) {
      ring_.emplace_back(XXH3_64bits_withSeed(e->spec->id.data(), e->spec->id.size(),
                                              static_cast<uint64_t>(v)),
                         e.get());
    }
  }
  std::sort(ring_.begin(), ring_.end());
}

absl::Status BalancerCore::Add(const EndpointSpec& spec) {
  if (absl::Status s = ValidateEndpoint(spec); !s.ok()) return s;
  MutexLock lock(&mu_);
  if (Find(spec.id) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("sluice.Balancer: endpoint '", spec.id,
                                                 "' already exists"));
  }
  auto state = std::make_shared<State>(policy_);
  state->spec = std::make_shared<const EndpointSpec>(spec);
  if (host_holds_ != nullptr) {
    absl::StatusOr<SharedHolds> holds = host_holds_->HoldsOf(spec.id);
    if (!holds.ok()) {
      return absl::Status(holds.status().code(),
                          absl::StrCat("sluice.Balancer: cannot add '", spec.id,
                                       "': ", holds.status().message()));
    }
    state->host = *std::move(holds);
  }
  if (cluster_holds_ != nullptr) {
    state->cluster = cluster_holds_;
    state->cluster_field = ClusterHolds::FieldOf(spec.id);
    cluster_holds_->Track(spec.id, state);
    state->others_in_flight = cluster_loads_->Track(state->cluster_field);
  }
  if (UsesPrefixIndex()) {
    if (free_slots_ == 0) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "sluice.Balancer: at most ", PrefixIndex::kMaxSlots,
          " endpoints with a prefix-aware strategy; cannot add '", spec.id, "'"));
    }
    state->slot = __builtin_ctzll(free_slots_);
    free_slots_ &= free_slots_ - 1;
    state->route_key = SharedRouteLog::EndpointKey(spec.id);
  }
  endpoints_.push_back(std::move(state));
  RebuildRing();
  return absl::OkStatus();
}

absl::Status BalancerCore::Update(const EndpointSpec& spec) {
  if (absl::Status s = ValidateEndpoint(spec); !s.ok()) return s;
  MutexLock lock(&mu_);
  std::shared_ptr<State>* e = Find(spec.id);
  if (e == nullptr) {
    return absl::NotFoundError(absl::StrCat("sluice.Balancer: no endpoint '", spec.id, "'"));
  }
  const bool reweighted = (*e)->spec->weight != spec.weight;
  (*e)->spec = std::make_shared<const EndpointSpec>(spec);
  if (reweighted) RebuildRing();
  return absl::OkStatus();
}

absl::Status BalancerCore::Remove(std::string_view id) {
  MutexLock lock(&mu_);
  std::shared_ptr<State>* e = Find(id);
  if (e == nullptr) return absl::NotFoundError(absl::StrCat("sluice.Balancer: no endpoint '", std::string(id), "'"));
  if ((*e)->slot >= 0) {
    index_.Drop((*e)->slot);
    resident_.Drop((*e)->slot);
    free_slots_ |= uint64_t{1} << (*e)->slot;
  }
  if (cluster_holds_ != nullptr) cluster_holds_->Untrack(id);
  if (cluster_loads_ != nullptr) cluster_loads_->Untrack((*e)->cluster_field);
  endpoints_.erase(endpoints_.begin() + (e - endpoints_.data()));
  RebuildRing();
  return absl::OkStatus();
}

absl::Status BalancerCore::SetMetrics(std::string_view id, const EngineMetrics& metrics) {
  MutexLock lock(&mu_);
  std::shared_ptr<State>* e = Find(id);
  if (e == nullptr) return absl::NotFoundError(absl::StrCat("sluice.Balancer: no endpoint '", std::string(id), "'"));
  MutexLock state_lock(&(*e)->mu);
  (*e)->metrics = metrics;
  (*e)->metrics_at = clock->NowNanos();
  (*e)->in_flight_at_metrics = (*e)->in_flight.load(std::memory_order_relaxed);
  return absl::OkStatus();
}

std::vector<EndpointStats> BalancerCore::Endpoints() const {
  if (cluster_holds_ != nullptr) cluster_holds_->MaybeRefresh(clock->NowNanos());
  if (cluster_loads_ != nullptr) cluster_loads_->MaybeRefresh(clock->NowNanos());
  MutexLock lock(&mu_);
  std::vector<EndpointStats> out;
  out.reserve(endpoints_.size());
  for (const auto& e : endpoints_) {
    out.push_back(e->Stats());
    EndpointStats& s = out.back();
    if (e->slot >= 0) s.prefix_blocks = index_.size(e->slot);
    s.host_in_flight =
        host_counts_ != nullptr ? std::max<int64_t>(0, host_counts_->InFlight(s.id)) : s.in_flight;
    s.fleet_in_flight = s.host_in_flight + (e->others_in_flight != nullptr
                                                ? e->others_in_flight->load(std::memory_order_relaxed)
                                                : 0);
  }
  return out;
}

namespace {
// A hold's length for Cooldown and Eject: in (0, kMaxHoldDuration].
absl::Status ValidateHold(absl::string_view method, absl::Duration d) {
  if (d <= absl::ZeroDuration() || d > Balancer::kMaxHoldDuration) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sluice.Balancer.", method, ": duration must be > 0 and at most ",
        absl::FormatDuration(Balancer::kMaxHoldDuration), ", got ", absl::FormatDuration(d)));
  }
  return absl::OkStatus();
}

absl::Status NoEndpoint(absl::string_view method, std::string_view id) {
  return absl::NotFoundError(
      absl::StrCat("sluice.Balancer.", method, ": no endpoint '", std::string(id), "'"));
}
}  // namespace

absl::Status BalancerCore::Cooldown(std::string_view id, absl::Duration duration, Failure reason) {
  if (absl::Status s = ValidateHold("Cooldown", duration); !s.ok()) return s;
  if (static_cast<int>(reason) < 0 || static_cast<int>(reason) >= kFailureCount) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sluice.Balancer.Cooldown: reason must be a Failure class, got ", static_cast<int>(reason)));
  }
  MutexLock lock(&mu_);
  std::shared_ptr<State>* e = Find(id);
  if (e == nullptr) return NoEndpoint("Cooldown", id);
  (*e)->ExtendCooldown(AddDuration(clock->NowNanos(), duration), reason);
  return absl::OkStatus();
}

absl::Status BalancerCore::Eject(std::string_view id, absl::Duration duration) {
  if (absl::Status s = ValidateHold("Eject", duration); !s.ok()) return s;
  MutexLock lock(&mu_);
  std::shared_ptr<State>* e = Find(id);
  if (e == nullptr) return NoEndpoint("Eject", id);
  (*e)->ExtendEjection(AddDuration(clock->NowNanos(), duration));
  return absl::OkStatus();
}

absl::Status BalancerCore::Restore(std::string_view id) {
  MutexLock lock(&mu_);
  std::shared_ptr<State>* e = Find(id);
  if (e == nullptr) return NoEndpoint("Restore", id);
  (*e)->Restore(clock->NowNanos());
  return absl::OkStatus();
}

}  // namespace internal

// ---- Balancer ---------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Balancer>> Balancer::Create(const Options& options,
                                                           const Clock* clock) {
  if (clock == nullptr) return internal::Invalid("clock", "must not be null");
  if (absl::Status s = internal::Validate(options); !s.ok()) return s;
  auto core = std::make_unique<internal::BalancerCore>(options, clock);
  uint64_t host_tag = 0;  // cluster scope: the host's counter (0: this balancer counts alone)
  if (!options.shared_region.empty()) {
    ConcurrencyLimiter::Options counts;
    counts.shared_region = options.shared_region;
    counts.max_in_flight = options.shared_max_in_flight;
    counts.lease = options.shared_lease;
    counts.max_keys = 4096;  // endpoints per region
    absl::StatusOr<std::unique_ptr<ConcurrencyLimiter>> limiter =
        ConcurrencyLimiter::Create(counts, clock);
    if (!limiter.ok()) {
      return absl::Status(limiter.status().code(),
                          absl::StrCat("sluice.Balancer: shared_region: ",
                                       limiter.status().message()));
    }
    core->set_host_counts(std::shared_ptr<ConcurrencyLimiter>(*std::move(limiter)));
    absl::StatusOr<std::shared_ptr<internal::SharedHoldTable>> holds =
        internal::SharedHoldTable::Open(options.shared_region);
    if (!holds.ok()) {
      return absl::Status(holds.status().code(),
                          absl::StrCat("sluice.Balancer: shared_region: ", holds.status().message()));
    }
    if (options.redis != nullptr) {
      absl::StatusOr<uint64_t> tag = (*holds)->HostTag();
      if (!tag.ok()) {
        return absl::Status(tag.status().code(),
                            absl::StrCat("sluice.Balancer: shared_region: ", tag.status().message()));
      }
      host_tag = *tag;
    }
    core->set_host_holds(*std::move(holds));
    if (core->UsesPrefixIndex()) {
      absl::StatusOr<std::unique_ptr<internal::SharedRouteLog>> routes =
          internal::SharedRouteLog::Open(options.shared_region, options.prefix_hash);
      if (!routes.ok()) {
        return absl::Status(routes.status().code(),
                            absl::StrCat("sluice.Balancer: shared_region: ",
                                         routes.status().message()));
      }
      core->set_route_log(*std::move(routes));
    }
  }
  if (options.redis != nullptr) {
    auto holds = std::make_shared<internal::ClusterHolds>(options.redis, options.redis_name,
                                                          options.redis_refresh, clock);
    holds->MaybeRefresh(clock->NowNanos());  // the first read, so early picks see the fleet's
    core->set_cluster_holds(std::move(holds));
    core->set_cluster_loads(std::make_shared<internal::ClusterLoads>(
        options.redis, options.redis_name, options.redis_refresh, options.shared_lease, host_tag));
    if (core->UsesPrefixIndex()) {
      auto routes = std::make_unique<internal::ClusterRoutes>(options.redis, options.redis_name,
                                                              options.redis_refresh);
      routes->MaybeRefresh(clock->NowNanos());  // the fleet's newest routes, for the first picks
      core->set_cluster_routes(std::move(routes));
    }
    if (options.strategy == Balancer::Strategy::kRoundRobin) {
      auto cursor = std::make_unique<internal::ClusterCursor>(options.redis, options.redis_name);
      (void)cursor->Take(clock->NowNanos());  // draws the first pick's turn
      core->set_cluster_cursor(std::move(cursor));
    }
  }
  return std::unique_ptr<Balancer>(new Balancer(std::move(core)));
}

Balancer::Balancer(std::unique_ptr<internal::BalancerCore> core) : core_(std::move(core)) {}
Balancer::~Balancer() = default;

absl::Status Balancer::AddEndpoint(const EndpointSpec& e) { return core_->Add(e); }
absl::Status Balancer::UpdateEndpoint(const EndpointSpec& e) { return core_->Update(e); }
absl::Status Balancer::RemoveEndpoint(std::string_view id) { return core_->Remove(id); }

absl::Status Balancer::UpdateMetrics(std::string_view id, std::string_view prometheus_text) {
  absl::StatusOr<EngineMetrics> m = ParseEngineMetrics(prometheus_text);
  if (!m.ok()) return m.status();
  return core_->SetMetrics(id, *m);
}

absl::Status Balancer::SetMetrics(std::string_view id, const EngineMetrics& metrics) {
  return core_->SetMetrics(id, metrics);
}

absl::StatusOr<Balancer::Pick> Balancer::PickEndpoint(const PickRequest& request) {
  return core_->PickEndpoint(request);
}

absl::StatusOr<Balancer::Pick> Balancer::PickEndpoint(const LlmRequest& request,
                                                      std::string_view affinity_key) {
  std::vector<uint64_t> blocks;
  if (core_->UsesPrefixIndex()) blocks = PrefixBlockHashes(request, core_->options.prefix_hash);
  return core_->PickEndpoint({.model = request.model,
                              .prefix_blocks = blocks,
                              .affinity_key = affinity_key,
                              .prompt_tokens = request.EstimatedPromptTokens()});
}

absl::Status Balancer::Cooldown(std::string_view id, absl::Duration duration, Failure reason) {
  return core_->Cooldown(id, duration, reason);
}
absl::Status Balancer::Eject(std::string_view id, absl::Duration duration) {
  return core_->Eject(id, duration);
}
absl::Status Balancer::Restore(std::string_view id) { return core_->Restore(id); }

std::vector<EndpointStats> Balancer::Endpoints() const { return core_->Endpoints(); }
const Balancer::Options& Balancer::options() const { return core_->options; }
const Clock* Balancer::clock() const { return core_->clock; }

// ---- Pick -------------------------------------------------------------------------------------

Balancer::Pick::Pick(std::shared_ptr<internal::EndpointState> state,
                     std::shared_ptr<const EndpointSpec> spec, int64_t matched_blocks)
    : state_(std::move(state)), spec_(std::move(spec)), matched_blocks_(matched_blocks) {}

namespace {
AttemptOutcome Abandoned() {
  AttemptOutcome outcome;
  outcome.failure = Failure::kAbandoned;
  return outcome;
}
}  // namespace

Balancer::Pick::Pick(Pick&& other) noexcept = default;

Balancer::Pick& Balancer::Pick::operator=(Pick&& other) noexcept {
  if (this != &other) {
    if (state_ != nullptr) Complete(Abandoned());
    state_ = std::move(other.state_);
    spec_ = std::move(other.spec_);
    matched_blocks_ = other.matched_blocks_;
    tokens_ = other.tokens_;
    host_lease_ = std::move(other.host_lease_);  // the old lease (if any) went with Complete
    host_counts_ = std::move(other.host_counts_);
    cluster_loads_ = std::move(other.cluster_loads_);
    cluster_member_ = std::move(other.cluster_member_);
  }
  return *this;
}

Balancer::Pick::~Pick() {
  if (state_ != nullptr) Complete(Abandoned());
}

const std::string& Balancer::Pick::endpoint_id() const { return spec_->id; }
const EndpointSpec& Balancer::Pick::endpoint() const { return *spec_; }

std::string_view Balancer::Pick::label(std::string_view name) const {
  auto it = spec_->labels.find(absl::string_view(name.data(), name.size()));
  return it == spec_->labels.end() ? std::string_view() : std::string_view(it->second);
}

void Balancer::Pick::Complete(const AttemptOutcome& outcome) {
  if (state_ == nullptr) return;
  std::shared_ptr<internal::EndpointState> state = std::move(state_);
  state->in_flight_tokens.fetch_sub(tokens_, std::memory_order_relaxed);
  (void)host_lease_.Release();  // an expired lease has already stopped counting
  if (cluster_loads_ != nullptr) cluster_loads_->Release(state->cluster_field, cluster_member_);
  state->Complete(outcome);
}

}  // namespace v1
}  // namespace sluice
