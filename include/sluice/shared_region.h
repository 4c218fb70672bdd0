// -----------------------------------------------------------------------------
// File: sluice/shared_region.h
// -----------------------------------------------------------------------------
//
// Host scope: an object whose Options name a `shared_region` keeps its state in shared memory
// (/dev/shm/sluice.<name>), so every process on the host that opens the same name (the forked
// workers of one Gunicorn, unrelated Celery workers) decides against one limit, with no server.
//
//   sluice::RateLimiter::Options options;
//   options.windows = {sluice::Window::PerMinute(600)};
//   options.max_keys = 65536;                      // a 4 MiB region (see below)
//   options.shared_region = "dify-tenant-rpm";     // same name and windows in every worker
//   auto limiter = sluice::RateLimiter::Create(options).value();
//
// The region is lock-free: a process killed at any instant leaves it usable and exact. Its layout
// is versioned, and a process that opens it with another configuration (or another sluice layout
// version) gets FailedPrecondition with both configurations in the message. Capacity is fixed at
// creation by `max_keys`; key slots are never freed, so a region is sized for the distinct keys of
// its lifetime and removed (RemoveSharedRegion) when the deployment's limits change.
//
// Size. A region takes SharedRegionBytesForWindows (RateLimiter, TokenBudget, LeakyBucket) or
// SharedRegionBytesForLeases (ConcurrencyLimiter, Balancer) bytes of /dev/shm, all of them
// reserved when it is created: the default max_keys (1,048,576) takes 64 MiB + 4 KiB, as much as
// Docker gives a container's /dev/shm by default. When /dev/shm has no room, creation fails with
// ResourceExhausted naming the region, the bytes needed and the bytes free; it never crashes later
// for want of a page. docs/deployment.md has a table of sizes and the Docker settings.
//
// Creation. The first process to open a name creates the region; the others wait for it (up to
// 10 s). A creation that fails leaves no file behind. A creator that dies before finishing (even
// by SIGKILL) leaves an unfinished file that the next process to open the name takes over and
// creates afresh; only a creator that is alive but stuck for 10 s makes openers fail, with
// FailedPrecondition naming the file.
//
// Host scope needs a steady clock shared by all processes: Clock::Steady() (CLOCK_MONOTONIC) is.
// Requires Linux on x86-64 (16-byte compare-and-swap) and every process sharing a region to run
// the same sluice layout version.

#ifndef SLUICE_SHARED_REGION_H_
#define SLUICE_SHARED_REGION_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice {
inline namespace v1 {

// The largest `max_keys` an object with a `shared_region` accepts (1,073,741,824 keys: a
// one-window RateLimiter of that size takes 64 GiB). Larger values are InvalidArgument.
inline constexpr int64_t kMaxSharedRegionKeys = int64_t{1} << 30;

// The largest `max_in_flight` of a ConcurrencyLimiter with a `shared_region` (and the largest
// `shared_max_in_flight` of a Balancer).
inline constexpr int64_t kMaxSharedRegionInFlight = 4096;

// The bytes of /dev/shm the region of a host-scope RateLimiter or TokenBudget with `windows`
// windows, or of a LeakyBucket (`windows` = 1), takes for `max_keys` keys, header included.
// InvalidArgument, naming the field, unless 1 <= windows <= 8 and
// 1 <= max_keys <= kMaxSharedRegionKeys, the checks Create makes. Thread-safe.
absl::StatusOr<int64_t> SharedRegionBytesForWindows(int64_t windows, int64_t max_keys);

// The bytes of /dev/shm the region of a host-scope ConcurrencyLimiter takes, header included.
// A Balancer with `shared_region` takes SharedRegionBytesForLeases(shared_max_in_flight, 4096),
// plus 397,312 bytes for its cooldowns and ejections, in the region "<shared_region>.endpoints".
// InvalidArgument, naming the field, unless 1 <= max_in_flight <= kMaxSharedRegionInFlight and
// 1 <= max_keys <= kMaxSharedRegionKeys. Thread-safe.
absl::StatusOr<int64_t> SharedRegionBytesForLeases(int64_t max_in_flight, int64_t max_keys);

// Removes the region `name` from /dev/shm. Processes that have it open keep using their mapping;
// the next process to open the name creates a fresh region. NotFound if it does not exist.
absl::Status RemoveSharedRegion(const std::string& name);

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_SHARED_REGION_H_
