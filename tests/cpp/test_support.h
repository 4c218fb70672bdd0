// Small helpers shared by the C++ tests.
#ifndef SLUICE_TESTS_CPP_TEST_SUPPORT_H_
#define SLUICE_TESTS_CPP_TEST_SUPPORT_H_

#include <unistd.h>

#include <memory>
#include <string>

#include <catch2/catch.hpp>

#include "absl/status/statusor.h"
#include "sluice/shared_region.h"

namespace sluice_test {

constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kMillisecond = 1'000'000;

// Unwraps a StatusOr, failing the test (with the status text) if it holds an error.
template <typename T>
T Value(absl::StatusOr<T> v) {
  INFO(v.status().ToString());
  REQUIRE(v.ok());
  return *std::move(v);
}

// The message of an error StatusOr/Status, for matching.
template <typename T>
std::string ErrorOf(const absl::StatusOr<T>& v) {
  REQUIRE_FALSE(v.ok());
  return std::string(v.status().message());
}

// A shared-memory region name unique to this test process and call, removed when it goes.
struct RegionName {
  std::string name;
  RegionName() {
    static int counter = 0;
    name = "test-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
  }
  ~RegionName() {
    (void)sluice::RemoveSharedRegion(name);
    (void)sluice::RemoveSharedRegion(name + ".endpoints");  // a Balancer's shared holds
    (void)sluice::RemoveSharedRegion(name + ".routes");     // and its shared routes
  }
};

// Whether this build's allocator survives fork() while other threads allocate. The sanitizers'
// allocators (GCC 12's libsanitizer, ASan and TSan alike) take internal locks that fork() does not
// reset, so a child that allocates while a parent thread was inside malloc waits forever (seen in
// gdb: the child spins in __sanitizer::Mutex / StaticSpinMutex under operator new). glibc's
// malloc is fork-safe, so the plain build runs these tests.
inline bool ForkSafeAllocator() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  WARN("skipped under a sanitizer: its allocator is not fork-safe with allocating threads");
  return false;
#else
  return true;
#endif
}

}  // namespace sluice_test

#endif  // SLUICE_TESTS_CPP_TEST_SUPPORT_H_
