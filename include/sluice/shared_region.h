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
//   options.shared_region = "dify-tenant-rpm";     // same name and windows in every worker
//   auto limiter = sluice::RateLimiter::Create(options).value();
//
// The region is lock-free: a process killed at any instant leaves it usable and exact. Its layout
// is versioned, and a process that opens it with another configuration (or another sluice layout
// version) gets FailedPrecondition with both configurations in the message. Capacity is fixed at
// creation by `max_keys`; key slots are never freed, so a region is sized for the distinct keys of
// its lifetime and removed (RemoveSharedRegion) when the deployment's limits change.
//
// Host scope needs a steady clock shared by all processes: Clock::Steady() (CLOCK_MONOTONIC) is.
// Requires x86-64 (16-byte compare-and-swap).

#ifndef SLUICE_SHARED_REGION_H_
#define SLUICE_SHARED_REGION_H_

#include <string>

#include "absl/status/status.h"

namespace sluice {
inline namespace v1 {

// Removes the region `name` from /dev/shm. Processes that have it open keep using their mapping;
// the next process to open the name creates a fresh region. NotFound if it does not exist.
absl::Status RemoveSharedRegion(const std::string& name);

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_SHARED_REGION_H_
