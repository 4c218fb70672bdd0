// The Governor under threads (run by TSan with the `concurrency` label): admits from several
// threads while another reloads the policy, sets and clears per-key limits and renders metrics.
// A rule that stays identical across reloads keeps its state, so its concurrency cap holds
// exactly throughout: the permits held at once per app never exceed it.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/governor.h"
#include "test_support.h"

namespace {

using sluice::Admission;
using sluice::Attribute;

sluice::Policy Version(int64_t tenant_rpm) {
  sluice::Policy policy;
  sluice::RuleSpec caps;
  caps.name = "caps";
  caps.key = {"app"};
  caps.limits.concurrency = 3;
  sluice::RuleSpec tenants;
  tenants.name = "tenants";
  tenants.key = {"tenant"};
  tenants.limits.requests = {sluice::Window::PerMinute(tenant_rpm)};
  policy.rules = {caps, tenants};
  return policy;
}

TEST_CASE("admits, reloads, per-key limits and metrics from several threads at once") {
  auto governor = sluice_test::Value(sluice::Governor::Create(Version(1'000'000)));
  constexpr int kApps = 4;
  std::atomic<int> held[kApps] = {};
  std::atomic<int> worst{0};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> decisions{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      uint64_t n = t;
      while (!stop.load(std::memory_order_relaxed)) {
        int app = static_cast<int>(++n % kApps);
        std::string app_name = "app-" + std::to_string(app);
        std::string tenant = "tenant-" + std::to_string(n % 7);
        Attribute attributes[] = {{"tenant", tenant}, {"app", app_name}};
        Admission admission = governor->Admit({.attributes = attributes});
        decisions.fetch_add(1, std::memory_order_relaxed);
        if (!admission.allowed()) continue;
        int now_held = held[app].fetch_add(1) + 1;
        int seen = worst.load();
        while (now_held > seen && !worst.compare_exchange_weak(seen, now_held)) {
        }
        std::this_thread::yield();
        held[app].fetch_sub(1);  // before the permit goes back
        admission.Release();
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 200 && !stop.load(); ++i) {
      REQUIRE(governor->Reload(Version(i % 2 == 0 ? 999'999 : 1'000'000)).ok());
      sluice::RuleLimits limits;
      limits.requests = {sluice::Window::PerMinute(500'000)};
      REQUIRE(governor->SetKeyLimits("tenants", "tenant-1", limits).ok());
      REQUIRE(governor->ClearKeyLimits("tenants", "tenant-1").ok());
      if (i % 20 == 0) CHECK(!governor->MetricsText().empty());
    }
    stop.store(true);
  });
  for (std::thread& t : threads) t.join();
  CHECK(decisions.load() > 0);
  CHECK(worst.load() <= 3);
}

}  // namespace

namespace {

TEST_CASE("fork() while threads admit, reload and render: the child admits at once") {
  if (!sluice_test::ForkSafeAllocator()) return;
  auto governor = sluice_test::Value(sluice::Governor::Create(Version(1'000'000)));
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      uint64_t n = t;
      while (!stop.load(std::memory_order_relaxed)) {
        std::string app = "app-" + std::to_string(++n % 4);
        Attribute attributes[] = {{"tenant", "t"}, {"app", app}};
        Admission admission = governor->Admit({.attributes = attributes});
        if (n % 64 == 0) (void)governor->MetricsText();
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      (void)governor->Reload(Version(i % 2 == 0 ? 999'999 : 1'000'000));
      (void)governor->SetKeyLimits("caps", "app-1", {.concurrency = 2});
    }
  });
  int children_ok = 0;
  for (int i = 0; i < 50; ++i) {
    pid_t child = fork();
    if (child == 0) {
      alarm(20);  // a deadlocked child dies of SIGALRM instead of hanging the test
      Attribute attributes[] = {{"tenant", "child"}, {"app", "child"}};
      bool ok = governor->Admit({.attributes = attributes}).allowed();
      ok = ok && governor->Reload(Version(123)).ok();
      ok = ok && !governor->MetricsText().empty();
      _exit(ok ? 0 : 1);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    children_ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  stop.store(true);
  for (std::thread& t : threads) t.join();
  CHECK(children_ok == 50);
}

}  // namespace
