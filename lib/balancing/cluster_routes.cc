#include "balancing/cluster_routes.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/time_arithmetic.h"
#include "stores/redis_keys.h"
#include "stores/redis_scripts.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr size_t kEntryHeader = 3 * sizeof(uint64_t);

// KEYS[1]: the stream. ARGV[1]: the entry; ARGV[2]: the stream's length to keep (about).
const std::string kAppendScript = R"lua(
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'r', ARGV[1])
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
)lua";

// KEYS[1]: the stream. ARGV[1]: the last id read ('': none yet, then the newest ARGV[2]);
// ARGV[2]: entries at most. Returns {the server's now in ms, then per entry: its id, its field}.
// The range starts just after the last id, computed here (Redis 5 has no exclusive ranges).
const std::string kReadScript = R"lua(
local t = redis.call('TIME')
local out = {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
local entries
if ARGV[1] == '' then
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[2])
  entries = {}
  for i = #newest, 1, -1 do entries[#entries + 1] = newest[i] end
else
  local ms, seq = string.match(ARGV[1], '^(%d+)-(%d+)$')
  if not ms then return out end
  entries = redis.call('XRANGE', KEYS[1], ms .. '-' .. (tonumber(seq) + 1), '+', 'COUNT', ARGV[2])
end
for _, e in ipairs(entries) do
  local fields = e[2]
  if #fields == 2 then
    out[#out + 1] = e[1]
    out[#out + 1] = fields[2]
  end
end
return out
)lua";

// A stream id's milliseconds ("<ms>-<seq>"), -1 if it is not one.
int64_t MillisOf(const std::string& id) {
  const size_t dash = id.find('-');
  int64_t ms = -1;
  if (dash == std::string::npos || !absl::SimpleAtoi(absl::string_view(id.data(), dash), &ms)) {
    return -1;
  }
  return ms;
}

}  // namespace

std::string EncodeRouteEntry(uint64_t writer, uint64_t endpoint, double tokens,
                             absl::Span<const uint64_t> blocks) {
  const size_t count = std::min<size_t>(blocks.size(), ClusterRoutes::kMaxBlocks);
  std::string entry(kEntryHeader + count * sizeof(uint64_t), '\0');
  const uint64_t header[3] = {writer, endpoint, std::bit_cast<uint64_t>(tokens)};
  std::memcpy(entry.data(), header, kEntryHeader);
  if (count > 0) std::memcpy(entry.data() + kEntryHeader, blocks.data(), count * sizeof(uint64_t));
  return entry;
}

bool DecodeRouteEntry(std::string_view entry, RouteEntry* out) {
  if (entry.size() < kEntryHeader || (entry.size() - kEntryHeader) % sizeof(uint64_t) != 0 ||
      (entry.size() - kEntryHeader) / sizeof(uint64_t) > static_cast<size_t>(ClusterRoutes::kMaxBlocks)) {
    return false;
  }
  uint64_t header[3];
  std::memcpy(header, entry.data(), kEntryHeader);
  out->writer = header[0];
  out->endpoint = header[1];
  out->tokens = std::bit_cast<double>(header[2]);
  out->blocks.resize((entry.size() - kEntryHeader) / sizeof(uint64_t));
  if (!out->blocks.empty()) {
    std::memcpy(out->blocks.data(), entry.data() + kEntryHeader, out->blocks.size() * sizeof(uint64_t));
  }
  return true;
}

ClusterRoutes::ClusterRoutes(std::shared_ptr<RedisStore> store, const std::string& redis_name,
                             absl::Duration refresh)
    : store_(std::move(store)),
      key_(absl::StrCat(store_->options().key_prefix, ":{lb:", redis_name, "}:routes")),
      refresh_nanos_(absl::ToInt64Nanoseconds(refresh)),
      read_patience_nanos_(ReadPatienceNanos(*store_)),
      nonce_(std::random_device{}() | 1),
      inbox_(std::make_shared<Inbox>()) {}

void ClusterRoutes::Send(uint64_t endpoint, absl::Span<const uint64_t> blocks, double tokens) {
  // Not kept across an outage: a route delivered late would only be older.
  RedisScripts::Run(*store_, kAppendScript, {key_},
                    {EncodeRouteEntry(RouteWriterId(nonce_), endpoint, tokens, blocks),
                     absl::StrCat(kStreamLength)},
                    /*want_fd=*/false);
}

void ClusterRoutes::MaybeRefresh(int64_t now) {
  if (now < next_read_at_.load(std::memory_order_relaxed)) return;
  int64_t busy_until = inbox_->reading_until.load(std::memory_order_acquire);
  if (now < busy_until) return;  // a read under way
  const int64_t patience = AddDuration(now, absl::Nanoseconds(read_patience_nanos_));
  if (!inbox_->reading_until.compare_exchange_strong(busy_until, patience,
                                                     std::memory_order_acq_rel)) {
    return;  // another thread starts it
  }
  next_read_at_.store(AddDuration(now, absl::Nanoseconds(refresh_nanos_)), std::memory_order_relaxed);
  std::string last_id;
  {
    MutexLock lock(&inbox_->mu);
    last_id = inbox_->last_id;
  }
  const uint64_t me = RouteWriterId(nonce_);
  RedisScripts::RunThen(
      *store_, kReadScript, {key_}, {std::move(last_id), absl::StrCat(kMaxRead)},
      [inbox = inbox_, me](PendingReply& reply) {
        absl::StatusOr<std::vector<int64_t>> values = reply.Wait(absl::ZeroDuration());
        const std::vector<std::string>& strings = reply.strings();
        MutexLock lock(&inbox->mu);
        inbox->reading_until.store(0, std::memory_order_release);
        // Unavailable: read again at the next refresh. A malformed reply is skipped.
        if (!values.ok() || values->size() != 1 || strings.size() % 2 != 0) return;
        const int64_t server_now_ms = (*values)[0];
        for (size_t i = 0; i + 1 < strings.size(); i += 2) {
          const std::string& id = strings[i];
          const std::string& entry = strings[i + 1];
          inbox->last_id = id;
          RouteEntry decoded;
          if (!DecodeRouteEntry(entry, &decoded)) continue;  // not a route sluice wrote
          if (decoded.writer == me) continue;                 // our own
          Received r;
          r.endpoint = decoded.endpoint;
          r.tokens = decoded.tokens;
          const int64_t ms = MillisOf(id);
          r.age_nanos = ms < 0 ? 0 : std::clamp<int64_t>(server_now_ms - ms, 0, 86400000) * 1000000;
          r.blocks = std::move(decoded.blocks);
          inbox->routes.push_back(std::move(r));
          if (inbox->routes.size() > static_cast<size_t>(kMaxRead)) inbox->routes.pop_front();
        }
      });
}

int64_t ClusterRoutes::ReplayNew(int64_t now,
                                 absl::FunctionRef<void(const SharedRouteLog::Route&)> apply) {
  std::deque<Received> batch;
  {
    MutexLock lock(&inbox_->mu);
    const size_t n = std::min<size_t>(inbox_->routes.size(), SharedRouteLog::kMaxReplayPerCall);
    for (size_t i = 0; i < n; ++i) {
      batch.push_back(std::move(inbox_->routes.front()));
      inbox_->routes.pop_front();
    }
  }
  for (const Received& r : batch) {
    apply({.endpoint = r.endpoint,
           .tokens = std::isfinite(r.tokens) && r.tokens > 0 ? r.tokens : 0,
           .at = now - r.age_nanos,
           .blocks = absl::MakeConstSpan(r.blocks)});
  }
  return static_cast<int64_t>(batch.size());
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
