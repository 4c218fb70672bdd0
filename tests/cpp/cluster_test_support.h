// Helpers for the cluster-scope tests: a store on the test's redis-server, windows that do not
// refill while a test runs, and forked children whose counts are summed.
#ifndef SLUICE_TESTS_CPP_CLUSTER_TEST_SUPPORT_H_
#define SLUICE_TESTS_CPP_CLUSTER_TEST_SUPPORT_H_

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "sluice/sluice.hpp"
#include "test_support.h"

namespace sluice_test {

// No refill while a test runs, so exact counts are known.
inline sluice::Window Year(int64_t limit) { return {limit, absl::Hours(24 * 366), 0}; }

inline std::shared_ptr<sluice::RedisStore> Store(
    int port, absl::Duration reconnect = absl::Milliseconds(50),
    absl::Duration command_timeout = absl::Milliseconds(200)) {  // generous: sanitizers are slow
  sluice::RedisOptions o;
  o.port = port;
  o.command_timeout = command_timeout;
  o.reconnect_interval = reconnect;
  return Value(sluice::RedisStore::Create(o));
}

// Forks `children` processes running `body` (which returns a count) and returns the sum of their
// counts. The children share nothing with the parent but what fork() copies.
inline int ForkAndSum(int children, const std::function<int()>& body) {
  auto* counts = static_cast<std::atomic<int>*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  std::vector<pid_t> pids;
  for (int c = 0; c < children; ++c) {
    if (pid_t pid = fork(); pid == 0) {
      counts[c] = body();
      _exit(0);
    } else {
      pids.push_back(pid);
    }
  }
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  int sum = 0;
  for (int c = 0; c < children; ++c) sum += counts[c];
  munmap(counts, 4096);
  return sum;
}

}  // namespace sluice_test

#endif  // SLUICE_TESTS_CPP_CLUSTER_TEST_SUPPORT_H_
