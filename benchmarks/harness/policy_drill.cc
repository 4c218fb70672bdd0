#include "policy_drill.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <queue>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sluice/governor.h"
#include "sluice/policy.h"

namespace harness {
namespace {

using sluice::Admission;
using sluice::Attribute;

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The policy as the harness runs it: every rule in the harness's scope, no Redis.
absl::StatusOr<sluice::Policy> LoadForHarness(const PolicyScenario& scenario) {
  absl::StatusOr<sluice::Policy> policy = sluice::LoadPolicyFile(scenario.policy_path);
  if (!policy.ok()) return policy.status();
  policy->name = absl::StrCat("harness-", getpid());
  sluice::RuleScope scope =
      scenario.scope == "host" ? sluice::RuleScope::kHost : sluice::RuleScope::kProcess;
  for (sluice::RuleSpec& rule : policy->rules) {
    rule.scope = scope;
    rule.store.clear();
    rule.shared_name.clear();  // named after the harness's policy name: unique per run
    rule.mode = sluice::ClusterMode::kStrict;
    rule.max_keys = std::min<int64_t>(rule.max_keys, 4096);
  }
  policy->stores.clear();
  for (sluice::UpstreamSpec& upstream : policy->upstreams) upstream.balancer.shared_region.clear();
  if (policy->cache) {
    policy->cache->store.clear();
    policy->cache->options.max_bytes = int64_t{16} << 20;
  }
  policy->metrics.shared_region.clear();
  return policy;
}

// One simulated request's attributes (owned strings; views handed to Admit).
struct Request {
  std::string tenant, app, model, provider, route, ip, api_key, plan, end_user, body;
  std::vector<Attribute> Attributes() const {
    std::vector<Attribute> out = {{"tenant", tenant}, {"app", app},     {"model", model},
                                  {"provider", provider}, {"route", route}, {"ip", ip}};
    if (!api_key.empty()) out.push_back({"api_key", api_key});
    if (!plan.empty()) out.push_back({"header.x-plan", plan});
    if (!end_user.empty()) out.push_back({"end_user", end_user});
    return out;
  }
};

Request MakeRequest(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  Request r;
  if (u(rng) < 0.05) {  // console logins, most from one address trying passwords
    r.route = "/console/api/login";
    r.ip = u(rng) < 0.7 ? "203.0.113.9" : absl::StrCat("198.51.100.", rng() % 200);
    r.tenant = "console";
    r.app = "console";
    r.model = "none";
    r.provider = "none";
    return r;
  }
  r.route = "/v1/chat-messages";
  double t = u(rng);
  if (t < 0.25) {
    r.tenant = "tenant-gold";
  } else if (t < 0.40) {
    r.tenant = "acme";
  } else if (t < 0.50) {
    r.tenant = absl::StrCat("trial-", rng() % 3);
  } else {
    r.tenant = absl::StrCat("t-", rng() % 20);
  }
  static const char* kApps[] = {"support-bot", "agent", "app-1", "app-2"};
  r.app = kApps[rng() % 4];
  double m = u(rng);
  r.model = m < 0.55 ? "gpt-4o" : m < 0.85 ? "gpt-4o-mini" : "glm-4";
  r.provider = r.model == "glm-4" ? "zhipuai" : "openai";
  r.ip = absl::StrCat(u(rng) < 0.5 ? "10.1.0." : "192.0.2.", rng() % 250);
  if (u(rng) < 0.2) {
    r.api_key = absl::StrCat("app-", rng() % 5);
    r.plan = "free";
    r.end_user = absl::StrCat("user-", rng() % 100);
  }
  // gpt-4o-mini questions repeat (FAQ bots): a small pool, cached by the policy.
  int question = r.model == "gpt-4o-mini" ? static_cast<int>(rng() % 40)
                                          : static_cast<int>(rng() % 1000000);
  r.body = absl::StrCat(R"({"model":")", r.model,
                        R"(","messages":[{"role":"user","content":"question )", question,
                        R"(: how do I configure the knowledge base retrieval?"}],"max_tokens":256})");
  return r;
}

struct Active {
  int64_t end_nanos;
  std::shared_ptr<Admission> admission;
  int64_t used_tokens;
  bool operator>(const Active& o) const { return end_nanos > o.end_nanos; }
};

void RunTraffic(const PolicyScenario& scenario, sluice::Policy policy, PolicyOutcome* out) {
  sluice::ManualClock clock(int64_t{1} << 40);
  absl::StatusOr<std::unique_ptr<sluice::Governor>> governor =
      sluice::Governor::Create(std::move(policy), &clock);
  if (!governor.ok()) {
    out->error = std::string(governor.status().message());
    return;
  }
  std::mt19937_64 rng(scenario.seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::priority_queue<Active, std::vector<Active>, std::greater<Active>> active;
  const int64_t start = clock.NowNanos();
  const int64_t total = static_cast<int64_t>(scenario.seconds * scenario.rps);
  const double gap = 1e9 / scenario.rps;
  auto finish_until = [&](int64_t now) {
    while (!active.empty() && active.top().end_nanos <= now) {
      Active done = active.top();
      active.pop();
      (void)done.admission->Settle(done.used_tokens);
      out->tokens_settled += done.used_tokens;
    }
  };
  for (int64_t i = 0; i < total; ++i) {
    int64_t at = start + static_cast<int64_t>(i * gap * (0.5 + u(rng)));
    at = std::max(at, clock.NowNanos());
    clock.AdvanceNanos(at - clock.NowNanos());
    finish_until(at);
    Request request = MakeRequest(rng);
    std::vector<Attribute> attributes = request.Attributes();
    ++out->offered;
    int64_t t0 = NowNanos();
    auto admission = std::make_shared<Admission>(
        (*governor)->Admit({.attributes = attributes, .body = request.body}));
    out->admit_nanos.push_back(NowNanos() - t0);
    for (std::string_view rule : admission->matched_rules()) ++out->rules[std::string(rule)].matched;
    if (!admission->allowed()) {
      ++out->refused;
      ++out->rules[std::string(admission->rule())].refused;
      continue;
    }
    ++out->admitted;
    for (std::string_view rule : admission->matched_rules()) ++out->rules[std::string(rule)].allowed;
    if (request.model == "none") continue;  // a login: no model call
    if (admission->CachedAnswer() != nullptr) {
      ++out->cache_hits;
      admission->Cancel();
      continue;
    }
    double virtual_now = (clock.NowNanos() - start) / 1e9;
    bool outage = virtual_now >= scenario.outage_start && virtual_now < scenario.outage_end;
    absl::StatusOr<sluice::FallbackPolicy::Call> call = admission->BeginCall();
    if (call.ok()) {
      using Kind = sluice::FallbackPolicy::Step::Kind;
      while (call->step().kind == Kind::kAttempt) {
        const sluice::FallbackPolicy::Step& step = call->step();
        bool primary = step.target == "openai-gpt-4o" || step.target == "primary";
        sluice::AttemptOutcome outcome;
        outcome.http_status = outage && primary ? 429 : 200;
        outcome.latency = absl::Seconds(2);
        if (outcome.http_status == 200) ++out->served_by[std::string(step.target)];
        call->Next(outcome);
      }
      if (!call->status().ok()) {
        admission->Cancel();
        continue;
      }
    }
    if (admission->StoreAnswer({.body = std::string("{\"answer\":\"...\"}")})) ++out->cache_stores;
    int64_t used = static_cast<int64_t>(admission->token_estimate() * (0.3 + 0.7 * u(rng)));
    active.push({clock.NowNanos() + static_cast<int64_t>((2 + 6 * u(rng)) * 1e9), admission,
                 used});
  }
  finish_until(std::numeric_limits<int64_t>::max());
}

void RunReloadUnderLoad(const PolicyScenario& scenario, const sluice::Policy& policy,
                        PolicyOutcome* out) {
  // Two versions: the app concurrency cap alternates; every other rule stays identical.
  sluice::Policy a = policy;
  sluice::Policy b = policy;
  const sluice::RuleSpec* kept = nullptr;
  for (size_t i = 0; i < policy.rules.size(); ++i) {
    if (policy.rules[i].limits.concurrency > 0) b.rules[i].limits.concurrency += 1;
    if (kept == nullptr && !policy.rules[i].limits.requests.empty() &&
        policy.rules[i].limits.requests[0].kind == sluice::WindowKind::kGcra &&
        policy.rules[i].key_limits.size() < 100) {
      kept = &policy.rules[i];
    }
  }
  if (kept == nullptr) return;
  out->kept_rule = kept->name;
  absl::StatusOr<std::unique_ptr<sluice::Governor>> governor = sluice::Governor::Create(a);
  if (!governor.ok()) {
    out->error = std::string(governor.status().message());
    return;
  }
  std::atomic<bool> stop{false};
  std::atomic<int64_t> calls{0}, decisions{0}, kept_admitted{0};
  const int64_t started = NowNanos();
  std::vector<std::thread> threads;
  for (int t = 0; t < scenario.reload_threads; ++t) {
    threads.emplace_back([&] {
      Attribute attributes[] = {{"tenant", "reload-probe"}, {"app", "probe"},
                                {"model", "gpt-4o"}, {"provider", "openai"},
                                {"route", "/v1/chat-messages"}, {"ip", "10.0.0.1"}};
      while (!stop.load(std::memory_order_relaxed)) {
        calls.fetch_add(1, std::memory_order_relaxed);
        Admission admission = (*governor)->Admit({.attributes = attributes, .token_estimate = 1});
        if (admission.status().ok()) decisions.fetch_add(1, std::memory_order_relaxed);
        if (admission.allowed()) {
          for (std::string_view rule : admission.matched_rules()) {
            if (rule == out->kept_rule) kept_admitted.fetch_add(1, std::memory_order_relaxed);
          }
        }
      }
    });
  }
  for (int i = 0; i < scenario.reloads; ++i) {
    absl::Status s = (*governor)->Reload(i % 2 == 0 ? b : a);
    if (s.ok()) {
      ++out->reloads;
    } else {
      ++out->reload_errors;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stop.store(true);
  for (std::thread& t : threads) t.join();
  double elapsed = (NowNanos() - started) / 1e9;
  out->loaded_admit_calls = calls.load();
  out->loaded_decisions = decisions.load();
  out->kept_rule_admitted = kept_admitted.load();
  // The kept rule's bound over the run: for each window, burst + floor(t * limit / period);
  // the tightest window binds.
  int64_t bound = std::numeric_limits<int64_t>::max();
  for (const sluice::Window& w : kept->limits.requests) {
    double per_second = static_cast<double>(w.limit) / absl::ToDoubleSeconds(w.period);
    bound = std::min(bound, w.effective_burst() + static_cast<int64_t>(elapsed * per_second) + 1);
  }
  out->kept_rule_bound = bound;
}

}  // namespace

PolicyOutcome RunPolicyDrill(const PolicyScenario& scenario) {
  PolicyOutcome out;
  absl::StatusOr<sluice::Policy> policy = LoadForHarness(scenario);
  if (!policy.ok()) {
    out.error = std::string(policy.status().message());
    return out;
  }
  out.policy_name = policy->name;
  RunTraffic(scenario, *policy, &out);
  if (!out.error.empty()) return out;
  RunReloadUnderLoad(scenario, *policy, &out);
  return out;
}

void PrintPolicyReport(const PolicyScenario& scenario, const PolicyOutcome& out,
                       std::ostream& os) {
  os << "\n== Policy run: " << scenario.policy_path << " (every rule in " << scenario.scope
     << " scope), " << scenario.seconds << " virtual s at " << scenario.rps << " req/s ==\n";
  if (!out.error.empty()) {
    os << "policy error: " << out.error << "\n";
    return;
  }
  os << "offered " << out.offered << ", admitted " << out.admitted << ", refused " << out.refused
     << "\n";
  os << std::left << std::setw(22) << "rule" << std::right << std::setw(10) << "matched"
     << std::setw(10) << "allowed" << std::setw(10) << "refused" << "\n";
  for (const auto& [name, counts] : out.rules) {
    os << std::left << std::setw(22) << name << std::right << std::setw(10) << counts.matched
       << std::setw(10) << counts.allowed << std::setw(10) << counts.refused << "\n";
  }
  os << "cache: " << out.cache_hits << " hits, " << out.cache_stores << " answers stored\n";
  os << "served by (fallback targets; the primary answers 429 from " << scenario.outage_start
     << " s to " << scenario.outage_end << " s):";
  for (const auto& [target, n] : out.served_by) os << " " << target << "=" << n;
  os << "\ntokens settled: " << out.tokens_settled << "\n";
  std::vector<int64_t> nanos = out.admit_nanos;
  if (!nanos.empty()) {
    std::sort(nanos.begin(), nanos.end());
    os << "Admit cost (real clock, all matching rules + key build): median "
       << nanos[nanos.size() / 2] << " ns, p99 " << nanos[nanos.size() * 99 / 100] << " ns\n";
  }
  os << "reload under load: " << out.reloads << " reloads (" << out.reload_errors
     << " refused) while " << scenario.reload_threads << " threads admitted: "
     << out.loaded_admit_calls << " Admit calls, " << out.loaded_decisions
     << " decisions, " << (out.loaded_admit_calls - out.loaded_decisions) << " lost\n";
  if (!out.kept_rule.empty()) {
    os << "  unchanged rule '" << out.kept_rule << "' kept its state: admitted "
       << out.kept_rule_admitted << " <= bound " << out.kept_rule_bound
       << (out.kept_rule_admitted <= out.kept_rule_bound ? " (holds)" : " (VIOLATED)") << "\n";
  }
}

}  // namespace harness
