// Small helpers shared by the C++ tests.
#ifndef SLUICE_TESTS_CPP_TEST_SUPPORT_H_
#define SLUICE_TESTS_CPP_TEST_SUPPORT_H_

#include <memory>
#include <string>

#include <catch2/catch.hpp>

#include "absl/status/statusor.h"

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

}  // namespace sluice_test

#endif  // SLUICE_TESTS_CPP_TEST_SUPPORT_H_
