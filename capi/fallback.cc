// Failure classification, Retry-After, and the fallback policy with its calls
// (sluice/failure.h, sluice/provider_error.h, sluice/fallback_policy.h).
#include <optional>

#include "capi/internal.h"
#include "capi/params.h"

using namespace sluice_capi;  // NOLINT: the C entry points below use the helpers unqualified

namespace sluice_capi {

void StepToC(const char* function, const sluice::FallbackPolicy::Step& step,
             sluice_fallback_step* out) {
  if (out == nullptr) return;
  out->kind = static_cast<int>(step.kind);
  out->attempt = step.attempt;
  out->target_index = static_cast<int64_t>(step.target_index);
  out->delay_nanos = absl::ToInt64Nanoseconds(step.delay);
  out->timeout_nanos =
      step.timeout == absl::InfiniteDuration() ? -1 : absl::ToInt64Nanoseconds(step.timeout);
  out->retry = step.retry ? 1 : 0;
  out->failure = static_cast<int>(step.failure);
  out->status = FromStatus(function, step.status);
  out->retry_after_nanos = absl::ToInt64Nanoseconds(step.retry_after);
}

}  // namespace sluice_capi

namespace {

// The C enums mirror the C++ ones value for value.
static_assert(static_cast<int>(sluice::TransportError::kReset) == SLUICE_TRANSPORT_RESET);
static_assert(static_cast<int>(sluice::FallbackPolicy::Step::Kind::kFailed) == SLUICE_STEP_FAILED);
static_assert(static_cast<int>(sluice::CircuitBreaker::State::kHalfOpen) ==
              SLUICE_BREAKER_HALF_OPEN);

absl::StatusOr<std::vector<sluice::FallbackPolicy::Target>> TargetsFromC(
    const sluice_fallback_target* targets, size_t target_count) {
  if (targets == nullptr && target_count != 0) return absl::InvalidArgumentError("targets is NULL");
  std::vector<sluice::FallbackPolicy::Target> out;
  for (size_t i = 0; i < target_count; ++i) {
    const sluice_fallback_target& t = targets[i];
    if ((t.name == nullptr && t.name_len != 0) || (t.model == nullptr && t.model_len != 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("targets[", i, "]: a NULL string with a length"));
    }
    out.push_back({.name = std::string(Bytes(t.name, t.name_len)),
                   .model = std::string(Bytes(t.model, t.model_len)),
                   .balancer = t.balancer != nullptr ? t.balancer->rep : nullptr,
                   .breaker = std::nullopt});
  }
  return out;
}

}  // namespace

extern "C" {

// ---- failures ----------------------------------------------------------------------------------

int sluice_classify(int http_status, int transport, const char* error_body, size_t error_body_len) {
  if (transport < SLUICE_TRANSPORT_NONE || transport > SLUICE_TRANSPORT_RESET) return -1;
  if (error_body == nullptr && error_body_len != 0) return -1;
  try {  // not Guard: the result is a sluice_failure, not a status
    sluice::AttemptOutcome o;
    o.http_status = http_status;
    o.transport = static_cast<sluice::TransportError>(transport);
    o.error_body = Bytes(error_body, error_body_len);
    return static_cast<int>(sluice::Classify(o));
  } catch (...) {
    return -1;
  }
}

int sluice_parse_retry_after(const char* value, size_t len, int64_t now_unix_nanos,
                             int64_t* out_nanos) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (out_nanos == nullptr) return NullArgument(fn, "out_nanos");
    if (value == nullptr && len != 0) return NullArgument(fn, "value");
    std::optional<absl::Duration> d =
        sluice::ParseRetryAfter(Bytes(value, len), absl::FromUnixNanos(now_unix_nanos));
    if (!d) {
      return Invalid(fn, absl::StrCat("not a Retry-After value: '",
                                      std::string(Bytes(value, len).substr(0, 64)), "'"));
    }
    *out_nanos = absl::ToInt64Nanoseconds(*d);
    return SLUICE_OK;
  });
}

// ---- fallback policy ---------------------------------------------------------------------------

int sluice_fallback_policy_create(const sluice_options* options,
                                  const sluice_fallback_target* targets, size_t target_count,
                                  const sluice_clock* clock, sluice_fallback_policy** out) {
  return CreateHandle<kFallback, sluice::FallbackPolicy::Options>(
      __func__, options, out,
      [&](sluice::FallbackPolicy::Options& o)
          -> absl::StatusOr<std::unique_ptr<sluice::FallbackPolicy>> {
        auto chain = TargetsFromC(targets, target_count);
        if (!chain.ok()) return chain.status();
        o.targets = *std::move(chain);
        return sluice::FallbackPolicy::Create(std::move(o), ClockOf(clock));
      });
}

void sluice_fallback_policy_destroy(sluice_fallback_policy* policy) { delete policy; }

int sluice_fallback_policy_breaker_state(const sluice_fallback_policy* policy,
                                         size_t target_index) {
  if (policy == nullptr || target_index >= policy->rep->options().targets.size()) return -1;
  try {  // not Guard: the result is a sluice_breaker_state, not a status
    return static_cast<int>(policy->rep->Targets()[target_index].breaker.state);
  } catch (...) {
    return -1;
  }
}

int sluice_fallback_policy_begin(sluice_fallback_policy* policy, int64_t deadline_nanos,
                                 sluice_fallback_call** out, sluice_fallback_step* step) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (policy == nullptr) return NullArgument(fn, "policy");
    if (deadline_nanos < 0) return Invalid(fn, "deadline_nanos must be >= 0");
    sluice::FallbackPolicy::CallOptions call_options;
    call_options.deadline = absl::Nanoseconds(deadline_nanos);
    *out = new sluice_fallback_call{policy->rep->Begin(call_options)};
    StepToC(fn, (*out)->rep.step(), step);
    return SLUICE_OK;
  });
}

const char* sluice_fallback_call_target(const sluice_fallback_call* call, size_t* len) {
  return call == nullptr ? View({}, len) : View(call->rep.step().target, len);
}
const char* sluice_fallback_call_model(const sluice_fallback_call* call, size_t* len) {
  return call == nullptr ? View({}, len) : View(call->rep.step().model, len);
}
const char* sluice_fallback_call_endpoint(const sluice_fallback_call* call, size_t* len) {
  return call == nullptr ? View({}, len) : View(call->rep.step().endpoint_id, len);
}

int sluice_fallback_call_next(sluice_fallback_call* call, int http_status, int transport,
                              const char* error_body, size_t error_body_len,
                              int64_t retry_after_nanos, int64_t latency_nanos,
                              sluice_fallback_step* step) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (call == nullptr) return NullArgument(fn, "call");
    if (transport < SLUICE_TRANSPORT_NONE || transport > SLUICE_TRANSPORT_RESET) {
      return Invalid(fn, absl::StrCat("transport must be a sluice_transport_error, got ", transport));
    }
    if (error_body == nullptr && error_body_len != 0) return NullArgument(fn, "error_body");
    if (retry_after_nanos < 0 || latency_nanos < 0) {
      return Invalid(fn, "retry_after_nanos and latency_nanos must be >= 0");
    }
    if (call->rep.step().kind != sluice::FallbackPolicy::Step::Kind::kAttempt) {
      return Fail(SLUICE_FAILED_PRECONDITION,
                  absl::StrCat(fn, ": the call has ended; there is no attempt to report"));
    }
    sluice::AttemptOutcome o;
    o.http_status = http_status;
    o.transport = static_cast<sluice::TransportError>(transport);
    o.error_body = Bytes(error_body, error_body_len);
    o.retry_after = absl::Nanoseconds(retry_after_nanos);
    o.latency = absl::Nanoseconds(latency_nanos);
    StepToC(fn, call->rep.Next(o), step);
    return SLUICE_OK;
  });
}

int sluice_fallback_call_mark_first_byte(sluice_fallback_call* call) {
  if (call == nullptr) return NullArgument(__func__, "call");
  call->rep.MarkFirstByte();
  return SLUICE_OK;
}

void sluice_fallback_call_destroy(sluice_fallback_call* call) { delete call; }

}  // extern "C"
