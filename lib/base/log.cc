#include "base/log.h"

#include <cstdio>
#include <memory>
#include <mutex>

#include "sluice/internal/mutex.h"
#include <string>

#include "absl/strings/str_cat.h"
#include "base/fork_hooks.h"
#include "sluice/clock.h"

namespace sluice {
inline namespace v1 {

namespace {

// Replaced rarely, read for every message: the handler is copied out under the lock and called
// outside it, so a slow handler never holds up SetLogHandler or another thread's message.
// Held across fork() (a child of a process whose thread was logging would otherwise wait for it
// forever on its first message).
internal::Mutex& HandlerMutex() {
  static auto* mu = new internal::Mutex;  // never destroyed: connection threads may log during exit
  static auto* hooks = new internal::ForkHooks(
      [] { mu->lock(); }, [] { mu->unlock(); }, [] { mu->ResetInForkChild(); });
  (void)hooks;
  return *mu;
}
std::shared_ptr<const LogHandler>& Handler() {
  static auto* handler = new std::shared_ptr<const LogHandler>;
  return *handler;
}

}  // namespace

void SetLogHandler(LogHandler handler) {
  auto replacement =
      handler ? std::make_shared<const LogHandler>(std::move(handler)) : nullptr;
  internal::MutexLock lock(&HandlerMutex());
  Handler() = std::move(replacement);
}

namespace internal {

void Log(LogLevel level, std::string_view message) {
  std::shared_ptr<const LogHandler> handler;
  {
    internal::MutexLock lock(&HandlerMutex());
    handler = Handler();
  }
  if (handler != nullptr) {
    (*handler)(level, message);
    return;
  }
  const char* tag = level == LogLevel::kError ? "error" : level == LogLevel::kWarning ? "warning"
                                                                                      : "info";
  std::fprintf(stderr, "sluice: %s: %.*s\n", tag, static_cast<int>(message.size()),
               message.data());
}

void LogThrottle::Log(LogLevel level, std::string_view message) {
  const int64_t now = Clock::Steady()->NowNanos();
  int64_t next = next_nanos_.load(std::memory_order_relaxed);
  if (next != 0 && now < next) {
    suppressed_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // One thread wins the slot; the others count as suppressed.
  if (!next_nanos_.compare_exchange_strong(next, now + absl::ToInt64Nanoseconds(kLogInterval),
                                           std::memory_order_relaxed)) {
    suppressed_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const int64_t suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
  if (suppressed == 0) {
    internal::Log(level, message);
  } else {
    internal::Log(level, absl::StrCat(absl::string_view(message.data(), message.size()), " (", suppressed, " more like it since the last)"));
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
