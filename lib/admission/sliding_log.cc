#include "admission/sliding_log.h"

#include <algorithm>
#include <atomic>
#include <limits>

#include "absl/strings/str_cat.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

std::atomic<void (*)()> mid_admit_hook{nullptr};

int64_t HeadOf(const int64_t* cells, int64_t offset, int64_t limit) {
  // A foreign or torn head word can never index outside the ring.
  return static_cast<int64_t>(static_cast<uint64_t>(cells[offset]) % static_cast<uint64_t>(limit));
}

}  // namespace

absl::StatusOr<bool> AreSliding(absl::string_view object, const std::vector<Window>& windows) {
  const WindowKind kind = windows[0].kind;
  for (size_t i = 0; i < windows.size(); ++i) {
    if (windows[i].kind != WindowKind::kGcra && windows[i].kind != WindowKind::kSliding) {
      return absl::InvalidArgumentError(absl::StrCat(
          object, ": windows[", i, "].kind must be kGcra or kSliding, got ",
          static_cast<int>(windows[i].kind)));
    }
    if (windows[i].kind != kind) {
      return absl::InvalidArgumentError(absl::StrCat(
          object, ": windows[", i, "].kind must be windows[0]'s (",
          kind == WindowKind::kSliding ? "kSliding" : "kGcra",
          "): one limiter's windows all count the same way"));
    }
  }
  return kind == WindowKind::kSliding;
}

absl::StatusOr<std::vector<SlidingWindow>> CompileSlidingWindows(
    absl::string_view object, const std::vector<Window>& windows) {
  std::vector<SlidingWindow> compiled;
  for (size_t i = 0; i < windows.size(); ++i) {
    const Window& w = windows[i];
    if (w.limit < 1 || w.limit > kMaxSlidingLimit) {
      return absl::InvalidArgumentError(absl::StrCat(
          object, ": windows[", i, "].limit must be 1 to ", kMaxSlidingLimit,
          " for a sliding window (a key keeps `limit` timestamps), got ", w.limit));
    }
    if (w.burst != 0 && w.burst != w.limit) {
      return absl::InvalidArgumentError(absl::StrCat(
          object, ": windows[", i, "].burst must be 0 (or the limit) for a sliding window, got ",
          w.burst));
    }
    compiled.push_back({w.limit, absl::ToInt64Nanoseconds(w.period)});
  }
  return compiled;
}

SlidingLog::SlidingLog(std::vector<SlidingWindow> windows) : windows_(std::move(windows)) {
  min_limit_ = std::numeric_limits<int64_t>::max();
  for (const SlidingWindow& w : windows_) {
    layout_.push_back({w.limit, w.period_nanos, cells_});
    cells_ += static_cast<int>(1 + w.limit);
    min_limit_ = std::min(min_limit_, w.limit);
  }
}

int64_t SlidingLog::Ticks(int64_t now_nanos, int64_t epoch_nanos) {
  int64_t rel;
  if (__builtin_sub_overflow(now_nanos, epoch_nanos, &rel)) {
    rel = now_nanos < 0 ? -kMaxRelativeNanos : kMaxRelativeNanos;
  }
  return std::clamp(rel, -kMaxRelativeNanos, kMaxRelativeNanos) + kTickOffset;
}

int64_t SlidingLog::Newest(const int64_t* cells) const {
  int64_t newest = 0;
  for (const Layout& w : layout_) {
    const int64_t head = HeadOf(cells, w.offset, w.limit);
    newest = std::max(newest, cells[w.offset + 1 + (head + w.limit - 1) % w.limit]);
  }
  return newest;
}

int64_t SlidingLog::CountInside(const int64_t* cells, const Layout& w, int64_t now,
                                int64_t period) const {
  const int64_t head = HeadOf(cells, w.offset, w.limit);
  const int64_t* ring = cells + w.offset + 1;
  // The first logical index whose time is after now - period; the ring ascends from head.
  int64_t lo = 0, hi = w.limit;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (ring[(head + mid) % w.limit] > now - period) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return w.limit - lo;
}

void SlidingLog::Describe(int64_t limit, int64_t period, int64_t count, int64_t newest,
                          int64_t now, Decision* out) {
  out->limit = limit;
  out->remaining = std::max<int64_t>(0, limit - count);  // a lowered limit: count may exceed it
  out->reset_after_nanos = newest > now - period ? newest + period - now : 0;
  out->window_nanos = period;
}

void SlidingLog::Admit(int64_t* cells, int64_t cost, int64_t now_ticks, Decision* out,
                       bool detailed, const SlidingWindow* key, int64_t* recorded) const {
  const int64_t newest = Newest(cells);
  const int64_t now = std::max(now_ticks, newest);  // a key's times never go backwards
  int binding = -1;
  int64_t longest = 0;
  for (size_t i = 0; i < layout_.size(); ++i) {
    const Layout& w = layout_[i];
    const int64_t head = HeadOf(cells, w.offset, w.limit);
    // The cost-th oldest of the last `limit` admissions must have left: wait until it does.
    const int64_t oldest = w.limit - LimitOf(w, key, i);  // of the last L, in the ring of C
    const int64_t wait =
        cells[w.offset + 1 + (head + oldest + cost - 1) % w.limit] + PeriodOf(w, key, i) - now;
    if (wait > longest) longest = wait, binding = static_cast<int>(i);
  }
  if (binding >= 0) {
    out->allowed = false;
    if (detailed) {
      const Layout& w = layout_[binding];
      const int64_t period = PeriodOf(w, key, binding);
      Describe(LimitOf(w, key, binding), period, CountInside(cells, w, now, period), newest, now,
               out);
      out->retry_after_nanos = longest;
    }
    return;
  }
  int64_t least = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < layout_.size(); ++i) {
    const Layout& w = layout_[i];
    const int64_t head = HeadOf(cells, w.offset, w.limit);
    int64_t* ring = cells + w.offset + 1;
    for (int64_t j = 0; j < cost; ++j) ring[(head + j) % w.limit] = now;
    if (i == 0) {
      if (void (*hook)() = mid_admit_hook.load(std::memory_order_relaxed)) hook();
    }
    // The times first, then the head: a holder that dies in between leaves entries Repair sorts.
    cells[w.offset] = (head + cost) % w.limit;
    if (detailed) {
      const int64_t left = LimitOf(w, key, i) - CountInside(cells, w, now, PeriodOf(w, key, i));
      if (left < least) least = left, binding = static_cast<int>(i);
    }
  }
  out->allowed = true;
  if (recorded != nullptr) *recorded = now;
  if (detailed) {
    const Layout& w = layout_[binding];
    const int64_t limit = LimitOf(w, key, binding);
    Describe(limit, PeriodOf(w, key, binding), limit - least, now, now, out);
    out->retry_after_nanos = 0;
  }
}

void SlidingLog::Refund(int64_t* cells, int64_t cost, int64_t at_ticks) const {
  for (const Layout& w : layout_) {
    const int64_t head = HeadOf(cells, w.offset, w.limit);
    int64_t* ring = cells + w.offset + 1;
    auto at = [&](int64_t j) -> int64_t& { return ring[(head + j) % w.limit]; };
    // The entries of time at_ticks are a run (the ring ascends): find its newest.
    int64_t j = w.limit - 1;
    while (j >= 0 && at(j) > at_ticks) --j;
    int64_t removed = 0;
    while (removed < cost && j - removed >= 0 && at(j - removed) == at_ticks) ++removed;
    if (removed == 0) continue;
    // Move the `removed` entries older than the run's kept part up over it; 0 fills the oldest.
    for (int64_t k = j; k >= removed; --k) at(k) = at(k - removed);
    for (int64_t k = removed - 1; k >= 0; --k) at(k) = 0;
  }
}

void SlidingLog::NoteKeyPeriod(int64_t period_nanos) const {
  int64_t seen = longest_key_period_.load(std::memory_order_relaxed);
  while (period_nanos > seen &&
         !longest_key_period_.compare_exchange_weak(seen, period_nanos,
                                                    std::memory_order_relaxed)) {
  }
}

Decision SlidingLog::Peek(const int64_t* cells, int64_t now_ticks,
                          const SlidingWindow* key) const {
  Decision out;
  if (cells == nullptr) {  // never seen: every window empty
    size_t smallest = 0;
    for (size_t i = 0; i < layout_.size(); ++i) {
      if (LimitOf(layout_[i], key, i) < LimitOf(layout_[smallest], key, smallest)) smallest = i;
    }
    Describe(LimitOf(layout_[smallest], key, smallest), PeriodOf(layout_[smallest], key, smallest),
             0, 0, now_ticks, &out);
    out.allowed = true;
    return out;
  }
  const int64_t newest = Newest(cells);
  const int64_t now = std::max(now_ticks, newest);
  int binding = 0;
  int64_t longest = 0, least = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < layout_.size(); ++i) {
    const Layout& w = layout_[i];
    const int64_t limit = LimitOf(w, key, i), period = PeriodOf(w, key, i);
    // The oldest of the last `limit` admissions.
    const int64_t oldest =
        cells[w.offset + 1 + (HeadOf(cells, w.offset, w.limit) + w.limit - limit) % w.limit];
    const int64_t wait = oldest > now - period ? oldest + period - now : 0;
    const int64_t left = limit - CountInside(cells, w, now, period);
    if (wait > longest) {
      longest = wait, binding = static_cast<int>(i);
    } else if (longest == 0 && left < least) {
      least = left, binding = static_cast<int>(i);
    }
  }
  const Layout& w = layout_[binding];
  const int64_t period = PeriodOf(w, key, binding);
  Describe(LimitOf(w, key, binding), period, CountInside(cells, w, now, period), newest, now,
           &out);
  out.allowed = longest == 0;
  out.retry_after_nanos = longest;
  return out;
}

bool SlidingLog::IsIdle(const int64_t* cells, int64_t now_ticks) const {
  const int64_t key_period = longest_key_period_.load(std::memory_order_relaxed);
  for (const Layout& w : layout_) {
    const int64_t head = HeadOf(cells, w.offset, w.limit);
    const int64_t newest = cells[w.offset + 1 + (head + w.limit - 1) % w.limit];
    if (newest > now_ticks - std::max(w.period, key_period) - kIdleMarginNanos) return false;
  }
  return true;
}

void SlidingLog::SetMidAdmitHookForTesting(void (*hook)()) {
  mid_admit_hook.store(hook, std::memory_order_relaxed);
}

void SlidingLog::Repair(int64_t* cells) const {
  std::vector<int64_t> times;
  for (const Layout& w : layout_) {
    const int64_t head = HeadOf(cells, w.offset, w.limit);
    int64_t* ring = cells + w.offset + 1;
    times.clear();
    for (int64_t j = 0; j < w.limit; ++j) times.push_back(ring[(head + j) % w.limit]);
    std::sort(times.begin(), times.end());
    for (int64_t j = 0; j < w.limit; ++j) ring[(head + j) % w.limit] = times[j];
    cells[w.offset] = head;
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
