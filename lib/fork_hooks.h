// Internal: fork() hooks for objects that own threads, locks or per-process state.
//
// An object holds a ForkHooks registration for as long as its hooks may run. On fork(), every
// registered `prepare` runs in the forking thread before the fork (take the object's locks so no
// other thread is inside them), then `parent` in the parent or `child` in the child (release them;
// in the child, also forget what belonged to the parent: threads, sockets, leases).
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

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_FORK_HOOKS_H_
