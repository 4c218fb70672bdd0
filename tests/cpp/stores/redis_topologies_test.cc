// The Redis topology fixtures (tests/cpp/redis_topologies.h) do what they say, proved with
// hiredis alone: the tests of sluice's Cluster and Sentinel support lean on them.
#include "redis_topologies.h"

#include <string>
#include <thread>

#include <catch2/catch.hpp>

namespace {

using redis_topologies::Command;
using redis_topologies::KeySlot;
using redis_topologies::LocalRedisCluster;
using redis_topologies::LocalSentinelGroup;
using redis_topologies::Millis;
using redis_topologies::Text;

std::string ErrorOf(const redis_topologies::Reply& r) {
  return r != nullptr && r->type == REDIS_REPLY_ERROR ? Text(r) : "";
}

int OtherMaster(const LocalRedisCluster& cluster, int not_this) {
  for (int m : cluster.CurrentMasters()) {
    if (m != not_this) return m;
  }
  return -1;
}

TEST_CASE("A cluster forms, answers on every master and agrees with CLUSTER KEYSLOT",
          "[redis_topologies]") {
  LocalRedisCluster cluster(3, 1);
  REQUIRE(cluster.node_count() == 6);
  const std::vector<int> masters = cluster.CurrentMasters();
  REQUIRE(masters == std::vector<int>{0, 1, 2});
  for (int m = 0; m < 3; ++m) {
    CHECK(cluster.Role(m) == "master");
    CHECK(cluster.Role(cluster.ReplicaIndex(m)) == "slave");
  }
  // Keys spread over every master, each SET on the master of its slot.
  std::set<int> used;
  for (int i = 0; i < 60; ++i) {
    const std::string key = "spread:" + std::to_string(i);
    const int owner = cluster.MasterForSlot(KeySlot(key));
    used.insert(owner);
    CHECK(Text(cluster.Call(owner, {"SET", key, "v"})) == "OK");
    CHECK(cluster.Call(owner, {"CLUSTER", "KEYSLOT", key})->integer == KeySlot(key));
  }
  CHECK(used.size() == 3);
}

TEST_CASE("A key SET on the wrong master gets MOVED to its owner", "[redis_topologies]") {
  LocalRedisCluster cluster(3, 1);
  const std::string key = "moved-key";
  const int owner = cluster.MasterForSlot(KeySlot(key));
  const int wrong = OtherMaster(cluster, owner);
  REQUIRE(wrong >= 0);
  CHECK(ErrorOf(cluster.Call(wrong, {"SET", key, "v"})) ==
        "MOVED " + std::to_string(KeySlot(key)) + " 127.0.0.1:" +
            std::to_string(cluster.port(owner)));
  CHECK(Text(cluster.Call(owner, {"SET", key, "v"})) == "OK");
}

TEST_CASE("Mid-migration a moved key gets ASK and after it MOVED", "[redis_topologies]") {
  LocalRedisCluster cluster(3, 1);
  const std::string key = "{mig}:k";
  const int slot = KeySlot(key);
  const int from = cluster.MasterForSlot(slot);
  const int to = OtherMaster(cluster, from);
  REQUIRE(Text(cluster.Call(from, {"SET", key, "v"})) == "OK");
  cluster.BeginMigration(slot, from, to);
  CHECK(Text(cluster.Call(from, {"GET", key})) == "v");  // not moved yet: the source answers
  CHECK(cluster.MigrateKeys(slot) == 1);
  const std::string target = "127.0.0.1:" + std::to_string(cluster.port(to));
  CHECK(ErrorOf(cluster.Call(from, {"GET", key})) == "ASK " + std::to_string(slot) + " " + target);
  REQUIRE(cluster.FinishMigration(slot));
  CHECK(cluster.MasterForSlot(slot) == to);
  CHECK(ErrorOf(cluster.Call(from, {"GET", key})) ==
        "MOVED " + std::to_string(slot) + " " + target);
  CHECK(Text(cluster.Call(to, {"GET", key})) == "v");
}

TEST_CASE("KillMaster and WaitForFailover promote the replica, RestartNode brings the old one back",
          "[redis_topologies]") {
  LocalRedisCluster cluster(3, 1, {}, "s3cret");
  // The password holds: a node refuses a client without it.
  CHECK(ErrorOf(Command(cluster.port(0), "", {"SET", "x", "1"})).rfind("NOAUTH", 0) == 0);
  const int victim = cluster.KillMaster(1);
  REQUIRE(victim == 1);
  const auto took = cluster.WaitForFailover(Millis(15000));
  REQUIRE(took.has_value());
  WARN("cluster failover took " << took->count() << " ms");
  const int promoted = cluster.MasterForSlot(cluster.SlotRange(1).first);
  CHECK(promoted == cluster.ReplicaIndex(1));
  CHECK(cluster.Role(promoted) == "master");
  const std::string key = "{after}";
  const int owner = cluster.MasterForSlot(KeySlot(key));
  CHECK(Text(cluster.Call(owner, {"SET", key, "v"})) == "OK");
  REQUIRE(cluster.RestartNode(victim));
  CHECK(cluster.Role(victim) == "slave");
}

TEST_CASE("A sentinel failover changes the reported master", "[redis_topologies]") {
  LocalSentinelGroup group(3, "data-pw", "sentinel-pw");
  const int first = group.MasterPort();
  REQUIRE(first == group.DataPorts()[0]);
  CHECK(group.ReplicaPort() == group.DataPorts()[1]);
  // The sentinels' password holds.
  CHECK(group.ReportedMaster(group.Sentinels()[0].port) == first);
  CHECK(ErrorOf(Command(group.Sentinels()[0].port, "",
                        {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", group.service()}))
            .rfind("NOAUTH", 0) == 0);

  const int old = group.Failover();
  const auto forced = group.WaitForNewMaster(old, Millis(15000));
  REQUIRE(forced.has_value());
  WARN("SENTINEL FAILOVER took " << forced->count() << " ms");
  CHECK(group.MasterPort() == group.DataPorts()[1]);
  CHECK(Text(group.CallData(group.MasterPort(), {"SET", "k", "v"})) == "OK");

  // A killed master: the sentinels agree it is down and elect the replica (the old master),
  // once they see it attached.
  REQUIRE(group.WaitReady().has_value());
  const int killed = group.KillMaster();
  const auto elected = group.WaitForNewMaster(killed, Millis(15000));
  REQUIRE(elected.has_value());
  WARN("failover after KillMaster took " << elected->count() << " ms");
  CHECK(group.MasterPort() == group.DataPorts()[0]);
}

}  // namespace
