// Property: across rules, a request passes only if every matching rule passes, and a refusal
// charges none. Two exact sliding-window rules (keyed by tenant and by app) and a concurrency
// cap (keyed by app), driven over random schedules on a ManualClock, must decide exactly as an
// oracle that checks every rule first and charges only admitted requests. Any charge a refused
// request left behind would make the Governor refuse a later request the oracle admits.
#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/governor.h"
#include "test_support.h"

namespace {

using sluice::Admission;
using sluice::Attribute;

struct SlidingOracle {
  int64_t limit;
  int64_t period;
  std::map<std::string, std::deque<int64_t>> admitted;  // admission times per key
  bool Room(const std::string& key, int64_t now) {
    std::deque<int64_t>& times = admitted[key];
    while (!times.empty() && times.front() + period <= now) times.pop_front();
    return static_cast<int64_t>(times.size()) < limit;
  }
  void Charge(const std::string& key, int64_t now) { admitted[key].push_back(now); }
};

TEST_CASE("all-or-none across rules matches the oracle over random schedules") {
  for (uint64_t seed : {1u, 2u, 3u, 4u, 5u, 6u}) {
    std::mt19937_64 rng(seed);
    sluice::ManualClock clock(int64_t{1} << 30);
    const int64_t tenant_limit = 1 + static_cast<int64_t>(rng() % 6);
    const int64_t app_limit = 1 + static_cast<int64_t>(rng() % 6);
    const int64_t cap = 1 + static_cast<int64_t>(rng() % 3);
    const int64_t tenant_period = (1 + rng() % 10) * sluice_test::kSecond;
    const int64_t app_period = (1 + rng() % 10) * sluice_test::kSecond;
    sluice::Policy policy;
    sluice::RuleSpec tenants;
    tenants.name = "tenants";
    tenants.key = {"tenant"};
    tenants.limits.requests = {
        sluice::Window::Sliding(tenant_limit, absl::Nanoseconds(tenant_period))};
    sluice::RuleSpec apps;
    apps.name = "apps";
    apps.key = {"app"};
    apps.limits.requests = {sluice::Window::Sliding(app_limit, absl::Nanoseconds(app_period))};
    sluice::RuleSpec caps;
    caps.name = "caps";
    caps.key = {"app"};
    caps.limits.concurrency = cap;
    // The order of the rules decides which refuses first; the oracle does not care.
    policy.rules = {tenants, caps, apps};
    if (seed % 2 == 0) policy.rules = {apps, tenants, caps};
    auto governor = sluice_test::Value(sluice::Governor::Create(policy, &clock));

    SlidingOracle tenant_oracle{tenant_limit, tenant_period, {}};
    SlidingOracle app_oracle{app_limit, app_period, {}};
    std::map<std::string, std::vector<Admission>> held;  // per app
    int64_t admitted = 0, refused = 0;
    for (int step = 0; step < 4000; ++step) {
      clock.AdvanceNanos(static_cast<int64_t>(rng() % (sluice_test::kSecond / 2)));
      const int64_t now = clock.NowNanos();
      // Sometimes a held request ends.
      if (rng() % 3 == 0) {
        std::string app = "app-" + std::to_string(rng() % 3);
        if (!held[app].empty()) held[app].erase(held[app].begin());
      }
      std::string tenant = "tenant-" + std::to_string(rng() % 3);
      std::string app = "app-" + std::to_string(rng() % 3);
      bool expect = tenant_oracle.Room(tenant, now) && app_oracle.Room(app, now) &&
                    static_cast<int64_t>(held[app].size()) < cap;
      Attribute attributes[] = {{"tenant", tenant}, {"app", app}};
      Admission admission = governor->Admit({.attributes = attributes});
      INFO("seed " << seed << " step " << step << " tenant " << tenant << " app " << app);
      REQUIRE(admission.status().ok());
      REQUIRE(admission.allowed() == expect);
      if (expect) {
        tenant_oracle.Charge(tenant, now);
        app_oracle.Charge(app, now);
        held[app].push_back(std::move(admission));
        ++admitted;
      } else {
        ++refused;
      }
    }
    CHECK(admitted > 100);
    CHECK(refused > 100);
  }
}

}  // namespace
