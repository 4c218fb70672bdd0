// W-TinyLFU within a byte budget, over entries that carry any payload: the eviction policy of a
// ResponseCache shard, and of the miniature caches that tune it (cache/window_tuner.h).
//
// New entries enter an LRU *window*. What leaves the window enters the main space, a segmented
// LRU (probation, protected), as a candidate: while the shard is over budget, the candidate
// evicts the main space's victims (probation's oldest, then protected's) only as long as the
// TinyLFU frequency sketch says it is asked for more often than each of them; otherwise the
// candidate goes. A hit moves a window entry to the window's front and a probation entry to
// protected (whose oldest fall back to probation). The window's share of the budget is set from
// outside (SetWindowShare): 1% favours frequency (Zipf, scans), 100% makes the shard an LRU
// (recency-heavy traffic). Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache
// Admission Policy" (2017), section 4 (W-TinyLFU); Caffeine's BoundedLocalCache works the same way.
//
// Not thread-safe: the owner locks.
#ifndef SLUICE_LIB_CACHE_W_TINY_LFU_H_
#define SLUICE_LIB_CACHE_W_TINY_LFU_H_

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <iterator>
#include <list>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "cache/frequency_sketch.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// A cache key's 128-bit digest (CacheKey::digest_hi, digest_lo).
using Digest = std::pair<uint64_t, uint64_t>;

template <typename Payload>
class WTinyLfu {
 public:
  enum class Segment : uint8_t { kWindow, kProbation, kProtected };
  struct Entry {
    Digest digest;
    int64_t bytes = 0;
    Payload payload;
    int64_t promoted_at = 0;  // when it last moved to the front of protected
    Segment segment = Segment::kWindow;
  };
  using List = std::list<Entry>;
  using Iterator = typename List::iterator;

  // `admission` false: no window and no filter, a plain segmented LRU.
  WTinyLfu(int64_t capacity_bytes, double protected_share, bool admission, double window_share)
      : capacity_(capacity_bytes),
        protected_share_(protected_share),
        admission_(admission),
        sketch_(SketchWidth(capacity_bytes)) {
    assert(capacity_bytes > 0 && protected_share >= 0 && protected_share < 1);
    SetWindowShare(window_share);
  }

  // Counts one request for the key in the frequency sketch (a lookup, hit or miss).
  void Count(const Digest& digest) { sketch_.Increment(digest.second); }
  Iterator Find(const Digest& digest) {
    auto found = index_.find(digest);
    return found == index_.end() ? end() : found->second;
  }
  Iterator end() { return probation_.end(); }

  // A hit on `it` at `now` (ns). A protected entry moves to protected's front at most once per
  // second (CacheLib's promotion throttling: most hits on hot entries skip the list splice).
  void Touch(Iterator it, int64_t now) {
    switch (it->segment) {
      case Segment::kWindow:
        window_.splice(window_.begin(), window_, it);
        return;
      case Segment::kProtected:
        if (now - it->promoted_at < kPromotionInterval) return;
        it->promoted_at = now;
        protected_.splice(protected_.begin(), protected_, it);
        return;
      case Segment::kProbation:
        it->promoted_at = now;
        MoveTo(it, Segment::kProtected);
        DemoteProtectedOverflow();
        return;
    }
  }

  void Remove(Iterator it) {
    bytes_ -= it->bytes;
    if (it->segment == Segment::kWindow) window_bytes_ -= it->bytes;
    if (it->segment == Segment::kProtected) protected_bytes_ -= it->bytes;
    index_.erase(it->digest);
    ListOf(it->segment).erase(it);
  }

  // Inserts a new entry (replacing one with the same digest) at the window's front and brings
  // the space back within its budget. Returns whether the new entry is still in (false when the
  // filter turned it away at once, its window being too small to hold it). Precondition:
  // 0 < bytes <= capacity.
  bool Insert(const Digest& digest, int64_t bytes, Payload payload) {
    assert(bytes > 0 && bytes <= capacity_);
    if (Iterator old = Find(digest); old != end()) Remove(old);
    window_.push_front(Entry{.digest = digest, .bytes = bytes, .payload = std::move(payload)});
    index_.emplace(digest, window_.begin());
    bytes_ += bytes;
    window_bytes_ += bytes;
    Evict();
    return index_.contains(digest);
  }

  // The window's share of the budget, in [0, 1] (ignored without admission).
  void SetWindowShare(double share) {
    window_max_ = admission_ ? static_cast<int64_t>(std::clamp(share, 0.0, 1.0) *
                                                    static_cast<double>(capacity_))
                             : 0;
    protected_max_ =
        static_cast<int64_t>(static_cast<double>(capacity_ - window_max_) * protected_share_);
    DemoteProtectedOverflow();
    Evict();  // a smaller window hands its oldest to the main space
  }

  int64_t bytes() const { return bytes_; }
  int64_t window_bytes() const { return window_bytes_; }
  size_t size() const { return index_.size(); }
  // Entries the filter turned away, and entries evicted to make room.
  int64_t rejected() const { return rejected_; }
  int64_t evictions() const { return evictions_; }

 private:
  static constexpr int64_t kPromotionInterval = 1'000'000'000;  // 1 s
  // Counters per row: about 2.5 per entry at the 2.4 KiB average answer. The sketch halves its
  // counts every 10 x width requests, so the width is also how long popularity is remembered:
  // half this width forgot too soon on the Zipf 0.6-0.8 traces (1-1.5 points lower), a quarter
  // of it remembered trending topics too long (scripts/bench-cache-peers.sh).
  static int64_t SketchWidth(int64_t capacity_bytes) {
    return std::clamp<int64_t>(capacity_bytes / 1024, 16, int64_t{1} << 22);
  }

  List& ListOf(Segment segment) {
    if (segment == Segment::kWindow) return window_;
    return segment == Segment::kProbation ? probation_ : protected_;
  }

  // Moves an entry to the front (most recent end) of `to`, keeping the byte counts.
  void MoveTo(Iterator it, Segment to) {
    if (it->segment == Segment::kWindow) window_bytes_ -= it->bytes;
    if (it->segment == Segment::kProtected) protected_bytes_ -= it->bytes;
    if (to == Segment::kWindow) window_bytes_ += it->bytes;
    if (to == Segment::kProtected) protected_bytes_ += it->bytes;
    List& to_list = ListOf(to);
    to_list.splice(to_list.begin(), ListOf(it->segment), it);
    it->segment = to;
  }

  void DemoteProtectedOverflow() {
    while (protected_bytes_ > protected_max_ && !protected_.empty()) {
      MoveTo(std::prev(protected_.end()), Segment::kProbation);
    }
  }

  // The main space's next victim other than `candidate` (which entered probation at its front,
  // so it is probation's oldest only when alone there): probation's oldest, else protected's;
  // end() when there is none.
  Iterator MainVictim(Iterator candidate) {
    if (!probation_.empty() && std::prev(probation_.end()) != candidate) {
      return std::prev(probation_.end());
    }
    if (!protected_.empty()) return std::prev(protected_.end());
    return end();
  }

  // Brings the space back within its budget. Candidates are held to the main space's share
  // (capacity - window), not to the whole budget: a window a few entries wide is never quite
  // full, and letting a newcomer into its slack by evicting the main space's oldest unasked would
  // let every other newcomer past the filter.
  void Evict() {
    while (window_bytes_ > window_max_ && !window_.empty()) {
      Iterator candidate = std::prev(window_.end());
      MoveTo(candidate, Segment::kProbation);
      while (bytes_ - window_bytes_ > capacity_ - window_max_) {
        Iterator victim = MainVictim(candidate);
        if (victim == end()) {
          Remove(candidate);
          ++evictions_;
          break;
        }
        // TinyLFU: the candidate stays only if it is asked for more often than what it evicts.
        if (admission_ &&
            sketch_.Estimate(candidate->digest.second) <= sketch_.Estimate(victim->digest.second)) {
          Remove(candidate);
          ++rejected_;
          break;
        }
        Remove(victim);
        ++evictions_;
      }
    }
    // The window grew (SetWindowShare) and the main space has not shrunk to its new share yet:
    // the main space's oldest make room, the window's when the main space is empty.
    while (bytes_ > capacity_) {
      Iterator victim = MainVictim(end());
      Remove(victim != end() ? victim : std::prev(window_.end()));
      ++evictions_;
    }
  }

  const int64_t capacity_;
  const double protected_share_;
  const bool admission_;
  FrequencySketch sketch_;
  List window_, probation_, protected_;  // front: most recently used
  absl::flat_hash_map<Digest, Iterator> index_;
  int64_t bytes_ = 0, window_bytes_ = 0, protected_bytes_ = 0;
  int64_t window_max_ = 0, protected_max_ = 0;
  int64_t rejected_ = 0, evictions_ = 0;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CACHE_W_TINY_LFU_H_
