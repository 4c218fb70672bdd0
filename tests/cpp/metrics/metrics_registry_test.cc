// MetricsRegistry: the exposition text (golden), argument checks, capacity, threads, and host
// scope across processes (forked children adding into one region, a second registry on the same
// region, a creator killed mid-creation). Children report through an anonymous shared page and
// leave with _exit; Catch2 runs only in the parent.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "metrics/metric_names.h"    // lib/: drives series creation directly to kill a creator
#include "metrics/metrics_memory.h"
#include "sluice/metrics.h"
#include "test_support.h"

using sluice::Counter;
using sluice::Gauge;
using sluice::Histogram;
using sluice::MetricsRegistry;
using sluice_test::ErrorOf;
using sluice_test::RegionName;
using sluice_test::Value;

namespace {

std::shared_ptr<MetricsRegistry> ProcessRegistry(int64_t max_series = 4096) {
  MetricsRegistry::Options options;
  options.max_series = max_series;
  return Value(MetricsRegistry::Create(options));
}

std::shared_ptr<MetricsRegistry> HostRegistry(const std::string& region,
                                              int64_t max_series = 4096) {
  MetricsRegistry::Options options;
  options.shared_region = region;
  options.max_series = max_series;
  return Value(MetricsRegistry::Create(options));
}

// A page shared with forked children: a flag word, then a failure text.
class SharedPage {
 public:
  SharedPage() {
    base_ = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED) std::abort();
  }
  ~SharedPage() { munmap(base_, kBytes); }
  SharedPage(const SharedPage&) = delete;
  SharedPage& operator=(const SharedPage&) = delete;
  void Write(const std::string& text) {
    std::strncpy(static_cast<char*>(base_) + 64, text.c_str(), kBytes - 65);
  }
  std::string Read() const { return std::string(static_cast<const char*>(base_) + 64); }
  std::atomic<int>& flag() { return *static_cast<std::atomic<int>*>(base_); }

 private:
  static constexpr size_t kBytes = 8192;
  void* base_;
};

// Forks children running `body(i)`, waits for them all, and returns what went wrong ("" if
// every one returned "" and exited normally).
std::string InChildren(int count, const std::function<std::string(int)>& body) {
  std::vector<std::unique_ptr<SharedPage>> pages;
  std::vector<pid_t> pids;
  for (int i = 0; i < count; ++i) {
    pages.push_back(std::make_unique<SharedPage>());
    const pid_t pid = fork();
    if (pid < 0) return "fork failed";
    if (pid == 0) {
      const std::string failure = body(i);
      pages[i]->Write(failure);
      _exit(failure.empty() ? 0 : 1);
    }
    pids.push_back(pid);
  }
  std::string failures;
  for (int i = 0; i < count; ++i) {
    int status = 0;
    waitpid(pids[i], &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    const std::string reported = pages[i]->Read();
    absl::StrAppend(&failures, "child ", i, ": ",
                    reported.empty() ? absl::StrCat("died, status ", status) : reported, "; ");
  }
  return failures;
}

}  // namespace

TEST_CASE("the exposition text: families sorted, labels sorted and escaped, cumulative buckets") {
  auto registry = ProcessRegistry();
  // Label values with a quote, a backslash, a newline and a byte that is not UTF-8.
  Counter hostile = Value(registry->GetCounter(
      "requests_total", "Requests seen.\nBy route.",
      {{"route", "a\"b\\c\nd"}, {"code", std::string("2\xff") + "0"}}));
  Counter plain = Value(registry->GetCounter("requests_total", "Requests seen.\nBy route.",
                                             {{"code", "500"}, {"route", "/x"}}));
  Gauge inflight = Value(registry->GetGauge("a_inflight", "In flight.", {}));
  Histogram latency =
      Value(registry->GetHistogram("latency_seconds", "Latency.", {{"op", "get"}}, {0.5, 1}));
  hostile.Add(3);
  plain.Add();
  inflight.Add(5);
  inflight.Add(-2);
  latency.Observe(0.25);
  latency.Observe(1);  // le is inclusive
  latency.Observe(3);
  CHECK(registry->Render() ==
        "# HELP a_inflight In flight.\n"
        "# TYPE a_inflight gauge\n"
        "a_inflight 3\n"
        "# HELP latency_seconds Latency.\n"
        "# TYPE latency_seconds histogram\n"
        "latency_seconds_bucket{op=\"get\",le=\"0.5\"} 1\n"
        "latency_seconds_bucket{op=\"get\",le=\"1\"} 2\n"
        "latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 3\n"
        "latency_seconds_sum{op=\"get\"} 4.25\n"
        "latency_seconds_count{op=\"get\"} 3\n"
        "# HELP requests_total Requests seen.\\nBy route.\n"
        "# TYPE requests_total counter\n"
        "requests_total{code=\"2\xEF\xBF\xBD" "0\",route=\"a\\\"b\\\\c\\nd\"} 3\n"
        "requests_total{code=\"500\",route=\"/x\"} 1\n"
        "# HELP sluice_metrics_dropped_series_total Series registrations refused because the "
        "registry was full (max_series or its string space).\n"
        "# TYPE sluice_metrics_dropped_series_total counter\n"
        "sluice_metrics_dropped_series_total 0\n");
  CHECK(latency.count() == 3);
  CHECK(latency.sum() == 4.25);
}

TEST_CASE("a series is found again: label order does not matter, handles share one cell") {
  auto registry = ProcessRegistry();
  Counter a = Value(registry->GetCounter("c", "h", {{"x", "1"}, {"y", "2"}}));
  Counter b = Value(registry->GetCounter("c", "h", {{"y", "2"}, {"x", "1"}}));
  a.Add(2);
  b.Add(3);
  CHECK(a.value() == 5);
  CHECK(registry->series_count() == 1);
  a.Add(-7);  // a counter never goes down
  CHECK(b.value() == 5);
}

TEST_CASE("default histogram bounds are DecisionLatencyBounds, NaN is ignored, infinities count") {
  auto registry = ProcessRegistry();
  Histogram h = Value(registry->GetHistogram("decide_seconds", "Decisions.", {}));
  h.Observe(2e-6);
  h.Observe(std::nan(""));
  h.Observe(std::numeric_limits<double>::infinity());
  CHECK(h.count() == 2);
  CHECK(std::isinf(h.sum()));
  const std::string text = registry->Render();
  CHECK(absl::StrContains(text, "decide_seconds_bucket{le=\"1e-07\"} 0\n"));
  CHECK(absl::StrContains(text, "decide_seconds_bucket{le=\"2.5e-06\"} 1\n"));
  CHECK(absl::StrContains(text, "decide_seconds_bucket{le=\"0.01\"} 1\n"));
  CHECK(absl::StrContains(text, "decide_seconds_bucket{le=\"+Inf\"} 2\n"));
  CHECK(absl::StrContains(text, "decide_seconds_sum +Inf\n"));
  CHECK(sluice::DecisionLatencyBounds().size() == 16);
}

TEST_CASE("invalid names, labels and bounds are InvalidArgument naming the argument") {
  auto registry = ProcessRegistry();
  auto counter = [&](std::string_view name, const sluice::MetricLabels& labels) {
    return registry->GetCounter(name, "h", labels);
  };
  CHECK(absl::StrContains(ErrorOf(counter("", {})), "name must be a Prometheus metric name"));
  CHECK(absl::StrContains(ErrorOf(counter("1abc", {})), "name must be"));
  CHECK(absl::StrContains(ErrorOf(counter("a-b", {})), "name must be"));
  CHECK(absl::StrContains(ErrorOf(counter("sluice_metrics_dropped_series_total", {})),
                          "reserved"));
  CHECK(absl::StrContains(ErrorOf(counter("ok", {{"a b", "v"}})), "labels: a label name"));
  CHECK(absl::StrContains(ErrorOf(counter("ok", {{"1a", "v"}})), "labels: a label name"));
  CHECK(absl::StrContains(ErrorOf(counter("ok", {{"__name__", "v"}})), "reserved"));
  CHECK(absl::StrContains(ErrorOf(counter("ok", {{"a", "1"}, {"a", "2"}})), "given twice"));
  CHECK(absl::StrContains(ErrorOf(counter("ok", {{"a", std::string(20000, 'x')}})),
                          "labels: the name and labels take"));
  CHECK(absl::StrContains(
      ErrorOf(registry->GetCounter("ok", std::string(5000, 'h'), {})), "help must be at most"));
  CHECK(absl::StrContains(ErrorOf(registry->GetHistogram("h", "h", {{"le", "1"}})),
                          "\"le\" is reserved"));
  CHECK(registry->GetCounter("ok", "h", {{"le", "1"}}).ok());  // only histograms reserve le
  CHECK(absl::StrContains(ErrorOf(registry->GetHistogram("h", "h", {}, {1, 1})),
                          "bounds must be strictly increasing"));
  CHECK(absl::StrContains(
      ErrorOf(registry->GetHistogram("h", "h", {}, {1, std::numeric_limits<double>::infinity()})),
      "bounds must be finite"));
  CHECK(absl::StrContains(ErrorOf(registry->GetHistogram("h", "h", {}, {std::nan("")})),
                          "bounds must be finite"));
  const std::vector<double> too_many(300, 1);
  CHECK(absl::StrContains(ErrorOf(registry->GetHistogram("h", "h", {}, too_many)),
                          "bounds must hold 1 to 256"));
  MetricsRegistry::Options options;
  options.max_series = 0;
  CHECK(absl::StrContains(ErrorOf(MetricsRegistry::Create(options)), "max_series must be"));
  options.max_series = sluice::kMaxMetricsSeries + 1;
  CHECK(absl::StrContains(ErrorOf(MetricsRegistry::Create(options)), "max_series must be"));
  options.max_series = 16;
  options.shared_region = "bad/name";
  CHECK(absl::StrContains(ErrorOf(MetricsRegistry::Create(options)), "shared_region"));
}

TEST_CASE("one name, one type and one help, one series, one set of bounds") {
  auto registry = ProcessRegistry();
  REQUIRE(registry->GetCounter("x", "help", {}).ok());
  CHECK(absl::StrContains(ErrorOf(registry->GetGauge("x", "help", {{"a", "b"}})),
                          "is registered as a counter, not a gauge"));
  CHECK(absl::StrContains(ErrorOf(registry->GetHistogram("x", "help", {})),
                          "is registered as a counter, not a histogram"));
  CHECK(absl::StrContains(ErrorOf(registry->GetCounter("x", "other help", {})),
                          "help of \"x\" differs"));
  REQUIRE(registry->GetHistogram("h", "help", {}, {1, 2}).ok());
  CHECK(registry->GetHistogram("h", "help", {{"k", "v"}}, {5}).ok());  // another series
  CHECK(absl::StrContains(ErrorOf(registry->GetHistogram("h", "help", {}, {1, 3})),
                          "bounds differ"));
}

TEST_CASE("beyond max_series a new series gets a no-op handle and is counted as dropped") {
  auto registry = ProcessRegistry(2);
  Counter a = Value(registry->GetCounter("c", "h", {{"k", "1"}}));
  Counter b = Value(registry->GetCounter("c", "h", {{"k", "2"}}));
  Counter c = Value(registry->GetCounter("c", "h", {{"k", "3"}}));
  Gauge g = Value(registry->GetGauge("g", "h", {}));
  Histogram h = Value(registry->GetHistogram("hist", "h", {}));
  CHECK(a);
  CHECK(b);
  CHECK_FALSE(c);
  CHECK_FALSE(g);
  CHECK_FALSE(h);
  c.Add(10);
  g.Set(4);
  h.Observe(1);
  CHECK(c.value() == 0);
  CHECK(g.value() == 0);
  CHECK(h.count() == 0);
  CHECK(Value(registry->GetCounter("c", "h", {{"k", "1"}})));  // known series keep working
  CHECK(registry->dropped_series() == 3);
  const std::string text = registry->Render();
  CHECK(absl::StrContains(text, "sluice_metrics_dropped_series_total 3\n"));
  CHECK_FALSE(absl::StrContains(text, "k=\"3\""));
  CHECK_FALSE(absl::StrContains(text, "# TYPE g "));
  CHECK_FALSE(Counter());  // default-constructed: a no-op too
  Counter().Add();
}

TEST_CASE("strings beyond the registry's string space are dropped, never grow its memory") {
  RegionName region;
  auto registry = HostRegistry(region.name, 16);
  const int64_t bytes = registry->memory_bytes();
  CHECK(bytes == Value(sluice::SharedRegionBytesForMetrics(16)));
  int made = 0;
  for (int i = 0; i < 16; ++i) {
    Counter c = Value(registry->GetCounter(
        "c", "h", {{"k", absl::StrCat(i)}, {"v", std::string(3000, 'x')}}));
    made += c ? 1 : 0;
  }
  CHECK(made == 2);  // 16 * 512 bytes hold two 3 KiB label sets
  CHECK(registry->dropped_series() == 14);
  CHECK(registry->memory_bytes() == bytes);
  CHECK(Value(registry->GetCounter("small", "h", {})));  // small ones still fit
}

TEST_CASE("region sizes: bytes per series as documented, the default far below 64 MiB") {
  const int64_t default_bytes = Value(sluice::SharedRegionBytesForMetrics(4096));
  CHECK(default_bytes == 4096 + 64 + 2 * 8192 * 32 + 4096 * sluice::kMetricsBytesPerSeries);
  CHECK(default_bytes < 3 * 1024 * 1024);
  CHECK(Value(sluice::SharedRegionBytesForMetrics(90000)) < 64 * 1024 * 1024);
  CHECK_FALSE(sluice::SharedRegionBytesForMetrics(0).ok());
  CHECK_FALSE(sluice::SharedRegionBytesForMetrics(sluice::kMaxMetricsSeries + 1).ok());
  RegionName region;
  CHECK(HostRegistry(region.name)->memory_bytes() == default_bytes);
}

TEST_CASE("docs/deployment.md's table of metrics region sizes agrees with the function") {
  std::ifstream doc(std::string(SLUICE_SOURCE_DIR) + "/docs/deployment.md");
  REQUIRE(doc.is_open());
  auto number = [](std::string cell, int64_t* out) {
    cell = absl::StrReplaceAll(absl::StripAsciiWhitespace(cell), {{",", ""}});
    return absl::SimpleAtoi(cell, out);
  };
  int rows = 0;
  bool in_table = false;
  for (std::string line; std::getline(doc, line);) {
    if (line.find("<!-- metrics region sizes -->") != std::string::npos) in_table = true;
    if (line.find("<!-- /metrics region sizes -->") != std::string::npos) in_table = false;
    if (!in_table || line.rfind("| ", 0) != 0 || line.find("---") != std::string::npos) continue;
    // | what | max_series | bytes | about |
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    REQUIRE(cells.size() >= 4);
    int64_t max_series = 0, bytes = 0;
    if (!number(cells[2], &max_series)) continue;  // the heading
    INFO(line);
    REQUIRE(number(cells[3], &bytes));
    CHECK(bytes == Value(sluice::SharedRegionBytesForMetrics(max_series)));
    ++rows;
  }
  CHECK(rows >= 4);
}

TEST_CASE("threads create and add to the same and to their own series concurrently") {
  auto registry = ProcessRegistry();
  constexpr int kThreads = 8;
  constexpr int kAdds = 20000;
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto shared = registry->GetCounter("shared_total", "h", {{"kind", "shared"}});
      auto own = registry->GetCounter("own_total", "h", {{"thread", absl::StrCat(t)}});
      auto hist = registry->GetHistogram("obs", "h", {}, {1, 2});
      if (!shared.ok() || !own.ok() || !hist.ok()) {
        errors.fetch_add(1);
        return;
      }
      for (int i = 0; i < kAdds; ++i) {
        shared->Add();
        own->Add(2);
        hist->Observe(1.5);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  REQUIRE(errors.load() == 0);
  CHECK(Value(registry->GetCounter("shared_total", "h", {{"kind", "shared"}})).value() ==
        kThreads * kAdds);
  for (int t = 0; t < kThreads; ++t) {
    CHECK(Value(registry->GetCounter("own_total", "h", {{"thread", absl::StrCat(t)}})).value() ==
          2 * kAdds);
  }
  Histogram hist = Value(registry->GetHistogram("obs", "h", {}, {1, 2}));
  CHECK(hist.count() == kThreads * kAdds);
  CHECK(hist.sum() == 1.5 * kThreads * kAdds);  // exact: every partial sum is a multiple of 0.5
  CHECK(registry->series_count() == 2 + kThreads);
}

TEST_CASE("collectors run at the start of Render, in order, a removed one never runs again") {
  auto registry = ProcessRegistry();
  Gauge bytes = Value(registry->GetGauge("cache_bytes", "Bytes.", {}));
  int64_t owned = 7;
  int runs = 0;
  const int64_t id = registry->AddCollector([&] {
    bytes.Set(owned);
    ++runs;
  });
  CHECK(absl::StrContains(registry->Render(), "cache_bytes 7\n"));
  owned = 9;
  CHECK(absl::StrContains(registry->Render(), "cache_bytes 9\n"));
  registry->RemoveCollector(id);
  registry->RemoveCollector(12345);  // unknown: ignored
  owned = 11;
  CHECK(absl::StrContains(registry->Render(), "cache_bytes 9\n"));
  CHECK(runs == 2);
}

TEST_CASE("handles keep the series' memory alive after the registry goes") {
  Counter counter;
  {
    RegionName region;
    counter = Value(HostRegistry(region.name)->GetCounter("c", "h", {}));
  }
  counter.Add(4);
  CHECK(counter.value() == 4);
}

TEST_CASE("process scope and fork: the child has a copy, the parent keeps its own values") {
  auto registry = ProcessRegistry();
  Counter counter = Value(registry->GetCounter("c", "h", {}));
  counter.Add(5);
  const std::string failure = InChildren(1, [&](int) -> std::string {
    if (counter.value() != 5) return "the child does not see the parent's 5";
    counter.Add(100);
    auto again = registry->GetCounter("c", "h", {});
    if (!again.ok() || again->value() != 105) return "the child's registry lost its series";
    if (!absl::StrContains(registry->Render(), "c 105\n")) return "the child renders wrong";
    return "";
  });
  CHECK(failure.empty());
  CHECK(counter.value() == 5);
}

TEST_CASE("host scope: four forked children add into the region and the parent renders the sum") {
  RegionName region;
  auto registry = HostRegistry(region.name);
  Counter inherited = Value(registry->GetCounter("requests_total", "Requests.", {{"w", "all"}}));
  constexpr int kChildren = 4;
  constexpr int kAdds = 10000;
  const std::string failure = InChildren(kChildren, [&](int i) -> std::string {
    // Handles made before the fork stay valid; series made in a child reach the parent too.
    for (int n = 0; n < kAdds; ++n) inherited.Add();
    auto own = registry->GetCounter("requests_total", "Requests.", {{"w", absl::StrCat(i)}});
    if (!own.ok() || !*own) return "GetCounter failed in the child";
    own->Add(i + 1);
    auto fresh = HostRegistry(region.name);  // a registry the child opens itself
    auto h = fresh->GetHistogram("latency_seconds", "L.", {}, {1});
    if (!h.ok()) return h.status().ToString();
    h->Observe(0.5);
    return "";
  });
  REQUIRE(failure.empty());
  CHECK(inherited.value() == kChildren * kAdds);
  const std::string text = registry->Render();
  CHECK(absl::StrContains(text, absl::StrCat("requests_total{w=\"all\"} ", kChildren * kAdds)));
  for (int i = 0; i < kChildren; ++i) {
    CHECK(absl::StrContains(text, absl::StrCat("requests_total{w=\"", i, "\"} ", i + 1, "\n")));
  }
  // A family this process never registered, with its help and type.
  CHECK(absl::StrContains(text, "# HELP latency_seconds L.\n# TYPE latency_seconds histogram\n"));
  CHECK(absl::StrContains(text, "latency_seconds_count 4\n"));
  CHECK(absl::StrContains(text, "latency_seconds_sum 2\n"));
}

TEST_CASE("host scope: a second registry on the region sees the first's series and checks") {
  RegionName region;
  auto first = HostRegistry(region.name);
  Gauge g = Value(first->GetGauge("breaker_open", "Open breakers.", {{"upstream", "a"}}));
  g.Set(1);
  auto second = HostRegistry(region.name);
  CHECK(absl::StrContains(second->Render(), "breaker_open{upstream=\"a\"} 1\n"));
  Gauge same = Value(second->GetGauge("breaker_open", "Open breakers.", {{"upstream", "a"}}));
  same.Add(2);  // gauges are host-wide
  CHECK(g.value() == 3);
  CHECK(second->series_count() == 1);
  CHECK(absl::StrContains(ErrorOf(second->GetCounter("breaker_open", "Open breakers.", {})),
                          "is registered as a gauge"));
  MetricsRegistry::Options other;
  other.shared_region = region.name;
  other.max_series = 8;
  CHECK(ErrorOf(MetricsRegistry::Create(other)).find("max_series=4096") != std::string::npos);
}

TEST_CASE("host scope: a process killed while creating a series, the next creator takes over") {
  RegionName region;
  auto registry = HostRegistry(region.name);
  REQUIRE(registry->GetCounter("c", "h", {{"k", "other"}}).ok());  // the family exists
  const std::string key =
      Value(sluice::internal::SeriesKey("test", "c", sluice::internal::MetricType::kCounter,
                                        {{"k", "v"}}));
  SharedPage page;
  const pid_t creator = fork();
  REQUIRE(creator >= 0);
  if (creator == 0) {
    auto memory = sluice::internal::MetricsMemory::Create(region.name, 4096);
    if (!memory.ok()) _exit(2);
    (*memory)->FindOrCreate(
        sluice::internal::MetricsMemory::Table::kSeries,
        sluice::internal::HashBytes(key, sluice::internal::kSeriesSeed),
        [](const int64_t*) { return false; },
        [&](int64_t*) {
          page.flag().store(1);  // the slot is claimed, nothing is written
          for (;;) pause();
          return false;
        });
    _exit(3);
  }
  while (page.flag().load() == 0) std::this_thread::yield();
  kill(creator, SIGKILL);
  int status = 0;
  waitpid(creator, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  Counter taken = Value(registry->GetCounter("c", "h", {{"k", "v"}}));
  REQUIRE(taken);
  taken.Add(7);
  CHECK(absl::StrContains(registry->Render(), "c{k=\"v\"} 7\n"));
  CHECK(registry->series_count() == 2);  // the dead creator's claim was not counted twice
}

TEST_CASE("host scope: a process killed while creating the region, the next opener takes over") {
  RegionName region;
  SharedPage page;
  const pid_t creator = fork();
  REQUIRE(creator >= 0);
  if (creator == 0) {
    (void)sluice::internal::SharedRegion::OpenOrCreate(
        region.name, sluice::internal::MetricsMemory::SpecFor(64), [&](int64_t*, int64_t) {
          page.flag().store(1);  // reserved and locked, `ready` unpublished
          for (;;) pause();
        });
    _exit(3);
  }
  while (page.flag().load() == 0) std::this_thread::yield();
  kill(creator, SIGKILL);
  waitpid(creator, nullptr, 0);
  auto registry = HostRegistry(region.name, 64);
  Counter c = Value(registry->GetCounter("after_crash_total", "h", {}));
  c.Add();
  CHECK(absl::StrContains(registry->Render(), "after_crash_total 1\n"));
}
