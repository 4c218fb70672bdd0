// The failure vocabulary (sluice/failure.h): names, and which failures blame the target.
#include "sluice/failure.h"

#include <array>

namespace sluice {
inline namespace v1 {

namespace {
constexpr std::array<std::string_view, kFailureCount> kNames = {
    "none",   "connect", "timeout",        "reset",          "rate_limited", "server",
    "auth",   "context_length", "content_filter", "client", "abandoned"};
}  // namespace

std::string_view FailureName(Failure failure) {
  const auto i = static_cast<size_t>(failure);
  return i < kNames.size() ? kNames[i] : "unknown";
}

std::optional<Failure> FailureFromName(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<Failure>(i);
  }
  return std::nullopt;
}

bool BlamesTarget(Failure failure) {
  switch (failure) {
    case Failure::kConnect:
    case Failure::kTimeout:
    case Failure::kReset:
    case Failure::kRateLimited:
    case Failure::kServer:
    case Failure::kAuth:
      return true;
    case Failure::kNone:
    case Failure::kContextLength:
    case Failure::kContentFilter:
    case Failure::kClient:
    case Failure::kAbandoned:
      return false;
  }
  return false;
}

}  // namespace v1
}  // namespace sluice
