// The harness's fourth run: Dify-like traffic driven through one Governor built from a policy
// file (examples/policy.yaml by default), then a reload under load.
//
//   1. Virtual time (a ManualClock), one event loop: tenants (one gold, trial workspaces, many
//      regular ones), apps, console logins from a brute-forcing address, models served by
//      upstreams with fallback chains; the primary upstream answers 429 for a stretch. Each
//      request goes Admit -> cached answer -> fallback attempts -> settle -> release when its
//      virtual call ends. The report shows every rule's decisions, the cache's hits, the targets
//      that served, and what Admit cost on the real clock.
//   2. Reload under load: threads admit on the real clock while the main thread reloads the
//      policy back and forth (one rule's limits changed, the others identical) many times.
//      Every Admit returns a decision (none lost), and a rule that stayed identical keeps its
//      state through every reload: its admissions never exceed its bound for the elapsed time.
//
// The policy's scopes are replaced by the harness's --scope (process by default: no server, no
// shared memory) and its Redis stores dropped, so the main job needs nothing but the file.
#ifndef SLUICE_BENCHMARKS_HARNESS_POLICY_DRILL_H_
#define SLUICE_BENCHMARKS_HARNESS_POLICY_DRILL_H_

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

namespace harness {

struct PolicyScenario {
  std::string policy_path = "examples/policy.yaml";
  std::string scope = "process";  // or "host"
  uint64_t seed = 1;
  double seconds = 60;
  double rps = 400;
  // The primary upstream answers 429 between these virtual times.
  double outage_start = 20, outage_end = 30;
  // Reload under load.
  int reload_threads = 2;
  int reloads = 200;
};

struct RuleCounts {
  int64_t matched = 0, allowed = 0, refused = 0;
};

struct PolicyOutcome {
  std::string error;  // the policy did not load or build
  std::string policy_name;
  int64_t offered = 0, admitted = 0, refused = 0;
  std::map<std::string, RuleCounts> rules;       // by rule name
  std::map<std::string, int64_t> served_by;      // fallback target -> answers
  int64_t cache_hits = 0, cache_stores = 0;
  int64_t tokens_settled = 0;
  std::vector<int64_t> admit_nanos;              // real cost of each Admit
  // Reload under load.
  int64_t reloads = 0, reload_errors = 0;
  int64_t loaded_decisions = 0, loaded_admit_calls = 0;
  std::string kept_rule;
  int64_t kept_rule_admitted = 0, kept_rule_bound = 0;
  int64_t changed_rule_admitted = 0;
};

PolicyOutcome RunPolicyDrill(const PolicyScenario& scenario);
void PrintPolicyReport(const PolicyScenario& scenario, const PolicyOutcome& outcome,
                       std::ostream& os);

}  // namespace harness

#endif  // SLUICE_BENCHMARKS_HARNESS_POLICY_DRILL_H_
