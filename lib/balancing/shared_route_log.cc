#include "balancing/shared_route_log.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include "absl/strings/str_format.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// Region words: the head (next sequence number), then (from word 8) the ring.
constexpr int64_t kHead = 0, kRingStart = 8;
// Record words: its stamp (2 seq + 1 while written, 2 seq + 2 once complete), writer, endpoint,
// block count, tokens (a double's bits), routed at (the writer's clock), checksum; then blocks.
constexpr int64_t kStamp = 0, kWriter = 1, kEndpoint = 2, kCount = 3, kTokens = 4, kAt = 5,
                  kChecksum = 6, kHeaderWords = 8;
constexpr int64_t kMaxRecords = 4096, kMinRecords = 64;

std::atomic_ref<int64_t> Word(int64_t* p) { return std::atomic_ref<int64_t>(*p); }

int64_t RecordWordsFor(int64_t max_blocks) {
  const int64_t words = kHeaderWords + std::min(max_blocks, SharedRouteLog::kMaxRecordBlocks);
  return (words + 7) / 8 * 8;  // whole cache lines
}

// A random token for this process, drawn again in a fork()ed child, so that parent and child
// never share a writer id.
std::atomic<uint64_t> process_token{0};
uint64_t ProcessToken() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, [] { process_token.store(0, std::memory_order_relaxed); });
    return true;
  }();
  (void)registered;
  uint64_t token = process_token.load(std::memory_order_relaxed);
  if (token == 0) {
    std::random_device device;
    token = (uint64_t{device()} << 32 | device()) ^ static_cast<uint64_t>(getpid());
    if (token == 0) token = 1;
    process_token.store(token, std::memory_order_relaxed);
  }
  return token;
}

uint64_t Checksum(uint64_t seq, const uint64_t* header, const uint64_t* blocks, int64_t count) {
  const uint64_t over_header = XXH3_64bits_withSeed(header, 5 * sizeof(uint64_t), seq);
  return XXH3_64bits_withSeed(blocks, static_cast<size_t>(count) * sizeof(uint64_t), over_header);
}

}  // namespace

std::string SharedRouteLog::RegionNameFor(std::string_view shared_region) {
  return std::string(shared_region) + ".routes";
}

uint64_t SharedRouteLog::EndpointKey(std::string_view id) {
  return XXH3_64bits_withSeed(id.data(), id.size(), 0x5e1c5e1c);
}

absl::StatusOr<std::unique_ptr<SharedRouteLog>> SharedRouteLog::Open(
    std::string_view shared_region, const PrefixHashOptions& hash) {
  const int64_t record_words = RecordWordsFor(hash.max_blocks);
  const int64_t records = std::clamp(kRingWords / record_words, kMinRecords, kMaxRecords);
  RegionSpec spec;
  spec.kind = "sluice.Balancer.routes";
  spec.description = absl::StrFormat(
      "prefix_hash.block_chars=%d prefix_hash.max_blocks=%d records=%d record_words=%d",
      hash.block_chars, hash.max_blocks, records, record_words);
  spec.words = kRingStart + records * record_words;
  absl::StatusOr<std::unique_ptr<SharedRegion>> region = SharedRegion::OpenOrCreate(
      RegionNameFor(shared_region), spec, [](int64_t*, int64_t) {});  // zeros: nothing written
  if (!region.ok()) return region.status();
  return std::unique_ptr<SharedRouteLog>(new SharedRouteLog(
      *std::move(region), record_words, records,
      std::min(hash.max_blocks, kMaxRecordBlocks)));
}

SharedRouteLog::SharedRouteLog(std::unique_ptr<SharedRegion> region, int64_t record_words,
                               int64_t records, int64_t max_blocks)
    : region_(std::move(region)),
      record_words_(record_words),
      records_(records),
      max_blocks_(max_blocks),
      nonce_(std::random_device{}() | 1) {
  // A new process starts with the whole ring behind it: it relearns the host's recent routing.
  const uint64_t head =
      static_cast<uint64_t>(Word(region_->words() + kHead).load(std::memory_order_acquire));
  next_ = head > static_cast<uint64_t>(records_) ? head - static_cast<uint64_t>(records_) : 0;
  scratch_.reserve(static_cast<size_t>(max_blocks_));
}

uint64_t RouteWriterId(uint64_t nonce) { return ProcessToken() * 0x9e3779b97f4a7c15ULL ^ nonce; }

int64_t* SharedRouteLog::RecordAt(uint64_t seq) const {
  return region_->words() + kRingStart +
         static_cast<int64_t>(seq % static_cast<uint64_t>(records_)) * record_words_;
}

void SharedRouteLog::Append(uint64_t endpoint, absl::Span<const uint64_t> blocks, double tokens,
                            int64_t at) {
  const int64_t count = std::min<int64_t>(static_cast<int64_t>(blocks.size()), max_blocks_);
  const uint64_t seq = static_cast<uint64_t>(
      Word(region_->words() + kHead).fetch_add(1, std::memory_order_relaxed));
  if (next_ == seq) next_ = seq + 1;  // nothing to replay before it: skip our own at once
  int64_t* r = RecordAt(seq);
  const int64_t writing = static_cast<int64_t>(2 * seq + 1);
  Word(r + kStamp).store(writing, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  const uint64_t header[5] = {RouteWriterId(nonce_), endpoint, static_cast<uint64_t>(count),
                              std::bit_cast<uint64_t>(tokens), static_cast<uint64_t>(at)};
  for (int i = 0; i < 5; ++i) {
    Word(r + kWriter + i).store(static_cast<int64_t>(header[i]), std::memory_order_relaxed);
  }
  for (int64_t i = 0; i < count; ++i) {
    Word(r + kHeaderWords + i).store(static_cast<int64_t>(blocks[i]), std::memory_order_relaxed);
  }
  Word(r + kChecksum)
      .store(static_cast<int64_t>(Checksum(seq, header, blocks.data(), count)),
             std::memory_order_relaxed);
  // Complete it only if nobody has reclaimed the slot meanwhile (this writer was descheduled for
  // a whole lap of the ring): then the slot is the newer record's.
  int64_t expected = writing;
  Word(r + kStamp).compare_exchange_strong(expected, writing + 1, std::memory_order_release,
                                           std::memory_order_relaxed);
}

int64_t SharedRouteLog::ReplayNew(absl::FunctionRef<void(const Route&)> apply) {
  const uint64_t head =
      static_cast<uint64_t>(Word(region_->words() + kHead).load(std::memory_order_acquire));
  if (head < next_) next_ = head;  // the region was removed and made again: start over
  if (head - next_ > static_cast<uint64_t>(records_)) {
    lost_ += head - next_ - static_cast<uint64_t>(records_);  // unsigned: a scribbled head wraps
    next_ = head - static_cast<uint64_t>(records_);
  }
  const uint64_t me = RouteWriterId(nonce_);
  int64_t applied = 0;
  uint64_t header[5];
  for (; next_ < head && applied < kMaxReplayPerCall; ++next_) {
    int64_t* r = RecordAt(next_);
    // Stamps are compared as unsigned numbers: the head may be anything a process wrote there.
    const uint64_t complete = 2 * next_ + 2;
    const uint64_t stamp =
        static_cast<uint64_t>(Word(r + kStamp).load(std::memory_order_acquire));
    if (stamp != complete) {
      // Being written, or its writer has its number but has not begun: what the slot held a lap
      // before (nothing in the first lap). Wait for it unless the ring has moved well past it
      // (its writer is stuck or died mid-append). Anything else: a later lap overwrote it, or
      // the word is not a stamp at all.
      const uint64_t records = static_cast<uint64_t>(records_);
      const uint64_t lap_before = next_ >= records ? complete - 2 * records : 0;
      const bool pending = stamp == complete - 1 || stamp == lap_before ||
                           (lap_before != 0 && stamp == lap_before - 1);
      if (pending && head - next_ <= static_cast<uint64_t>(kMaxReplayPerCall)) break;
      ++lost_;
      continue;
    }
    for (int i = 0; i < 5; ++i) {
      header[i] = static_cast<uint64_t>(Word(r + kWriter + i).load(std::memory_order_relaxed));
    }
    if (header[0] == me) continue;  // our own
    const int64_t count = static_cast<int64_t>(std::min<uint64_t>(header[2], max_blocks_));
    scratch_.resize(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      scratch_[i] = static_cast<uint64_t>(Word(r + kHeaderWords + i).load(std::memory_order_relaxed));
    }
    const uint64_t checksum =
        static_cast<uint64_t>(Word(r + kChecksum).load(std::memory_order_relaxed));
    std::atomic_thread_fence(std::memory_order_acquire);
    if (static_cast<uint64_t>(Word(r + kStamp).load(std::memory_order_relaxed)) != stamp ||
        header[2] != static_cast<uint64_t>(count) ||
        Checksum(next_, header, scratch_.data(), count) != checksum) {
      ++lost_;  // torn: rewritten while read, or its writer died mid-append
      continue;
    }
    const double tokens = std::bit_cast<double>(header[3]);
    apply({.endpoint = header[1],
           .tokens = std::isfinite(tokens) && tokens > 0 ? tokens : 0,
           .at = static_cast<int64_t>(header[4]),
           .blocks = absl::MakeConstSpan(scratch_)});
    ++applied;
  }
  return applied;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
