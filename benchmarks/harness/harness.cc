// sluice_harness: the main job. Drives a Dify-like burst through sluice's admission objects and
// prints what was admitted, refused and shaped, per-tenant fairness, and what each decision cost.
//
//   sluice_harness [--seconds=N] [--seed=N] [--scope=process|host]
//
// The default is the embedded (process) scope: no server is needed. --scope=host keeps every
// object's state in shared memory, as the workers of one Gunicorn would share it.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "dify_burst.h"
#include "report.h"

namespace {

bool Flag(const char* arg, const char* name, std::string* value) {
  const size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = arg + n + 1;
  return true;
}

int Usage(const char* message) {
  std::cerr << message << "\nusage: sluice_harness [--seconds=N] [--seed=N] [--scope=process|host]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  harness::Scenario scenario;
  for (int i = 1; i < argc; ++i) {
    std::string value;
    if (std::strcmp(argv[i], "--help") == 0) return Usage("sluice_harness: the main job");
    if (Flag(argv[i], "--seconds", &value)) {
      scenario.seconds = std::atof(value.c_str());
      if (!(scenario.seconds > 0)) return Usage("--seconds must be > 0");
    } else if (Flag(argv[i], "--seed", &value)) {
      scenario.seed = std::strtoull(value.c_str(), nullptr, 10);
    } else if (Flag(argv[i], "--scope", &value)) {
      if (value != "process" && value != "host") {
        return Usage("--scope: 'process' or 'host' (the cluster scope is not built yet)");
      }
      scenario.scope = value;
    } else {
      return Usage((std::string("unknown argument: ") + argv[i]).c_str());
    }
  }
  harness::Outcome outcome = harness::RunDifyBurst(scenario);
  harness::PrintReport(scenario, outcome, std::cout);
  return 0;
}
