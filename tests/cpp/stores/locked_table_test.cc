// The tables behind exact sliding windows: LockedTable (process scope: a mutex per shard, idle
// keys dropped, max_keys) and SharedKeyLock (host scope: a lock word whose dead holder is taken
// over, zombie or reaped).
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "stores/locked_table.h"
#include "stores/shared_key_lock.h"

using sluice::internal::DigestKey;
using sluice::internal::LockedTable;
using sluice::internal::SharedKeyLock;

TEST_CASE("LockedTable: fresh keys are zeroed, full tables refuse new keys until idle ones go") {
  LockedTable table(3, /*max_keys=*/2);
  auto never_idle = [](const int64_t*) { return false; };
  auto idle_if_zero = [](const int64_t* c) { return c[0] == 0; };
  REQUIRE(table.Visit(DigestKey("a"), 0, never_idle, [](int64_t* c) {
    REQUIRE((c[0] == 0 && c[1] == 0 && c[2] == 0));
    c[0] = 7;
  }).ok());
  REQUIRE(table.Visit(DigestKey("b"), 0, never_idle, [](int64_t*) {}).ok());
  REQUIRE(table.Visit(DigestKey("c"), 0, never_idle, [](int64_t*) {}).code() ==
          absl::StatusCode::kResourceExhausted);
  REQUIRE(table.size() == 2);
  // "b" is idle (its first cell is 0): a new key takes its place once a sweep is due.
  REQUIRE(table.Visit(DigestKey("c"), 2'000'000, idle_if_zero, [](int64_t* c) { c[0] = 1; }).ok());
  REQUIRE(table.size() == 2);
  REQUIRE(table.VisitExisting(DigestKey("a"), [](int64_t* c) { REQUIRE(c[0] == 7); }));
  REQUIRE_FALSE(table.VisitExisting(DigestKey("b"), [](int64_t*) {}));
  REQUIRE(table.DropIdle([](const int64_t*) { return true; }) == 2);
  REQUIRE(table.size() == 0);
}

TEST_CASE("LockedTable: a key's cells are updated under its lock (threads see no lost update)") {
  LockedTable table(1, 16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        (void)table.Visit(DigestKey("hot"), 0, [](const int64_t*) { return false; },
                          [](int64_t* c) { c[0] = c[0] + 1; });  // a plain read-modify-write
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(table.VisitExisting(DigestKey("hot"), [](int64_t* c) { REQUIRE(c[0] == 40000); }));
}

TEST_CASE("SharedKeyLock: a dead holder is taken over, zombie or reaped, a live one never") {
  REQUIRE(SharedKeyLock::IsDead(0));
  REQUIRE(SharedKeyLock::IsDead(-5));
  REQUIRE_FALSE(SharedKeyLock::IsDead(getpid()));
  REQUIRE_FALSE(SharedKeyLock::IsDead(1));  // init: alive (and not ours to signal)
  const pid_t child = fork();
  if (child == 0) _exit(0);
  // Until it is reaped, the child is a zombie: kill(pid, 0) succeeds, yet it is dead.
  for (int i = 0; i < 1000 && !SharedKeyLock::IsDead(child); ++i) usleep(1000);
  REQUIRE(SharedKeyLock::IsDead(child));
  auto* word = static_cast<int64_t*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  *word = SharedKeyLock::WordOf(child);  // as if it had died holding the lock
  REQUIRE(SharedKeyLock::Lock(word) == SharedKeyLock::Taken::kTookOver);
  REQUIRE(*word == SharedKeyLock::WordOf(getpid()));
  SharedKeyLock::Unlock(word);
  REQUIRE(*word == 0);
  waitpid(child, nullptr, 0);
  REQUIRE(SharedKeyLock::IsDead(child));
  REQUIRE(SharedKeyLock::Lock(word) == SharedKeyLock::Taken::kFree);
  SharedKeyLock::Unlock(word);
  munmap(word, 4096);
  // The same dead pid seen from another pid namespace (another container sharing the region
  // through `ipc:`): its number means nothing here, so the word is never taken over.
  const int64_t mine = SharedKeyLock::WordOf(child);
  const int64_t foreign = (((mine >> 32) ^ 0x5a5a) << 32) | child;
  CHECK(SharedKeyLock::MayTakeOver(mine));
  CHECK_FALSE(SharedKeyLock::MayTakeOver(foreign));
  CHECK_FALSE(SharedKeyLock::MayTakeOver(SharedKeyLock::WordOf(getpid())));  // alive
}
