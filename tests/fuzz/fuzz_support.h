// Shared by the fuzz targets: how an invariant fails, and the views a target passes on.
#ifndef SLUICE_TESTS_FUZZ_FUZZ_SUPPORT_H_
#define SLUICE_TESTS_FUZZ_FUZZ_SUPPORT_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

// Aborts (a crash to libFuzzer and to the standalone driver) naming the broken invariant.
#define FUZZ_CHECK(condition)                                                                  \
  do {                                                                                         \
    if (!(condition)) {                                                                        \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                            \
    }                                                                                          \
  } while (0)

namespace sluice_fuzz {

// The input as a view; an empty input becomes std::string_view(nullptr, 0), the empty view the
// C ABI passes on for (NULL, 0), so that every parser also meets a null data pointer.
inline std::string_view View(const uint8_t* data, size_t size) {
  return size == 0 ? std::string_view() : std::string_view(reinterpret_cast<const char*>(data), size);
}

}  // namespace sluice_fuzz

#endif  // SLUICE_TESTS_FUZZ_FUZZ_SUPPORT_H_
