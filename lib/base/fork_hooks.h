// Internal: fork() hooks for objects that own threads, locks or per-process state.
//
// An object holds a ForkHooks registration for as long as its hooks may run. On fork(), every
// registered `prepare` runs in the forking thread before the fork, newest registration first
// (take the object's locks so no other thread is inside them; an object registered after the
// ones it calls into takes its own locks before theirs), then every `parent` in the parent or
// `child` in the child, oldest first (release them; in the child, also forget what belonged to
// the parent: threads, sockets, leases). Hooks may create or destroy registrations.
//
// Why it matters: Gunicorn and Celery fork workers from a process whose other threads may be
// inside sluice at that instant. Without the hooks a child inherits locks that no thread of its
// own will ever release, and data structures caught mid-update.
#ifndef SLUICE_LIB_FORK_HOOKS_H_
#define SLUICE_LIB_FORK_HOOKS_H_

#include <functional>

namespace sluice {
inline namespace v1 {
namespace internal {

class ForkHooks {
 public:
  // Each hook may be empty.
  ForkHooks(std::function<void()> prepare, std::function<void()> parent,
            std::function<void()> child);
  ~ForkHooks();  // unregisters; no hook of this object runs after it returns
  ForkHooks(const ForkHooks&) = delete;
  ForkHooks& operator=(const ForkHooks&) = delete;

 private:
  friend struct ForkHookRunner;
  std::function<void()> prepare_, parent_, child_;
};

// Locks a child may take are internal::Mutex (sluice/internal/mutex.h says why not absl::Mutex);
// a `child` hook calls ResetInForkChild() on them.

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_FORK_HOOKS_H_
