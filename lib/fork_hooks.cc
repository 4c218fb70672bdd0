#include "fork_hooks.h"

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <vector>

namespace sluice {
inline namespace v1 {
namespace internal {

struct ForkHookRunner {
  static std::mutex& Mutex() {
    static auto* mu = new std::mutex;  // never destroyed: fork() may run during exit
    return *mu;
  }
  static std::vector<ForkHooks*>& All() {
    static auto* all = new std::vector<ForkHooks*>;
    return *all;
  }
  static void Prepare() {
    Mutex().lock();  // held across fork(): no registration changes mid-fork
    for (ForkHooks* h : All()) {
      if (h->prepare_) h->prepare_();
    }
  }
  static void Parent() {
    for (ForkHooks* h : All()) {
      if (h->parent_) h->parent_();
    }
    Mutex().unlock();
  }
  static void Child() {
    for (ForkHooks* h : All()) {
      if (h->child_) h->child_();
    }
    Mutex().unlock();
  }
};

ForkHooks::ForkHooks(std::function<void()> prepare, std::function<void()> parent,
                     std::function<void()> child)
    : prepare_(std::move(prepare)), parent_(std::move(parent)), child_(std::move(child)) {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork(ForkHookRunner::Prepare, ForkHookRunner::Parent, ForkHookRunner::Child);
  });
  std::lock_guard<std::mutex> lock(ForkHookRunner::Mutex());
  ForkHookRunner::All().push_back(this);
}

ForkHooks::~ForkHooks() {
  std::lock_guard<std::mutex> lock(ForkHookRunner::Mutex());
  auto& all = ForkHookRunner::All();
  all.erase(std::remove(all.begin(), all.end(), this), all.end());
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
