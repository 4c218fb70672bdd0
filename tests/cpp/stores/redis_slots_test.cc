// Redis Cluster's key slots and slot map (lib/stores/redis_slots.h), without a server: replies
// are parsed from RESP text by hiredis's reader, as a connection would.
#include "stores/redis_slots.h"

#include <hiredis/hiredis.h>

#include <string>

#include <catch2/catch.hpp>

using sluice::internal::KeySlot;
using sluice::internal::ParseRedirection;
using sluice::internal::RedisEndpoint;
using sluice::internal::Redirection;
using sluice::internal::SlotMap;

namespace {

// The reply hiredis reads from `resp`, or nullptr. Freed by the caller.
redisReply* Parse(const std::string& resp) {
  redisReader* reader = redisReaderCreate();
  redisReaderFeed(reader, resp.data(), resp.size());
  void* reply = nullptr;
  if (redisReaderGetReply(reader, &reply) != REDIS_OK) reply = nullptr;
  redisReaderFree(reader);
  return static_cast<redisReply*>(reply);
}

std::string Bulk(const std::string& s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }

// One CLUSTER SLOTS range entry: [first, last, [host, port, id]].
std::string Range(int first, int last, const std::string& host, int port) {
  return "*3\r\n:" + std::to_string(first) + "\r\n:" + std::to_string(last) + "\r\n*3\r\n" +
         Bulk(host) + ":" + std::to_string(port) + "\r\n" + Bulk("id" + std::to_string(port));
}

}  // namespace

TEST_CASE("key slots are Redis's: CRC16 XMODEM of the hash tag, modulo 16384") {
  // The cluster specification's check value: CRC16("123456789") = 0x31C3.
  CHECK(KeySlot("123456789") == 0x31C3);
  CHECK(KeySlot("foo") == 12182);  // CLUSTER KEYSLOT foo
  CHECK(KeySlot("{user1000}.following") == KeySlot("{user1000}.followers"));
  CHECK(KeySlot("{user1000}.following") == KeySlot("user1000"));
  // The spec's corner cases: an empty tag hashes the whole key, the first '}' closes the tag.
  CHECK(KeySlot("foo{}{bar}") == KeySlot(std::string("foo{}{bar}")));
  CHECK(KeySlot("foo{}{bar}") != KeySlot("bar"));
  CHECK(KeySlot("foo{{bar}}zap") == KeySlot("{bar"));
  CHECK(KeySlot("foo{bar}{zap}") == KeySlot("bar"));
  CHECK(KeySlot("") == 0);
  // sluice's keys: every key of one limiter key shares its slot.
  CHECK(KeySlot("sluice:{rpm:0123}:a") == KeySlot("sluice:{rpm:0123}:b"));
}

TEST_CASE("a CLUSTER SLOTS reply maps every slot to its master") {
  const std::string resp = "*3\r\n" + Range(0, 5460, "127.0.0.1", 7000) +
                           Range(5461, 10922, "", 7001) + Range(10923, 16383, "127.0.0.1", 7002);
  redisReply* reply = Parse(resp);
  REQUIRE(reply != nullptr);
  const RedisEndpoint asked{"10.0.0.9", 7001, ""};
  absl::StatusOr<SlotMap> map = SlotMap::FromClusterSlots(*reply, asked);
  freeReplyObject(reply);
  REQUIRE(map.ok());
  REQUIRE(map->masters().size() == 3);
  CHECK(map->uncovered() == 0);
  CHECK(map->masters()[map->OwnerOf(0)].port == 7000);
  CHECK(map->masters()[map->OwnerOf(5460)].port == 7000);
  // An empty host is the node that answered.
  CHECK(map->masters()[map->OwnerOf(5461)].host == "10.0.0.9");
  CHECK(map->masters()[map->OwnerOf(16383)].port == 7002);

  SECTION("MOVED reassigns one slot, to a new master if need be") {
    map->Assign(16383, {"127.0.0.1", 7003, ""});
    CHECK(map->masters()[map->OwnerOf(16383)].port == 7003);
    CHECK(map->masters()[map->OwnerOf(16382)].port == 7002);
    CHECK(map->masters().size() == 4);
    map->Assign(-1, {"127.0.0.1", 7003, ""});     // ignored
    map->Assign(16384, {"127.0.0.1", 7003, ""});  // ignored
    CHECK(map->masters().size() == 4);
  }
}

TEST_CASE("a partial map leaves slots unserved, and malformed replies are errors") {
  redisReply* partial = Parse("*1\r\n" + Range(0, 99, "127.0.0.1", 7000));
  REQUIRE(partial != nullptr);
  absl::StatusOr<SlotMap> map = SlotMap::FromClusterSlots(*partial, {});
  freeReplyObject(partial);
  REQUIRE(map.ok());
  CHECK(map->uncovered() == 16384 - 100);
  CHECK(map->OwnerOf(100) == -1);

  // A master whose address is not known yet ("?") serves nothing.
  redisReply* unknown = Parse("*1\r\n" + Range(0, 99, "?", 7000));
  REQUIRE(unknown != nullptr);
  map = SlotMap::FromClusterSlots(*unknown, {});
  freeReplyObject(unknown);
  REQUIRE(map.ok());
  CHECK(map->uncovered() == 16384);

  for (const std::string& bad :
       {std::string("+OK\r\n"), std::string("*1\r\n:1\r\n"),
        "*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n" + Bulk("h") + ":1\r\n",        // first > last
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n" + Bulk("h") + ":1\r\n",    // past the last slot
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n" + Bulk("h") + ":0\r\n",        // port 0
        "*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n" + Bulk("h"),                   // no port
        "*1\r\n*3\r\n:-1\r\n:1\r\n*2\r\n" + Bulk("h") + ":1\r\n"}) {    // negative slot
    redisReply* r = Parse(bad);
    REQUIRE(r != nullptr);
    CHECK(absl::IsInternal(SlotMap::FromClusterSlots(*r, {}).status()));
    freeReplyObject(r);
  }
}

TEST_CASE("MOVED and ASK redirections are parsed, anything else is not one") {
  const RedisEndpoint answered{"10.1.1.1", 7000, ""};
  Redirection r;
  REQUIRE(ParseRedirection("MOVED 3999 127.0.0.1:6381", answered, &r));
  CHECK_FALSE(r.ask);
  CHECK(r.slot == 3999);
  CHECK(r.to.host == "127.0.0.1");
  CHECK(r.to.port == 6381);
  REQUIRE(ParseRedirection("ASK 16383 ::1:7002", answered, &r));
  CHECK(r.ask);
  CHECK(r.to.host == "::1");
  CHECK(r.to.port == 7002);
  REQUIRE(ParseRedirection("MOVED 1 :7005", answered, &r));  // empty host: the node that answered
  CHECK(r.to.host == "10.1.1.1");
  for (const char* not_one :
       {"MOVEDX 1 h:1", "MOVED", "MOVED 1", "MOVED x h:1", "MOVED 16384 h:1", "MOVED -1 h:1",
        "MOVED 1 h:0", "MOVED 1 h:99999", "MOVED 1 h", "ASK 1 h:x", "ERR MOVED 1 h:1",
        "CLUSTERDOWN The cluster is down", ""}) {
    INFO(not_one);
    CHECK_FALSE(ParseRedirection(not_one, answered, &r));
  }
}
