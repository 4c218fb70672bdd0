// The parameter table (capi/params.def) as C++: what each pinned number is, which objects take
// it, and ReadParams, which checks an options bag against one object and fills its C++ Options.
// A create function is then: the Options, ReadParams, the C++ Create (capi/limiters.cc, ...).
#ifndef SLUICE_CAPI_PARAMS_H_
#define SLUICE_CAPI_PARAMS_H_

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "capi/internal.h"

namespace sluice_capi {

// The objects an options bag configures (the OBJECTS column).
enum ObjectKind : unsigned {
  kRateLimiter = 1u << 0,
  kLeakyBucket = 1u << 1,
  kConcurrency = 1u << 2,
  kTokenBudget = 1u << 3,
  kBalancer = 1u << 4,
  kFallback = 1u << 5,
  kCache = 1u << 6,
  kRedisStore = 1u << 7,
  kUsageReader = 1u << 8,  // sluice_usage_reader_create
  kEstimate = 1u << 9,     // sluice_estimate_prompt_tokens, sluice_estimate_text_tokens
  kLimiters = kRateLimiter | kLeakyBucket | kConcurrency | kTokenBudget,
};

// How a value is read (the TYPE column).
enum class ParamType {
  kInt, kNanos, kMilli, kWhole, kFlag, kEnum, kString, kActions, kUrl, kNodes
};

// Whether a parameter is set with sluice_options_set_string.
constexpr bool IsStringType(ParamType type) {
  return type == ParamType::kString || type == ParamType::kUrl || type == ParamType::kNodes;
}

struct ParamInfo {
  int number;
  const char* name;  // "SLUICE_PARAM_RATE"
  ParamType type;
  unsigned objects;
  int alias_of;  // 0, or the number of the parameter this deprecated one stands for
};

inline constexpr ParamInfo kParams[] = {
#define SLUICE_PARAM_ROW(NAME, NUMBER, TYPE, OBJECTS, ALIAS_OF, FIELD) \
  {NUMBER, "SLUICE_PARAM_" #NAME, ParamType::TYPE, OBJECTS, ALIAS_OF},
#include "capi/params.def"
#undef SLUICE_PARAM_ROW
};

// The failure classes an action can be set for: SLUICE_PARAM_FALLBACK_ACTION + 1 .. + 9.
inline constexpr int kFirstActionFailure = SLUICE_FAIL_CONNECT;
inline constexpr int kLastActionFailure = SLUICE_FAIL_CLIENT;

// The row of `number` (an action's number finds the SLUICE_PARAM_FALLBACK_ACTION row), or null.
const ParamInfo* FindParam(int number);
// "SLUICE_PARAM_RATE", "SLUICE_PARAM_FALLBACK_ACTION + failure", or null for unknown numbers.
const char* ParamName(int number);

// What an object takes besides parameters: windows (sluice_options_add_window) and a store
// (sluice_options_set_redis_store: cluster scope, the cache's Redis tier).
constexpr bool TakesWindows(ObjectKind kind) { return (kind & (kRateLimiter | kTokenBudget)) != 0; }
constexpr bool TakesStore(ObjectKind kind) {
  return (kind & (kLimiters | kCache | kBalancer)) != 0;
}

// The Options of the objects that take windows, in C: the windows come from the bag
// (sluice_options_add_window) after the parameters are read, so SLUICE_PARAM_WINDOW_KIND lands
// here and CreateLimiter gives it to every window.
template <typename Object>
struct WindowedOptions : Object::Options {
  sluice::WindowKind window_kind = sluice::WindowKind::kGcra;
};

// The C++ fields whose name differs between the objects that share a parameter: the balancer's
// host-shared in-flight counts, and the cache's Redis name (the limiters' is in `cluster`).
template <typename Options>
inline constexpr bool kIsBalancer = std::is_same_v<Options, sluice::Balancer::Options>;
template <typename Options>
auto& MaxInFlight(Options& o) {
  if constexpr (kIsBalancer<Options>) return o.shared_max_in_flight; else return o.max_in_flight;
}
template <typename Options>
auto& Lease(Options& o) {
  if constexpr (kIsBalancer<Options>) return o.shared_lease; else return o.lease;
}
template <typename Options>
auto& RedisName(Options& o) {
  if constexpr (std::is_same_v<Options, sluice::ResponseCache::Options> ||
                std::is_same_v<Options, sluice::Balancer::Options>) {
    return o.redis_name;
  } else {
    return o.cluster.redis_name;
  }
}

// The C enums an option may hold: their range and C name, for the error message.
template <typename Enum>
struct EnumParam;
template <>
struct EnumParam<sluice::FailureMode> {
  static constexpr int kMin = SLUICE_FAILURE_ALLOW, kMax = SLUICE_FAILURE_LOCAL;
  static constexpr const char* kCName = "sluice_failure_mode";
};
template <>
struct EnumParam<sluice::WindowKind> {
  static constexpr int kMin = SLUICE_WINDOW_GCRA, kMax = SLUICE_WINDOW_SLIDING;
  static constexpr const char* kCName = "sluice_window_kind";
};
template <>
struct EnumParam<sluice::ClusterMode> {
  static constexpr int kMin = SLUICE_CLUSTER_STRICT, kMax = SLUICE_CLUSTER_LEASED;
  static constexpr const char* kCName = "sluice_cluster_mode";
};
template <>
struct EnumParam<sluice::Balancer::Strategy> {
  static constexpr int kMin = SLUICE_BALANCER_ROUND_ROBIN, kMax = SLUICE_BALANCER_CONSISTENT_HASH;
  static constexpr const char* kCName = "sluice_balancer_strategy";
};

// Reads one options bag for one object. Errors are InvalidArgument naming the parameter; the
// create function adds its own name (FromStatus).
class OptionReader {
 public:
  explicit OptionReader(const sluice_options& options) : options_(options) {}

  // Whether every parameter, window and store in the bag applies to the object, and no
  // deprecated alias is set together with its parameter.
  absl::Status CheckApplies(ObjectKind kind) const;

  // One row: TYPE is checked against the field's C++ type at compile time.
  template <ParamType kType, typename Field>
  absl::Status Read(int number, Field& field) const {
    if constexpr (kType == ParamType::kString) {
      static_assert(std::is_same_v<Field, std::string>, "a kString row needs a std::string");
      auto it = options_.strings.find(number);
      if (it != options_.strings.end()) field = it->second;
      return absl::OkStatus();
    } else if constexpr (kType == ParamType::kUrl || kType == ParamType::kNodes) {
      auto it = options_.strings.find(number);
      if (it == options_.strings.end()) return absl::OkStatus();
      return StoreParsed<kType>(number, it->second, field);
    } else if constexpr (kType == ParamType::kActions) {
      return ReadActions(number, field);
    } else {
      auto it = options_.params.find(number);
      if (it == options_.params.end()) return absl::OkStatus();
      return Store<kType>(number, it->second, field);
    }
  }

 private:
  template <ParamType kType, typename Field>
  static absl::Status Store(int number, int64_t v, Field& field) {
    if constexpr (kType == ParamType::kNanos) {
      static_assert(std::is_same_v<Field, absl::Duration>, "a kNanos row needs a Duration");
      field = absl::Nanoseconds(v);
    } else if constexpr (kType == ParamType::kMilli || kType == ParamType::kWhole) {
      static_assert(std::is_same_v<Field, double>, "a kMilli or kWhole row needs a double");
      field = kType == ParamType::kMilli ? static_cast<double>(v) / 1000.0 : static_cast<double>(v);
    } else if constexpr (kType == ParamType::kFlag) {
      static_assert(std::is_same_v<Field, bool>, "a kFlag row needs a bool");
      field = v != 0;
    } else if constexpr (kType == ParamType::kEnum) {
      using Spec = EnumParam<Field>;
      if (v < Spec::kMin || v > Spec::kMax) {
        return absl::InvalidArgumentError(
            absl::StrCat(ParamName(number), " must be a ", Spec::kCName, ", got ", v));
      }
      field = static_cast<Field>(v);  // the C enums mirror the C++ ones (capi/options.cc)
    } else {
      static_assert(kType == ParamType::kInt && std::is_integral_v<Field>,
                    "a kInt row needs an integer");
      if constexpr (std::is_same_v<Field, int>) {
        // Refused, never truncated: a port of 2^32 + 6379 would otherwise read as 6379.
        if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
          return absl::InvalidArgumentError(
              absl::StrCat(ParamName(number), " must fit in an int, got ", v));
        }
      }
      field = static_cast<Field>(v);  // int64_t, int, or the balancer's uint64_t seed
    }
    return absl::OkStatus();
  }

  // The strings parsed into Redis options; errors name the parameter (never echo a password:
  // RedisOptionsFromUrl's messages show it as ***).
  template <ParamType kType, typename Field>
  static absl::Status StoreParsed(int number, const std::string& text, Field& field) {
    if constexpr (kType == ParamType::kUrl) {
      static_assert(std::is_same_v<Field, sluice::RedisOptions>, "a kUrl row needs RedisOptions");
      absl::StatusOr<sluice::RedisOptions> parsed = sluice::RedisOptionsFromUrl(text);
      if (!parsed.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(ParamName(number), ": ", parsed.status().message()));
      }
      field = *std::move(parsed);
    } else {
      static_assert(std::is_same_v<Field, std::vector<sluice::RedisNode>>,
                    "a kNodes row needs a vector<RedisNode>");
      const int default_port = number == SLUICE_PARAM_REDIS_SENTINELS ? 26379 : 6379;
      absl::StatusOr<std::vector<sluice::RedisNode>> nodes =
          sluice::RedisNodesFromString(text, default_port);
      if (!nodes.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(ParamName(number), ": ", nodes.status().message()));
      }
      field = *std::move(nodes);
    }
    return absl::OkStatus();
  }

  absl::Status ReadActions(int base, sluice::FallbackPolicy::Actions& actions) const;

  const sluice_options& options_;
};

// Checks the bag against the object, then fills `o` from every row the object takes.
template <ObjectKind kKind, typename Options>
absl::Status ReadParams(const sluice_options& options, Options& o) {
  static_assert(kKind == ObjectKind::kRateLimiter || kKind == ObjectKind::kLeakyBucket ||
                kKind == ObjectKind::kConcurrency || kKind == ObjectKind::kTokenBudget ||
                kKind == ObjectKind::kBalancer || kKind == ObjectKind::kFallback ||
                kKind == ObjectKind::kCache || kKind == ObjectKind::kRedisStore ||
                kKind == ObjectKind::kUsageReader || kKind == ObjectKind::kEstimate);
  OptionReader reader(options);
  if (absl::Status s = reader.CheckApplies(kKind); !s.ok()) return s;
#define SLUICE_PARAM_ROW(NAME, NUMBER, TYPE, OBJECTS, ALIAS_OF, FIELD)                     \
  if constexpr (((OBJECTS) & kKind) != 0) {                                                \
    if (absl::Status s = reader.Read<ParamType::TYPE>(NUMBER, FIELD); !s.ok()) return s; \
  }
#include "capi/params.def"
#undef SLUICE_PARAM_ROW
  return absl::OkStatus();
}

// The body of every create function that reads options: *out = NULL first, the NULL checks,
// the bag read into a default `Options`, then `make(o)` (which finishes `o` and calls the C++
// Create, returning a StatusOr) wrapped in a new Handle. Errors name `function`.
template <ObjectKind kKind, typename Options, typename Handle, typename Make>
int CreateHandle(const char* function, const sluice_options* options, Handle** out, Make&& make) {
  return Guard(function, [&](const char* fn) -> int {
    if (int rc = ClearOut(fn, out); rc != SLUICE_OK) return rc;
    if (options == nullptr) return NullArgument(fn, "options");
    Options o;
    if (absl::Status s = ReadParams<kKind>(*options, o); !s.ok()) return FromStatus(fn, s);
    auto made = make(o);
    if (!made.ok()) return FromStatus(fn, made.status());
    *out = new Handle{*std::move(made)};
    return SLUICE_OK;
  });
}

}  // namespace sluice_capi

#endif  // SLUICE_CAPI_PARAMS_H_
