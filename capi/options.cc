// The parameter bag (sluice_options_*) and the table's lookups (capi/params.def).
#include <algorithm>
#include <iterator>

#include "capi/internal.h"
#include "capi/params.h"

namespace sluice_capi {
namespace {

// c.h spells the enum out for C readers; the table must give every parameter the header's
// number. (The reverse, every enumerator of c.h in the table, is checked by the hostile suite:
// tests/c/capi_hostile_test.c sets each one.)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"  // the deprecated aliases' rows
#endif
#define SLUICE_PARAM_ROW(NAME, NUMBER, TYPE, OBJECTS, ALIAS_OF, FIELD)         \
  static_assert(SLUICE_PARAM_##NAME == (NUMBER),                               \
                "include/sluice/c.h and capi/params.def disagree on SLUICE_PARAM_" #NAME);
#include "capi/params.def"
#undef SLUICE_PARAM_ROW
static_assert(SLUICE_PARAM_CLUSTER_RULE == SLUICE_PARAM_REDIS_NAME, "an alias by number");
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

// Enum options are cast: the C enums mirror the C++ ones value for value.
static_assert(static_cast<int>(sluice::FailureMode::kAllow) == SLUICE_FAILURE_ALLOW &&
              static_cast<int>(sluice::FailureMode::kDeny) == SLUICE_FAILURE_DENY &&
              static_cast<int>(sluice::FailureMode::kLocal) == SLUICE_FAILURE_LOCAL);
static_assert(static_cast<int>(sluice::WindowKind::kGcra) == SLUICE_WINDOW_GCRA &&
              static_cast<int>(sluice::WindowKind::kSliding) == SLUICE_WINDOW_SLIDING &&
              sluice::kMaxSlidingLimit == SLUICE_MAX_SLIDING_LIMIT);
static_assert(static_cast<int>(sluice::ClusterMode::kStrict) == SLUICE_CLUSTER_STRICT &&
              static_cast<int>(sluice::ClusterMode::kLeased) == SLUICE_CLUSTER_LEASED);
static_assert(static_cast<int>(sluice::Balancer::Strategy::kRoundRobin) ==
                  SLUICE_BALANCER_ROUND_ROBIN &&
              static_cast<int>(sluice::Balancer::Strategy::kPrefixAffinity) ==
                  SLUICE_BALANCER_PREFIX_AFFINITY &&
              static_cast<int>(sluice::Balancer::Strategy::kConsistentHash) ==
                  SLUICE_BALANCER_CONSISTENT_HASH);
static_assert(static_cast<int>(sluice::FallbackPolicy::Action::kRetrySame) ==
                  SLUICE_ACTION_RETRY_SAME &&
              static_cast<int>(sluice::FallbackPolicy::Action::kFatal) == SLUICE_ACTION_FATAL);
static_assert(static_cast<int>(sluice::Failure::kClient) == SLUICE_FAIL_CLIENT &&
              static_cast<int>(sluice::Failure::kAbandoned) == SLUICE_FAIL_ABANDONED);

// A row's numbers: its own, or for the actions row NUMBER + a failure class (NUMBER alone is a
// base, not a parameter).
bool Matches(const ParamInfo& row, int number) {
  if (row.type != ParamType::kActions) return row.number == number;
  return number >= row.number + kFirstActionFailure && number <= row.number + kLastActionFailure;
}

}  // namespace

const ParamInfo* FindParam(int number) {
  for (const ParamInfo& row : kParams) {
    if (Matches(row, number)) return &row;
  }
  return nullptr;
}

const char* ParamName(int number) {
  const ParamInfo* row = FindParam(number);
  if (row == nullptr) return nullptr;
  return row->type == ParamType::kActions ? "SLUICE_PARAM_FALLBACK_ACTION + failure" : row->name;
}

absl::Status OptionReader::CheckApplies(ObjectKind kind) const {
  auto check = [&](int number) -> absl::Status {
    const ParamInfo* row = FindParam(number);  // never null: set() refuses unknown numbers
    if (row == nullptr || (row->objects & kind) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          ParamName(number) ? ParamName(number) : "a parameter", " (", number,
          ") does not apply to this object"));
    }
    if (row->alias_of != 0 &&
        (options_.params.contains(row->alias_of) || options_.strings.contains(row->alias_of))) {
      return absl::InvalidArgumentError(
          absl::StrCat(row->name, " is a deprecated alias of ", ParamName(row->alias_of),
                       ": set one of them"));
    }
    return absl::OkStatus();
  };
  for (const auto& [number, value] : options_.params) {
    if (absl::Status s = check(number); !s.ok()) return s;
  }
  for (const auto& [number, value] : options_.strings) {
    if (absl::Status s = check(number); !s.ok()) return s;
  }
  if (!TakesStore(kind) && options_.redis != nullptr) {
    return absl::InvalidArgumentError("a Redis store does not apply to this object");
  }
  if (!TakesWindows(kind) && !options_.windows.empty()) {
    return absl::InvalidArgumentError("windows do not apply to this object");
  }
  return absl::OkStatus();
}

absl::Status OptionReader::ReadActions(int base, sluice::FallbackPolicy::Actions& actions) const {
  for (int f = kFirstActionFailure; f <= kLastActionFailure; ++f) {
    auto it = options_.params.find(base + f);
    if (it == options_.params.end()) continue;
    if (it->second < SLUICE_ACTION_RETRY_SAME || it->second > SLUICE_ACTION_FATAL) {
      return absl::InvalidArgumentError(
          absl::StrCat("SLUICE_PARAM_FALLBACK_ACTION + ", f,
                       " must be a sluice_fallback_action, got ", it->second));
    }
    actions.Set(static_cast<sluice::Failure>(f),
                static_cast<sluice::FallbackPolicy::Action>(it->second));
  }
  return absl::OkStatus();
}

}  // namespace sluice_capi

using namespace sluice_capi;  // NOLINT: the C entry points below use the helpers unqualified

extern "C" {

sluice_options* sluice_options_create(void) { return new (std::nothrow) sluice_options; }

void sluice_options_destroy(sluice_options* options) { delete options; }

int sluice_options_set(sluice_options* options, int param, int64_t value) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (options == nullptr) return NullArgument(fn, "options");
    if (FindParam(param) == nullptr) {
      return Invalid(fn, absl::StrCat("unknown parameter number ", param));
    }
    options->params[param] = value;
    return SLUICE_OK;
  });
}

int sluice_options_set_string(sluice_options* options, int param, const char* value, size_t len) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (options == nullptr) return NullArgument(fn, "options");
    if (value == nullptr && len != 0) return NullArgument(fn, "value");
    const ParamInfo* row = FindParam(param);
    if (row == nullptr || !IsStringType(row->type)) {
      return Invalid(fn, absl::StrCat("parameter ", param, " is not a string parameter"));
    }
    if (len == 0) {
      options->strings.erase(param);
    } else {
      options->strings[param] = std::string(value, len);
    }
    return SLUICE_OK;
  });
}

int sluice_options_set_redis_store(sluice_options* options, sluice_redis_store* store) {
  if (options == nullptr) return NullArgument(__func__, "options");
  options->redis = store == nullptr ? nullptr : store->rep;
  return SLUICE_OK;
}

int sluice_options_add_window(sluice_options* options, int64_t limit, int64_t period_nanos,
                              int64_t burst) {
  return Guard(__func__, [&](const char* fn) -> int {
    if (options == nullptr) return NullArgument(fn, "options");
    options->windows.push_back({limit, absl::Nanoseconds(period_nanos), burst});
    return SLUICE_OK;
  });
}

}  // extern "C"
