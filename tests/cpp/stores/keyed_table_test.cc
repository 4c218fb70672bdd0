// The lock-free key table under the GCRA objects (lib/keyed_table.h), tested directly.
#include "stores/keyed_table.h"

#include <atomic>
#include <set>

#include <catch2/catch.hpp>

#include "sluice/internal/key_digest.h"

using sluice::internal::DigestKey;
using sluice::internal::KeyDigest;
using sluice::internal::KeyedTable;

namespace {
constexpr int64_t kFresh = -1;
bool NeverIdle(const int64_t*) { return false; }

int64_t* CellsOf(KeyedTable& table, const KeyDigest& d, absl::Status* status = nullptr) {
  int64_t* cells = nullptr;
  absl::Status s = table.Visit(d, 0, NeverIdle, [&](int64_t* c) { cells = c; });
  if (status != nullptr) *status = s;
  return cells;
}
}  // namespace

TEST_CASE("keys get their own cells, initialised fresh, kept across growth") {
  KeyedTable table(2, 1 << 20, kFresh);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const KeyDigest d = DigestKey("key-" + std::to_string(i));
    REQUIRE(table.Visit(d, 0, NeverIdle, [&](int64_t* c) {
      REQUIRE(c[0] == kFresh);
      REQUIRE(c[1] == kFresh);
      c[0] = i;
      c[1] = -i;
    }).ok());
  }
  CHECK(table.size() == n);
  for (int i = 0; i < n; ++i) {
    const KeyDigest d = DigestKey("key-" + std::to_string(i));
    bool found = table.VisitExisting(d, [&](int64_t* c) {
      REQUIRE(c[0] == i);
      REQUIRE(c[1] == -i);
    });
    REQUIRE(found);
  }
  CHECK_FALSE(table.VisitExisting(DigestKey("absent"), [](int64_t*) {}));
  // About 32 bytes per slot at load <= 3/4 plus the shard headers.
  CHECK(table.memory_bytes() < n * 32 * 3 + (1 << 16));
}

TEST_CASE("DropIdle removes exactly the keys the predicate calls idle") {
  KeyedTable table(1, 1 << 20, kFresh);
  for (int i = 0; i < 1000; ++i) {
    CellsOf(table, DigestKey(std::to_string(i)))[0] = i;
  }
  const int64_t dropped = table.DropIdle([](const int64_t* c) { return c[0] % 2 == 0; });
  CHECK(dropped == 500);
  CHECK(table.size() == 500);
  for (int i = 0; i < 1000; ++i) {
    const bool present = table.VisitExisting(DigestKey(std::to_string(i)), [](int64_t*) {});
    REQUIRE(present == (i % 2 == 1));
  }
}

TEST_CASE("at max_keys a new key is refused unless idle keys make room") {
  KeyedTable table(1, 10, kFresh);
  for (int i = 0; i < 10; ++i) REQUIRE(CellsOf(table, DigestKey(std::to_string(i))) != nullptr);
  absl::Status status;
  CHECK(CellsOf(table, DigestKey("new"), &status) == nullptr);
  CHECK(absl::IsResourceExhausted(status));
  CHECK(CellsOf(table, DigestKey("3")) != nullptr);  // existing keys still work
  bool idle = true;
  REQUIRE(table.Visit(DigestKey("new"), int64_t{1} << 40, [&](const int64_t*) { return idle; },
                      [](int64_t*) {}).ok());
  CHECK(table.size() <= 10);
}

TEST_CASE("digests are 128-bit and never use the empty marker") {
  std::set<std::pair<uint64_t, uint64_t>> seen;
  for (int i = 0; i < 100000; ++i) {
    const KeyDigest d = DigestKey(std::to_string(i));
    REQUIRE(d.hi != 0);
    seen.insert({d.hi, d.lo});
  }
  CHECK(seen.size() == 100000);
  CHECK(DigestKey("a") == DigestKey(std::string("a")));
  CHECK_FALSE(DigestKey("a") == DigestKey("b"));
}
