// Internal: the one table of how sluice reports an error in each language. Not part of the stable
// API; the C ABI (capi/) and the Python extension (bindings/python) both read it, so an
// absl::StatusCode means the same thing everywhere:
//
//   C++       the absl::Status every call returns
//   C         the pinned sluice_status code and its name (sluice/c.h)
//   Python    the exception class of sluice._errors (each a sluice.Error)
//
// Codes absl has and sluice never returns map to Internal (a bug in sluice).
#ifndef SLUICE_INTERNAL_STATUS_TABLE_H_
#define SLUICE_INTERNAL_STATUS_TABLE_H_

#include "absl/status/status.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct StatusEntry {
  absl::StatusCode code;
  int c_code;              // the value of the sluice_status enum (sluice/c.h)
  const char* c_name;      // its name
  const char* python;      // the class in sluice._errors
};

inline constexpr StatusEntry kStatusTable[] = {
    {absl::StatusCode::kOk, 0, "SLUICE_OK", nullptr},
    {absl::StatusCode::kInvalidArgument, 1, "SLUICE_INVALID_ARGUMENT", "InvalidArgument"},
    {absl::StatusCode::kResourceExhausted, 2, "SLUICE_RESOURCE_EXHAUSTED", "CapacityError"},
    {absl::StatusCode::kFailedPrecondition, 3, "SLUICE_FAILED_PRECONDITION", "FailedPrecondition"},
    {absl::StatusCode::kUnavailable, 4, "SLUICE_UNAVAILABLE", "Unavailable"},
    {absl::StatusCode::kDeadlineExceeded, 5, "SLUICE_DEADLINE_EXCEEDED", "DeadlineExceeded"},
    // 6 is SLUICE_OUT_OF_MEMORY: C only (std::bad_alloc); Python raises MemoryError itself.
    {absl::StatusCode::kInternal, 7, "SLUICE_INTERNAL", "Error"},
    {absl::StatusCode::kNotFound, 8, "SLUICE_NOT_FOUND", "NotFound"},
    {absl::StatusCode::kAlreadyExists, 9, "SLUICE_ALREADY_EXISTS", "AlreadyExists"},
    {absl::StatusCode::kAborted, 10, "SLUICE_ABORTED", "StreamBroken"},
    {absl::StatusCode::kPermissionDenied, 11, "SLUICE_PERMISSION_DENIED", "PermissionDenied"},
};

inline constexpr int kOutOfMemoryCCode = 6;

// The entry of `code`; Internal's for codes sluice never returns.
constexpr const StatusEntry& StatusEntryOf(absl::StatusCode code) {
  for (const StatusEntry& e : kStatusTable) {
    if (e.code == code) return e;
  }
  return kStatusTable[6];  // kInternal
}

// The entry of a C code, or nullptr (SLUICE_OUT_OF_MEMORY and unknown codes have none).
constexpr const StatusEntry* StatusEntryOfC(int c_code) {
  for (const StatusEntry& e : kStatusTable) {
    if (e.c_code == c_code) return &e;
  }
  return nullptr;
}

static_assert(StatusEntryOf(absl::StatusCode::kInternal).c_code == 7, "kInternal's entry");

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_INTERNAL_STATUS_TABLE_H_
