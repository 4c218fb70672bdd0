#include "base/fork_hooks.h"

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <vector>

namespace sluice {
inline namespace v1 {
namespace internal {

struct ForkHookRunner {
  // Recursive: a hook may register or unregister an object (a child hook that builds a fresh
  // table) while the runner holds the registry across the fork.
  static std::recursive_mutex& RegistryMutex() {
    static auto* mu = new std::recursive_mutex;  // never destroyed: fork() may run during exit
    return *mu;
  }
  static std::vector<ForkHooks*>& All() {
    static auto* all = new std::vector<ForkHooks*>;
    return *all;
  }
  static bool Registered(ForkHooks* h) {
    const auto& all = All();
    return std::find(all.begin(), all.end(), h) != all.end();
  }
  static void Prepare() {
    RegistryMutex().lock();  // held across fork(): no registration changes mid-fork
    const std::vector<ForkHooks*> hooks = All();  // hooks may change the registry
    for (auto it = hooks.rbegin(); it != hooks.rend(); ++it) {
      if ((*it)->prepare_ && Registered(*it)) (*it)->prepare_();
    }
  }
  static void Parent() {
    const std::vector<ForkHooks*> hooks = All();
    for (ForkHooks* h : hooks) {
      if (h->parent_ && Registered(h)) h->parent_();
    }
    RegistryMutex().unlock();
  }
  static void Child() {
    // A fresh mutex, not unlock(): glibc's recursive mutex records its owner's thread id, and the
    // forking thread has a new one in the child, so unlock() fails (EPERM, ignored) and the next
    // registration or destruction in the child waited forever. The child has one thread: no one
    // else can hold it.
    new (&RegistryMutex()) std::recursive_mutex();
    const std::vector<ForkHooks*> hooks = All();
    for (ForkHooks* h : hooks) {
      if (h->child_ && Registered(h)) h->child_();
    }
  }
};

ForkHooks::ForkHooks(std::function<void()> prepare, std::function<void()> parent,
                     std::function<void()> child)
    : prepare_(std::move(prepare)), parent_(std::move(parent)), child_(std::move(child)) {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork(ForkHookRunner::Prepare, ForkHookRunner::Parent, ForkHookRunner::Child);
  });
  std::lock_guard<std::recursive_mutex> lock(ForkHookRunner::RegistryMutex());
  ForkHookRunner::All().push_back(this);
}

ForkHooks::~ForkHooks() {
  std::lock_guard<std::recursive_mutex> lock(ForkHookRunner::RegistryMutex());
  auto& all = ForkHookRunner::All();
  all.erase(std::remove(all.begin(), all.end(), this), all.end());
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
