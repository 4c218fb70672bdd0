// Statuses of the C ABI: absl::Status codes become the pinned sluice_status codes through the one
// status table every language reads (include/sluice/internal/status_table.h), plus this thread's
// last message, the version, and the decision every admission call hands out.
#include "capi/internal.h"
#include "sluice/internal/status_table.h"

namespace sluice_capi {
namespace {

using sluice::internal::kOutOfMemoryCCode;
using sluice::internal::StatusEntryOf;

// The table's C codes are c.h's enumerators.
static_assert(StatusEntryOf(absl::StatusCode::kOk).c_code == SLUICE_OK);
static_assert(StatusEntryOf(absl::StatusCode::kInvalidArgument).c_code == SLUICE_INVALID_ARGUMENT);
static_assert(StatusEntryOf(absl::StatusCode::kResourceExhausted).c_code ==
              SLUICE_RESOURCE_EXHAUSTED);
static_assert(StatusEntryOf(absl::StatusCode::kFailedPrecondition).c_code ==
              SLUICE_FAILED_PRECONDITION);
static_assert(StatusEntryOf(absl::StatusCode::kUnavailable).c_code == SLUICE_UNAVAILABLE);
static_assert(StatusEntryOf(absl::StatusCode::kDeadlineExceeded).c_code ==
              SLUICE_DEADLINE_EXCEEDED);
static_assert(kOutOfMemoryCCode == SLUICE_OUT_OF_MEMORY);
static_assert(StatusEntryOf(absl::StatusCode::kInternal).c_code == SLUICE_INTERNAL);
static_assert(StatusEntryOf(absl::StatusCode::kNotFound).c_code == SLUICE_NOT_FOUND);
static_assert(StatusEntryOf(absl::StatusCode::kAlreadyExists).c_code == SLUICE_ALREADY_EXISTS);
static_assert(StatusEntryOf(absl::StatusCode::kAborted).c_code == SLUICE_ABORTED);
static_assert(StatusEntryOf(absl::StatusCode::kPermissionDenied).c_code ==
              SLUICE_PERMISSION_DENIED);

thread_local std::string last_error;

}  // namespace

int Fail(int code, std::string message) {
  last_error = std::move(message);
  return code;
}

int FromStatus(const char* function, const absl::Status& status) {
  if (status.ok()) return SLUICE_OK;
  return Fail(StatusEntryOf(status.code()).c_code, absl::StrCat(function, ": ", status.message()));
}

void ToC(const sluice::Decision& d, sluice_decision* out) {
  if (out == nullptr) return;
  out->allowed = d.allowed ? 1 : 0;
  out->limit = d.limit;
  out->remaining = d.remaining;
  out->retry_after_nanos = d.retry_after_nanos;
  out->reset_after_nanos = d.reset_after_nanos;
  out->delay_nanos = d.delay_nanos;
  out->window_nanos = d.window_nanos;
}

}  // namespace sluice_capi

extern "C" {

const char* sluice_status_name(int status) {
  if (status == sluice::internal::kOutOfMemoryCCode) return "SLUICE_OUT_OF_MEMORY";
  const sluice::internal::StatusEntry* entry = sluice::internal::StatusEntryOfC(status);
  return entry == nullptr ? "SLUICE_UNKNOWN" : entry->c_name;
}

const char* sluice_last_error_message(void) { return sluice_capi::last_error.c_str(); }

int sluice_version_number(void) { return SLUICE_VERSION_NUMBER; }
const char* sluice_version_string(void) { return SLUICE_VERSION_STRING; }

}  // extern "C"
