#include "shapes.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "recency_stack.h"
#include "zipf.h"

namespace cache_traces {
namespace {

constexpr int kQuestions = 100000;  // the fixed question set of the Zipf shapes
constexpr int64_t kLoopBudget = int64_t{8} << 20;  // loop: a cycle of ~1.3x this budget

// The state one trace is drawn with: the random stream, the next never-asked id, the recency
// stack (kept only for the shapes that read it).
struct Draw {
  Draw(uint64_t seed, int64_t requests, int64_t first_new_id, bool track_recency)
      : rng(seed), next_new(first_new_id) {
    if (track_recency) stack = std::make_unique<RecencyStack>(requests);
    out.reserve(static_cast<size_t>(requests));
  }
  void Ask(int64_t id) {
    if (stack) stack->Ask(id);
    out.push_back({id, ChargedBytes(id)});
  }
  int64_t New() { return next_new++; }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng); }

  std::mt19937_64 rng;
  int64_t next_new;
  std::unique_ptr<RecencyStack> stack;
  std::vector<Request> out;
};

// recency: a quarter brand-new questions; the rest repeat the question of stack depth k, k drawn
// from Zipf(0.9) over 100,000 depths (a depth not reached yet asks a new question).
class RecencyStep {
 public:
  RecencyStep() : age_(kQuestions, 0.9) {}
  int64_t operator()(Draw& d) const {
    if (d.Chance(0.25)) return d.New();
    const int64_t rank = age_(d.rng) + 1;
    return rank <= d.stack->distinct() ? d.stack->AtRank(rank) : d.New();
  }

 private:
  bench::Zipf age_;
};

using Shape = std::function<void(Draw&, int64_t requests)>;

struct ShapeEntry {
  ShapeInfo info;
  int64_t first_new_id;
  bool track_recency;
  Shape draw;
};

void ZipfShape(Draw& d, int64_t requests, double s) {
  const bench::Zipf zipf(kQuestions, s);
  for (int64_t r = 0; r < requests; ++r) d.Ask(zipf(d.rng));
}

const std::vector<ShapeEntry>& Registry() {
  static const std::vector<ShapeEntry> shapes = {
      {{"zipf-0.6", "Zipf(0.6) over 100,000 questions (little skew)"}, kQuestions, false,
       [](Draw& d, int64_t n) { ZipfShape(d, n, 0.6); }},
      {{"zipf-0.8", "Zipf(0.8) over 100,000 questions"}, kQuestions, false,
       [](Draw& d, int64_t n) { ZipfShape(d, n, 0.8); }},
      {{"zipf-0.99", "Zipf(0.99) over 100,000 questions"}, kQuestions, false,
       [](Draw& d, int64_t n) { ZipfShape(d, n, 0.99); }},
      {{"scan", "Zipf(0.99) over 100,000 questions, every third request a one-off question"},
       kQuestions, false,
       [](Draw& d, int64_t n) {
         const bench::Zipf zipf(kQuestions, 0.99);
         for (int64_t r = 0; r < n; ++r) d.Ask(r % 3 == 2 ? d.New() : zipf(d.rng));
       }},
      {{"shifting", "2,000 questions asked uniformly, replaced by 2,000 new ones every 25,000 requests"},
       0, false,
       [](Draw& d, int64_t n) {
         std::uniform_int_distribution<int64_t> in_set(0, 1999);
         for (int64_t r = 0; r < n; ++r) d.Ask(r / 25000 * 2000 + in_set(d.rng));
       }},
      {{"recency", "25% new questions; 75% repeat the question at stack depth Zipf(0.9)"}, 0, true,
       [](Draw& d, int64_t n) {
         const RecencyStep step;
         for (int64_t r = 0; r < n; ++r) d.Ask(step(d));
       }},
      {{"loop", "a cycle over the questions of ~1.3 x 8 MiB of charged bytes (the LRU killer)"}, 0,
       false,
       [](Draw& d, int64_t n) {
         int64_t loop = 0;
         for (int64_t bytes = 0; bytes < kLoopBudget * 13 / 10; ++loop) bytes += ChargedBytes(loop);
         for (int64_t r = 0; r < n; ++r) d.Ask(r % loop);
       }},
      {{"mix-change", "first half Zipf(0.99) over 100,000 questions, second half recency"},
       kQuestions, true,
       [](Draw& d, int64_t n) {
         const bench::Zipf zipf(kQuestions, 0.99);
         const RecencyStep step;
         for (int64_t r = 0; r < n; ++r) d.Ask(r < n / 2 ? zipf(d.rng) : step(d));
       }},
      {{"trending", "70% Zipf(0.8) over 100,000 questions; 30% trending topics (20 questions, a "
                    "new topic every 2,000 requests, topic age geometric(0.3))"},
       kQuestions, false,
       [](Draw& d, int64_t n) {
         const bench::Zipf zipf(kQuestions, 0.8);
         std::geometric_distribution<int64_t> topic_age(0.3);
         std::uniform_int_distribution<int64_t> in_topic(0, 19);
         for (int64_t r = 0; r < n; ++r) {
           if (!d.Chance(0.3)) {
             d.Ask(zipf(d.rng));
             continue;
           }
           const int64_t topic = std::max<int64_t>(0, r / 2000 - topic_age(d.rng));
           d.Ask(kQuestions + topic * 20 + in_topic(d.rng));
         }
       }},
  };
  return shapes;
}

}  // namespace

const std::vector<ShapeInfo>& Shapes() {
  static const std::vector<ShapeInfo> infos = [] {
    std::vector<ShapeInfo> v;
    for (const ShapeEntry& e : Registry()) v.push_back(e.info);
    return v;
  }();
  return infos;
}

absl::StatusOr<std::vector<Request>> Generate(const std::string& shape, uint64_t seed,
                                              int64_t requests) {
  if (requests <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("requests: must be > 0, got ", requests));
  }
  for (const ShapeEntry& e : Registry()) {
    if (shape != e.info.name) continue;
    Draw d(seed, requests, e.first_new_id, e.track_recency);
    e.draw(d, requests);
    return std::move(d.out);
  }
  return absl::InvalidArgumentError(absl::StrCat("shape: unknown shape \"", shape, "\""));
}

}  // namespace cache_traces
