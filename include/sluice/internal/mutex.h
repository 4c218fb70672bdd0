// Internal: the one mutex type inside sluice. Not for callers.
//
// A pthread mutex (std::mutex) with Abseil's thread-safety annotations, rather than absl::Mutex,
// for two reasons:
//   * fork(): Debian's Abseil (built without NDEBUG) runs its deadlock detector on every
//     absl::Mutex operation under one process-wide spinlock; a child forked while any parent
//     thread was inside it hangs on its first absl::Mutex operation, and nothing in the child can
//     release that spinlock. A pthread mutex has no global state, and a fork hook can give the
//     child a fresh one (ResetInForkChild), as glibc does for its own locks. Gunicorn and Celery
//     fork workers from processes whose threads may be inside sluice.
//   * ThreadSanitizer sees pthread mutexes natively; Debian's Abseil is not instrumented, so TSan
//     would report every access an absl::Mutex guards as a race.
// It is BasicLockable (std::lock_guard, std::unique_lock, std::condition_variable_any).
#ifndef SLUICE_INTERNAL_MUTEX_H_
#define SLUICE_INTERNAL_MUTEX_H_

#include <mutex>
#include <new>

#include "absl/base/thread_annotations.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

  // For a fork() child hook only: the mutex becomes fresh and unlocked, whatever state a parent
  // thread (which does not exist in the child) or this thread's prepare hook left it in.
  void ResetInForkChild() { new (&mu_) std::mutex(); }

 private:
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_INTERNAL_MUTEX_H_
