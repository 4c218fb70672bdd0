// sluice_harness: the main job. Drives a Dify-like burst through sluice's admission objects and
// prints what was admitted, refused and shaped, per-tenant fairness, and what each decision cost;
// then a fallback drill: the primary provider fails halfway and the report shows the traffic
// moving to the backup and back (fallback_drill.h); then repeated questions through the response
// cache (cache_drill.h).
//
//   sluice_harness [--seconds=N] [--seed=N] [--scope=process|host|cluster]
//                  [--redis=HOST:PORT | --start-redis] [--time-scale=K] [--policy=FILE]
//
// --policy names the policy file of the fourth run (default examples/policy.yaml; see
// policy_drill.h).
//
// The default is the embedded (process) scope: no server is needed. --scope=host keeps every
// object's state in shared memory, as the workers of one Gunicorn would share it. --scope=cluster
// keeps it in Redis: the one at --redis (default 127.0.0.1:6379), or, with --start-redis, a
// redis-server the harness starts on a free loopback port and stops at the end. Cluster scope runs
// in real time, K times faster than the scenario (default 5: a 24 s run).
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "cache_drill.h"
#include "dify_burst.h"
#include "fallback_drill.h"
#include "local_redis.h"
#include "policy_drill.h"
#include "report.h"

namespace {

bool Flag(const char* arg, const char* name, std::string* value) {
  const size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = arg + n + 1;
  return true;
}

int Usage(const char* message) {
  std::cerr << message
            << "\nusage: sluice_harness [--seconds=N] [--seed=N] [--scope=process|host|cluster]\n"
               "                      [--redis=HOST:PORT | --start-redis] [--time-scale=K]\n"
               "                      [--policy=FILE]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  harness::Scenario scenario;
  harness::PolicyScenario policy_run;
  bool start_redis = false;
  for (int i = 1; i < argc; ++i) {
    std::string value;
    if (std::strcmp(argv[i], "--help") == 0) return Usage("sluice_harness: the main job");
    if (Flag(argv[i], "--seconds", &value)) {
      scenario.seconds = std::atof(value.c_str());
      if (!(scenario.seconds > 0)) return Usage("--seconds must be > 0");
    } else if (Flag(argv[i], "--seed", &value)) {
      scenario.seed = std::strtoull(value.c_str(), nullptr, 10);
    } else if (Flag(argv[i], "--scope", &value)) {
      if (value != "process" && value != "host" && value != "cluster") {
        return Usage("--scope must be 'process', 'host' or 'cluster'");
      }
      scenario.scope = value;
    } else if (Flag(argv[i], "--redis", &value)) {
      const size_t colon = value.rfind(':');
      if (colon == std::string::npos) return Usage("--redis must be HOST:PORT");
      scenario.redis_host = value.substr(0, colon);
      scenario.redis_port = std::atoi(value.c_str() + colon + 1);
      if (scenario.redis_port < 1 || scenario.redis_port > 65535) {
        return Usage("--redis: the port must be 1..65535");
      }
    } else if (Flag(argv[i], "--policy", &value)) {
      policy_run.policy_path = value;
    } else if (std::strcmp(argv[i], "--start-redis") == 0) {
      start_redis = true;
    } else if (Flag(argv[i], "--time-scale", &value)) {
      scenario.time_scale = std::atof(value.c_str());
      if (!(scenario.time_scale >= 1 && scenario.time_scale <= 1000)) {
        return Usage("--time-scale must be between 1 and 1000");
      }
    } else {
      return Usage((std::string("unknown argument: ") + argv[i]).c_str());
    }
  }
  if (start_redis && scenario.scope != "cluster") {
    return Usage("--start-redis goes with --scope=cluster");
  }
  std::unique_ptr<LocalRedis> redis;  // stopped when the run ends
  if (start_redis) {
    redis = std::make_unique<LocalRedis>();
    if (!redis->Ping()) return Usage("--start-redis: redis-server did not start");
    scenario.redis_host = "127.0.0.1";
    scenario.redis_port = redis->port();
  }
  harness::Outcome outcome = harness::RunDifyBurst(scenario);
  harness::PrintReport(scenario, outcome, std::cout);
  // The second run: the primary provider fails halfway, FallbackPolicy carries the traffic.
  harness::DrillScenario drill;
  drill.seed = scenario.seed;
  harness::DrillOutcome drilled = harness::RunFallbackDrill(drill);
  harness::PrintDrillReport(drill, drilled, std::cout);
  // The third: repeated questions through the response cache (hits, merged misses).
  harness::CacheScenario questions;
  questions.seed = scenario.seed;
  harness::PrintCacheDrillReport(questions, harness::RunCacheDrill(questions), std::cout);
  // The fourth: the same kind of traffic through one Governor built from a policy file, and a
  // reload under load.
  policy_run.seed = scenario.seed;
  policy_run.scope = scenario.scope == "host" ? "host" : "process";
  harness::PolicyOutcome governed = harness::RunPolicyDrill(policy_run);
  harness::PrintPolicyReport(policy_run, governed, std::cout);
  if (!governed.error.empty() || governed.kept_rule_admitted > governed.kept_rule_bound ||
      governed.loaded_decisions != governed.loaded_admit_calls) {
    return 1;
  }
  return 0;
}
