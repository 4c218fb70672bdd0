#include "sluice/governor.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/fork_hooks.h"
#include "governor/attribute_match.h"
#include "governor/governor_metrics.h"
#include "governor/governor_snapshot.h"
#include "governor/held_rule.h"
#include "governor/token_estimate.h"
#include "sluice/internal/mutex.h"

namespace sluice {
inline namespace v1 {

struct Governor::State {
  const Clock* clock = nullptr;
  // Created with the Governor and kept across reloads (a policy's metrics settings apply at
  // Create), so counters only ever grow.
  std::unique_ptr<internal::GovernorMetrics> metrics;
  // The running snapshot: Admit copies the shared_ptr under a mutex held for that copy only
  // (a pthread mutex TSan sees and a fork hook resets; libstdc++ 12's atomic<shared_ptr> is a
  // lock TSan cannot see). Reloads serialise on reload_mutex.
  internal::Mutex snapshot_mutex;
  std::shared_ptr<const internal::GovernorSnapshot> snapshot ABSL_GUARDED_BY(snapshot_mutex);
  internal::Mutex reload_mutex;
  // fork(): snapshot_mutex is a leaf, held across the fork so the child's snapshot pointer is
  // whole; reload_mutex is held while a reload builds objects (whose fork hooks the forking
  // thread's registry lock excludes), so it is only replaced in the child: the child has no
  // reload in progress.
  internal::ForkHooks fork_hooks{
      [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { snapshot_mutex.lock(); },
      [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { snapshot_mutex.unlock(); },
      [this] {
        snapshot_mutex.ResetInForkChild();
        reload_mutex.ResetInForkChild();
      }};

  std::shared_ptr<const internal::GovernorSnapshot> Load() {
    internal::MutexLock lock(&snapshot_mutex);
    return snapshot;
  }
  void Store(std::shared_ptr<const internal::GovernorSnapshot> next) {
    std::shared_ptr<const internal::GovernorSnapshot> previous;  // freed outside the lock
    internal::MutexLock lock(&snapshot_mutex);
    previous = std::exchange(snapshot, std::move(next));
  }
};

Governor::Governor(const Clock* clock) : state_(std::make_unique<State>()) {
  state_->clock = clock;
}

Governor::~Governor() = default;

absl::StatusOr<std::unique_ptr<Governor>> Governor::Create(Policy policy, const Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("sluice.Governor: clock is null");
  absl::StatusOr<std::unique_ptr<internal::GovernorMetrics>> metrics =
      internal::GovernorMetrics::Create(policy.metrics);
  if (!metrics.ok()) {
    return absl::Status(metrics.status().code(),
                        absl::StrCat(policy.source, ": ", metrics.status().message()));
  }
  absl::StatusOr<std::shared_ptr<const internal::GovernorSnapshot>> snapshot =
      internal::BuildSnapshot(std::move(policy), nullptr, clock, metrics->get());
  if (!snapshot.ok()) return snapshot.status();
  std::unique_ptr<Governor> governor(new Governor(clock));
  governor->state_->metrics = *std::move(metrics);
  governor->state_->Store(*std::move(snapshot));
  return governor;
}

absl::Status Governor::Reload(Policy policy) {
  internal::MutexLock lock(&state_->reload_mutex);
  std::shared_ptr<const internal::GovernorSnapshot> previous =
      state_->Load();
  absl::StatusOr<std::shared_ptr<const internal::GovernorSnapshot>> next =
      internal::BuildSnapshot(std::move(policy), previous.get(), state_->clock,
                              state_->metrics.get());
  if (!next.ok()) return next.status();
  state_->Store(*std::move(next));
  return absl::OkStatus();
}

namespace {

internal::RuleState* FindRule(const internal::GovernorSnapshot& snapshot, std::string_view name) {
  for (const internal::CompiledRule& rule : snapshot.rules) {
    if (rule.state->spec().name == name) return rule.state.get();
  }
  return nullptr;
}

}  // namespace

absl::Status Governor::SetKeyLimits(std::string_view rule, std::string_view key,
                                    const RuleLimits& limits) {
  std::shared_ptr<const internal::GovernorSnapshot> snapshot =
      state_->Load();
  internal::RuleState* state = FindRule(*snapshot, rule);
  if (state == nullptr) {
    return absl::NotFoundError(absl::StrCat("sluice.Governor: no rule named \"", internal::AbslView(rule), "\""));
  }
  return state->SetKeyLimits(key, limits);
}

absl::Status Governor::ClearKeyLimits(std::string_view rule, std::string_view key) {
  std::shared_ptr<const internal::GovernorSnapshot> snapshot =
      state_->Load();
  internal::RuleState* state = FindRule(*snapshot, rule);
  if (state == nullptr) {
    return absl::NotFoundError(absl::StrCat("sluice.Governor: no rule named \"", internal::AbslView(rule), "\""));
  }
  state->ClearKeyLimits(key);
  return absl::OkStatus();
}

std::shared_ptr<const Policy> Governor::policy() const {
  return state_->Load()->policy;
}

bool Governor::waits_for_redis() const {
  return state_->Load()->waits_for_redis;
}

std::string Governor::MetricsText() const {
  return state_->metrics->Render(*state_->Load());
}

namespace {

int64_t RealNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Admission Governor::Admit(const GovernorRequest& request) {
  const int64_t started = RealNanos();
  Admission admission = Decide(request);
  const internal::GovernorSnapshot& snapshot = *admission.snapshot_;
  internal::GovernorMetrics& metrics = *state_->metrics;
  if (admission.allowed_) {
    for (const internal::HeldRule& held : admission.held_) {
      const internal::RuleSeries& series = held.rule->series();
      series.allowed.Add();
      if (held.taken.permit) series.in_flight.Add(1);
      if (held.taken.reservation) series.tokens_reserved.Add(held.taken.reservation.estimate());
      if (held.taken.shaping_charge) {
        series.shaping_delay.Observe(static_cast<double>(held.taken.shaping_charge->delay_nanos) /
                                     1e9);
      }
      if (metrics.per_key_labels()) {
        metrics.ForKey(held.rule->spec().name, held.taken.key, "allowed").Add();
      }
    }
  } else if (!admission.rule_.empty()) {
    for (const internal::CompiledRule& rule : snapshot.rules) {
      if (rule.state->spec().name != admission.rule_) continue;
      (admission.status_.ok() ? rule.state->series().refused : rule.state->series().errors).Add();
      break;
    }
  }
  const int64_t finished = RealNanos();
  metrics.admit_seconds().Observe(static_cast<double>(finished - started) / 1e9);
  metrics.MaybeCollect(snapshot, finished);
  return admission;
}

Admission Governor::Decide(const GovernorRequest& request) {
  Admission admission;
  admission.snapshot_ = state_->Load();
  const internal::GovernorSnapshot& snapshot = *admission.snapshot_;
  internal::RequestView view(request.attributes);
  admission.allowed_ = true;
  std::string key;
  int64_t tokens = -1;
  bool have_binding = false;
  for (const internal::CompiledRule& rule : snapshot.rules) {
    if (!rule.match.Holds(view)) continue;
    const RuleSpec& spec = rule.state->spec();
    admission.matched_.push_back(spec.name);
    internal::BuildKey(view, spec.key, &key);
    if (tokens < 0 && rule.state->has_tokens()) {
      tokens = request.token_estimate >= 0 ? request.token_estimate
                                           : internal::EstimateRequestTokens(request.body);
    }
    internal::HeldRule held;
    held.rule = rule.state.get();
    internal::RuleOutcome outcome = rule.state->Take(key, std::max<int64_t>(tokens, 0),
                                                     rule.PolicyLimitsFor(key), &held.taken);
    if (!outcome.allowed) {
      // A refusal charges none: give back what earlier rules took, latest first.
      for (auto it = admission.held_.rbegin(); it != admission.held_.rend(); ++it) {
        it->rule->GiveBack(&it->taken);
      }
      admission.held_.clear();
      admission.allowed_ = false;
      admission.decision_ = outcome.decision;
      admission.decision_delay_nanos_ = 0;
      admission.rule_ = spec.name;
      admission.status_ = std::move(outcome.status);
      return admission;
    }
    admission.decision_delay_nanos_ =
        std::max(admission.decision_delay_nanos_, outcome.decision.delay_nanos);
    if (!have_binding || internal::BindsTighter(outcome.decision, admission.decision_)) {
      admission.decision_ = outcome.decision;
      admission.rule_ = spec.name;
      have_binding = true;
    }
    admission.held_.push_back(std::move(held));
  }
  admission.decision_.allowed = true;
  admission.token_estimate_ = std::max<int64_t>(tokens, 0);
  if (std::optional<std::string_view> model = view.Find("model")) admission.model_ = *model;
  if (snapshot.cache.cache && !request.body.empty() &&
      (snapshot.cache_models.empty() || snapshot.cache_models.contains(admission.model_))) {
    admission.cacheable_ = true;
    admission.body_ = std::string(request.body);
    internal::BuildKey(view, snapshot.policy->cache->namespace_attributes,
                       &admission.cache_namespace_);
  }
  return admission;
}

}  // namespace v1
}  // namespace sluice
