// Balancer::PickEndpoint: filters, then the strategy (see sluice/balancer.h for each rule).
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "balancing/balancer_core.h"
#include "sluice/internal/mutex.h"
#include "base/time_arithmetic.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

bool ServesModel(const EndpointSpec& spec, std::string_view model) {
  if (model.empty()) return true;
  auto it = spec.labels.find("model");
  return it == spec.labels.end() || it->second == model;
}

// A scraped request count as kScored uses it: within [0, kEngineMetricsMaxRequests], NaN as 0.
// ParseEngineMetrics already keeps to that range, but SetMetrics takes any double, and one
// +inf queue made every candidate's normalised queue score NaN (so the first always won).
double RequestCount(std::optional<double> count) {
  const double v = count.value_or(0);
  return std::isnan(v) ? 0 : std::clamp(v, 0.0, kEngineMetricsMaxRequests);
}

}  // namespace

void BalancerCore::EjectOutliers(int64_t now) {
  int64_t hint = policy_->outlier_hint.load(std::memory_order_acquire);
  if (hint == 0) return;  // no endpoint has reached the threshold since the last pass
  const Balancer::OutlierDetection& od = options.outlier;
  int64_t ejected = 0;
  for (const std::shared_ptr<State>& e : endpoints_) {
    if (e->EjectedUntil() > now) ++ejected;  // administered ejections count towards the cap
  }
  int64_t ejectable =
      std::max<int64_t>(1, static_cast<int64_t>(od.max_ejection_percent / 100 *
                                                static_cast<double>(endpoints_.size()))) -
      ejected;
  bool outlier_left = false;  // one the cap kept in rotation: look again on the next pick
  for (const std::shared_ptr<State>& e : endpoints_) {
    if (e->EjectedUntil() > now ||
        e->outlier_failures.load(std::memory_order_relaxed) < od.consecutive_failures) {
      continue;
    }
    if (ejectable <= 0) {
      outlier_left = true;
      continue;
    }
    const int64_t times = e->times_ejected.fetch_add(1, std::memory_order_relaxed) + 1;
    const absl::Duration length =
        std::min(od.max_ejection_time, od.base_ejection_time * static_cast<double>(times));
    e->ExtendEjection(internal::AddDuration(now, length));
    e->outlier_failures.store(0, std::memory_order_relaxed);
    --ejectable;
  }
  // A failure that raced this pass bumped the hint, so the CAS fails and the next pick looks.
  if (!outlier_left) policy_->outlier_hint.compare_exchange_strong(hint, 0);
}

absl::Status BalancerCore::Filter(const PickRequest& request, int64_t now) {
  candidates_.clear();
  owners_.clear();
  loads_.clear();
  in_flight_.clear();
  size_t serving = 0, cooling = 0;
  int64_t first_back = std::numeric_limits<int64_t>::max();
  if (options.outlier.consecutive_failures > 0) EjectOutliers(now);
  for (size_t owner = 0; owner < endpoints_.size(); ++owner) {
    const std::shared_ptr<State>& e = endpoints_[owner];
    const EndpointSpec& spec = *e->spec;
    if (!ServesModel(spec, request.model)) continue;
    ++serving;
    // Ejected by outlier detection or by Eject (with a shared region: by any process).
    const int64_t ejected_until = e->EjectedUntil();
    if (ejected_until > now) {
      ++cooling;
      first_back = std::min(first_back, ejected_until);
      continue;
    }
    const int64_t until = e->CooldownUntil();
    if (until > now) {
      ++cooling;
      first_back = std::min(first_back, until);
      continue;
    }
    // Host scope: what every process on the host has in flight there; cluster scope: and the
    // other hosts', as last read.
    const int64_t in_flight =
        (host_counts_ != nullptr ? std::max<int64_t>(0, host_counts_->InFlight(spec.id))
                                 : e->in_flight.load(std::memory_order_relaxed)) +
        (e->others_in_flight != nullptr ? e->others_in_flight->load(std::memory_order_relaxed) : 0);
    if (spec.max_concurrency > 0 && in_flight >= spec.max_concurrency) continue;
    candidates_.push_back(e.get());
    owners_.push_back(owner);
    in_flight_.push_back(in_flight);
    loads_.push_back(static_cast<double>(in_flight) / static_cast<double>(spec.weight));
  }
  if (!candidates_.empty()) return absl::OkStatus();
  if (serving == 0) {
    return absl::NotFoundError(
        absl::StrCat("sluice.Balancer: no endpoint serves model '", std::string(request.model), "'"));
  }
  if (cooling == serving) {
    return absl::UnavailableError(absl::StrFormat(
        "sluice.Balancer: all %d endpoints for model '%s' are cooling down or ejected; the first "
        "is back in %.3f s",
        serving, request.model, static_cast<double>(first_back - now) / 1e9));
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "sluice.Balancer: every available endpoint for model '", std::string(request.model),
      "' is at its max_concurrency"));
}

template <typename Eligible>
size_t BalancerCore::LeastLoaded(Eligible eligible) {
  size_t best = candidates_.size(), ties = 0;
  double best_load = 0;
  int64_t best_tokens = 0, best_index = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    if (!eligible(i)) continue;
    const double load = LoadOf(i);
    // Ties go to the least prefill queued (prompt tokens in flight), then the smallest index.
    const int64_t tokens = candidates_[i]->in_flight_tokens.load(std::memory_order_relaxed);
    const int64_t index = candidates_[i]->slot >= 0 ? index_.size(candidates_[i]->slot) : 0;
    const bool fewer = tokens < best_tokens || (tokens == best_tokens && index < best_index);
    if (best == candidates_.size() || load < best_load || (load == best_load && fewer)) {
      best = i, best_load = load, best_tokens = tokens, best_index = index, ties = 1;
    } else if (load == best_load && tokens == best_tokens && index == best_index &&
               rng_() % ++ties == 0) {
      best = i;  // reservoir sampling: each tie equally likely
    }
  }
  return best;
}

size_t BalancerCore::RoundRobin() {
  // Cluster scope: the fleet's turns, drawn from Redis a pick ahead (none drawn yet: the host's
  // or the process's cursor).
  if (cluster_cursor_ != nullptr) {
    if (std::optional<uint64_t> turn = cluster_cursor_->Take(clock->NowNanos())) {
      return *turn % candidates_.size();
    }
  }
  // Host scope: one cursor for the host's processes, so its workers take the endpoints in turn
  // together (a full table keeps the process's own cursor).
  if (host_holds_ != nullptr) {
    if (absl::StatusOr<uint64_t> turn = host_holds_->NextRoundRobin(); turn.ok()) {
      return *turn % candidates_.size();
    }
  }
  return round_robin_++ % candidates_.size();
}

size_t BalancerCore::SmoothWeighted() {
  // nginx's smooth weighted round robin: every candidate gains its weight, the richest is picked
  // and pays the total back, so weights 5:1:1 give a a b a c a a, never five a's in a row.
  int64_t total = 0;
  size_t best = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    const int64_t weight = candidates_[i]->spec->weight;
    candidates_[i]->swrr_current += weight;
    total += weight;
    if (candidates_[i]->swrr_current > candidates_[best]->swrr_current) best = i;
  }
  candidates_[best]->swrr_current -= total;
  return best;
}

size_t BalancerCore::PowerOfTwo() {
  const size_t n = candidates_.size();
  if (n == 1) return 0;
  const size_t a = rng_() % n;
  size_t b = rng_() % (n - 1);
  if (b >= a) ++b;
  const double la = LoadOf(a), lb = LoadOf(b);
  return lb < la ? b : a;
}

double BalancerCore::KvShare(size_t i, int64_t now) {
  const State& e = *candidates_[i];
  if (e.slot < 0) return 0;
  double resident = resident_.Resident(e.slot, now);
  if (kv_.session_key != 0 && kv_.session.slot == e.slot) {
    resident -= resident_.Contribution(kv_.session, now);  // this conversation's last turn
  }
  const double capacity = static_cast<double>(CapacityOf(e)) *
                          static_cast<double>(options.prefix_hash.block_chars) / 4;
  return std::max(0.0, resident + kv_.tokens) / capacity;
}

void BalancerCore::AssessKv(const PickRequest& request, int64_t now) {
  const absl::Span<const uint64_t> blocks = request.prefix_blocks;
  kv_ = KvAssessment();
  kv_.tokens = request.prompt_tokens > 0
                   ? static_cast<double>(request.prompt_tokens)
                   : static_cast<double>(blocks.size()) *
                         static_cast<double>(options.prefix_hash.block_chars) / 4;
  // The conversation this request continues, wherever it was routed (a cooling endpoint too).
  const PrefixIndex::Match anywhere = index_.LongestMatch(blocks, ~uint64_t{0});
  if (anywhere.blocks > 0 && !index_.BranchesAt(blocks, anywhere.blocks)) {
    if (const ResidentTokens::Session* s = resident_.Find(blocks, anywhere.blocks, &kv_.session_key)) {
      kv_.session = *s;
    }
  }
  const int64_t max_age = absl::ToInt64Nanoseconds(options.metrics_max_age);
  kv_full_.assign(candidates_.size(), 0);
  for (size_t i = 0; i < candidates_.size(); ++i) {
    State& e = *candidates_[i];
    bool full = KvShare(i, now) > 1;
    if (!full) {
      MutexLock lock(&e.mu);
      full = e.metrics && now - e.metrics_at <= max_age && e.metrics->kv_usage &&
             *e.metrics->kv_usage >= options.kv_full_usage;  // NaN compares false: not full
    }
    kv_full_[i] = full;
    kv_.any_room |= !full;
  }
}

bool BalancerCore::SharedMatchCounts(absl::Span<const uint64_t> blocks,
                                     const PrefixIndex::Match& match, uint64_t offered) const {
  // A match that ends where other conversations branched off holds what several share. Short
  // (a system prompt) it is no affinity: every replica that served one of them holds it, and a
  // cold start spreads by load. Long (a RAG document) it is, unless every offered replica holds
  // it already (then going anywhere saves the same).
  if (!index_.BranchesAt(blocks, match.blocks)) return true;
  return match.blocks >= options.min_shared_affinity_blocks && (match.holders & offered) != offered;
}

size_t BalancerCore::PrefixAffinity(absl::Span<const uint64_t> blocks) {
  const size_t n = candidates_.size();
  double sum = 0, sum_sq = 0, low = std::numeric_limits<double>::max();
  for (size_t i = 0; i < n; ++i) {
    const double load = LoadOf(i);
    sum += load, sum_sq += load * load;
    low = std::min(low, load);
  }
  // The imbalance gate, per endpoint (SGLang's cache_aware router applies the same two-part test
  // to the whole fleet): a holder more than `gap` requests and imbalance_rel times above the
  // least loaded is not offered the prefix. Its absolute part is what works on small fleets,
  // where no endpoint can get 2 sigmas above the mean. The gap grows with what the match saves:
  // in a continuous-batching engine one more request in flight costs a little of every step,
  // while moving costs a full prefill of the match, so imbalance_abs per
  // min_shared_affinity_blocks matched (a short match spreads at imbalance_abs; a full 8k-token
  // history, 256 blocks, at 32: SGLang's default).
  auto overloaded = [&](double load, int64_t matched) {
    const double gap = static_cast<double>(options.imbalance_abs) *
                       std::max(1.0, static_cast<double>(matched) /
                                         static_cast<double>(options.min_shared_affinity_blocks));
    return load - low > gap && load > options.imbalance_rel * low;
  };
  // The hot-spot guard (AIBrix's), for large fleets: nor is one far above the mean load.
  const double mean = sum / static_cast<double>(n);
  const double sigma = std::sqrt(std::max(0.0, sum_sq / static_cast<double>(n) - mean * mean));
  const double hot = mean + options.hot_spot_sigmas * sigma + 1;
  // KV pressure: while some candidate has room for this request, none it would overflow is
  // offered a prefix or a new conversation (when all are full, moving would not help).
  auto has_room = [&](size_t i) { return !kv_.any_room || kv_full_[i] == 0; };
  uint64_t mask = 0;
  for (size_t i = 0; i < n; ++i) {
    if (candidates_[i]->slot >= 0 && LoadOf(i) <= hot && has_room(i)) {
      mask |= uint64_t{1} << candidates_[i]->slot;
    }
  }
  // The longest match among the offered; if the gate takes every holder of it out, the longest
  // among the rest (a shorter match, with a smaller gap).
  while (mask != 0) {
    const PrefixIndex::Match match = index_.LongestMatch(blocks, mask);
    if (match.blocks == 0 || !SharedMatchCounts(blocks, match, mask)) break;
    uint64_t gated = 0;
    for (size_t i = 0; i < n; ++i) {
      const int slot = candidates_[i]->slot;
      if (slot >= 0 && (match.holders >> slot & 1) != 0 && overloaded(LoadOf(i), match.blocks)) {
        gated |= uint64_t{1} << slot;
      }
    }
    if (gated == match.holders) {
      mask &= ~gated;
      continue;
    }
    matched_ = match.blocks;
    return LeastLoaded([&](size_t i) {
      const int slot = candidates_[i]->slot;
      return slot >= 0 && ((match.holders & ~gated) >> slot & 1) != 0;
    });
  }
  return LeastLoaded(has_room);
}

size_t BalancerCore::Scored(absl::Span<const uint64_t> blocks, int64_t now) {
  const size_t n = candidates_.size();
  const Balancer::ScoreWeights& w = options.weights;
  const int64_t max_age = absl::ToInt64Nanoseconds(options.metrics_max_age);
  std::vector<Signals>& s = signals_;
  s.resize(n);
  double kv_sum = 0;
  int kv_known = 0;
  for (size_t i = 0; i < n; ++i) {
    State& e = *candidates_[i];
    const int64_t in_flight = e.in_flight.load(std::memory_order_relaxed);
    s[i] = {static_cast<double>(in_flight_[i]), 0, 0, LoadOf(i), 0, 0, false};
    {
      MutexLock lock(&e.mu);
      if (e.metrics && now - e.metrics_at <= max_age) {
        // The scrape's queue, corrected by what this balancer sent or saw finish since.
        const double scraped =
            RequestCount(e.metrics->waiting) + RequestCount(e.metrics->running);
        s[i].queue = std::max(0.0, scraped + static_cast<double>(in_flight - e.in_flight_at_metrics));
        if (e.metrics->kv_usage && !std::isnan(*e.metrics->kv_usage)) {
          s[i].kv = std::clamp(*e.metrics->kv_usage, 0.0, 1.0), s[i].has_kv = true;
        }
      }
    }
    if (s[i].has_kv) kv_sum += s[i].kv, ++kv_known;
    s[i].kv_estimate = UsesPrefixIndex() ? std::min(KvShare(i, now), 2.0) : 0;
    if (w.prefix > 0 && !blocks.empty() && e.slot >= 0) {
      const PrefixIndex::Match m = index_.LongestMatch(blocks, uint64_t{1} << e.slot);
      s[i].held = m.blocks;
      // A short match ending where other conversations branched off is shared, not this one's
      // (a long one counts; what every candidate holds is taken off below).
      if (m.blocks > 0 && (!index_.BranchesAt(blocks, m.blocks) ||
                           m.blocks >= options.min_shared_affinity_blocks)) {
        s[i].prefix = static_cast<double>(m.blocks);
      }
    }
  }
  // The prefix signal is the share of the prompt an endpoint holds beyond what every candidate
  // holds: a block cached everywhere saves nothing by going anywhere in particular.
  if (w.prefix > 0 && !blocks.empty()) {
    double floor = std::numeric_limits<double>::max();
    for (const Signals& x : s) floor = std::min(floor, x.prefix);
    for (Signals& x : s) x.prefix = (x.prefix - floor) / static_cast<double>(blocks.size());
  }
  const double kv_default = kv_known > 0 ? kv_sum / kv_known : 0;
  // Counts (queue, load) on an absolute scale: 1 for the least loaded, minus the excess over it
  // in units of (mean + score_load_slack). Min-max normalisation made a one-request difference
  // worth a whole prefix match; here it costs 1 / (mean + slack), while an excess of several
  // times the mean drives the score below 0 and outweighs any match.
  auto scale = [&](auto get) {
    double lo = std::numeric_limits<double>::max(), sum = 0;
    for (const Signals& x : s) lo = std::min(lo, get(x)), sum += get(x);
    return std::pair{lo, sum / static_cast<double>(n) + options.score_load_slack};
  };
  auto lower_is_better = [](double v, std::pair<double, double> lo_unit) {
    return 1 - (v - lo_unit.first) / lo_unit.second;
  };
  const auto queue_scale = scale([](const Signals& x) { return x.queue; });
  const auto load_scale = scale([](const Signals& x) { return x.load; });
  size_t best = 0, ties = 0;
  double best_score = std::numeric_limits<double>::lowest();
  for (size_t i = 0; i < n; ++i) {
    // The engine's use, or the balancer's estimate with this request when that is higher: past
    // 1 (an overflow) it weighs against the endpoint beyond the KV weight.
    const double kv = std::max(s[i].has_kv ? s[i].kv : kv_default, s[i].kv_estimate);
    const double score = w.prefix * s[i].prefix + w.queue * lower_is_better(s[i].queue, queue_scale) +
                         w.kv_cache * (1 - kv) + w.in_flight * lower_is_better(s[i].load, load_scale);
    if (score > best_score + 1e-12) {
      best = i, best_score = score, ties = 1;
    } else if (score >= best_score - 1e-12 && rng_() % ++ties == 0) {
      best = i;
    }
  }
  matched_ = s[best].held;
  return best;
}

size_t BalancerCore::ConsistentHash(std::string_view key) {
  if (key.empty() || ring_.empty()) return PowerOfTwo();
  ++epoch_;
  int64_t total = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    candidates_[i]->candidate_epoch = epoch_;
    candidates_[i]->candidate_index = i;
    total += in_flight_[i];
  }
  // Bounded loads (Mirrokni, Thorup, Zadimoghaddam): nobody takes more than load_bound x mean.
  const double bound = std::ceil(options.load_bound * static_cast<double>(total + 1) /
                                 static_cast<double>(candidates_.size()));
  const uint64_t h = XXH3_64bits(key.data(), key.size());
  size_t at = std::lower_bound(ring_.begin(), ring_.end(), std::pair<uint64_t, State*>{h, nullptr}) -
              ring_.begin();
  for (size_t step = 0; step < ring_.size(); ++step, ++at) {
    State* e = ring_[at % ring_.size()].second;
    if (e->candidate_epoch == epoch_ && static_cast<double>(in_flight_[e->candidate_index]) < bound) {
      return e->candidate_index;
    }
  }
  return LeastLoaded([](size_t) { return true; });
}

void BalancerCore::RecordRoute(const State& e, absl::Span<const uint64_t> blocks, double tokens,
                               int64_t now) {
  uint64_t session_key = 0;  // the conversation it continues, as AssessKv finds it
  const PrefixIndex::Match anywhere = index_.LongestMatch(blocks, ~uint64_t{0});
  if (anywhere.blocks > 0 && !index_.BranchesAt(blocks, anywhere.blocks)) {
    resident_.Find(blocks, anywhere.blocks, &session_key);
  }
  index_.Touch(e.slot, blocks, CapacityOf(e));
  resident_.Record(blocks, session_key, e.slot, tokens, now);
}

void BalancerCore::ReplayOthersRoutes(int64_t now) {
  const double half_life = static_cast<double>(absl::ToInt64Nanoseconds(options.kv_session_half_life));
  auto record = [&](const SharedRouteLog::Route& route) {
    if (route.blocks.empty()) return;
    for (const std::shared_ptr<State>& e : endpoints_) {
      if (e->route_key != route.endpoint || e->slot < 0) continue;
      // Its tokens as they count now, faded since it was routed (a restarted worker replays
      // routes up to a ring's length old).
      // (In doubles: `at` is whatever another process wrote, and may be far from now.)
      const double age = std::max(0.0, static_cast<double>(now) - static_cast<double>(route.at));
      RecordRoute(*e, route.blocks, route.tokens * std::exp2(-age / half_life), now);
      return;
    }
  };  // an endpoint this balancer does not have: nothing to record
  if (routes_ != nullptr) routes_->ReplayNew(record);
  if (cluster_routes_ != nullptr) cluster_routes_->ReplayNew(now, record);
}

absl::StatusOr<Balancer::Pick> BalancerCore::PickEndpoint(const PickRequest& request) {
  // Outside the lock: with the store's breaker open the read completes on this thread.
  if (cluster_holds_ != nullptr) cluster_holds_->MaybeRefresh(clock->NowNanos());
  if (cluster_routes_ != nullptr) cluster_routes_->MaybeRefresh(clock->NowNanos());
  if (cluster_loads_ != nullptr) cluster_loads_->MaybeRefresh(clock->NowNanos());
  MutexLock lock(&mu_);
  const int64_t now = clock->NowNanos();
  if (routes_ != nullptr || cluster_routes_ != nullptr) ReplayOthersRoutes(now);
  if (absl::Status s = Filter(request, now); !s.ok()) return s;
  matched_ = 0;
  if (UsesPrefixIndex()) AssessKv(request, now);
  size_t chosen = 0;
  switch (options.strategy) {
    case Balancer::Strategy::kRoundRobin: chosen = RoundRobin(); break;
    case Balancer::Strategy::kWeightedRoundRobin: chosen = SmoothWeighted(); break;
    case Balancer::Strategy::kLeastRequest: chosen = PowerOfTwo(); break;
    case Balancer::Strategy::kPrefixAffinity: chosen = PrefixAffinity(request.prefix_blocks); break;
    case Balancer::Strategy::kScored: chosen = Scored(request.prefix_blocks, now); break;
    case Balancer::Strategy::kConsistentHash: chosen = ConsistentHash(request.affinity_key); break;
  }
  const std::shared_ptr<State>& e = endpoints_[owners_[chosen]];
  if (UsesPrefixIndex() && e->slot >= 0 && !request.prefix_blocks.empty()) {
    index_.Touch(e->slot, request.prefix_blocks, CapacityOf(*e));
    resident_.Record(request.prefix_blocks, kv_.session_key, e->slot, kv_.tokens, now);
    if (routes_ != nullptr) routes_->Append(e->route_key, request.prefix_blocks, kv_.tokens, now);
    if (cluster_routes_ != nullptr) {
      cluster_routes_->Send(e->route_key, request.prefix_blocks, kv_.tokens);
    }
  }
  e->in_flight.fetch_add(1, std::memory_order_relaxed);
  e->picks.fetch_add(1, std::memory_order_relaxed);
  Balancer::Pick pick(e, e->spec, matched_);
  if (UsesPrefixIndex()) {
    pick.tokens_ = static_cast<int64_t>(kv_.tokens);
    e->in_flight_tokens.fetch_add(pick.tokens_, std::memory_order_relaxed);
  }
  if (host_counts_ != nullptr) {
    pick.host_counts_ = host_counts_;
    pick.host_lease_ = host_counts_->TryAcquire(e->spec->id);  // refused: counted locally only
  }
  if (cluster_loads_ != nullptr) {
    pick.cluster_loads_ = cluster_loads_;
    pick.cluster_member_ = cluster_loads_->Acquire(e->cluster_field);
  }
  return pick;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
