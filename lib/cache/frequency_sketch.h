// TinyLFU's frequency sketch: a count-min sketch of 4 rows of small saturating counters (at most
// 15), halved every `10 x width` increments so that old popularity fades (Caffeine's
// FrequencySketch, with bytes instead of packed nibbles). Like Caffeine 3's, a key's four counters
// share one 64-byte block (a quarter of it per row), so counting a lookup touches one cache line,
// not four.
#ifndef SLUICE_LIB_FREQUENCY_SKETCH_H_
#define SLUICE_LIB_FREQUENCY_SKETCH_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice {
inline namespace v1 {
namespace internal {

class FrequencySketch {
 public:
  // `width`: counters per row, rounded up to a power of two (at least 16).
  explicit FrequencySketch(int64_t width);

  // Counts one occurrence of `hash` (a well-mixed 64-bit hash).
  void Increment(uint64_t hash);
  // How often `hash` occurred, within the sketch's error (never less than the truth, up to 15).
  int Estimate(uint64_t hash) const;

 private:
  static constexpr int kRows = 4;
  static constexpr size_t kBlockBytes = 64;  // one cache line: 16 counters per row
  // Where the key's counter for `row` is in blocks_: in the key's block, in the row's quarter.
  size_t Slot(uint64_t hash, int row) const;
  void Age();

  uint64_t block_mask_;
  std::vector<uint8_t> storage_;  // counters, plus room to align them to a cache line
  uint8_t* blocks_;               // block_mask_ + 1 blocks of kBlockBytes
  size_t bytes_;
  int64_t additions_ = 0;
  int64_t sample_size_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_FREQUENCY_SKETCH_H_
