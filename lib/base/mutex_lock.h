// Internal: absl::MutexLock, visible to ThreadSanitizer.
//
// Debian's Abseil is built without -fsanitize=thread, so TSan cannot see absl::Mutex's own
// synchronisation and reports every access guarded by one as a race. In TSan builds this guard
// adds the happens-before edges (acquire after locking, release before unlocking) that an
// instrumented Abseil would have; elsewhere it is exactly absl::MutexLock.
#ifndef SLUICE_LIB_MUTEX_LOCK_H_
#define SLUICE_LIB_MUTEX_LOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define SLUICE_TSAN_ACQUIRE(addr) __tsan_acquire(addr)
#define SLUICE_TSAN_RELEASE(addr) __tsan_release(addr)
#else
#define SLUICE_TSAN_ACQUIRE(addr) ((void)(addr))
#define SLUICE_TSAN_RELEASE(addr) ((void)(addr))
#endif

namespace sluice {
inline namespace v1 {
namespace internal {

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
    SLUICE_TSAN_ACQUIRE(mu_);
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() {
    SLUICE_TSAN_RELEASE(mu_);
    mu_->Unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  absl::Mutex* const mu_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_MUTEX_LOCK_H_
