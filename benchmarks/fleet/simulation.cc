#include "simulation.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "sluice/clock.h"

namespace fleet {
namespace {

using sluice::Balancer;

struct Session {
  int id = 0;
  int turns = 0;
  int turn = 0;
  std::vector<sluice::ChatMessage> messages;
};

// Filler text standing in for tokens: chars_per_token random letters per token.
std::string Text(std::mt19937_64& rng, int tokens, int chars_per_token) {
  std::string s(static_cast<size_t>(tokens * chars_per_token), ' ');
  for (char& c : s) c = static_cast<char>('a' + rng() % 26);
  return s;
}

int Around(std::mt19937_64& rng, int mean) {  // uniform in [0.75, 1.25] x mean
  const int spread = std::max(1, mean / 2);
  return std::max(1, mean - spread / 2 + static_cast<int>(rng() % static_cast<uint64_t>(spread + 1)));
}

std::string Serialise(const std::vector<sluice::ChatMessage>& messages) {
  std::string s;
  for (const auto& m : messages) absl::StrAppend(&s, m.role, "\x1f", m.content, "\x1e");
  return s;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5)];
}

double Mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / static_cast<double>(v.size());
}

}  // namespace

std::vector<Strategy> DefaultStrategies() {
  auto make = [](std::string name, Balancer::Strategy s) {
    Strategy out;
    out.name = std::move(name);
    out.options.strategy = s;
    return out;
  };
  std::vector<Strategy> all = {
      make("round robin", Balancer::Strategy::kRoundRobin),
      make("least request (P2C)", Balancer::Strategy::kLeastRequest),
      make("prefix affinity", Balancer::Strategy::kPrefixAffinity),
      make("metrics-aware", Balancer::Strategy::kScored),
      make("prefix + metrics", Balancer::Strategy::kScored),
      make("consistent hash", Balancer::Strategy::kConsistentHash),
  };
  all[3].options.weights.prefix = 0;  // queue depth, KV use and in-flight only
  all[5].session_affinity_key = true;
  return all;
}

Result Simulate(const Workload& w, const Strategy& strategy, const ReplicaModel& model) {
  sluice::ManualClock clock;
  Balancer::Options options = strategy.options;
  options.seed = 12345;
  std::unique_ptr<Balancer> balancer = Balancer::Create(options, &clock).value();
  std::vector<Replica> replicas;
  for (int i = 0; i < w.replicas; ++i) {
    replicas.emplace_back(i, model);
    (void)balancer->AddEndpoint({.id = absl::StrCat(i)});
  }

  std::mt19937_64 rng(w.seed);
  const std::string system = Text(rng, w.system_prompt_tokens, model.chars_per_token);
  std::vector<Session> sessions(static_cast<size_t>(w.sessions));
  for (int i = 0; i < w.sessions; ++i) {
    sessions[i].id = i;
    // Hot sessions are spread through the run, not all at its start.
    const bool hot = w.hot_sessions > 0 && i % std::max(1, w.sessions / w.hot_sessions) == 0 &&
                     i / std::max(1, w.sessions / w.hot_sessions) < w.hot_sessions;
    sessions[i].turns = hot ? w.hot_turns : w.turns;
    if (w.system_prompt_tokens > 0) sessions[i].messages.push_back({"system", system});
  }

  std::vector<std::unique_ptr<SimRequest>> requests;
  std::vector<std::optional<Balancer::Pick>> picks;
  std::vector<std::string> replies;  // the assistant text each request will produce
  int next_session = 0, sent_after_slow = 0, to_slow_after = 0;
  bool slowed = false;

  auto send_turn = [&](Session& s, double now) {
    s.messages.push_back({"user", Text(rng, Around(rng, w.input_tokens), model.chars_per_token)});
    ++s.turn;
    auto r = std::make_unique<SimRequest>();
    r->id = static_cast<int>(requests.size());
    r->session = s.id;
    r->sent_at = now;
    r->prompt_text = Serialise(s.messages);
    r->prompt_tokens = static_cast<int>(r->prompt_text.size()) / model.chars_per_token;
    r->output_tokens = Around(rng, w.output_tokens);
    replies.push_back(Text(rng, r->output_tokens, model.chars_per_token));
    r->output_text = absl::StrCat("assistant\x1f", replies.back(), "\x1e");

    sluice::LlmRequest request;
    request.model = "sim";
    request.messages = s.messages;
    request.prompt_chars = static_cast<int64_t>(r->prompt_text.size());
    clock.SetNanos(static_cast<int64_t>(now * 1e9));
    const std::string key = strategy.session_affinity_key ? absl::StrCat("session-", s.id) : "";
    Balancer::Pick pick = balancer->PickEndpoint(request, key).value();
    const int target = std::stoi(pick.endpoint_id());
    picks.emplace_back(std::move(pick));
    if (slowed) {
      ++sent_after_slow;
      to_slow_after += target == w.slow_replica;
    }
    replicas[target].Enqueue(r.get(), now);
    requests.push_back(std::move(r));
    if (w.slow_replica >= 0 && !slowed && static_cast<int>(requests.size()) == w.slow_after_requests) {
      replicas[w.slow_replica].set_slowdown(w.slowdown);
      slowed = true;
    }
  };
  auto start_next_session = [&](double now) {
    if (next_session < w.sessions) send_turn(sessions[next_session++], now);
  };

  for (int c = 0; c < w.concurrency; ++c) start_next_session(0);
  const bool feeds_metrics = options.strategy == Balancer::Strategy::kScored;
  double next_scrape = 0;
  constexpr double kScrapeInterval = 0.05;  // the Inference Extension's 50 ms
  while (true) {
    size_t busiest = 0;
    for (size_t i = 1; i < replicas.size(); ++i) {
      if (replicas[i].next_event() < replicas[busiest].next_event()) busiest = i;
    }
    const double t = replicas[busiest].next_event();
    if (t == std::numeric_limits<double>::infinity()) break;
    if (feeds_metrics && next_scrape <= t) {
      clock.SetNanos(static_cast<int64_t>(next_scrape * 1e9));
      for (Replica& r : replicas) (void)balancer->UpdateMetrics(absl::StrCat(r.index()), r.MetricsText());
      next_scrape += kScrapeInterval;
      continue;
    }
    for (SimRequest* done : replicas[busiest].FinishIteration()) {
      const size_t id = static_cast<size_t>(done->id);
      clock.SetNanos(static_cast<int64_t>(t * 1e9));
      picks[id]->Complete({.latency = absl::Seconds(done->done_at - done->sent_at),
                           .ttft = absl::Seconds(done->first_token_at - done->sent_at)});
      Session& s = sessions[static_cast<size_t>(done->session)];
      s.messages.push_back({"assistant", replies[id]});
      if (s.turn < s.turns) {
        send_turn(s, t);
      } else {
        s.messages.clear();  // finished: free its text
        start_next_session(t);
      }
    }
  }

  Result out;
  std::vector<double> ttft, rt;
  double first = std::numeric_limits<double>::infinity(), last = 0, tokens = 0;
  for (const auto& r : requests) {
    ttft.push_back((r->first_token_at - r->sent_at) * 1000);
    rt.push_back(r->done_at - r->sent_at);
    first = std::min(first, r->sent_at);
    last = std::max(last, r->done_at);
    tokens += r->output_tokens;
  }
  out.requests = static_cast<int>(requests.size());
  out.ttft_mean_ms = Mean(ttft);
  out.ttft_p50_ms = Percentile(ttft, 0.5);
  out.ttft_p99_ms = Percentile(ttft, 0.99);
  out.rt_mean_s = Mean(rt);
  out.rt_p99_s = Percentile(rt, 0.99);
  out.output_tokens_per_s = tokens / (last - first);
  double prompt = 0, cached = 0;
  for (const Replica& r : replicas) prompt += r.prompt_tokens(), cached += r.cached_tokens();
  out.hit_rate = prompt > 0 ? cached / prompt : 0;
  if (w.slow_replica >= 0 && sent_after_slow > 0) {
    out.slow_share_after = static_cast<double>(to_slow_after) / sent_after_slow;
  }
  return out;
}

}  // namespace fleet
