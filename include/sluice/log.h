// -----------------------------------------------------------------------------
// File: sluice/log.h
// -----------------------------------------------------------------------------
//
// Where sluice reports what an application must hear about but that no caller is waiting for: a
// Redis store that cannot authenticate, a replica where a master was expected, a connection lost
// and restored. By default the messages go to stderr; an application routes them elsewhere (its
// own logger; the Python package to `logging`) with `SetLogHandler`.
//
// Messages are rate-limited at the source: one message per kind and per object at most every
// `kLogInterval`; the next one says how many were suppressed in between. So a misconfigured
// store answering 10,000 decisions a second logs once every 10 seconds, not 10,000 times.
//
// Example:
//
//   sluice::SetLogHandler([](sluice::LogLevel level, std::string_view message) {
//     my_logger.Log(level == sluice::LogLevel::kError ? ERROR : WARNING, message);
//   });
//
// Thread-safety: SetLogHandler may be called from any thread at any time. The handler is called
// from any thread (sluice's Redis connection threads included), one message at a time per
// calling thread, possibly concurrently from several. It must not block for long and must not
// call back into sluice.

#ifndef SLUICE_LOG_H_
#define SLUICE_LOG_H_

#include <functional>
#include <string_view>

#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {

enum class LogLevel {
  kInfo,     // a recovery: the connection to Redis is back
  kWarning,  // a transient problem: Redis unreachable, the failure mode applies meanwhile
  kError,    // a configuration error: nothing will work until someone fixes it
};

// How often one kind of message from one object may be logged.
inline constexpr absl::Duration kLogInterval = absl::Seconds(10);

// The handler of every later message; an empty function restores the default (stderr, one line
// per message, prefixed "sluice: ").
using LogHandler = std::function<void(LogLevel level, std::string_view message)>;
void SetLogHandler(LogHandler handler);

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LOG_H_
