// Creating shared-memory regions in hostile conditions: a /dev/shm without room (Docker's
// default is 64 MiB), a creator killed or stuck mid-creation, sizes that overflow.
//
// Tests that fill /dev/shm run in a forked child with its own mount namespace and a small tmpfs
// mounted on /dev/shm (unshare(CLONE_NEWNS) + mount: root, as in CI), so the host's /dev/shm is
// never filled. They fail, never skip, where that is not permitted. Anything that could crash
// runs in a forked process whose exit is checked: a SIGBUS is a failure with its signal named.
// Children report through an anonymous shared page and leave with _exit; Catch2 runs only in
// the parent.
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "stores/shm_region.h"  // lib/: the creation protocol, driven directly to kill a creator
#include "sluice/sluice.hpp"
#include "test_support.h"

using sluice_test::RegionName;

namespace {

// ---- Children and private /dev/shm mounts --------------------------------------------------

// A page shared with forked children; a child writes what went wrong into it.
class SharedPage {
 public:
  SharedPage() {
    base_ = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED) std::abort();
    std::memset(base_, 0, kBytes);
  }
  ~SharedPage() { munmap(base_, kBytes); }
  SharedPage(const SharedPage&) = delete;
  SharedPage& operator=(const SharedPage&) = delete;

  void Write(const std::string& text) {
    std::strncpy(static_cast<char*>(base_) + 64, text.c_str(), kBytes - 65);
  }
  std::string Read() const { return std::string(static_cast<const char*>(base_) + 64); }
  // The first word is a flag children raise for the parent.
  std::atomic<int>& flag() { return *static_cast<std::atomic<int>*>(base_); }

 private:
  static constexpr size_t kBytes = 8192;
  void* base_;
};

// Collects failed expectations inside a child, where Catch2 must not run.
class Failures {
 public:
  void Expect(bool ok, const std::string& what) {
    if (!ok) absl::StrAppend(&text_, text_.empty() ? "" : "; ", what);
  }
  template <typename T>
  void ExpectOk(const absl::StatusOr<T>& v, const std::string& what) {
    Expect(v.ok(), absl::StrCat(what, ": ", v.status().ToString()));
  }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

std::string DescribeExit(pid_t pid, int status) {
  if (WIFSIGNALED(status)) {
    return absl::StrCat("process ", pid, " was killed by signal ", WTERMSIG(status), " (",
                        strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("process ", pid, " exited with ", WEXITSTATUS(status));
}

// Forks a child running `body` and waits for it. Returns "" if it returned "" and exited
// normally, else what it reported or how it died.
std::string InChild(const std::function<std::string()>& body) {
  SharedPage page;
  const pid_t pid = fork();
  if (pid < 0) return absl::StrCat("fork: ", std::strerror(errno));
  if (pid == 0) {
    const std::string failure = body();
    page.Write(failure);
    _exit(failure.empty() ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  const std::string reported = page.Read();
  return reported.empty() ? DescribeExit(pid, status) : reported;
}

// In the calling (forked) process: a mount namespace of its own, with `fstype` mounted on
// /dev/shm. Returns "" or why that was impossible.
std::string MountPrivateShm(const char* fstype, const char* options) {
  if (unshare(CLONE_NEWNS) != 0) {
    return absl::StrCat("unshare(CLONE_NEWNS) failed (", std::strerror(errno),
                        "): these tests mount a small tmpfs on /dev/shm in a private mount "
                        "namespace and need root (CAP_SYS_ADMIN), as CI has; `unshare -m true` "
                        "must work");
  }
  // Keep our mounts from propagating to the host's namespace.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return absl::StrCat("mount --make-rprivate /: ", std::strerror(errno));
  }
  if (mount(fstype, "/dev/shm", fstype, MS_NOSUID | MS_NODEV, options) != 0) {
    return absl::StrCat("mount -t ", fstype, " -o ", options, " on /dev/shm: ",
                        std::strerror(errno));
  }
  return "";
}

// Runs `body` in a child whose /dev/shm is a fresh tmpfs of `megabytes` MiB.
std::string WithSmallShm(int megabytes, const std::function<std::string()>& body) {
  return InChild([&]() -> std::string {
    const std::string options = absl::StrCat("size=", megabytes, "m");
    if (std::string e = MountPrivateShm("tmpfs", options.c_str()); !e.empty()) return e;
    return body();
  });
}

struct Space {
  int64_t free = -1, total = -1;
};
Space ShmSpace() {
  struct statvfs v {};
  if (statvfs("/dev/shm", &v) != 0) return {};
  return {static_cast<int64_t>(v.f_bavail * v.f_frsize),
          static_cast<int64_t>(v.f_blocks * v.f_frsize)};
}

std::vector<std::string> ShmEntries() {
  std::vector<std::string> names;
  if (DIR* dir = opendir("/dev/shm")) {
    while (dirent* e = readdir(dir)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        names.push_back(e->d_name);
      }
    }
    closedir(dir);
  }
  return names;
}

std::string RegionPath(const std::string& name) { return "/dev/shm/sluice." + name; }

bool Exists(const std::string& name) {
  struct stat st {};
  return stat(RegionPath(name).c_str(), &st) == 0;
}

// ---- The four kinds of host-scope object -----------------------------------------------------

enum class Kind { kRateLimiter, kLeakyBucket, kTokenBudget, kConcurrencyLimiter };
constexpr Kind kKinds[] = {Kind::kRateLimiter, Kind::kLeakyBucket, Kind::kTokenBudget,
                           Kind::kConcurrencyLimiter};
constexpr int64_t kInFlight = 4;  // the ConcurrencyLimiter's max_in_flight here

std::string KindName(Kind kind) {
  switch (kind) {
    case Kind::kRateLimiter: return "sluice.RateLimiter";
    case Kind::kLeakyBucket: return "sluice.LeakyBucket";
    case Kind::kTokenBudget: return "sluice.TokenBudget";
    case Kind::kConcurrencyLimiter: return "sluice.ConcurrencyLimiter";
  }
  return "";
}

// Creates an object of `kind` on region `name` and uses it once.
absl::Status CreateAndUse(Kind kind, const std::string& name, int64_t max_keys) {
  switch (kind) {
    case Kind::kRateLimiter: {
      sluice::RateLimiter::Options o;
      o.windows = {sluice::Window::PerMinute(100)};
      o.max_keys = max_keys;
      o.shared_region = name;
      auto made = sluice::RateLimiter::Create(o);
      if (!made.ok()) return made.status();
      return (*made)->TryAcquire("k").status();
    }
    case Kind::kLeakyBucket: {
      sluice::LeakyBucket::Options o;
      o.rate = 100;
      o.max_keys = max_keys;
      o.shared_region = name;
      auto made = sluice::LeakyBucket::Create(o);
      if (!made.ok()) return made.status();
      return (*made)->TryAcquire("k").status();
    }
    case Kind::kTokenBudget: {
      sluice::TokenBudget::Options o;
      o.windows = {sluice::Window::PerMinute(1000), sluice::Window::PerDay(100000)};
      o.max_keys = max_keys;
      o.shared_region = name;
      auto made = sluice::TokenBudget::Create(o);
      if (!made.ok()) return made.status();
      return (*made)->TryReserve("k", 10).status();
    }
    case Kind::kConcurrencyLimiter: {
      sluice::ConcurrencyLimiter::Options o;
      o.max_in_flight = kInFlight;
      o.max_keys = max_keys;
      o.shared_region = name;
      auto made = sluice::ConcurrencyLimiter::Create(o);
      if (!made.ok()) return made.status();
      if (!(*made)->TryAcquire("k")) return absl::InternalError("no permit from a fresh region");
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown kind");
}

absl::StatusOr<int64_t> RegionBytes(Kind kind, int64_t max_keys) {
  switch (kind) {
    case Kind::kRateLimiter:
    case Kind::kLeakyBucket: return sluice::SharedRegionBytesForWindows(1, max_keys);
    case Kind::kTokenBudget: return sluice::SharedRegionBytesForWindows(2, max_keys);
    case Kind::kConcurrencyLimiter:
      return sluice::SharedRegionBytesForLeases(kInFlight, max_keys);
  }
  return absl::InternalError("unknown kind");
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---- Creators that die or hang mid-creation -------------------------------------------------

// Forks a process that starts creating region `name` through the creation protocol and stops in
// the middle of initialising it (pages reserved, lock held, `ready` unpublished) until killed.
// Returns once it is there.
pid_t StartCreatorThatStops(const std::string& name, SharedPage& page) {
  page.flag() = 0;
  const pid_t pid = fork();
  if (pid == 0) {
    sluice::internal::RegionSpec spec{"test.Stuck", "stops mid-creation", /*words=*/1 << 16};
    (void)sluice::internal::SharedRegion::OpenOrCreate(name, spec, [&](int64_t* words, int64_t) {
      words[0] = 42;  // a half-written region for the next creator to discard
      page.flag() = 1;
      for (;;) pause();
    });
    _exit(3);  // it did not get to initialise the region
  }
  while (page.flag().load() == 0) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) FAIL("the creator " + DescribeExit(pid, status));
    sched_yield();
  }
  return pid;
}

void Kill(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

// Writes a file where region `name` would be, as a creator of older sluice versions left it when
// it died mid-creation: `bytes` long, with `prefix` (magic, layout, ready) at its start.
void PlantFile(const std::string& name, int64_t bytes, std::vector<uint32_t> prefix = {}) {
  const int fd = open(RegionPath(name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(ftruncate(fd, bytes) == 0);
  if (!prefix.empty()) {
    const ssize_t n = static_cast<ssize_t>(prefix.size() * sizeof(uint32_t));
    REQUIRE(pwrite(fd, prefix.data(), n, 0) == n);
  }
  close(fd);
}

int64_t FileSize(const std::string& name) {
  struct stat st {};
  return stat(RegionPath(name).c_str(), &st) == 0 ? st.st_size : -1;
}

constexpr uint32_t kMagicLow = 0x53554c53, kMagicHigh = 0x4543494c;  // "SLUSLICE"

}  // namespace

TEST_CASE("the mount namespace tests can run here (root with unshare): they fail otherwise") {
  const std::string failure = WithSmallShm(8, [] {
    const Space space = ShmSpace();
    return space.total == 8 << 20 ? std::string()
                                  : absl::StrCat("/dev/shm is ", space.total, " bytes, not 8 MiB");
  });
  INFO(failure);
  CHECK(failure.empty());
}

TEST_CASE("a region larger than the free /dev/shm is an error with the numbers, never a SIGBUS") {
  // Issue 13: the default max_keys made a 64 MiB + 4 KiB region that died of SIGBUS on Docker's
  // 64 MiB /dev/shm and left a half-made file that broke the name for every later process.
  const std::string failure = WithSmallShm(8, [] {
    Failures f;
    for (Kind kind : kKinds) {
      const std::string name = "big-" + std::to_string(static_cast<int>(kind));
      const int64_t needed = *RegionBytes(kind, int64_t{1} << 20);  // the default max_keys
      // The attempt runs in a process of its own: a SIGBUS must show as a failure here.
      const std::string attempt = InChild([&] {
        const absl::Status s = CreateAndUse(kind, name, int64_t{1} << 20);
        const std::string m(s.message());
        Failures a;
        a.Expect(absl::IsResourceExhausted(s), "not ResourceExhausted: " + s.ToString());
        a.Expect(Contains(m, KindName(kind) + ": shared_region \"" + name + "\" needs " +
                                 std::to_string(needed) + " bytes of shared memory"),
                 "the message does not name the object, region and bytes: " + m);
        a.Expect(Contains(m, "/dev/shm has 8388608 bytes free of 8388608"),
                 "the message does not give the free bytes: " + m);
        return a.text();
      });
      f.Expect(attempt.empty(), KindName(kind) + ": " + attempt);
      f.Expect(ShmEntries().empty(), "a failed creation left a file in /dev/shm");
      f.Expect(ShmSpace().free == 8 << 20, "a failed creation left pages allocated");
      // The name is not broken: a region that fits is created under it.
      const absl::Status small = CreateAndUse(kind, name, 1024);
      f.Expect(small.ok(), KindName(kind) + " with max_keys 1024 after the failure: " +
                               small.ToString());
      f.Expect(FileSize(name) == *RegionBytes(kind, 1024), "the region has the wrong size");
      f.Expect(sluice::RemoveSharedRegion(name).ok(), "could not remove " + name);
    }
    return f.text();
  });
  INFO(failure);
  CHECK(failure.empty());
}

TEST_CASE("the free bytes reported are what is left beside other files, and nothing leaks") {
  const std::string failure = WithSmallShm(8, [] {
    Failures f;
    const int fd = open("/dev/shm/other-tenant", O_RDWR | O_CREAT, 0600);
    f.Expect(fd >= 0 && fallocate(fd, 0, 0, 6 << 20) == 0, "could not fill 6 MiB");
    close(fd);
    const Space before = ShmSpace();
    f.Expect(before.free == 2 << 20, absl::StrCat("expected 2 MiB free, got ", before.free));
    sluice::RateLimiter::Options o;
    o.windows = {sluice::Window::PerMinute(100)};
    o.max_keys = 65536;  // 4 MiB + 4 KiB
    o.shared_region = "four-mib";
    const std::string attempt = InChild([&] {
      auto made = sluice::RateLimiter::Create(o);
      const std::string m(made.status().message());
      Failures a;
      a.Expect(absl::IsResourceExhausted(made.status()), made.status().ToString());
      a.Expect(Contains(m, "needs 4198400 bytes"), m);
      a.Expect(Contains(m, "has 2097152 bytes free of 8388608"), m);
      a.Expect(Contains(m, "RemoveSharedRegion") && Contains(m, "shm_size"),
               "the message does not say what to do: " + m);
      return a.text();
    });
    f.Expect(attempt.empty(), attempt);
    f.Expect(ShmSpace().free == before.free, "the failed creation leaked pages");
    f.Expect(ShmEntries() == std::vector<std::string>{"other-tenant"}, "a file was left behind");
    return f.text();
  });
  INFO(failure);
  CHECK(failure.empty());
}

TEST_CASE("processes racing to create a region that does not fit all get the error, then share "
          "one that fits") {
  const std::string failure = WithSmallShm(8, [] {
    Failures f;
    constexpr int kRacers = 4;
    std::vector<pid_t> pids;
    SharedPage reports[kRacers];
    for (int i = 0; i < kRacers; ++i) {
      pids.push_back(fork());
      if (pids.back() == 0) {
        const absl::Status s = CreateAndUse(Kind::kRateLimiter, "raced", int64_t{1} << 20);
        // Every racer gets the clear error: none waits on a broken file, none sees a half-made
        // one (FailedPrecondition), none dies.
        const bool clear_error = absl::IsResourceExhausted(s) &&
                                 Contains(std::string(s.message()), "needs 67112960 bytes");
        if (!clear_error) {
          reports[i].Write(s.ToString());
          _exit(1);
        }
        _exit(0);
      }
    }
    for (int i = 0; i < kRacers; ++i) {
      int status = 0;
      waitpid(pids[i], &status, 0);
      f.Expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               DescribeExit(pids[i], status) + " " + reports[i].Read());
    }
    f.Expect(ShmEntries().empty(), "the racers left a file behind");
    // Now a region that fits: each racer takes one unit of one shared limit of 2.
    SharedPage admitted;
    pids.clear();
    for (int i = 0; i < kRacers; ++i) {
      pids.push_back(fork());
      if (pids.back() == 0) {
        sluice::RateLimiter::Options o;
        o.windows = {{2, absl::Hours(24 * 366), 0}};
        o.max_keys = 64;
        o.shared_region = "raced";
        auto limiter = sluice::RateLimiter::Create(o);
        if (!limiter.ok()) _exit(2);
        if ((*limiter)->Allow("k")) admitted.flag()++;
        _exit(0);
      }
    }
    for (pid_t pid : pids) {
      int status = 0;
      waitpid(pid, &status, 0);
      f.Expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, DescribeExit(pid, status));
    }
    f.Expect(admitted.flag().load() == 2, "the racers did not share one region");
    return f.text();
  });
  INFO(failure);
  CHECK(failure.empty());
}

TEST_CASE("racers with a region that fits and one that does not: each gets it or a clear error") {
  const std::string failure = WithSmallShm(8, [] {
    Failures f;
    constexpr int kRacers = 8;
    std::vector<pid_t> pids;
    SharedPage reports[kRacers];
    for (int i = 0; i < kRacers; ++i) {
      pids.push_back(fork());
      if (pids.back() == 0) {
        const bool big = i % 2 == 0;
        const absl::Status s = CreateAndUse(Kind::kRateLimiter, "mixed", big ? 1 << 20 : 64);
        const std::string m(s.message());
        // A small racer always gets its region: a big one that failed removed its file, and
        // the small one started again. A big racer fails for want of room, or because the
        // small region is already there.
        const bool expected =
            big ? (absl::IsResourceExhausted(s) && Contains(m, "needs 67112960 bytes")) ||
                      (absl::IsFailedPrecondition(s) && Contains(m, "max_keys=64; this process"))
                : s.ok();
        if (!expected) reports[i].Write((big ? "big: " : "small: ") + s.ToString());
        _exit(expected ? 0 : 1);
      }
    }
    for (int i = 0; i < kRacers; ++i) {
      int status = 0;
      waitpid(pids[i], &status, 0);
      f.Expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               DescribeExit(pids[i], status) + " " + reports[i].Read());
    }
    f.Expect(ShmEntries() == std::vector<std::string>{"sluice.mixed"}, "not one region left");
    f.Expect(FileSize("mixed") == *sluice::SharedRegionBytesForWindows(1, 64), "wrong region");
    return f.text();
  });
  INFO(failure);
  CHECK(failure.empty());
}

TEST_CASE("a creator killed mid-creation does not brick the name: the next opener takes over") {
  RegionName region;
  SharedPage creator_page, opener_page;
  const pid_t creator = StartCreatorThatStops(region.name, creator_page);
  // An opener arrives while the creator holds the region unfinished, and waits for it.
  const pid_t opener = fork();
  if (opener == 0) {
    opener_page.flag() = 1;
    const absl::Status s = CreateAndUse(Kind::kRateLimiter, region.name, 64);
    opener_page.Write(s.ToString());
    _exit(s.ok() ? 0 : 1);
  }
  while (opener_page.flag().load() == 0) sched_yield();
  Kill(creator);  // SIGKILL mid-initialisation
  int status = 0;
  waitpid(opener, &status, 0);
  INFO(DescribeExit(opener, status) + ": " + opener_page.Read());
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  // The region it made is whole and shared: it took one of the 100 units.
  sluice::RateLimiter::Options o;
  o.windows = {sluice::Window::PerMinute(100)};
  o.max_keys = 64;
  o.shared_region = region.name;
  auto here = sluice_test::Value(sluice::RateLimiter::Create(o));
  CHECK(here->Peek("k").remaining == 99);
  CHECK(FileSize(region.name) == *sluice::SharedRegionBytesForWindows(1, 64));
}

TEST_CASE("a creator killed mid-creation with no opener waiting: the next process takes over") {
  RegionName region;
  SharedPage page;
  Kill(StartCreatorThatStops(region.name, page));
  REQUIRE(Exists(region.name));  // unfinished, and nobody holds it
  const std::string failure = InChild([&] {
    const absl::Status s = CreateAndUse(Kind::kConcurrencyLimiter, region.name, 16);
    return s.ok() ? std::string() : s.ToString();
  });
  INFO(failure);
  CHECK(failure.empty());
  CHECK(FileSize(region.name) == *sluice::SharedRegionBytesForLeases(kInFlight, 16));
}

TEST_CASE("half-made files left by older creators are taken over") {
  // The SIGBUS of issue 13 left a file sized for the region with an all-zero header; a creator
  // killed before sizing its file left an empty one; one killed mid-initialise left a header
  // without `ready`.
  RegionName sized, empty, unready;
  PlantFile(sized.name, (int64_t{64} << 20) + 4096);
  PlantFile(empty.name, 0);
  PlantFile(unready.name, 8192, {kMagicLow, kMagicHigh, /*layout=*/1, /*ready=*/0});
  for (const RegionName* region : {&sized, &empty, &unready}) {
    const std::string failure = InChild([&] {
      const absl::Status s = CreateAndUse(Kind::kRateLimiter, region->name, 64);
      return s.ok() ? std::string() : s.ToString();
    });
    INFO(region->name << ": " << failure);
    CHECK(failure.empty());
    CHECK(FileSize(region->name) == *sluice::SharedRegionBytesForWindows(1, 64));
  }
}

TEST_CASE("an unfinished file of another layout or another program is refused, not taken over") {
  RegionName future, foreign;
  PlantFile(future.name, 8192, {kMagicLow, kMagicHigh, /*layout=*/99, /*ready=*/0});
  PlantFile(foreign.name, 8192, {0xdeadbeef, 0, 0, 0});
  sluice::RateLimiter::Options o;
  o.windows = {sluice::Window::PerMinute(100)};
  o.max_keys = 64;
  o.shared_region = future.name;
  auto refused = sluice::RateLimiter::Create(o);
  REQUIRE(absl::IsFailedPrecondition(refused.status()));
  CHECK(Contains(std::string(refused.status().message()), "(layout 99, this is layout 1)"));
  o.shared_region = foreign.name;
  refused = sluice::RateLimiter::Create(o);
  REQUIRE(absl::IsFailedPrecondition(refused.status()));
  CHECK(Contains(std::string(refused.status().message()), "(layout 0, this is layout 1)"));
  CHECK(FileSize(future.name) == 8192);  // left as they were
  CHECK(FileSize(foreign.name) == 8192);
}

TEST_CASE("an opener gives up on a live but stuck creator, naming the file and the remedy") {
  RegionName region;
  SharedPage page;
  const pid_t creator = StartCreatorThatStops(region.name, page);
  sluice::internal::RegionSpec spec{"test.Opener", "waits", /*words=*/16};
  auto opened = sluice::internal::SharedRegion::OpenOrCreate(
      region.name, spec, [](int64_t*, int64_t) {}, absl::Milliseconds(50));
  REQUIRE(absl::IsFailedPrecondition(opened.status()));
  const std::string m(opened.status().message());
  CHECK(Contains(m, "is being created by another process that has not finished in 50ms"));
  CHECK(Contains(m, RegionPath(region.name)));
  CHECK(Contains(m, "sluice::RemoveSharedRegion"));
  // The remedy works while the stuck creator still lives.
  REQUIRE(sluice::RemoveSharedRegion(region.name).ok());
  CHECK(CreateAndUse(Kind::kRateLimiter, region.name, 64).ok());
  Kill(creator);
}

TEST_CASE("fork racers that keep the region mapped all open it: the creator's lock ends with the "
          "creation, not with its mapping") {
  // Gunicorn workers booting together: each opens the region and keeps it. The creation lock
  // is an flock on the file, and a mapping keeps the file open, so a creator that let the lock
  // go only by closing its descriptor kept it while the region stayed mapped: the others timed
  // out ("is being created by another process that has not finished") although it was ready.
  RegionName region;
  constexpr int kRacers = 4;
  SharedPage started, opened, failures;
  std::vector<pid_t> pids;
  for (int i = 0; i < kRacers; ++i) {
    pids.push_back(fork());
    if (pids.back() == 0) {
      started.flag()++;
      while (started.flag().load() < kRacers) {  // start together
      }
      sluice::internal::RegionSpec spec{"test.Racer", "kept", /*words=*/16};
      // A slow creation (a large region's zero-fill), so the others come while it runs.
      auto region_or = sluice::internal::SharedRegion::OpenOrCreate(
          region.name, spec, [](int64_t*, int64_t) { usleep(100'000); }, absl::Seconds(3));
      if (!region_or.ok()) {
        failures.flag()++;
        failures.Write(region_or.status().ToString());
        _exit(1);
      }
      opened.flag()++;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (opened.flag().load() + failures.flag().load() < kRacers &&
             std::chrono::steady_clock::now() < deadline) {  // keep it mapped meanwhile
        usleep(1000);
      }
      _exit(0);
    }
  }
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  INFO(failures.Read());
  CHECK(failures.flag().load() == 0);
  CHECK(opened.flag().load() == kRacers);
}

TEST_CASE("max_keys out of range is InvalidArgument naming max_keys, for every kind, before any "
          "file is made") {
  // Issue 13: 2^59 overflowed the size computation (a segfault), 2^62 silently gave 16 slots and
  // 2^40 asked for 64 TiB. Run in a child: on the old code these crash.
  const std::string failure = InChild([] {
    Failures f;
    RegionName region;
    for (Kind kind : kKinds) {
      for (int64_t max_keys :
           {int64_t{1} << 59, int64_t{1} << 62, int64_t{1} << 40,
            std::numeric_limits<int64_t>::max(), sluice::kMaxSharedRegionKeys + 1, int64_t{0},
            int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
        const std::string what = absl::StrCat(KindName(kind), " max_keys=", max_keys, ": ");
        const absl::Status s = CreateAndUse(kind, region.name, max_keys);
        f.Expect(absl::IsInvalidArgument(s), what + s.ToString());
        f.Expect(Contains(std::string(s.message()), KindName(kind) + ": max_keys must be "),
                 what + "does not name max_keys: " + s.ToString());
        f.Expect(!Exists(region.name), what + "left a file");
        const absl::StatusOr<int64_t> bytes = RegionBytes(kind, max_keys);
        f.Expect(absl::IsInvalidArgument(bytes.status()) &&
                     Contains(std::string(bytes.status().message()),
                              ": max_keys must be 1 to 1073741824 with a shared_region, got " +
                                  std::to_string(max_keys)),
                 what + "SharedRegionBytes: " + bytes.status().ToString());
      }
    }
    return f.text();
  });
  INFO(failure);
  CHECK(failure.empty());
}

TEST_CASE("max_keys at its bound is accepted, and the region refused only for want of room") {
  const std::string failure = WithSmallShm(8, [] {
    Failures f;
    for (Kind kind : kKinds) {
      const absl::StatusOr<int64_t> bytes = RegionBytes(kind, sluice::kMaxSharedRegionKeys);
      f.ExpectOk(bytes, KindName(kind));
      const std::string attempt = InChild([&] {
        const absl::Status s = CreateAndUse(kind, "edge", sluice::kMaxSharedRegionKeys);
        return absl::IsResourceExhausted(s) &&
                       Contains(std::string(s.message()), absl::StrCat("needs ", *bytes, " bytes"))
                   ? std::string()
                   : s.ToString();
      });
      f.Expect(attempt.empty(), KindName(kind) + ": " + attempt);
    }
    f.Expect(ShmEntries().empty(), "a file was left behind");
    return f.text();
  });
  INFO(failure);
  CHECK(failure.empty());
}

TEST_CASE("max_in_flight and windows out of range are InvalidArgument naming the field") {
  for (int64_t max_in_flight : {int64_t{0}, int64_t{-1}, sluice::kMaxSharedRegionInFlight + 1,
                                std::numeric_limits<int64_t>::max()}) {
    auto bytes = sluice::SharedRegionBytesForLeases(max_in_flight, 16);
    REQUIRE(absl::IsInvalidArgument(bytes.status()));
    CHECK(std::string(bytes.status().message()) ==
          absl::StrCat("sluice.SharedRegionBytesForLeases: max_in_flight must be 1 to 4096 with a "
                       "shared_region, got ",
                       max_in_flight));
  }
  for (int64_t windows : {int64_t{0}, int64_t{9}, std::numeric_limits<int64_t>::max()}) {
    auto bytes = sluice::SharedRegionBytesForWindows(windows, 16);
    REQUIRE(absl::IsInvalidArgument(bytes.status()));
    CHECK(std::string(bytes.status().message()) ==
          absl::StrCat("sluice.SharedRegionBytesForWindows: windows must be 1 to 8, got ",
                       windows));
  }
  CHECK(*sluice::SharedRegionBytesForLeases(sluice::kMaxSharedRegionInFlight,
                                            sluice::kMaxSharedRegionKeys) ==
        4096 + (int64_t{1} << 31) * 8194 * 8);  // the largest region: no overflow on the way
}

TEST_CASE("SharedRegionBytes is the size of the region each kind makes, all of it reserved") {
  for (Kind kind : kKinds) {
    for (int64_t max_keys : {1, 11, 12, 100, 1000, 5000}) {
      RegionName region;
      INFO(KindName(kind) << " max_keys=" << max_keys);
      REQUIRE(CreateAndUse(kind, region.name, max_keys).ok());
      struct stat st {};
      REQUIRE(stat(RegionPath(region.name).c_str(), &st) == 0);
      CHECK(st.st_size == *RegionBytes(kind, max_keys));
      CHECK(st.st_blocks * 512 >= st.st_size);  // every page allocated at creation
    }
  }
  // The formula: a 4 KiB header, then a power-of-two number of slots (at least 16, at least
  // 4/3 max_keys + 1), each of 2 + cells words rounded up to even.
  CHECK(*sluice::SharedRegionBytesForWindows(1, 11) == 4096 + 16 * 4 * 8);
  CHECK(*sluice::SharedRegionBytesForWindows(1, 12) == 4096 + 32 * 4 * 8);
  CHECK(*sluice::SharedRegionBytesForWindows(3, 1 << 20) == 4096 + (1 << 21) * 6 * 8);
  CHECK(*sluice::SharedRegionBytesForLeases(10, 1000) == 4096 + 2048 * 22 * 8);
}

TEST_CASE("docs/deployment.md's table of region sizes agrees with SharedRegionBytes") {
  std::ifstream doc(std::string(SLUICE_SOURCE_DIR) + "/docs/deployment.md");
  REQUIRE(doc.is_open());
  int rows = 0;
  bool in_table = false;
  for (std::string line; std::getline(doc, line);) {
    if (Contains(line, "<!-- region sizes -->")) in_table = true;
    if (Contains(line, "<!-- /region sizes -->")) in_table = false;
    if (!in_table || !absl::StartsWith(line, "| ") || Contains(line, "---")) continue;
    // | object | windows or max_in_flight | max_keys | bytes | about |
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    REQUIRE(cells.size() >= 5);
    int64_t per_key = 0, max_keys = 0, bytes = 0;
    auto number = [](std::string cell, int64_t* out) {
      cell = absl::StrReplaceAll(absl::StripAsciiWhitespace(cell), {{",", ""}});
      return absl::SimpleAtoi(cell, out);
    };
    if (!number(cells[2], &per_key)) continue;  // the heading
    INFO(line);
    REQUIRE(number(cells[3], &max_keys));
    REQUIRE(number(cells[4], &bytes));
    const bool leases = Contains(cells[1], "ConcurrencyLimiter") || Contains(cells[1], "Balancer");
    CHECK(bytes == *(leases ? sluice::SharedRegionBytesForLeases(per_key, max_keys)
                            : sluice::SharedRegionBytesForWindows(per_key, max_keys)));
    ++rows;
  }
  CHECK(rows >= 10);
}

TEST_CASE("a /dev/shm without fallocate (ramfs) still gets a whole region") {
  const std::string failure = InChild([] {
    if (std::string e = MountPrivateShm("ramfs", "mode=1777"); !e.empty()) return e;
    const absl::Status s = CreateAndUse(Kind::kRateLimiter, "on-ramfs", 1000);
    Failures f;
    f.Expect(s.ok(), s.ToString());
    f.Expect(FileSize("on-ramfs") == *sluice::SharedRegionBytesForWindows(1, 1000),
             "wrong size on ramfs");
    return f.text();
  });
  INFO(failure);
  CHECK(failure.empty());
}
