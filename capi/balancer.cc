// The balancer and its picks (sluice/balancer.h). A pick reports how its attempt ended in the one
// failure vocabulary (sluice/failure.h): sluice_pick_complete_failure.
#include <iterator>

#include "capi/internal.h"
#include "capi/params.h"

using namespace sluice_capi;  // NOLINT: the C entry points below use the helpers unqualified

namespace {

int PickInto(const char* function, absl::StatusOr<sluice::Balancer::Pick> pick,
             sluice_pick** out) {
  if (!pick.ok()) return FromStatus(function, pick.status());
  *out = new sluice_pick{*std::move(pick)};
  return SLUICE_OK;
}

int CompletePick(const char* function, sluice_pick* pick, int http_status,
                 sluice::Failure failure, int64_t ttft_nanos, int64_t latency_nanos) {
  return Guard(function, [&](const char* fn) -> int {
    if (pick == nullptr) return NullArgument(fn, "pick");
    if (ttft_nanos < 0 || latency_nanos < 0) {
      return Invalid(fn, "ttft_nanos and latency_nanos must be >= 0");
    }
    sluice::AttemptOutcome o;
    o.http_status = http_status;
    o.failure = failure;
    o.ttft = absl::Nanoseconds(ttft_nanos);
    o.latency = absl::Nanoseconds(latency_nanos);
    pick->rep.Complete(o);
    return SLUICE_OK;
  });
}

}  // namespace

extern "C" {

int sluice_balancer_create(const sluice_options* options, const sluice_clock* clock,
                           sluice_balancer** out) {
  return CreateHandle<kBalancer, sluice::Balancer::Options>(
      __func__, options, out,
      [&](sluice::Balancer::Options& o) {
        o.redis = options->redis;
        return sluice::Balancer::Create(o, ClockOf(clock));
      });
}

void sluice_balancer_destroy(sluice_balancer* balancer) { delete balancer; }

int sluice_balancer_add_endpoint(sluice_balancer* balancer, const char* id, size_t id_len,
                                 int64_t weight, int64_t max_concurrency,
                                 int64_t kv_capacity_blocks, const char* model, size_t model_len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (balancer == nullptr) return NullArgument(fn, "balancer");
    if (int rc = CheckKey(fn, id, id_len, "id"); rc != SLUICE_OK) return rc;
    if (int rc = CheckKey(fn, model, model_len, "model"); rc != SLUICE_OK) return rc;
    sluice::EndpointSpec e;
    e.id = std::string(Bytes(id, id_len));
    e.weight = weight;
    e.max_concurrency = max_concurrency;
    e.kv_capacity_blocks = kv_capacity_blocks;
    if (model_len > 0) e.labels.emplace("model", std::string(Bytes(model, model_len)));
    return FromStatus(fn, balancer->rep->AddEndpoint(e));
  });
}

int sluice_balancer_remove_endpoint(sluice_balancer* balancer, const char* id, size_t id_len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (balancer == nullptr) return NullArgument(fn, "balancer");
    if (int rc = CheckKey(fn, id, id_len, "id"); rc != SLUICE_OK) return rc;
    return FromStatus(fn, balancer->rep->RemoveEndpoint(Bytes(id, id_len)));
  });
}

int sluice_balancer_update_metrics(sluice_balancer* balancer, const char* id, size_t id_len,
                                   const char* text, size_t text_len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (balancer == nullptr) return NullArgument(fn, "balancer");
    if (int rc = CheckKey(fn, id, id_len, "id"); rc != SLUICE_OK) return rc;
    if (text == nullptr && text_len != 0) return NullArgument(fn, "text");
    return FromStatus(fn, balancer->rep->UpdateMetrics(Bytes(id, id_len), Bytes(text, text_len)));
  });
}

int64_t sluice_balancer_in_flight(const sluice_balancer* balancer, const char* id, size_t id_len) {
  if (balancer == nullptr || (id == nullptr && id_len != 0)) return -1;
  try {  // not Guard: the result is a count, not a status
    for (const sluice::EndpointStats& s : balancer->rep->Endpoints()) {
      if (s.id == Bytes(id, id_len)) return s.in_flight;
    }
  } catch (...) {
  }
  return -1;
}

int sluice_balancer_pick(sluice_balancer* balancer, const char* body, size_t body_len,
                         const char* affinity_key, size_t affinity_key_len, sluice_pick** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (balancer == nullptr) return NullArgument(fn, "balancer");
    if (body == nullptr && body_len != 0) return NullArgument(fn, "body");
    if (int rc = CheckKey(fn, affinity_key, affinity_key_len, "affinity_key"); rc != SLUICE_OK) {
      return rc;
    }
    absl::StatusOr<sluice::LlmRequest> request = sluice::ParseLlmRequest(Bytes(body, body_len));
    if (!request.ok()) return FromStatus(fn, request.status());
    return PickInto(fn, balancer->rep->PickEndpoint(*request, Bytes(affinity_key, affinity_key_len)),
                    out);
  });
}

int sluice_balancer_pick_model(sluice_balancer* balancer, const char* model, size_t model_len,
                               const char* affinity_key, size_t affinity_key_len,
                               sluice_pick** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (balancer == nullptr) return NullArgument(fn, "balancer");
    if (int rc = CheckKey(fn, model, model_len, "model"); rc != SLUICE_OK) return rc;
    if (int rc = CheckKey(fn, affinity_key, affinity_key_len, "affinity_key"); rc != SLUICE_OK) {
      return rc;
    }
    sluice::PickRequest request;
    request.model = Bytes(model, model_len);
    request.affinity_key = Bytes(affinity_key, affinity_key_len);
    return PickInto(fn, balancer->rep->PickEndpoint(request), out);
  });
}

const char* sluice_pick_endpoint_id(const sluice_pick* pick, size_t* len) {
  if (pick == nullptr) return View("", len);
  return View(pick->rep.endpoint_id(), len);
}

int64_t sluice_pick_matched_blocks(const sluice_pick* pick) {
  return pick == nullptr ? 0 : pick->rep.matched_blocks();
}

int sluice_pick_complete_failure(sluice_pick* pick, int http_status, int failure,
                                 int64_t ttft_nanos, int64_t latency_nanos) {
  if (failure < SLUICE_FAIL_NONE || failure > SLUICE_FAIL_ABANDONED) {
    return Invalid(__func__, absl::StrCat("failure must be a sluice_failure, got ", failure));
  }
  return CompletePick(__func__, pick, http_status, static_cast<sluice::Failure>(failure),
                      ttft_nanos, latency_nanos);
}

int sluice_pick_complete(sluice_pick* pick, int http_status, int error, int64_t ttft_nanos,
                         int64_t latency_nanos) {
  // The deprecated sluice_outcome_error, in the one vocabulary.
  static constexpr sluice::Failure kFailureOf[] = {
      sluice::Failure::kNone,    sluice::Failure::kRateLimited, sluice::Failure::kAuth,
      sluice::Failure::kConnect, sluice::Failure::kTimeout,     sluice::Failure::kServer,
      sluice::Failure::kClient,  sluice::Failure::kAbandoned};  // by sluice_outcome_error
  static_assert(std::size(kFailureOf) == SLUICE_OUTCOME_ABANDONED + 1);
  if (error < SLUICE_OUTCOME_NONE || error > SLUICE_OUTCOME_ABANDONED) {
    return Invalid(__func__, absl::StrCat("error must be a sluice_outcome_error, got ", error));
  }
  return CompletePick(__func__, pick, http_status, kFailureOf[error], ttft_nanos, latency_nanos);
}

void sluice_pick_destroy(sluice_pick* pick) { delete pick; }

int sluice_balancer_cooldown(sluice_balancer* balancer, const char* id, size_t id_len,
                             int64_t duration_nanos, int failure) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (balancer == nullptr) return NullArgument(fn, "balancer");
    if (int rc = CheckKey(fn, id, id_len, "id"); rc != SLUICE_OK) return rc;
    if (failure < SLUICE_FAIL_NONE || failure > SLUICE_FAIL_ABANDONED) {
      return Invalid(fn, absl::StrCat("failure must be a sluice_failure, got ", failure));
    }
    return FromStatus(fn, balancer->rep->Cooldown(Bytes(id, id_len),
                                                  absl::Nanoseconds(duration_nanos),
                                                  static_cast<sluice::Failure>(failure)));
  });
}

int sluice_balancer_eject(sluice_balancer* balancer, const char* id, size_t id_len,
                          int64_t duration_nanos) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (balancer == nullptr) return NullArgument(fn, "balancer");
    if (int rc = CheckKey(fn, id, id_len, "id"); rc != SLUICE_OK) return rc;
    return FromStatus(fn, balancer->rep->Eject(Bytes(id, id_len), absl::Nanoseconds(duration_nanos)));
  });
}

int sluice_balancer_restore(sluice_balancer* balancer, const char* id, size_t id_len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (balancer == nullptr) return NullArgument(fn, "balancer");
    if (int rc = CheckKey(fn, id, id_len, "id"); rc != SLUICE_OK) return rc;
    return FromStatus(fn, balancer->rep->Restore(Bytes(id, id_len)));
  });
}

int sluice_balancer_endpoint_state(const sluice_balancer* balancer, const char* id, size_t id_len,
                                   sluice_endpoint_state* out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (out == nullptr) return NullArgument(fn, "out");
    *out = sluice_endpoint_state{};
    if (balancer == nullptr) return NullArgument(fn, "balancer");
    if (int rc = CheckKey(fn, id, id_len, "id"); rc != SLUICE_OK) return rc;
    for (const sluice::EndpointStats& s : balancer->rep->Endpoints()) {
      if (s.id != Bytes(id, id_len)) continue;
      out->in_flight = s.in_flight;
      out->host_in_flight = s.host_in_flight;
      out->picks = s.picks;
      out->completions = s.completions;
      out->errors = s.errors;
      out->cooldown_until_nanos = s.cooldown_until_nanos;
      out->ejected_until_nanos = s.ejected_until_nanos;
      out->times_ejected = s.times_ejected;
      out->last_failure_at_nanos = s.last_failure_at_nanos;
      out->cooldown_reason = static_cast<int32_t>(s.cooldown_reason);
      out->last_failure = static_cast<int32_t>(s.last_failure);
      return SLUICE_OK;
    }
    return FromStatus(fn, absl::NotFoundError(absl::StrCat(
                              "sluice.Balancer: no endpoint '", std::string(Bytes(id, id_len)), "'")));
  });
}

}  // extern "C"
