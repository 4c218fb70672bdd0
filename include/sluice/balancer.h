// -----------------------------------------------------------------------------
// File: sluice/balancer.h
// -----------------------------------------------------------------------------
//
// `Balancer` picks one of N LLM endpoints (vLLM or SGLang replicas, provider deployments, API
// keys) for each request, inside the process that sends it. The caller sends the request itself
// with its own HTTP client and reports how it went; the balancer learns from that.
//
//   Pick  ->  send the request  ->  pick.Complete(outcome)
//
// Every pick first *filters* the endpoints (model label, cooldown, max concurrency), then applies
// the balancer's strategy to what is left:
//
//   kRoundRobin          in turn.
//   kWeightedRoundRobin  smooth weighted round robin (nginx's): weight 3:1 gives a a b a, not a a a b.
//   kLeastRequest        power of two choices over in-flight counts (divided by weight).
//   kPrefixAffinity      the endpoint that already holds the longest prefix of this conversation
//                        in its KV cache, as far as the balancer's own routing history says:
//                        chained block hashes (sluice/llm_request.h) in a per-endpoint index
//                        bounded to the endpoint's KV capacity (LRU), keyed per group of 4 blocks
//                        (so matches are whole groups). A short match that ends
//                        where other conversations branched off (a shared system prompt, a
//                        common template) is no affinity: the index records which group followed
//                        each group, and a prefix that several continuations share says nothing
//                        about where this conversation lives, so new conversations spread by
//                        load. A long one (min_shared_affinity_blocks, 16 blocks: a RAG
//                        document) is, unless every candidate holds it: its prefill is worth
//                        saving.
//                        Two load guards keep a
//                        popular prefix from pinning one replica: a holder whose in-flight
//                        count is more than a gap above the least-loaded candidate's and more
//                        than imbalance_rel times it, or more than hot_spot_sigmas standard
//                        deviations above the mean (only reachable with 6 or more endpoints), or
//                        saturated, is not offered the prefix. The gap grows with the match:
//                        imbalance_abs (2) per min_shared_affinity_blocks (16) matched, so a short
//                        conversation's held picks go [3,0,0,0] on 4 endpoints, then spread,
//                        while a long history or document stays with its holder up to 2 x
//                        blocks / 16 ahead (moving it costs a full re-prefill; one more request
//                        in flight on a continuous-batching engine costs little). Nor is one whose
//                        KV cache this request would overflow, while another has room: full by
//                        its fresh engine metrics (KV usage >= kv_full_usage), or by the
//                        balancer's estimate of the tokens it keeps (the conversations recently
//                        routed there that continued past their first turn, see
//                        kv_session_half_life) plus this request's, beyond its
//                        kv_capacity_blocks; so long sessions that would evict each other's cache
//                        are not stacked, at the cost of one re-prefill. No match: least loaded
//                        among the endpoints with room, then the fewest prompt tokens in flight
//                        from this balancer (the prefill queued), then the smallest index ("most
//                        free cache"). Ties among holders of a match go the same way.
//   kScored              weighted scores over the candidates: prefix match (the share of the
//                        prompt held beyond what every candidate holds, 0 for a shared prefix as
//                        above), queue depth and KV-cache use from the engines' own metrics
//                        (`UpdateMetrics`; with a prefix weight, at least the estimated share of
//                        the KV cache with this request, which may exceed 1), in-flight count;
//                        the highest total wins, ties at random. Weight 0 drops a signal. Prefix
//                        is in [0, 1], KV use in [0, 2] (past 1: an overflow); queue
//                        and in-flight are scored on an absolute scale (`score_load_slack`), not
//                        min-max over the candidates, so one request more never outweighs a
//                        prefix match while a large excess outweighs any. Queue depth is the last
//                        scrape's waiting + running, corrected by this balancer's in-flight change
//                        since that scrape; metrics older than `metrics_max_age` are ignored
//                        (in-flight counts stand in). With the prefix weight at 0 this is the
//                        metrics-aware strategy.
//   kConsistentHash      bounded-load consistent hashing on `PickRequest::affinity_key` (a session
//                        or user id): the key's ring successor, skipping endpoints already over
//                        load_bound x the mean in-flight count. No key: least request.
//
// Failures cool an endpoint down by error class, as Dify's LBModelManager does for API keys: a
// rate limit takes it out of rotation for 60 s, an auth or connection error for 10 s, after
// `failures_before_cooldown` consecutive failures; it comes back by itself. Round robin over
// API-key endpoints with these cooldowns is credential rotation.
//
// Outlier ejection (Envoy's): an endpoint whose last `outlier.consecutive_failures` requests all
// failed with a 5xx, a connection error or a timeout is ejected for `outlier.base_ejection_time`
// times the number of times it has been ejected (at most `outlier.max_ejection_time`), but never
// more than `outlier.max_ejection_percent` of the endpoints at once (at least one). Each healthy
// stretch of one base ejection time after it returns takes one off its count.
//
// Administration: `Cooldown`, `Eject` and `Restore` act on an endpoint without a pick (an
// operator's console, a key-rotation job), and `Endpoints()` reports what such a console shows.
// With `Options::shared_region`, cooldowns and ejections (the automatic ones and the
// administered ones) are host-wide: every worker that balances over the same endpoint ids skips
// a key that one of them cooled down, as Dify's LBModelManager does through Redis (see
// docs/balancer.md, "Administration and shared state"); with `Options::redis` they are
// fleet-wide, through Redis.
//
// Example:
//
//   sluice::Balancer::Options options;
//   options.strategy = sluice::Balancer::Strategy::kPrefixAffinity;
//   auto balancer = sluice::Balancer::Create(options).value();
//   balancer->AddEndpoint({.id = "vllm-0", .labels = {{"model", "qwen"}}}).IgnoreError();
//   ...
//   sluice::LlmRequest request = sluice::ParseLlmRequest(body).value();
//   absl::StatusOr<sluice::Balancer::Pick> pick = balancer->PickEndpoint(request);
//   if (!pick.ok()) return Unavailable(pick.status());
//   Response r = Post(UrlOf(pick->endpoint_id()), body);
//   pick->Complete({.http_status = r.status, .ttft = r.ttft, .latency = r.latency});
//
// Thread-safety: every method may be called from any thread at once. Picks are serialised by one
// mutex (a pick costs microseconds; an LLM request lasts seconds); `Complete` takes only its
// endpoint's lock. Endpoints may be added, updated and removed while picks are in flight: a pick
// of a removed endpoint completes normally and counts nowhere. A `Pick` is a value owned by one
// thread at a time; it may outlive the Balancer (not the Clock).

#ifndef SLUICE_BALANCER_H_
#define SLUICE_BALANCER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "sluice/clock.h"
#include "sluice/concurrency_limiter.h"
#include "sluice/engine_metrics.h"
#include "sluice/failure.h"
#include "sluice/llm_request.h"

namespace sluice {
inline namespace v1 {

class RedisStore;

namespace internal {
class BalancerCore;
class ClusterLoads;
struct EndpointState;
}  // namespace internal

// One endpoint: a replica, a provider deployment, or an API key.
struct EndpointSpec {
  // Unique within the balancer; required.
  std::string id;
  // Relative capacity, >= 1. Default 1.
  int64_t weight = 1;
  // Requests in flight at once through this balancer (host-wide with Options::shared_region); a
  // saturated endpoint is skipped. 0 (the default) means no cap.
  int64_t max_concurrency = 0;
  // Its KV capacity in blocks of `Options::prefix_hash.block_chars` bytes (about block_chars / 4
  // tokens each): the prefix-index entries kept for it, and the tokens the KV-pressure estimate
  // lets it hold. 0 (the default): `Options::kv_capacity_blocks`.
  int64_t kv_capacity_blocks = 0;
  // Free-form labels. "model" is matched against `PickRequest::model`; others ("provider",
  // "api_key", ...) are for the caller to read back from the Pick.
  absl::flat_hash_map<std::string, std::string> labels;
};

// What a pick looks at.
struct PickRequest {
  // Only endpoints whose "model" label equals this (or that have no "model" label). Empty: any.
  std::string_view model;
  // kPrefixAffinity and kScored: the request's chained block hashes (PrefixBlockHashes).
  absl::Span<const uint64_t> prefix_blocks;
  // kConsistentHash: the session or user the request belongs to.
  std::string_view affinity_key;
  // kPrefixAffinity and kScored: the prompt's size in tokens, for the KV-pressure estimate.
  // 0 (the default): the hashed blocks' bytes / 4, which undercounts prompts longer than the
  // hashes cover (PrefixHashOptions::max_blocks). PickEndpoint(LlmRequest) fills it in.
  int64_t prompt_tokens = 0;
};

// What the balancer knows about one endpoint (Balancer::Endpoints()).
struct EndpointStats {
  std::string id;
  // This process's picks (with a shared region, other processes' picks count in the strategies
  // but not here: see host_in_flight).
  int64_t in_flight = 0;
  // With Options::shared_region: the picks in flight there from every process on the host (live
  // leases); without one, in_flight.
  int64_t host_in_flight = 0;
  // With Options::redis: host_in_flight plus the other hosts' picks in flight there, as last
  // read from Redis (what the strategies count); without it, host_in_flight.
  int64_t fleet_in_flight = 0;
  int64_t picks = 0;
  int64_t completions = 0;
  int64_t errors = 0;
  // Exponentially weighted moving averages over completed requests (zero until the first).
  absl::Duration ewma_latency = absl::ZeroDuration();
  absl::Duration ewma_ttft = absl::ZeroDuration();
  double ewma_error_rate = 0;
  // Cooling down until this time on the balancer's clock (nanoseconds); 0 if not cooling down.
  // With a shared region, the host-wide cooldown, whichever process set it.
  int64_t cooldown_until_nanos = 0;
  // Why it is cooling down: the failure class that cooled it, or the reason given to Cooldown
  // (kNone: an administered cooldown without one). kNone when not cooling down.
  Failure cooldown_reason = Failure::kNone;
  // This process's last failed completion: its class and when (nanoseconds on the balancer's
  // clock); kNone and 0 before the first.
  Failure last_failure = Failure::kNone;
  int64_t last_failure_at_nanos = 0;
  // The last metrics handed to UpdateMetrics and when (nanoseconds on the balancer's clock).
  std::optional<EngineMetrics> metrics;
  int64_t metrics_at_nanos = 0;
  // Blocks in this endpoint's prefix index.
  int64_t prefix_blocks = 0;
  // Outlier ejection or Eject: ejected until this time on the balancer's clock (0 if not; with a
  // shared region, host-wide), and how many times outlier detection in this process has ejected
  // it (less one per healthy stretch since).
  int64_t ejected_until_nanos = 0;
  int64_t times_ejected = 0;
};

// sluice::Balancer
class Balancer {
 public:
  enum class Strategy {
    kRoundRobin,
    kWeightedRoundRobin,
    kLeastRequest,
    kPrefixAffinity,
    kScored,
    kConsistentHash,
  };

  struct ScoreWeights {
    // kScored's weights; each >= 0 and not all 0. Defaults: the Gateway API Inference
    // Extension's 3:2:2 (prefix : queue : KV), plus in-flight 1.
    double prefix = 3;
    double queue = 2;
    double kv_cache = 2;
    double in_flight = 1;
  };

  // Outlier ejection (see the file comment).
  struct OutlierDetection {
    // Failures in a row (5xx, connection, timeout) that eject an endpoint. Default 5 (Envoy's);
    // 0 disables ejection. >= 0.
    int64_t consecutive_failures = 5;
    // The first ejection's length; the n-th lasts n times this. Default 30 s. > 0.
    absl::Duration base_ejection_time = absl::Seconds(30);
    // No ejection lasts longer. Default 300 s. >= base_ejection_time.
    absl::Duration max_ejection_time = absl::Seconds(300);
    // Endpoints ejected at once, as a percentage of all (at least one). Default 10. In [0, 100].
    double max_ejection_percent = 10;
  };

  struct Options {
    Strategy strategy = Strategy::kLeastRequest;
    // How requests are cut into blocks for the prefix index (see sluice/llm_request.h).
    PrefixHashOptions prefix_hash;
    // Default per-endpoint KV capacity in blocks of prefix_hash.block_chars bytes (4 bytes a
    // token): it bounds the endpoint's prefix index, and is what the KV-pressure estimate fills.
    // Default 16,384 (with 128-byte blocks, about 2 MiB of prompt text, 512k tokens); set it (or
    // EndpointSpec::kv_capacity_blocks) to the engine's KV cache, e.g. vLLM's "GPU KV cache size:
    // N tokens" / 32, for the estimate to mean anything. >= 1.
    int64_t kv_capacity_blocks = 16384;
    // kPrefixAffinity's imbalance gate, per holder: a holder of the longest match whose load (in
    // flight / weight) exceeds the least-loaded candidate's by more than a gap AND is more than
    // imbalance_rel times it is not offered the prefix (the longest match among the others is
    // tried next). The gap is imbalance_abs per min_shared_affinity_blocks matched, at least
    // imbalance_abs: moving a conversation costs a full prefill of what its holder has cached,
    // one more request in flight costs a continuous-batching engine little. Defaults 2 and 1.5:
    // a short match's holder may run two requests ahead of an idle replica (half again ahead of a
    // busy one), a 3,000-token document's (94 blocks) about 12, a full 8k-token history's (256
    // blocks) 32, SGLang's default. (SGLang's router applies one such test, with 32-64 and 1.5,
    // to the whole fleet.) >= 0, >= 1.
    int64_t imbalance_abs = 2;
    double imbalance_rel = 1.5;
    // kPrefixAffinity, kScored: a match that ends where several conversations branch off (a
    // shared system prompt, a RAG document) counts as affinity only when it is at least this
    // many blocks long and not every candidate holds it: a short shared prefix saves little
    // prefill and would pile new conversations onto its first holder, while a long one (a
    // 3,000-token document: ~94 blocks) is worth sending to the replicas that hold it (the load
    // gates above still spread a popular one). Default 16 (2 KiB with 128-byte blocks, about
    // 512 tokens). It is also the imbalance gate's unit of match (see imbalance_abs). >= 1; a
    // very large value gives no affinity to any shared prefix.
    int64_t min_shared_affinity_blocks = 16;
    // kPrefixAffinity's hot-spot guard: an endpoint with more in flight than mean + this many
    // standard deviations + 1 is not offered to a prefix. Default 2 (AIBrix's rule). Since the
    // largest of n values is at most sigma x sqrt(n - 1) above their mean, it can only fire with
    // 6 or more endpoints (at 2 sigmas); the imbalance gate covers smaller fleets. >= 0.
    double hot_spot_sigmas = 2;
    ScoreWeights weights;
    // kScored: queue depth and in-flight load score 1 - (x - least) / (mean + score_load_slack)
    // over the candidates (below 0 for a large excess), so one request more than the least
    // loaded costs little next to a prefix match, and a replica loaded far above the mean loses
    // even with a full match. Default 4 (requests). > 0.
    double score_load_slack = 4;
    // Metrics older than this are ignored. Default 2 s (the Inference Extension's staleness
    // bound). > 0.
    absl::Duration metrics_max_age = absl::Seconds(2);
    // KV pressure (kPrefixAffinity, kScored with a prefix weight). The balancer estimates the
    // prompt tokens each endpoint keeps cached: every conversation routed there, at its latest
    // size, fading by half every kv_session_half_life since it was last routed there (a
    // conversation that moves is taken off its old endpoint). A prompt counts from its
    // conversation's second turn on: a one-off (a RAG question, a document to summarise) holds
    // cache the engine evicts at no cost to anyone, and counting it made busy replicas look
    // full. An endpoint's capacity is its kv_capacity_blocks x block_chars / 4 tokens. Default
    // 30 s: a conversation idle for two minutes counts for 1/16 (it has likely ended, or the
    // engine has evicted it). 60 s kept ended agentic sessions counted so long that, with a
    // tight KV cache, every replica looked full (benchmarks/fleet2 at 24k: p99 1.7x round
    // robin's, 0.24x at 30 s). Finite, > 0.
    absl::Duration kv_session_half_life = absl::Seconds(30);
    // An endpoint whose fresh engine metrics report this share of its KV cache in use or more
    // is full too. Default 0.9. In (0, 1].
    double kv_full_usage = 0.9;
    // kConsistentHash: no endpoint takes more than ceil(load_bound x (in flight + 1) / n).
    // Default 1.25. >= 1. Ring points per unit of weight: default 64, >= 1.
    double load_bound = 1.25;
    int64_t virtual_nodes = 64;
    // Consecutive failures of a class before the endpoint cools down. Default 1. >= 1.
    int64_t failures_before_cooldown = 1;
    // Cooldown per error class; zero disables it for that class. Defaults from Dify's
    // LBModelManager: rate limited 60 s, auth 10 s, connection 10 s; timeouts and 5xx 0.
    absl::Duration cooldown_rate_limited = absl::Seconds(60);
    absl::Duration cooldown_auth = absl::Seconds(10);
    absl::Duration cooldown_connection = absl::Seconds(10);
    absl::Duration cooldown_timeout = absl::ZeroDuration();
    absl::Duration cooldown_server = absl::ZeroDuration();
    OutlierDetection outlier;
    // Weight of the newest sample in the moving averages. Default 0.2. In (0, 1].
    double ewma_weight = 0.2;
    // Seed of the random tie-breaks and power-of-two samples; 0 picks one at random.
    uint64_t seed = 0;
    // Host scope: every process on the host that uses the same region name sees the others'
    // in-flight counts, so least request (and every load-aware rule) balances the host's
    // Gunicorn workers together instead of each on its own. Each pick holds a lease in the
    // region (sluice/concurrency_limiter.h), so a process killed with picks in flight leaves
    // counts that expire after `shared_lease`. Default: empty (each process counts alone).
    //
    // Shared state. Cooldowns and ejections are host-wide too: those that failed picks set, and
    // those set by Cooldown / Eject, live in a second region, "<shared_region>.endpoints" (about
    // 388 KiB of /dev/shm; room for 4096 distinct endpoint ids in its lifetime: past that,
    // AddEndpoint of a new id is ResourceExhausted naming the region), keyed by endpoint id. A key
    // that one worker cooled down after a 429 is skipped by every worker; Restore in any worker
    // brings it back for all; Endpoints() in any process shows the shared ends. Cost per pick: one
    // more atomic load per endpoint for each of the two holds, from a cell found when the endpoint
    // was added (no hashing, no probing, no lock). Times are the balancer clock's nanoseconds, so
    // every process must read a clock on CLOCK_MONOTONIC's timeline (Clock::Steady, CoarseSteady,
    // Tsc); a ManualClock shares correctly only between balancers of one process.
    //
    // Shared routes (kPrefixAffinity, kScored with a prefix weight). Every pick is appended to a
    // third region, "<shared_region>.routes" (2 MiB: a ring of the last ~990 routes with the
    // default prefix_hash), and each pick first replays the routes the host's other balancers
    // took since its last one (at most 64) into its own prefix index and KV estimate. So a
    // conversation's next turn goes to the replica that holds it whichever worker picks it, and a
    // worker that starts later learns the ring's routes. Cost: each process inserts every pick of
    // the host into its own index (with 4 workers a pick replays about 3 others': 4 workers
    // picking new 8k-token conversations in turn cost ~15 us a pick against ~6 us alone,
    // BENCHMARKS.md); what it loses: routes older than the ring when a process
    // falls that far behind, a route torn while read (a checksum rejects it), and blocks past
    // the first 1,024 of a prompt. Every balancer on one region must hash prompts alike
    // (prefix_hash): another configuration is FailedPrecondition naming the region. Round robin
    // takes the endpoints in turn host-wide (one cursor in the ".endpoints" region), so workers
    // that add the same endpoints in the same order rotate through them together.
    //
    // What stays per process: the failure runs that lead to a cooldown or an ejection (each
    // process counts its own consecutive failures), times_ejected and the ejection cap's
    // arithmetic (the cap counts the shared ejections), moving averages, metrics, and smooth
    // weighted round robin's running weights. An endpoint removed and added again with the same
    // id finds its shared holds still there. RemoveSharedRegion the three names to start
    // afresh. At most 190 characters.
    std::string shared_region;
    // Host scope: picks in flight per endpoint that the region can count, host-wide (at most
    // 4096). A pick beyond it still goes out, counted only in its own process. Default 256.
    int64_t shared_max_in_flight = 256;
    // Host scope: how long an uncompleted pick counts. Default 10 minutes. > 0.
    absl::Duration shared_lease = absl::Minutes(10);
    // Cluster scope: cooldowns and ejections (automatic and administered) shared by every
    // process of every host whose balancer has the same `redis_name` on this Redis, so a key
    // cooled down after a 429 on one host is skipped by the whole fleet and Restore anywhere
    // brings it back everywhere (with or without shared_region; in-flight counts and routes:
    // below). Picks never wait for Redis: each process mirrors the holds, reading them again
    // (one EVALSHA, at most one under way) when a pick or Endpoints() finds the mirror older
    // than `redis_refresh`; a hold set here applies here at once and is sent to Redis (kept
    // across an outage until it would have ended). So another host's cooldown reaches this
    // process within redis_refresh plus a round trip; a process's first picks, before its first
    // read is answered, see only its own holds. Ends are on the Redis server's clock, converted
    // to this balancer's clock by the server's "now" in each reply, so hosts' clocks need not
    // agree. While Redis is unreachable each process keeps its own holds (the balancer never
    // fails a pick for it); configuration errors are the store's (logged and counted in
    // RedisStats, see sluice/redis_store.h). Redis holds one hash,
    // `<key_prefix>:{lb:<redis_name>}:holds`, a field per endpoint that holds something (the id's
    // 32-hex digest: ids never reach Redis), expiring a minute after its longest hold. With
    // shared_region too, a hold another process of the host sets in the instant a read is
    // served may be missing host-wide until the next read.
    //
    // With a prefix strategy (kPrefixAffinity, kScored with a prefix weight), routes are shared
    // across hosts too, as the shared region shares them on one host: each pick is appended to
    // a stream, `<key_prefix>:{lb:<redis_name>}:routes` (about 4,096 entries of up to 1,024
    // block hashes, expiring an hour after the last; never waited for, dropped while Redis is
    // unreachable), and read back with the holds' rhythm (one read under way at most, when the
    // last is older than redis_refresh: the entries after the last one read, at most 512; the
    // newest 512 on a balancer's first read), then replayed by the next picks into this
    // process's prefix index and KV estimate (at most 64 a pick). So a conversation's next turn
    // on another host goes to the replica that holds it, once the route has been read
    // (redis_refresh plus a round trip). Endpoint ids reach Redis only as 64-bit hashes, prompts
    // only as block hashes.
    //
    // In-flight counts are shared across hosts the same way: each pick adds a member to its
    // endpoint's sorted set, `<key_prefix>:{lb:<redis_name>}:inflight:<id digest>`, scored by
    // its lease end (shared_lease on the server's clock; one ZADD, never waited for, not sent
    // while Redis is unreachable), and its completion removes it (kept across an outage until
    // the lease would end). Reads, with the holds' rhythm, count per endpoint the live members
    // of other hosts (a host: the processes sharing this shared_region, whose picks the region
    // counts already; without one, each balancer), and every load-aware rule and
    // max_concurrency adds them to this host's count (EndpointStats::fleet_in_flight). A killed
    // host's picks end with their lease; while Redis is unreachable other hosts count 0. A read
    // costs Redis O(picks in flight on these endpoints).
    //
    // Round robin (kRoundRobin) takes the endpoints in turn fleet-wide: one counter,
    // `<key_prefix>:{lb:<redis_name>}:cursor`, from which each balancer draws its next pick's
    // turn a pick ahead (an INCR, never waited for). A pick with no turn drawn yet (the first,
    // one right after another before the reply, Redis unreachable) takes the host's or the
    // process's cursor instead; over the picks that took a turn, no endpoint is more than
    // (balancers drawing + 1) picks ahead of another, on every host's endpoints listed in the
    // same order. Default: null (no cluster scope).
    std::shared_ptr<RedisStore> redis;
    // Names the fleet's shared holds: 1 to 100 characters of [A-Za-z0-9._-]. Required with
    // redis.
    std::string redis_name;
    // How stale the mirror of Redis's holds may get before a pick reads it again. Default
    // 250 ms. In [1 ms, 1 min].
    absl::Duration redis_refresh = absl::Milliseconds(250);
  };

  // The longest cooldown or ejection that Cooldown and Eject accept: one day.
  static constexpr absl::Duration kMaxHoldDuration = absl::Hours(24);

  class Pick;

  static absl::StatusOr<std::unique_ptr<Balancer>> Create(const Options& options,
                                                          const Clock* clock = Clock::Steady());
  ~Balancer();
  Balancer(const Balancer&) = delete;
  Balancer& operator=(const Balancer&) = delete;

  // Endpoints at runtime. Errors: InvalidArgument naming the field; AlreadyExists / NotFound by
  // id; ResourceExhausted past 64 endpoints with kPrefixAffinity or kScored (the prefix index
  // keeps one bit per endpoint). Update keeps the endpoint's counters and prefix index.
  absl::Status AddEndpoint(const EndpointSpec& endpoint);
  absl::Status UpdateEndpoint(const EndpointSpec& endpoint);
  absl::Status RemoveEndpoint(std::string_view id);

  // The endpoint's engine load, from its Prometheus text (see sluice/engine_metrics.h), stamped
  // with the balancer's clock. Errors: NotFound; InvalidArgument from the parser (the previous
  // metrics are kept).
  absl::Status UpdateMetrics(std::string_view id, std::string_view prometheus_text);
  absl::Status SetMetrics(std::string_view id, const EngineMetrics& metrics);

  // Picks an endpoint. Errors: NotFound (no endpoint serves the model), ResourceExhausted
  // (every candidate is at max_concurrency), Unavailable (every candidate is cooling down; the
  // message says when the first comes back).
  absl::StatusOr<Pick> PickEndpoint(const PickRequest& request);
  // The same for a parsed request: its model, and its block hashes under options().prefix_hash.
  absl::StatusOr<Pick> PickEndpoint(const LlmRequest& request,
                                    std::string_view affinity_key = {});

  // ---- Administration (an operator's console, a key-rotation job) ----
  //
  // These act on an endpoint without a pick. With Options::shared_region they act host-wide: every
  // process whose balancer uses the same region and endpoint id sees the result at its next pick
  // (see "Shared state" below).
  //
  // Cooldown: the endpoint is skipped by picks for `duration` from now, as after a failure of
  // class `reason` (kNone, the default: an administered cooldown with no failure class; the
  // reason is only reported, in EndpointStats::cooldown_reason). Cooldowns never shorten each
  // other: the later end wins, whether set here or by a failed pick. Restore first to shorten.
  // Eject: the same for an ejection (EndpointStats::ejected_until_nanos). An administered ejection
  // always takes effect, whatever outlier.max_ejection_percent says, and counts towards that cap
  // for outlier detection's own ejections. It does not add to times_ejected.
  // Restore: ends the endpoint's cooldown and ejection now, and clears its runs of consecutive
  // failures; times_ejected stays, so an endpoint that relapses is ejected for longer.
  //
  // Errors: InvalidArgument naming `duration` unless it is in (0, kMaxHoldDuration] (NaN-free by
  // type; absl::InfiniteDuration() is refused), or `reason` when it is not a Failure; NotFound
  // naming the id when the balancer has no such endpoint (in this process: the shared state of an
  // id this process has not added cannot be administered from it). Thread-safe, as every method.
  absl::Status Cooldown(std::string_view id, absl::Duration duration,
                        Failure reason = Failure::kNone);
  absl::Status Eject(std::string_view id, absl::Duration duration);
  absl::Status Restore(std::string_view id);

  // A snapshot of every endpoint, in the order they were added (see EndpointStats).
  std::vector<EndpointStats> Endpoints() const;
  const Options& options() const;
  // The clock it was created with, to turn EndpointStats' times into remaining durations.
  const Clock* clock() const;

 private:
  explicit Balancer(std::unique_ptr<internal::BalancerCore> core);
  std::unique_ptr<internal::BalancerCore> core_;
};

// A chosen endpoint, counted in flight until `Complete` (or destruction: abandoned).
class Balancer::Pick {
 public:
  Pick(Pick&& other) noexcept;
  Pick& operator=(Pick&& other) noexcept;
  Pick(const Pick&) = delete;
  Pick& operator=(const Pick&) = delete;
  // Completes an uncompleted pick as abandoned (Failure::kAbandoned: no cooldown, counted as
  // an error).
  ~Pick();

  const std::string& endpoint_id() const;
  // The endpoint as it was when picked (its labels carry the model, provider or API key).
  const EndpointSpec& endpoint() const;
  // The label's value, or "" if the endpoint has none by that name.
  std::string_view label(std::string_view name) const;
  // Leading prefix blocks the endpoint was believed to hold (kPrefixAffinity, kScored): a
  // multiple of 4, as the index keys groups of 4 blocks, or all of the request's blocks.
  int64_t matched_blocks() const { return matched_blocks_; }

  // Reports the outcome (sluice/failure.h, the vocabulary the FallbackPolicy reads too):
  // in-flight count, moving averages, error rate, cooldown by failure class (rate limited 60 s,
  // auth and connect/reset 10 s by default; see Options). A status below 400 with no transport
  // error and no `failure` is a success. Only the first call counts.
  void Complete(const AttemptOutcome& outcome);
  bool completed() const { return state_ == nullptr; }

 private:
  friend class internal::BalancerCore;
  Pick(std::shared_ptr<internal::EndpointState> state, std::shared_ptr<const EndpointSpec> spec,
       int64_t matched_blocks);
  std::shared_ptr<internal::EndpointState> state_;
  std::shared_ptr<const EndpointSpec> spec_;
  int64_t matched_blocks_ = 0;
  int64_t tokens_ = 0;  // counted in the endpoint's in-flight tokens until Complete
  // Host scope: the pick's lease in the shared region (declared after its owner, so it is
  // released first).
  std::shared_ptr<ConcurrencyLimiter> host_counts_;
  ConcurrencyLimiter::Permit host_lease_;
  // Cluster scope: the pick's member in its endpoint's set in Redis ("": none).
  std::shared_ptr<internal::ClusterLoads> cluster_loads_;
  std::string cluster_member_;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_BALANCER_H_
