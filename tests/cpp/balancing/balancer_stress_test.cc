// Concurrent picks and completions while endpoints come and go and metrics arrive; run under
// ThreadSanitizer by the test command (label "concurrency").
#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "sluice/balancer.h"
#include "test_support.h"

using sluice::Balancer;
using sluice_test::Value;

TEST_CASE("concurrent picks, completions, endpoint churn and metrics leave no pick counted twice") {
  for (Balancer::Strategy strategy :
       {Balancer::Strategy::kRoundRobin, Balancer::Strategy::kWeightedRoundRobin,
        Balancer::Strategy::kLeastRequest, Balancer::Strategy::kPrefixAffinity,
        Balancer::Strategy::kScored, Balancer::Strategy::kConsistentHash}) {
    sluice::ManualClock clock;
    Balancer::Options o;
    o.strategy = strategy;
    o.seed = 7;
    o.kv_capacity_blocks = 64;
    auto b = Value(Balancer::Create(o, &clock));
    for (int i = 0; i < 4; ++i) REQUIRE(b->AddEndpoint({.id = "stable-" + std::to_string(i)}).ok());

    std::atomic<bool> stop{false};
    std::atomic<int64_t> picked{0}, refused{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&, t] {
        std::vector<Balancer::Pick> held;
        for (int i = 0; i < 2000; ++i) {
          std::vector<uint64_t> blocks;
          for (int k = 0; k < 1 + i % 16; ++k) blocks.push_back(static_cast<uint64_t>(i % 37) * 100 + k);
          const std::string session = "s" + std::to_string(i % 11);
          auto pick = b->PickEndpoint({.prefix_blocks = blocks, .affinity_key = session});
          if (!pick.ok()) {
            ++refused;
            continue;
          }
          ++picked;
          held.push_back(*std::move(pick));
          if (held.size() > static_cast<size_t>(t + 2)) {
            held.front().Complete({.http_status = i % 13 == 0 ? 500 : 200,
                                   .ttft = absl::Milliseconds(1 + i % 50)});
            held.erase(held.begin());
          }
        }
      });
    }
    threads.emplace_back([&] {  // churn: add, update and remove an endpoint; feed metrics
      for (int i = 0; !stop.load(); ++i) {
        const std::string id = "churn-" + std::to_string(i % 3);
        (void)b->AddEndpoint({.id = id, .weight = 1 + i % 3});
        (void)b->UpdateEndpoint({.id = id, .weight = 2, .max_concurrency = 5});
        (void)b->UpdateMetrics("stable-" + std::to_string(i % 4),
                               "vllm:num_requests_waiting " + std::to_string(i % 9) + "\n");
        (void)b->Endpoints();
        (void)b->RemoveEndpoint(id);
        clock.Advance(absl::Milliseconds(1));
      }
    });
    for (int t = 0; t < 3; ++t) threads[t].join();
    stop = true;
    threads.back().join();
    CHECK(picked.load() + refused.load() == 6000);
    CHECK(refused.load() == 0);  // the four stable endpoints have no cap and never cool down
    for (const auto& s : b->Endpoints()) {
      INFO(s.id);
      CHECK(s.in_flight == 0);
      CHECK(s.picks == s.completions);
      CHECK(s.prefix_blocks <= 64);
    }
  }
}
