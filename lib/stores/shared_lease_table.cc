#include "stores/shared_lease_table.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <limits>

#include "absl/strings/str_cat.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

inline int64_t Load(int64_t* p) {
  return std::atomic_ref<int64_t>(*p).load(std::memory_order_acquire);
}

// A lease token no other live lease holds: the digest of (process id, per-process counter).
uint64_t NewToken() {
  static std::atomic<uint64_t> counter{0};
  struct {
    int64_t pid;
    uint64_t n;
  } seed{getpid(), counter.fetch_add(1, std::memory_order_relaxed)};
  const uint64_t token =
      DigestKey(std::string_view(reinterpret_cast<const char*>(&seed), sizeof(seed))).lo;
  return token == 0 ? 1 : token;  // 0 marks a free pair
}

// A key's slot holds max_in_flight [token, expires_at] pairs: its cells.
absl::StatusOr<int> CellsFor(int64_t max_in_flight) {
  if (max_in_flight < 1 || max_in_flight > kMaxSharedRegionInFlight) {
    return absl::InvalidArgumentError(absl::StrCat("max_in_flight must be 1 to ",
                                                   kMaxSharedRegionInFlight,
                                                   " with a shared_region, got ", max_in_flight));
  }
  return static_cast<int>(2 * max_in_flight);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SharedLeaseTable>> SharedLeaseTable::Open(const std::string& name,
                                                                         int64_t max_in_flight,
                                                                         int64_t max_keys) {
  absl::StatusOr<int> cells = CellsFor(max_in_flight);
  if (!cells.ok()) return cells.status();
  RegionSpec spec;
  spec.kind = "sluice.ConcurrencyLimiter";
  spec.description = absl::StrCat("max_in_flight=", max_in_flight);
  auto table = SharedTable::Open(name, std::move(spec), *cells, max_keys, /*fresh_cell=*/0);
  if (!table.ok()) return table.status();
  return std::unique_ptr<SharedLeaseTable>(new SharedLeaseTable(*std::move(table), max_in_flight));
}

LeaseStore::Grant SharedLeaseTable::Acquire(const KeyDigest& d, int64_t max_in_flight,
                                            int64_t now, int64_t expires_at) {
  // The region was created for pairs_ == Options::max_in_flight leases per key: with that cap
  // a free pair is the whole check. A smaller per-call cap is checked again after taking a pair:
  // if the key then holds more than the cap (acquirers raced, or permits of a larger cap are
  // still held), the pair is given back and the call refused. Two racing callers may both give
  // back (a refusal that one of them did not need); neither can keep a slot beyond the cap.
  Grant grant;
  absl::Status status = table_->Visit(d, [&](int64_t* pairs) {
    for (;;) {
      int64_t live = 0, earliest = std::numeric_limits<int64_t>::max();
      int64_t free = -1, free_token = 0, free_end = 0;
      for (int64_t j = 0; j < pairs_; ++j) {
        const int64_t token = Load(pairs + 2 * j), end = Load(pairs + 2 * j + 1);
        if (token != 0 && end > now) {
          ++live;
          earliest = std::min(earliest, end);
        } else if (free < 0) {
          free = j, free_token = token, free_end = end;
        }
      }
      if (free < 0) {
        grant.in_flight = live;
        grant.earliest_expiry = earliest;
        return;
      }
      const uint64_t token = NewToken();
      // Succeeds only if the pair is still exactly the free or expired lease we saw.
      if (live >= max_in_flight) {  // a per-call cap below the slots: already full
        grant.in_flight = live;
        grant.earliest_expiry = earliest;
        return;
      }
      if (CompareExchange16(pairs + 2 * free, free_token, free_end, static_cast<int64_t>(token),
                            expires_at)) {
        if (max_in_flight < pairs_) {
          int64_t held = 0;
          earliest = std::numeric_limits<int64_t>::max();
          for (int64_t j = 0; j < pairs_; ++j) {
            const int64_t t = Load(pairs + 2 * j), end = Load(pairs + 2 * j + 1);
            if (t != 0 && end > now) {
              ++held;
              if (j != free) earliest = std::min(earliest, end);
            }
          }
          if (held > max_in_flight) {
            CompareExchange16(pairs + 2 * free, static_cast<int64_t>(token), expires_at, 0, 0);
            grant.in_flight = held - 1;
            grant.earliest_expiry = earliest;
            return;
          }
          live = held - 1;
        }
        grant.lease_id = token;
        grant.in_flight = live + 1;
        return;
      }
    }
  });
  if (!status.ok()) grant.table_full = true;
  return grant;
}

bool SharedLeaseTable::Release(const KeyDigest& d, uint64_t lease_id, int64_t expires_at) {
  bool held = false;
  table_->VisitExisting(d, [&](int64_t* pairs) {
    for (int64_t j = 0; j < pairs_ && !held; ++j) {
      held = CompareExchange16(pairs + 2 * j, static_cast<int64_t>(lease_id), expires_at, 0, 0);
    }
  });
  return held;
}

bool SharedLeaseTable::Renew(const KeyDigest& d, uint64_t lease_id, int64_t expires_at,
                             int64_t new_expires_at) {
  bool renewed = false;
  table_->VisitExisting(d, [&](int64_t* pairs) {
    for (int64_t j = 0; j < pairs_ && !renewed; ++j) {
      renewed = CompareExchange16(pairs + 2 * j, static_cast<int64_t>(lease_id), expires_at,
                                  static_cast<int64_t>(lease_id), new_expires_at);
    }
  });
  return renewed;
}

int64_t SharedLeaseTable::InFlight(const KeyDigest& d, int64_t now) {
  int64_t live = 0;
  table_->VisitExisting(d, [&](int64_t* pairs) {
    for (int64_t j = 0; j < pairs_; ++j) {
      if (Load(pairs + 2 * j) != 0 && Load(pairs + 2 * j + 1) > now) ++live;
    }
  });
  return live;
}

int64_t SharedLeaseTable::ReclaimExpired(int64_t now) {
  int64_t reclaimed = 0;
  table_->ForEachKey([&](int64_t* pairs) {
    for (int64_t j = 0; j < pairs_; ++j) {
      const int64_t token = Load(pairs + 2 * j), end = Load(pairs + 2 * j + 1);
      if (token != 0 && end <= now && CompareExchange16(pairs + 2 * j, token, end, 0, 0)) {
        ++reclaimed;
      }
    }
  });
  return reclaimed;
}

}  // namespace internal

absl::StatusOr<int64_t> SharedRegionBytesForLeases(int64_t max_in_flight, int64_t max_keys) {
  constexpr absl::string_view kName = "sluice.SharedRegionBytesForLeases";
  absl::StatusOr<int> cells = internal::CellsFor(max_in_flight);
  absl::StatusOr<int64_t> words =
      cells.ok() ? internal::SharedTable::WordsFor(*cells, max_keys) : cells.status();
  if (!words.ok()) {
    return absl::Status(words.status().code(), absl::StrCat(kName, ": ", words.status().message()));
  }
  return internal::SharedRegion::BytesFor(*words);
}

}  // namespace v1
}  // namespace sluice
