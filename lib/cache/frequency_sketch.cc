#include "cache/frequency_sketch.h"

#include <algorithm>
#include <bit>
#include <cstdint>

namespace sluice {
inline namespace v1 {
namespace internal {

FrequencySketch::FrequencySketch(int64_t width)
    // kRows counters per unit of width, kBlockBytes per block.
    : block_mask_(std::bit_ceil(static_cast<uint64_t>(std::max<int64_t>(width, 16))) * kRows /
                      kBlockBytes -
                  1),
      storage_((block_mask_ + 1) * kBlockBytes + kBlockBytes - 1, 0),
      bytes_((block_mask_ + 1) * kBlockBytes),
      sample_size_(10 * static_cast<int64_t>(bytes_ / kRows)) {
  const auto address = reinterpret_cast<uintptr_t>(storage_.data());
  blocks_ = storage_.data() + ((kBlockBytes - address % kBlockBytes) % kBlockBytes);
}

size_t FrequencySketch::Slot(uint64_t hash, int row) const {
  // The high half of one multiply picks the block; 4 bits per row of another pick the counter.
  const uint64_t mixed = (hash ^ (hash >> 29)) * 0x9E3779B97F4A7C15ull;
  const uint64_t block = (mixed >> 32) & block_mask_;
  const uint64_t slots = (hash ^ (hash >> 31)) * 0xC2B2AE3D27D4EB4Full;
  const uint64_t slot = (slots >> (40 + 4 * row)) & 15;
  return block * kBlockBytes + static_cast<uint64_t>(row) * 16 + slot;
}

void FrequencySketch::Increment(uint64_t hash) {
  bool added = false;
  for (int row = 0; row < kRows; ++row) {
    uint8_t& c = blocks_[Slot(hash, row)];
    if (c < 15) ++c, added = true;
  }
  if (added && ++additions_ >= sample_size_) Age();
}

int FrequencySketch::Estimate(uint64_t hash) const {
  int least = 15;
  for (int row = 0; row < kRows; ++row) least = std::min<int>(least, blocks_[Slot(hash, row)]);
  return least;
}

void FrequencySketch::Age() {
  for (size_t i = 0; i < bytes_; ++i) blocks_[i] >>= 1;
  additions_ /= 2;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
