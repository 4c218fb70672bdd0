// Host-scope throughput: decisions per second when 1 or 2 processes decide against one limit in
// shared memory, side by side with process scope (each process its own limiter) in the same run.
//
//   build/dev/benchmarks/host_scope_bench [--seconds=N]
//
// Each child runs RateLimiter::Allow in a loop for the duration (hot key: every process on one key;
// spread: each decision on one of 10,000 keys) and reports its count through a shared page.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "sluice/sluice.hpp"

namespace {

struct Result {
  std::atomic<int64_t> decisions[8];
};

sluice::RateLimiter::Options Options(const std::string& region) {
  sluice::RateLimiter::Options o;
  o.windows = {sluice::Window::PerSecond(1'000'000'000, 1'000'000'000)};  // never binds
  o.max_keys = 20'000;
  o.shared_region = region;
  return o;
}

// Runs `processes` children for `seconds`; returns total decisions per second.
double Run(const std::string& region, int processes, bool spread, double seconds) {
  auto* result = static_cast<Result*>(
      mmap(nullptr, sizeof(Result), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  new (result) Result{};
  std::vector<std::string> keys;
  for (int i = 0; i < 10'000; ++i) keys.push_back("tenant-" + std::to_string(i));
  std::vector<pid_t> pids;
  for (int p = 0; p < processes; ++p) {
    const pid_t pid = fork();
    if (pid == 0) {
      auto limiter = sluice::RateLimiter::Create(Options(region));
      if (!limiter.ok()) _exit(2);
      const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
      int64_t n = 0;
      size_t k = static_cast<size_t>(p) * 7919;
      while ((n & 1023) != 0 || std::chrono::steady_clock::now() < end) {
        (*limiter)->Allow(spread ? keys[k++ % keys.size()] : keys[0]);
        ++n;
      }
      result->decisions[p] = n;
      _exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  int64_t total = 0;
  for (int p = 0; p < processes; ++p) total += result->decisions[p];
  munmap(result, sizeof(Result));
  return static_cast<double>(total) / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 1.0;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--seconds=", 10) == 0) seconds = std::atof(argv[i] + 10);
  }
  const std::string region = "host-bench-" + std::to_string(getpid());
  std::printf("host scope vs process scope, RateLimiter::Allow with the steady clock, %.1f s per "
              "run, %ld cores\n\n",
              seconds, sysconf(_SC_NPROCESSORS_ONLN));
  std::printf("%-8s %-10s %9s %18s %16s\n", "scope", "keys", "processes", "decisions/s total",
              "ns per decision");
  for (bool spread : {false, true}) {
    for (int processes : {1, 2}) {
      for (const char* scope : {"process", "host"}) {
        const bool host = std::strcmp(scope, "host") == 0;
        const double rate = Run(host ? region : std::string(), processes, spread, seconds);
        std::printf("%-8s %-10s %9d %18.0f %16.1f\n", scope, spread ? "10k spread" : "one hot",
                    processes, rate, 1e9 * processes / rate);
        if (host) (void)sluice::RemoveSharedRegion(region);
      }
    }
  }
  std::printf("\n(process scope: each process has its own limit, so it is not one limit at all;\n"
              " it is the cost floor that host scope, one limit for the whole host, is held to)\n");
  return 0;
}
