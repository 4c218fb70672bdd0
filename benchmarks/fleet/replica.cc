#include "replica.h"

#include <algorithm>

#include "absl/strings/str_format.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace fleet {

std::vector<uint64_t> Replica::BlocksOf(const std::string& text) const {
  // Full blocks only, chained: the engine caches a block once it is complete.
  const size_t block = static_cast<size_t>(model_.tokens_per_block * model_.chars_per_token);
  std::vector<uint64_t> out;
  uint64_t chain = 0;
  for (size_t at = 0; at + block <= text.size(); at += block) {
    chain = XXH3_64bits_withSeed(text.data() + at, block, chain);
    out.push_back(chain);
  }
  return out;
}

int Replica::CachedBlocks(const std::vector<uint64_t>& blocks) {
  int n = 0;
  for (uint64_t b : blocks) {
    auto it = cache_.find(b);
    if (it == cache_.end()) break;
    lru_.splice(lru_.begin(), lru_, it->second);
    ++n;
  }
  return n;
}

void Replica::Insert(const std::vector<uint64_t>& blocks) {
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) {  // shallow blocks end most recent
    auto it = cache_.find(*b);
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      continue;
    }
    lru_.push_front(*b);
    cache_[*b] = lru_.begin();
  }
  while (static_cast<int64_t>(cache_.size()) > model_.kv_capacity_blocks) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
}

void Replica::Enqueue(SimRequest* request, double now) {
  request->replica = index_;
  waiting_.push_back(request);
  if (!busy_) StartIteration(now);
}

void Replica::StartIteration(double now) {
  double prefill_tokens = 0;
  const double decoding = static_cast<double>(running_.size());
  while (!waiting_.empty() && static_cast<int>(running_.size() + prefilling_.size()) < model_.max_running) {
    SimRequest* r = waiting_.front();
    waiting_.pop_front();
    const std::vector<uint64_t> blocks = BlocksOf(r->prompt_text);
    r->cached_tokens = std::min(r->prompt_tokens - 1, CachedBlocks(blocks) * model_.tokens_per_block);
    prefill_tokens += r->prompt_tokens - r->cached_tokens;
    prompt_tokens_ += r->prompt_tokens;
    cached_tokens_ += r->cached_tokens;
    Insert(blocks);
    prefilling_.push_back(r);
  }
  if (running_.empty() && prefilling_.empty()) {
    busy_ = false;
    return;
  }
  busy_ = true;
  const double ms = model_.iteration_base_ms + model_.per_running_seq_ms * decoding +
                    model_.per_prefill_token_ms * prefill_tokens;
  iteration_end_ = now + slowdown_ * ms / 1000.0;
}

std::vector<SimRequest*> Replica::FinishIteration() {
  const double now = iteration_end_;
  std::vector<SimRequest*> finished;
  for (SimRequest* r : prefilling_) {
    r->first_token_at = now;
    r->generated = 1;
    running_.push_back(r);
  }
  prefilling_.clear();
  std::vector<SimRequest*> still;
  for (SimRequest* r : running_) {
    if (r->first_token_at < now) ++r->generated;  // a decode step (the prefill step made token 1)
    if (r->generated >= r->output_tokens) {
      r->done_at = now;
      Insert(BlocksOf(r->prompt_text + r->output_text));  // the reply's KV stays cached too
      finished.push_back(r);
    } else {
      still.push_back(r);
    }
  }
  running_ = std::move(still);
  busy_ = false;
  StartIteration(now);
  return finished;
}

std::string Replica::MetricsText() const {
  // vLLM's usage counts blocks held by scheduled sequences, not cached blocks free for reuse.
  double active_tokens = 0;
  for (const SimRequest* r : running_) active_tokens += r->prompt_tokens + r->generated;
  for (const SimRequest* r : prefilling_) active_tokens += r->prompt_tokens;
  const double usage = std::min(1.0, active_tokens / model_.tokens_per_block /
                                         static_cast<double>(model_.kv_capacity_blocks));
  return absl::StrFormat(
      "# TYPE vllm:num_requests_waiting gauge\n"
      "vllm:num_requests_waiting{model_name=\"sim\"} %d\n"
      "vllm:num_requests_running{model_name=\"sim\"} %d\n"
      "vllm:kv_cache_usage_perc{model_name=\"sim\"} %.4f\n",
      waiting_.size(), running_.size() + prefilling_.size(), usage);
}

}  // namespace fleet
