// The Governor and its admissions (sluice/governor.h, sluice/policy.h): the experimental section
// "Governor" of sluice/c.h. A policy is parsed here (ParsePolicy / LoadPolicyFile), so its errors
// reach C callers with the source, line and field they name.
#include <cstdlib>
#include <cstring>

#include "capi/internal.h"
#include "sluice/governor.h"
#include "sluice/policy.h"

using namespace sluice_capi;  // NOLINT: the C entry points below use the helpers unqualified

namespace {

// The header styles are sluice::HeaderStyle's bits.
static_assert(static_cast<unsigned>(SLUICE_HEADERS_IETF) == sluice::kIetfHeaders);
static_assert(static_cast<unsigned>(SLUICE_HEADERS_X_RATELIMIT) == sluice::kXRateLimitHeaders);
static_assert(static_cast<unsigned>(SLUICE_HEADERS_RETRY_AFTER) == sluice::kRetryAfterHeader);
static_assert(static_cast<unsigned>(SLUICE_HEADERS_ALL) == sluice::kAllHeaders);

// RuleLimits' window lists hold at most this many (sluice/policy.h); more is refused here, before
// a lying count is read.
constexpr size_t kMaxWindows = 8;

// A (ptr, len) text of any length (a policy, a body): NULL only with len 0.
int CheckText(const char* function, const char* text, size_t len, const char* name,
              const char* len_name) {
  if (text == nullptr && len != 0) {
    return Invalid(function, absl::StrCat(name, " is NULL but ", len_name, " is ", len));
  }
  return SLUICE_OK;
}

// The policy text's source name: "<string>" when empty.
std::string_view SourceOf(const char* source, size_t source_len) {
  return source_len == 0 ? std::string_view("<string>") : Bytes(source, source_len);
}

// A file path: a key-sized (ptr, len) without NUL bytes (the OS would stop at the first one and
// open another file than the one named).
int CheckPath(const char* function, const char* path, size_t path_len) {
  if (int rc = CheckKey(function, path, path_len, "path"); rc != SLUICE_OK) return rc;
  if (path_len != 0 && std::memchr(path, '\0', path_len) != nullptr) {
    return Invalid(function, "path contains a NUL byte");
  }
  return SLUICE_OK;
}

// A policy parsed from C arguments already checked; errors as ParsePolicy's.
absl::StatusOr<sluice::Policy> ParseFromC(const char* text, size_t len, const char* source,
                                          size_t source_len) {
  return sluice::ParsePolicy(Bytes(text, len), SourceOf(source, source_len));
}

int CheckPolicyArguments(const char* function, const char* text, size_t len, const char* source,
                         size_t source_len) {
  if (int rc = CheckText(function, text, len, "policy_text", "policy_len"); rc != SLUICE_OK) {
    return rc;
  }
  return CheckKey(function, source, source_len, "source");
}

int Build(const char* function, absl::StatusOr<sluice::Policy> policy, const sluice_clock* clock,
          sluice_governor** out) {
  if (!policy.ok()) return FromStatus(function, policy.status());
  absl::StatusOr<std::unique_ptr<sluice::Governor>> governor =
      sluice::Governor::Create(*std::move(policy), ClockOf(clock));
  if (!governor.ok()) return FromStatus(function, governor.status());
  *out = new sluice_governor{*std::move(governor)};
  return SLUICE_OK;
}

// Windows from C; `field` names them in errors ("limits->requests").
int WindowsFromC(const char* function, const sluice_window* windows, size_t count,
                 const char* field, std::vector<sluice::Window>* out) {
  if (windows == nullptr && count != 0) {
    return Invalid(function, absl::StrCat(field, " is NULL but its count is ", count));
  }
  if (count > kMaxWindows) {
    return Invalid(function,
                   absl::StrCat(field, ": at most ", kMaxWindows, " windows, got ", count));
  }
  for (size_t i = 0; i < count; ++i) {
    const sluice_window& w = windows[i];
    if (w.kind != SLUICE_WINDOW_GCRA && w.kind != SLUICE_WINDOW_SLIDING) {
      return Invalid(function, absl::StrCat(field, "[", i,
                                            "].kind must be a sluice_window_kind, got ", w.kind));
    }
    out->push_back({w.limit, absl::Nanoseconds(w.period_nanos), w.burst,
                    w.kind == SLUICE_WINDOW_SLIDING ? sluice::WindowKind::kSliding
                                                    : sluice::WindowKind::kGcra});
  }
  return SLUICE_OK;
}

int LimitsFromC(const char* function, const sluice_rule_limits& c, sluice::RuleLimits* out) {
  if (int rc = WindowsFromC(function, c.requests, c.request_count, "limits->requests",
                            &out->requests);
      rc != SLUICE_OK) {
    return rc;
  }
  if (int rc = WindowsFromC(function, c.tokens, c.token_count, "limits->tokens", &out->tokens);
      rc != SLUICE_OK) {
    return rc;
  }
  struct Field {
    const char* name;
    int64_t value;
  };
  for (Field f : {Field{"concurrency", c.concurrency}, Field{"shaping_rate", c.shaping_rate},
                  Field{"shaping_per_nanos", c.shaping_per_nanos},
                  Field{"shaping_burst", c.shaping_burst},
                  Field{"shaping_max_wait_nanos", c.shaping_max_wait_nanos}}) {
    if (f.value < 0) {
      return Invalid(function, absl::StrCat("limits->", f.name, " must be >= 0, got ", f.value));
    }
  }
  out->concurrency = c.concurrency;
  out->shaping_rate = c.shaping_rate;
  if (c.shaping_per_nanos != 0) out->shaping_per = absl::Nanoseconds(c.shaping_per_nanos);
  if (c.shaping_burst != 0) out->shaping_burst = c.shaping_burst;
  if (c.shaping_max_wait_nanos != 0) {
    out->shaping_max_wait = absl::Nanoseconds(c.shaping_max_wait_nanos);
  }
  return SLUICE_OK;
}

// A rule and key from C: key-sized (ptr, len) strings.
int CheckRuleAndKey(const char* function, const char* rule, size_t rule_len, const char* key,
                    size_t key_len) {
  if (int rc = CheckKey(function, rule, rule_len, "rule"); rc != SLUICE_OK) return rc;
  return CheckKey(function, key, key_len, "key");
}

// One attribute's (ptr, len) string; the message names it by index ("attributes[2].value").
int CheckAttributeString(const char* function, const char* ptr, size_t len, size_t index,
                         const char* member) {
  if ((ptr == nullptr && len != 0) || len > SLUICE_MAX_KEY_LEN) {
    return CheckKey(function, ptr, len, absl::StrCat("attributes[", index, "].", member).c_str());
  }
  return SLUICE_OK;
}

}  // namespace

extern "C" {

// ---- the governor -----------------------------------------------------------------------------

int sluice_governor_create(const char* policy_text, size_t policy_len, const char* source,
                           size_t source_len, const sluice_clock* clock, sluice_governor** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (int rc = CheckPolicyArguments(fn, policy_text, policy_len, source, source_len);
        rc != SLUICE_OK) {
      return rc;
    }
    return Build(fn, ParseFromC(policy_text, policy_len, source, source_len), clock, out);
  });
}

int sluice_governor_create_from_file(const char* path, size_t path_len, const sluice_clock* clock,
                                     sluice_governor** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (int rc = CheckPath(fn, path, path_len); rc != SLUICE_OK) return rc;
    return Build(fn, sluice::LoadPolicyFile(Bytes(path, path_len)), clock, out);
  });
}

void sluice_governor_destroy(sluice_governor* governor) { delete governor; }

int sluice_governor_reload(sluice_governor* governor, const char* policy_text, size_t policy_len,
                           const char* source, size_t source_len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (governor == nullptr) return NullArgument(fn, "governor");
    if (int rc = CheckPolicyArguments(fn, policy_text, policy_len, source, source_len);
        rc != SLUICE_OK) {
      return rc;
    }
    absl::StatusOr<sluice::Policy> policy =
        ParseFromC(policy_text, policy_len, source, source_len);
    if (!policy.ok()) return FromStatus(fn, policy.status());
    return FromStatus(fn, governor->rep->Reload(*std::move(policy)));
  });
}

int sluice_governor_reload_from_file(sluice_governor* governor, const char* path,
                                     size_t path_len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (governor == nullptr) return NullArgument(fn, "governor");
    if (int rc = CheckPath(fn, path, path_len); rc != SLUICE_OK) return rc;
    absl::StatusOr<sluice::Policy> policy = sluice::LoadPolicyFile(Bytes(path, path_len));
    if (!policy.ok()) return FromStatus(fn, policy.status());
    return FromStatus(fn, governor->rep->Reload(*std::move(policy)));
  });
}

int sluice_governor_admit(sluice_governor* governor, const sluice_attribute* attributes,
                          size_t attribute_count, const char* body, size_t body_len,
                          int64_t token_estimate, sluice_admission** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (governor == nullptr) return NullArgument(fn, "governor");
    if (attributes == nullptr && attribute_count != 0) {
      return Invalid(fn, absl::StrCat("attributes is NULL but attribute_count is ",
                                      attribute_count));
    }
    if (int rc = CheckText(fn, body, body_len, "body", "body_len"); rc != SLUICE_OK) return rc;
    std::vector<sluice::Attribute> views;
    views.reserve(attribute_count);
    for (size_t i = 0; i < attribute_count; ++i) {
      const sluice_attribute& a = attributes[i];
      if (int rc = CheckAttributeString(fn, a.name, a.name_len, i, "name"); rc != SLUICE_OK) {
        return rc;
      }
      if (int rc = CheckAttributeString(fn, a.value, a.value_len, i, "value"); rc != SLUICE_OK) {
        return rc;
      }
      views.push_back({Bytes(a.name, a.name_len), Bytes(a.value, a.value_len)});
    }
    sluice::GovernorRequest request;
    request.attributes = views;
    request.body = Bytes(body, body_len);
    request.token_estimate = token_estimate < 0 ? -1 : token_estimate;
    *out = new sluice_admission{governor->rep->Admit(request), {}};
    return SLUICE_OK;
  });
}

int sluice_governor_set_key_limits(sluice_governor* governor, const char* rule, size_t rule_len,
                                   const char* key, size_t key_len,
                                   const sluice_rule_limits* limits) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (governor == nullptr) return NullArgument(fn, "governor");
    if (limits == nullptr) return NullArgument(fn, "limits");
    if (int rc = CheckRuleAndKey(fn, rule, rule_len, key, key_len); rc != SLUICE_OK) return rc;
    sluice::RuleLimits cpp;
    if (int rc = LimitsFromC(fn, *limits, &cpp); rc != SLUICE_OK) return rc;
    return FromStatus(fn, governor->rep->SetKeyLimits(Bytes(rule, rule_len),
                                                      Bytes(key, key_len), cpp));
  });
}

int sluice_governor_clear_key_limits(sluice_governor* governor, const char* rule, size_t rule_len,
                                     const char* key, size_t key_len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (governor == nullptr) return NullArgument(fn, "governor");
    if (int rc = CheckRuleAndKey(fn, rule, rule_len, key, key_len); rc != SLUICE_OK) return rc;
    return FromStatus(fn,
                      governor->rep->ClearKeyLimits(Bytes(rule, rule_len), Bytes(key, key_len)));
  });
}

int sluice_governor_metrics_text(const sluice_governor* governor, char** out, size_t* out_len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (out != nullptr) *out = nullptr;
    if (out_len != nullptr) *out_len = 0;
    if (governor == nullptr) return NullArgument(fn, "governor");
    if (out == nullptr) return NullArgument(fn, "out");
    if (out_len == nullptr) return NullArgument(fn, "out_len");
    std::string text = governor->rep->MetricsText();
    // malloc, not new[]: the caller frees it with sluice_free (c.h, convention 10).
    char* copy = static_cast<char*>(std::malloc(text.size() + 1));
    if (copy == nullptr) return Fail(SLUICE_OUT_OF_MEMORY, absl::StrCat(fn, ": out of memory"));
    std::memcpy(copy, text.data(), text.size());
    copy[text.size()] = '\0';
    *out = copy;
    *out_len = text.size();
    return SLUICE_OK;
  });
}

uint8_t sluice_governor_waits_for_redis(const sluice_governor* governor) {
  return governor != nullptr && governor->rep->waits_for_redis() ? 1 : 0;
}

// ---- admissions -------------------------------------------------------------------------------

uint8_t sluice_admission_allowed(const sluice_admission* admission) {
  return admission != nullptr && admission->rep.allowed() ? 1 : 0;
}

int sluice_admission_decision(const sluice_admission* admission, sluice_decision* out) {
  if (admission == nullptr) return NullArgument(__func__, "admission");
  if (out == nullptr) return NullArgument(__func__, "out");
  ToC(admission->rep.decision(), out);
  return SLUICE_OK;
}

const char* sluice_admission_rule(const sluice_admission* admission, size_t* len) {
  return admission == nullptr ? View({}, len) : View(admission->rep.rule(), len);
}

int sluice_admission_status(const sluice_admission* admission) {
  if (admission == nullptr) return NullArgument(__func__, "admission");
  return FromStatus(__func__, admission->rep.status());
}

int64_t sluice_admission_delay_nanos(const sluice_admission* admission) {
  return admission == nullptr ? 0 : absl::ToInt64Nanoseconds(admission->rep.delay());
}

int64_t sluice_admission_token_estimate(const sluice_admission* admission) {
  return admission == nullptr ? 0 : admission->rep.token_estimate();
}

size_t sluice_admission_matched_count(const sluice_admission* admission) {
  return admission == nullptr ? 0 : admission->rep.matched_rules().size();
}

const char* sluice_admission_matched_rule(const sluice_admission* admission, size_t index,
                                          size_t* len) {
  if (admission == nullptr || index >= admission->rep.matched_rules().size()) {
    if (len != nullptr) *len = 0;
    return nullptr;
  }
  return View(admission->rep.matched_rules()[index], len);
}

int sluice_admission_headers(sluice_admission* admission, unsigned styles, size_t* count) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (admission == nullptr) return NullArgument(fn, "admission");
    if (count == nullptr) return NullArgument(fn, "count");
    if (styles == 0 || (styles & ~static_cast<unsigned>(SLUICE_HEADERS_ALL)) != 0) {
      return Invalid(fn, absl::StrCat("styles must be sluice_header_style bits (1 to 7), got ",
                                      styles));
    }
    admission->headers = admission->rep.Headers(styles);
    *count = admission->headers.size();
    return SLUICE_OK;
  });
}

int sluice_admission_header(const sluice_admission* admission, size_t index, const char** name,
                            size_t* name_len, const char** value, size_t* value_len) {
  if (admission == nullptr) return NullArgument(__func__, "admission");
  if (index >= admission->headers.size()) {
    return Invalid(__func__, absl::StrCat("index ", index, " is past the ",
                                          admission->headers.size(),
                                          " headers of the last sluice_admission_headers"));
  }
  const auto& [n, v] = admission->headers[index];
  const char* n_ptr = View(n, name_len);
  const char* v_ptr = View(v, value_len);
  if (name != nullptr) *name = n_ptr;
  if (value != nullptr) *value = v_ptr;
  return SLUICE_OK;
}

int sluice_admission_settle(sluice_admission* admission, int64_t total_tokens) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (admission == nullptr) return NullArgument(fn, "admission");
    if (total_tokens < 0) {
      return Invalid(fn, absl::StrCat("total_tokens must be >= 0, got ", total_tokens));
    }
    return FromStatus(fn, admission->rep.Settle(total_tokens));
  });
}

int sluice_admission_cancel(sluice_admission* admission) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (admission == nullptr) return NullArgument(fn, "admission");
    admission->rep.Cancel();
    return SLUICE_OK;
  });
}

int sluice_admission_release(sluice_admission* admission) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (admission == nullptr) return NullArgument(fn, "admission");
    admission->rep.Release();
    return SLUICE_OK;
  });
}

void sluice_admission_destroy(sluice_admission* admission) { delete admission; }

int sluice_admission_cached_answer(sluice_admission* admission, sluice_cached_answer** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (admission == nullptr) return NullArgument(fn, "admission");
    std::shared_ptr<const sluice::CachedResponse> hit = admission->rep.CachedAnswer();
    if (hit) *out = new sluice_cached_answer{std::move(hit)};
    return SLUICE_OK;
  });
}

int sluice_admission_store_answer(sluice_admission* admission, const char* body, size_t body_len,
                                  const char* const* chunks, const size_t* chunk_lens,
                                  size_t chunk_count, uint8_t* stored) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (stored != nullptr) *stored = 0;
    if (admission == nullptr) return NullArgument(fn, "admission");
    sluice::CachedResponse answer;
    if (int rc = AnswerFromC(fn, body, body_len, chunks, chunk_lens, chunk_count, 0, &answer);
        rc != SLUICE_OK) {
      return rc;
    }
    bool put = admission->rep.StoreAnswer(std::move(answer));
    if (stored != nullptr) *stored = put ? 1 : 0;
    return SLUICE_OK;
  });
}

int sluice_admission_begin_call(sluice_admission* admission, int64_t deadline_nanos,
                                sluice_fallback_call** out, sluice_fallback_step* step) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (admission == nullptr) return NullArgument(fn, "admission");
    if (deadline_nanos < 0) return Invalid(fn, "deadline_nanos must be >= 0");
    sluice::FallbackPolicy::CallOptions options;
    options.deadline = absl::Nanoseconds(deadline_nanos);
    absl::StatusOr<sluice::FallbackPolicy::Call> call = admission->rep.BeginCall(options);
    if (!call.ok()) return FromStatus(fn, call.status());
    *out = new sluice_fallback_call{*std::move(call)};
    StepToC(fn, (*out)->rep.step(), step);
    return SLUICE_OK;
  });
}

}  // extern "C"
