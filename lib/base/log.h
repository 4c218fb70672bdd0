// Internal: sending messages to the application's log handler (sluice/log.h), rate-limited.
#ifndef SLUICE_LIB_LOG_H_
#define SLUICE_LIB_LOG_H_

#include <atomic>
#include <cstdint>
#include <string_view>

#include "sluice/log.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Sends `message` to the handler now.
void Log(LogLevel level, std::string_view message);

// One kind of message from one object: logged at most once per kLogInterval, the next message
// saying how many were suppressed. Lock-free; a member of the object that logs.
class LogThrottle {
 public:
  void Log(LogLevel level, std::string_view message);

 private:
  std::atomic<int64_t> next_nanos_{0};  // steady clock; 0: the first message goes out
  std::atomic<int64_t> suppressed_{0};
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_LOG_H_
