// Usage metering (sluice/usage.h): the usage reader, whole-answer reads, the include_usage
// rewrite and the prompt-token estimates, plus sluice_free for the bytes handed out.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "capi/internal.h"
#include "capi/params.h"

using namespace sluice_capi;  // NOLINT: the C entry points below use the helpers unqualified

namespace {

// The C enums mirror the C++ ones value for value: providers and fields are cast.
static_assert(static_cast<int>(sluice::Provider::kAuto) == SLUICE_PROVIDER_AUTO &&
              static_cast<int>(sluice::Provider::kOpenAIChat) == SLUICE_PROVIDER_OPENAI_CHAT &&
              static_cast<int>(sluice::Provider::kOpenAICompletions) ==
                  SLUICE_PROVIDER_OPENAI_COMPLETIONS &&
              static_cast<int>(sluice::Provider::kOpenAIResponses) ==
                  SLUICE_PROVIDER_OPENAI_RESPONSES &&
              static_cast<int>(sluice::Provider::kAnthropic) == SLUICE_PROVIDER_ANTHROPIC &&
              static_cast<int>(sluice::Provider::kGemini) == SLUICE_PROVIDER_GEMINI &&
              static_cast<int>(sluice::Provider::kDashScope) == SLUICE_PROVIDER_DASHSCOPE);
constexpr bool SameBit(sluice::Usage::Field field, sluice_usage_field c_field) {
  return static_cast<uint32_t>(field) == static_cast<uint32_t>(c_field);
}
static_assert(SameBit(sluice::Usage::kPromptTokens, SLUICE_USAGE_PROMPT_TOKENS) &&
              SameBit(sluice::Usage::kCompletionTokens, SLUICE_USAGE_COMPLETION_TOKENS) &&
              SameBit(sluice::Usage::kTotalTokens, SLUICE_USAGE_TOTAL_TOKENS) &&
              SameBit(sluice::Usage::kCachedTokens, SLUICE_USAGE_CACHED_TOKENS) &&
              SameBit(sluice::Usage::kCacheCreationTokens, SLUICE_USAGE_CACHE_CREATION_TOKENS) &&
              SameBit(sluice::Usage::kReasoningTokens, SLUICE_USAGE_REASONING_TOKENS));
static_assert(sluice::Usage::kMaxTokens == SLUICE_USAGE_MAX_TOKENS);

// The reader's options as the parameter table fills them (an int64, checked before the cast).
struct ReaderParams {
  int64_t max_event_bytes = static_cast<int64_t>(sluice::UsageReader::Options{}.max_event_bytes);
};

int CheckProvider(const char* function, int provider, sluice::Provider* out) {
  if (provider < SLUICE_PROVIDER_AUTO || provider > SLUICE_PROVIDER_DASHSCOPE) {
    return Invalid(function, absl::StrCat("provider must be a sluice_provider, got ", provider));
  }
  *out = static_cast<sluice::Provider>(provider);
  return SLUICE_OK;
}

// A (ptr, len) byte range of any length: NULL only with len 0.
int CheckBytes(const char* function, const char* ptr, size_t len, const char* name) {
  if (ptr == nullptr && len != 0) {
    return Invalid(function, absl::StrCat(name, " is NULL but ", name, "_len is ", len));
  }
  return SLUICE_OK;
}

// The value the caller set for `number` (only called for a parameter that was set: the
// defaults are in range).
int64_t SetValue(const sluice_options& options, int number) {
  auto it = options.params.find(number);
  return it == options.params.end() ? 0 : it->second;
}

// The EstimateOptions of `options` (NULL: every default), each range checked and named.
int EstimateOptionsFromC(const char* function, const sluice_options* options,
                         sluice::EstimateOptions* o) {
  *o = sluice::EstimateOptions{};
  if (options == nullptr) return SLUICE_OK;
  if (absl::Status s = ReadParams<kEstimate>(*options, *o); !s.ok()) {
    return FromStatus(function, s);
  }
  const struct {
    int number;
    bool ok;
    const char* range;
  } checks[] = {
      {SLUICE_PARAM_ESTIMATE_TOKENS_PER_MESSAGE, o->tokens_per_message >= 0, ">= 0"},
      {SLUICE_PARAM_ESTIMATE_TOKENS_PER_REQUEST, o->tokens_per_request >= 0, ">= 0"},
      {SLUICE_PARAM_ESTIMATE_TOKENS_PER_IMAGE, o->tokens_per_image >= 0, ">= 0"},
      {SLUICE_PARAM_ESTIMATE_CJK_CHARS_PER_TOKEN_MILLI, o->cjk_chars_per_token > 0, "> 0"},
      {SLUICE_PARAM_ESTIMATE_SCALE_MILLI, o->scale >= 0, ">= 0"},
  };
  for (const auto& c : checks) {
    if (!c.ok) {
      return Invalid(function, absl::StrCat(ParamName(c.number), " must be ", c.range, ", got ",
                                            SetValue(*options, c.number)));
    }
  }
  return SLUICE_OK;
}

void CopyUsage(const sluice::Usage& u, sluice_usage* out) {
  out->prompt_tokens = u.prompt_tokens;
  out->completion_tokens = u.completion_tokens;
  out->total_tokens = u.total_tokens;
  out->cached_tokens = u.cached_tokens;
  out->cache_creation_tokens = u.cache_creation_tokens;
  out->reasoning_tokens = u.reasoning_tokens;
  out->present = u.present;
  out->provider = static_cast<int>(u.provider);
}

// A finished read as (*out, *found): NotFound is no usage, not an error.
int UsageToC(const char* function, const absl::StatusOr<sluice::Usage>& usage, sluice_usage* out,
             uint8_t* found) {
  std::memset(out, 0, sizeof(*out));
  if (found != nullptr) *found = 0;
  if (absl::IsNotFound(usage.status())) return SLUICE_OK;
  if (!usage.ok()) return FromStatus(function, usage.status());
  CopyUsage(*usage, out);
  if (found != nullptr) *found = 1;
  return SLUICE_OK;
}

// Holds a reader for one call; a call that overlaps it (another thread) does not get it.
class ReaderClaim {
 public:
  explicit ReaderClaim(const sluice_usage_reader& reader)
      : reader_(reader), held_(!reader.in_use.exchange(true, std::memory_order_acquire)) {}
  ~ReaderClaim() {
    if (held_) reader_.in_use.store(false, std::memory_order_release);
  }
  ReaderClaim(const ReaderClaim&) = delete;
  ReaderClaim& operator=(const ReaderClaim&) = delete;

  // SLUICE_OK, or the refusal of an overlapping call.
  int Check(const char* function) const {
    if (held_) return SLUICE_OK;
    return Fail(SLUICE_FAILED_PRECONDITION,
                absl::StrCat(function, ": the reader is in use by another call (a reader is "
                                       "single-owner: one thread at a time)"));
  }

 private:
  const sluice_usage_reader& reader_;
  const bool held_;
};

}  // namespace

extern "C" {

void sluice_free(void* ptr) { std::free(ptr); }

const char* sluice_provider_name(int provider) {
  if (provider < SLUICE_PROVIDER_AUTO || provider > SLUICE_PROVIDER_DASHSCOPE) return "unknown";
  return sluice::ProviderName(static_cast<sluice::Provider>(provider)).data();  // literals
}

// ---- the reader ----------------------------------------------------------------------------------

int sluice_usage_reader_create(int provider, const sluice_options* options,
                               sluice_usage_reader** out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    sluice::Provider p;
    if (int rc = CheckProvider(fn, provider, &p); rc != SLUICE_OK) return rc;
    ReaderParams params;
    if (options != nullptr) {
      if (absl::Status s = ReadParams<kUsageReader>(*options, params); !s.ok()) {
        return FromStatus(fn, s);
      }
    }
    // The cap keeps max_event_bytes + a line's slack from wrapping a 32-bit size_t.
    constexpr int64_t kMaxEventBytes =
        static_cast<int64_t>(std::min<uint64_t>(std::numeric_limits<size_t>::max() / 2,
                                                std::numeric_limits<int64_t>::max()));
    if (params.max_event_bytes < 1 || params.max_event_bytes > kMaxEventBytes) {
      return Invalid(fn, absl::StrCat("SLUICE_PARAM_USAGE_MAX_EVENT_BYTES must be in [1, ",
                                      kMaxEventBytes, "], got ", params.max_event_bytes));
    }
    sluice::UsageReader::Options o;
    o.max_event_bytes = static_cast<size_t>(params.max_event_bytes);
    *out = new sluice_usage_reader(sluice::UsageReader(p, o));
    return SLUICE_OK;
  });
}

void sluice_usage_reader_destroy(sluice_usage_reader* reader) { delete reader; }

int sluice_usage_reader_feed(sluice_usage_reader* reader, const char* data, size_t len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (reader == nullptr) return NullArgument(fn, "reader");
    if (int rc = CheckBytes(fn, data, len, "data"); rc != SLUICE_OK) return rc;
    ReaderClaim claim(*reader);
    if (int rc = claim.Check(fn); rc != SLUICE_OK) return rc;
    if (reader->result.has_value()) {
      return Fail(SLUICE_FAILED_PRECONDITION,
                  absl::StrCat(fn, ": feed after sluice_usage_reader_finish"));
    }
    reader->rep.Feed(Bytes(data, len));
    return SLUICE_OK;
  });
}

int sluice_usage_reader_finish(sluice_usage_reader* reader, sluice_usage* out, uint8_t* found) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (found != nullptr) *found = 0;
    if (reader == nullptr) return NullArgument(fn, "reader");
    if (out == nullptr) return NullArgument(fn, "out");
    ReaderClaim claim(*reader);
    if (int rc = claim.Check(fn); rc != SLUICE_OK) return rc;
    if (!reader->result.has_value()) reader->result = reader->rep.Finish();
    return UsageToC(fn, *reader->result, out, found);
  });
}

int sluice_usage_reader_stats(const sluice_usage_reader* reader, sluice_usage_stats* out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (reader == nullptr) return NullArgument(fn, "reader");
    if (out == nullptr) return NullArgument(fn, "out");
    ReaderClaim claim(*reader);
    if (int rc = claim.Check(fn); rc != SLUICE_OK) return rc;
    const sluice::UsageReader::Stats& s = reader->rep.stats();
    out->events = s.events;
    out->usage_reports = s.usage_reports;
    out->malformed_events = s.malformed_events;
    out->oversized_events = s.oversized_events;
    out->rejected_counts = s.rejected_counts;
    return SLUICE_OK;
  });
}

// ---- whole bodies ----------------------------------------------------------------------------------

int sluice_read_usage(const char* body, size_t body_len, int provider, sluice_usage* out,
                      uint8_t* found) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (found != nullptr) *found = 0;
    if (out == nullptr) return NullArgument(fn, "out");
    if (int rc = CheckBytes(fn, body, body_len, "body"); rc != SLUICE_OK) return rc;
    sluice::Provider p;
    if (int rc = CheckProvider(fn, provider, &p); rc != SLUICE_OK) return rc;
    return UsageToC(fn, sluice::ReadUsage(p, Bytes(body, body_len)), out, found);
  });
}

int sluice_include_usage_in_stream(const char* body, size_t body_len, char** out,
                                   size_t* out_len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (out_len != nullptr) *out_len = 0;
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (out_len == nullptr) return NullArgument(fn, "out_len");
    if (int rc = CheckBytes(fn, body, body_len, "body"); rc != SLUICE_OK) return rc;
    absl::StatusOr<std::string> rewritten = sluice::IncludeUsageInStream(Bytes(body, body_len));
    if (!rewritten.ok()) return FromStatus(fn, rewritten.status());
    // malloc, not new[]: the caller frees it with sluice_free (c.h, convention 10).
    char* copy = static_cast<char*>(std::malloc(rewritten->size() + 1));
    if (copy == nullptr) return Fail(SLUICE_OUT_OF_MEMORY, absl::StrCat(fn, ": out of memory"));
    std::memcpy(copy, rewritten->data(), rewritten->size());
    copy[rewritten->size()] = '\0';
    *out = copy;
    *out_len = rewritten->size();
    return SLUICE_OK;
  });
}

// ---- estimates -------------------------------------------------------------------------------------

int sluice_estimate_prompt_tokens(const char* body, size_t body_len,
                                  const sluice_options* options, int64_t* out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (out == nullptr) return NullArgument(fn, "out");
    *out = 0;
    if (int rc = CheckBytes(fn, body, body_len, "body"); rc != SLUICE_OK) return rc;
    sluice::EstimateOptions o;
    if (int rc = EstimateOptionsFromC(fn, options, &o); rc != SLUICE_OK) return rc;
    *out = sluice::EstimatePromptTokens(Bytes(body, body_len), o);
    return SLUICE_OK;
  });
}

int sluice_estimate_text_tokens(const char* text, size_t text_len, const sluice_options* options,
                                int64_t* out) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (out == nullptr) return NullArgument(fn, "out");
    *out = 0;
    if (int rc = CheckBytes(fn, text, text_len, "text"); rc != SLUICE_OK) return rc;
    sluice::EstimateOptions o;
    if (int rc = EstimateOptionsFromC(fn, options, &o); rc != SLUICE_OK) return rc;
    *out = sluice::EstimateTextTokens(Bytes(text, text_len), o);
    return SLUICE_OK;
  });
}

}  // extern "C"
