#include "metrics/metrics_memory.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sluice/metrics.h"
#include "stores/shared_table.h"  // CompareExchange16

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
// Load <= 3/4, at least 16 slots. REQUIRES 1 <= max_series <= kMaxMetricsSeries.
int64_t CapacityFor(int64_t max_series) {
  const int64_t wanted = max_series + max_series / 3 + 1;
  return std::max<int64_t>(16, int64_t{1} << std::bit_width(static_cast<uint64_t>(wanted - 1)));
}
int64_t ArenaWordsFor(int64_t max_series) { return max_series * kMetricsBytesPerSeries / 8; }

int64_t CreatingBy(pid_t pid) { return (static_cast<int64_t>(pid) << 2) | 2; }
bool Alive(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }
}  // namespace

int64_t MetricsMemory::WordsFor(int64_t max_series) {
  return kHeaderWords + 2 * CapacityFor(max_series) * kSlotWords + ArenaWordsFor(max_series);
}

RegionSpec MetricsMemory::SpecFor(int64_t max_series) {
  RegionSpec spec;
  spec.kind = "MetricsRegistry";
  spec.description = absl::StrCat("max_series=", max_series, ", ", kMetricsBytesPerSeries,
                                  " string bytes per series");
  spec.words = WordsFor(max_series);
  return spec;
}

absl::StatusOr<std::shared_ptr<MetricsMemory>> MetricsMemory::Create(
    const std::string& shared_region, int64_t max_series) {
  const int64_t words = WordsFor(max_series);
  if (shared_region.empty()) {
    // calloc: 16-byte aligned (glibc), and a large block comes zeroed from mmap without being
    // touched, so a registry costs only the pages its series use.
    void* block = std::calloc(static_cast<size_t>(words), sizeof(int64_t));
    if (block == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "sluice.MetricsRegistry: no memory for ", words * 8, " bytes (max_series=", max_series,
          ")"));
    }
    return std::shared_ptr<MetricsMemory>(new MetricsMemory(
        nullptr, block, static_cast<int64_t*>(block), words * 8, max_series));
  }
  // Zero-filled words are an empty registry: nothing to initialise.
  absl::StatusOr<std::unique_ptr<SharedRegion>> region =
      SharedRegion::OpenOrCreate(shared_region, SpecFor(max_series), [](int64_t*, int64_t) {});
  if (!region.ok()) return region.status();
  int64_t* base = (*region)->words();
  const int64_t bytes = (*region)->mapped_bytes();
  return std::shared_ptr<MetricsMemory>(
      new MetricsMemory(*std::move(region), nullptr, base, bytes, max_series));
}

MetricsMemory::MetricsMemory(std::unique_ptr<SharedRegion> region, void* private_words,
                             int64_t* words, int64_t bytes, int64_t max_series)
    : region_(std::move(region)),
      private_words_(private_words),
      words_(words),
      bytes_(bytes),
      max_series_(max_series),
      capacity_(CapacityFor(max_series)),
      arena_words_(ArenaWordsFor(max_series)) {}

MetricsMemory::~MetricsMemory() { std::free(private_words_); }

int64_t* MetricsMemory::TableStart(Table table) const {
  return words_ + kHeaderWords + (table == Table::kSeries ? capacity_ * kSlotWords : 0);
}

bool MetricsMemory::TryCount(Table table) {
  std::atomic_ref<int64_t> count = Word(Counter(table));
  int64_t n = count.load(std::memory_order_relaxed);
  do {
    if (n >= max_series_) return false;
  } while (!count.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return true;
}

MetricsMemory::Claim MetricsMemory::FindOrCreate(Table table, uint64_t hash,
                                                 absl::FunctionRef<bool(const int64_t*)> matches,
                                                 absl::FunctionRef<bool(int64_t*)> create) {
  const int64_t h = static_cast<int64_t>(hash);
  const int64_t mine = CreatingBy(getpid());
  const int64_t mask = capacity_ - 1;
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(kCreationWait);
  auto pause = std::chrono::microseconds(50);
  // Creates the key in `slot`, which this process holds in state `mine`.
  auto create_in = [&](int64_t* slot) -> Claim {
    if (create(slot)) {
      Word(slot).store(kReady, std::memory_order_release);
      return {Outcome::kCreated, slot};
    }
    Word(Counter(table)).fetch_sub(1, std::memory_order_relaxed);
    CompareExchange16(slot, mine, h, 0, 0);  // give it back
    return {Outcome::kNoRoom};
  };
  int64_t i = h & mask;
  for (int64_t probes = 0; probes < capacity_;) {
    int64_t* slot = TableStart(table) + i * kSlotWords;
    const int64_t state = Word(slot).load(std::memory_order_acquire);
    if (state == 0) {
      if (!TryCount(table)) return {Outcome::kFull};
      if (CompareExchange16(slot, 0, 0, mine, h)) return create_in(slot);
      Word(Counter(table)).fetch_sub(1, std::memory_order_relaxed);
      continue;  // claimed just now by another process: look at it again
    }
    const int64_t slot_hash = Word(slot + 1).load(std::memory_order_acquire);
    if (Word(slot).load(std::memory_order_acquire) != state) continue;  // changed: read again
    if (slot_hash != h) {
      i = (i + 1) & mask;
      ++probes;
      continue;
    }
    if (state == kReady) {
      if (matches(slot)) return {Outcome::kFound, slot};
      i = (i + 1) & mask;  // another key with the same 64-bit hash
      ++probes;
      continue;
    }
    // Being created, maybe of our key: wait for it, or take it over from a dead creator.
    const pid_t creator = static_cast<pid_t>(state >> 2);
    if (creator != getpid() && !Alive(creator)) {
      if (CompareExchange16(slot, state, h, mine, h)) return create_in(slot);
      continue;
    }
    if (std::chrono::steady_clock::now() >= deadline) return {Outcome::kStuck};
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
  return {Outcome::kFull};
}

void MetricsMemory::ForEachReady(Table table, absl::FunctionRef<void(const int64_t*)> fn) const {
  int64_t* start = TableStart(table);
  for (int64_t i = 0; i < capacity_; ++i) {
    int64_t* slot = start + i * kSlotWords;
    if (Word(slot).load(std::memory_order_acquire) == kReady) fn(slot);
  }
}

int64_t MetricsMemory::Allocate(int64_t words) {
  std::atomic_ref<int64_t> used = Word(words_);
  int64_t offset = used.load(std::memory_order_relaxed);
  do {
    if (words < 0 || offset < 0 || words > arena_words_ - offset) return -1;
  } while (!used.compare_exchange_weak(offset, offset + words, std::memory_order_relaxed));
  return offset;
}

int64_t MetricsMemory::StoreBytes(std::string_view bytes) {
  const int64_t n = static_cast<int64_t>(bytes.size());
  const int64_t offset = Allocate(1 + (n + 7) / 8);
  if (offset < 0) return -1;
  int64_t* p = WordsAt(offset, 1);
  *p = n;
  std::memcpy(p + 1, bytes.data(), bytes.size());
  return offset;
}

int64_t* MetricsMemory::WordsAt(int64_t offset, int64_t words) const {
  if (offset < 0 || words < 0 || offset > arena_words_ || words > arena_words_ - offset) {
    return nullptr;
  }
  return TableStart(Table::kSeries) + capacity_ * kSlotWords + offset;
}

std::string_view MetricsMemory::BytesAt(int64_t offset) const {
  const int64_t* length = WordsAt(offset, 1);
  if (length == nullptr) return {};
  const int64_t n = *length;
  if (n < 0 || WordsAt(offset + 1, (n + 7) / 8) == nullptr) return {};
  return std::string_view(reinterpret_cast<const char*>(length + 1), static_cast<size_t>(n));
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
