#include "cache/flight.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

namespace sluice {
inline namespace v1 {
namespace internal {

Waiter::Waiter() : fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
Waiter::~Waiter() {
  if (fd >= 0) close(fd);
}

void Waiter::Wake() {
  ready.store(true, std::memory_order_release);
  Nudge();
}

void Waiter::Nudge() const {
  const uint64_t one = 1;
  if (fd >= 0) (void)!write(fd, &one, sizeof(one));
}

void Waiter::Drain() const {
  uint64_t count;
  if (fd >= 0) (void)!read(fd, &count, sizeof(count));
}

std::deque<std::shared_ptr<Waiter>> Flight::TakeWaiters() {
  std::deque<std::shared_ptr<Waiter>> taken;
  MutexLock lock(&mu);
  taken.swap(waiters);
  return taken;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
