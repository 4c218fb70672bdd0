// Where objects get their time and keep their state: manual clocks, the Redis store (cluster
// scope) and shared-memory regions (host scope).
#include "capi/internal.h"
#include "capi/params.h"

using namespace sluice_capi;  // NOLINT: the C entry points below use the helpers unqualified

extern "C" {

int sluice_manual_clock_create(int64_t start_nanos, sluice_clock** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (start_nanos < 0 || start_nanos > sluice::kMaxClockNanos) {
      return Invalid(fn, absl::StrCat("start_nanos must be in [0, 2^62], got ", start_nanos));
    }
    *out = new sluice_clock{sluice::ManualClock(start_nanos)};
    return SLUICE_OK;
  });
}

int sluice_manual_clock_advance(sluice_clock* clock, int64_t nanos) {
  if (clock == nullptr) return NullArgument(__func__, "clock");
  clock->rep.AdvanceNanos(nanos);  // stops at 0 and 2^62: never wraps
  return SLUICE_OK;
}

int64_t sluice_clock_now_nanos(const sluice_clock* clock) { return ClockOf(clock)->NowNanos(); }

void sluice_clock_destroy(sluice_clock* clock) { delete clock; }

int sluice_redis_store_create(const sluice_options* options, sluice_redis_store** out) {
  return CreateHandle<kRedisStore, sluice::RedisOptions>(
      __func__, options, out, [&](sluice::RedisOptions& o) { return sluice::RedisStore::Create(o); });
}

void sluice_redis_store_destroy(sluice_redis_store* store) { delete store; }

int sluice_shared_region_remove(const char* name, size_t len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (name == nullptr && len != 0) return NullArgument(fn, "name");
    return FromStatus(fn, sluice::RemoveSharedRegion(len == 0 ? "" : std::string(name, len)));
  });
}

}  // extern "C"
