#include "frequency_sketch.h"

#include <algorithm>
#include <bit>

namespace sluice {
inline namespace v1 {
namespace internal {

FrequencySketch::FrequencySketch(int64_t width)
    : mask_(std::bit_ceil(static_cast<uint64_t>(std::max<int64_t>(width, 16))) - 1),
      counters_(kRows * (mask_ + 1), 0),
      sample_size_(10 * static_cast<int64_t>(mask_ + 1)) {}

size_t FrequencySketch::Index(uint64_t hash, int row) const {
  // A different odd multiplier per row spreads one hash into four independent indexes.
  static constexpr uint64_t kSeeds[kRows] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full,
                                             0x165667B19E3779F9ull, 0xD6E8FEB86659FD93ull};
  const uint64_t h = (hash ^ (hash >> 29)) * kSeeds[row];
  return static_cast<size_t>(row) * (mask_ + 1) + static_cast<size_t>((h >> 32) & mask_);
}

void FrequencySketch::Increment(uint64_t hash) {
  bool added = false;
  for (int row = 0; row < kRows; ++row) {
    uint8_t& c = counters_[Index(hash, row)];
    if (c < 15) ++c, added = true;
  }
  if (added && ++additions_ >= sample_size_) Age();
}

int FrequencySketch::Estimate(uint64_t hash) const {
  int least = 15;
  for (int row = 0; row < kRows; ++row) least = std::min<int>(least, counters_[Index(hash, row)]);
  return least;
}

void FrequencySketch::Age() {
  for (uint8_t& c : counters_) c >>= 1;
  additions_ /= 2;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
