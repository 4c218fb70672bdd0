// The limits of a rule or of a key_limits entry: request and token windows, concurrency,
// shaping (policy_sections.h).
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "policy/policy_sections.h"
#include "policy/policy_units.h"
#include "sluice/window.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr size_t kMaxWindows = 8;  // RuleLimits: 0 to 8 windows of each kind
constexpr absl::Duration kMaxPeriod = absl::Hours(24 * 366);

struct WindowRead {
  Window window;
  bool kind_set = false;
  int line = 0;  // the window's; its fields' below (the same for the shorthand)
  int limit_line = 0;
  int per_line = 0;
  int burst_line = 0;
  int kind_line = 0;
  std::string path;
};

absl::string_view KindName(WindowKind kind) {
  return kind == WindowKind::kSliding ? "sliding" : "gcra";
}

// The checks a window passes alone (sluice/window.h): limit, period, burst.
bool CheckWindow(PolicyErrors& errors, const WindowRead& read) {
  const Window& w = read.window;
  bool ok = true;
  if (w.limit <= 0) {
    errors.Add(read.limit_line, FieldPath(read.path, "limit"),
               absl::StrCat("must be > 0, got ", w.limit));
    ok = false;
  }
  if (w.period <= absl::ZeroDuration() || w.period > kMaxPeriod) {
    errors.Add(read.per_line, FieldPath(read.path, "per"),
               absl::StrCat("must be > 0 and at most 366 days, got ",
                            absl::FormatDuration(w.period)));
    ok = false;
  } else if (w.limit > absl::ToInt64Nanoseconds(w.period)) {
    errors.Add(read.limit_line, FieldPath(read.path, "limit"),
               absl::StrCat("must be at most one per nanosecond of per, got ", w.limit, " per ",
                            absl::FormatDuration(w.period)));
    ok = false;
  }
  if (w.burst < 0) {
    errors.Add(read.burst_line, FieldPath(read.path, "burst"),
               absl::StrCat("must be >= 0 (0 means the limit), got ", w.burst));
    ok = false;
  }
  return ok;
}

// One window: {limit, per, burst, kind} or the shorthand "600/1m".
bool ReadWindow(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
                WindowRead* out) {
  out->path = path;
  out->line = out->limit_line = out->per_line = out->burst_line = out->kind_line = LineOf(node);
  if (node.IsDefined() && node.IsScalar()) {
    absl::StatusOr<RateShorthand> rate = ParseRateShorthand(node.Scalar());
    if (!rate.ok()) {
      errors.Add(out->line, path,
                 absl::StrCat("must be a window like 600/1m or {limit: 600, per: 1m}, got ",
                              Describe(node)));
      return false;
    }
    out->window.limit = rate->limit;
    out->window.period = rate->per;
    return CheckWindow(errors, *out);
  }
  if (!node.IsDefined() || !node.IsMap()) {
    errors.Add(out->line, path,
               absl::StrCat("must be a window like 600/1m or {limit: 600, per: 1m}, got ",
                            Describe(node)));
    return false;
  }
  Fields fields(errors, node, path, {"limit", "per", "burst", "kind"});
  if (!fields.ok()) return false;
  out->limit_line = fields.LineOf("limit");
  out->per_line = fields.LineOf("per");
  out->burst_line = fields.LineOf("burst");
  out->kind_line = fields.LineOf("kind");
  bool ok = fields.Require("limit") && fields.Int("limit", 1, INT64_MAX, &out->window.limit);
  ok = fields.Require("per") &&
       fields.Duration("per", absl::Nanoseconds(1), kMaxPeriod, &out->window.period) && ok;
  ok = fields.Int("burst", 0, INT64_MAX, &out->window.burst) && ok;
  size_t kind = 0;
  if (fields.Has("kind")) {
    if (fields.Choice("kind", {"gcra", "sliding"}, &kind)) {
      out->window.kind = kind == 1 ? WindowKind::kSliding : WindowKind::kGcra;
      out->kind_set = true;
    } else {
      ok = false;
    }
  }
  return ok && CheckWindow(errors, *out);
}

// A list of windows (at most kMaxWindows), each read alone.
bool ReadWindows(const Fields& fields, absl::string_view name, std::vector<WindowRead>* out) {
  const YAML::Node& node = *fields.Get(name);
  const std::string path = fields.PathOf(name);
  if (!ExpectList(fields.errors(), node, path)) return false;
  if (node.size() == 0 || node.size() > kMaxWindows) {
    fields.Error(name, absl::StrCat("must list 1 to ", kMaxWindows, " windows, got ", node.size()));
    return false;
  }
  bool ok = true;
  size_t i = 0;
  for (auto it = node.begin(); it != node.end(); ++it, ++i) {
    WindowRead read;
    ok = ReadWindow(fields.errors(), *it, ItemPath(path, i), &read) && ok;
    out->push_back(std::move(read));
  }
  return ok;
}

bool ReadShaping(const Fields& parent, RuleLimits* limits) {
  Fields shaping(parent.errors(), *parent.Get("shaping"), parent.PathOf("shaping"),
                 {"rate", "per", "burst", "max_wait"});
  if (!shaping.ok()) return false;
  bool ok = shaping.Require("rate") && shaping.Int("rate", 1, INT64_MAX, &limits->shaping_rate);
  ok = shaping.Duration("per", absl::Nanoseconds(1), kMaxPeriod, &limits->shaping_per) && ok;
  ok = shaping.Int("burst", 1, INT64_MAX, &limits->shaping_burst) && ok;
  ok = shaping.Duration("max_wait", absl::ZeroDuration(), kMaxPeriod, &limits->shaping_max_wait) &&
       ok;
  if (!ok) limits->shaping_rate = 0;
  return ok;
}

}  // namespace

LimitsRead ReadLimits(const Fields& fields, std::optional<WindowKind>* request_kind,
                      int64_t min_concurrency, RuleLimits* limits) {
  LimitsRead read;
  PolicyErrors& errors = fields.errors();
  if (fields.Has("requests")) {
    read.requests = true;
    std::vector<WindowRead> windows;
    read.ok = ReadWindows(fields, "requests", &windows) && read.ok;
    if (!request_kind->has_value()) {
      for (const WindowRead& w : windows) {
        if (w.kind_set) {
          *request_kind = w.window.kind;
          break;
        }
      }
    }
    const WindowKind kind = request_kind->value_or(WindowKind::kGcra);
    for (WindowRead& w : windows) {
      if (w.kind_set && w.window.kind != kind) {
        errors.Add(w.kind_line, FieldPath(w.path, "kind"),
                   absl::StrCat("is ", KindName(w.window.kind), " but the rule's request windows "
                                "are ", KindName(kind), " (every request window of a rule has "
                                "one kind; see the rule's window field)"));
        read.ok = false;
      }
      w.window.kind = kind;
      if (kind != WindowKind::kSliding) continue;
      if (w.window.limit > kMaxSlidingLimit) {
        errors.Add(w.limit_line, FieldPath(w.path, "limit"),
                   absl::StrCat("must be at most ", kMaxSlidingLimit,
                                " for a sliding window (it keeps one time per admission), got ",
                                w.window.limit));
        read.ok = false;
      }
      if (w.window.burst != 0 && w.window.burst != w.window.limit) {
        errors.Add(w.burst_line, FieldPath(w.path, "burst"),
                   absl::StrCat("must be 0 or the limit for a sliding window, got ",
                                w.window.burst));
        read.ok = false;
      }
    }
    for (const WindowRead& w : windows) limits->requests.push_back(w.window);
  }
  if (fields.Has("tokens")) {
    read.tokens = true;
    std::vector<WindowRead> windows;
    read.ok = ReadWindows(fields, "tokens", &windows) && read.ok;
    for (const WindowRead& w : windows) {
      if (w.window.kind == WindowKind::kSliding) {
        errors.Add(w.kind_line, FieldPath(w.path, "kind"),
                   "must be gcra: token windows count tokens, too many for a sliding log "
                   "(sliding is for requests)");
        read.ok = false;
      }
      limits->tokens.push_back(w.window);
    }
  }
  if (fields.Has("concurrency")) {
    read.concurrency = true;
    read.ok = fields.Int("concurrency", min_concurrency, INT64_MAX, &limits->concurrency) &&
              read.ok;
  }
  if (fields.Has("shaping")) {
    read.shaping = true;
    read.ok = ReadShaping(fields, limits) && read.ok;
  }
  return read;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
