// sluice's log messages (sluice/log.h), delivered to Python's `logging` as the "sluice" logger.
//
// The handler runs on whichever thread logs, sluice's Redis connection threads included, and
// such a thread must never wait for the GIL: the thread holding it may be waiting for a lock the
// connection thread holds. So messages are queued, and a pending call (Py_AddPendingCall, which
// needs no GIL) hands them to `logging` from the interpreter's main thread.
#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <mutex>
#include <new>
#include <string>
#include <string_view>

#include "bindings.h"
#include "sluice/log.h"

namespace sluice_python {
namespace {

struct Message {
  sluice::LogLevel level;
  std::string text;
};

// Bounded: a flood (a main thread that never runs Python) costs memory only up to this.
constexpr size_t kMaxQueued = 1000;

// Never destroyed: a connection thread may log while the interpreter exits.
std::mutex& QueueMutex() {
  static auto* mu = new std::mutex;
  return *mu;
}
std::deque<Message>& Queue() {
  static auto* queue = new std::deque<Message>;
  return *queue;
}
std::atomic<bool> delivery_scheduled{false};
std::atomic<int64_t> dropped{0};

int LevelNumber(sluice::LogLevel level) {  // logging.ERROR, WARNING, INFO
  switch (level) {
    case sluice::LogLevel::kError: return 40;
    case sluice::LogLevel::kWarning: return 30;
    case sluice::LogLevel::kInfo: return 20;
  }
  return 30;
}

// In the main thread, with the GIL.
int Deliver(void* /*unused*/) {
  delivery_scheduled.store(false);
  std::deque<Message> batch;
  {
    std::lock_guard<std::mutex> lock(QueueMutex());
    batch.swap(Queue());
  }
  try {
    py::object logger = py::module_::import("logging").attr("getLogger")("sluice");
    for (const Message& m : batch) {
      logger.attr("log")(LevelNumber(m.level), "%s",
                         py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(
                             m.text.data(), static_cast<Py_ssize_t>(m.text.size()), "replace")));
    }
    if (const int64_t lost = dropped.exchange(0); lost > 0) {
      logger.attr("warning")("%d sluice log messages were dropped (the queue was full)", lost);
    }
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("sluice log delivery");  // a broken handler must not raise here
  }
  return 0;
}

void Handle(sluice::LogLevel level, std::string_view text) {
  if (!Py_IsInitialized()) {  // the interpreter is gone: stderr, as sluice does by default
    std::fprintf(stderr, "sluice: %.*s\n", static_cast<int>(text.size()), text.data());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(QueueMutex());
    if (Queue().size() >= kMaxQueued) {
      dropped.fetch_add(1);
      return;
    }
    Queue().push_back({level, std::string(text)});
  }
  if (!delivery_scheduled.exchange(true) && Py_AddPendingCall(&Deliver, nullptr) != 0) {
    delivery_scheduled.store(false);  // the pending-call queue is full: the next message retries
  }
}

}  // namespace

void BindLog(py::module_& m) {
  // A fork() child gets a fresh queue lock: a parent thread may have held it at the fork.
  pthread_atfork(nullptr, nullptr, [] { new (&QueueMutex()) std::mutex(); });
  sluice::SetLogHandler(&Handle);
  m.def(
      "_deliver_log_messages", [] { Deliver(nullptr); },
      "Hands queued log messages to `logging` now (they are delivered on their own soon after\n"
      "they are logged; tests use this to wait for none).");
}

}  // namespace sluice_python
