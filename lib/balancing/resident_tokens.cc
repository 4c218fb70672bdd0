#include "balancing/resident_tokens.h"

#include <algorithm>
#include <cmath>

namespace sluice {
inline namespace v1 {
namespace internal {

double ResidentTokens::Decay(int64_t from, int64_t to) const {
  if (to <= from) return 1;
  return std::exp2(-static_cast<double>(to - from) / half_life_nanos_);
}

const ResidentTokens::Session* ResidentTokens::Find(absl::Span<const uint64_t> blocks,
                                                    int64_t matched, uint64_t* key) const {
  *key = 0;
  // The previous turn's key is its second-to-last block. Its last block was usually partial
  // (this turn's differs), so the match stops at the last group end at or before the key; or
  // it was full, and matched too (the key is one block before the match's end). Deepest first:
  // a deeper key is a longer shared history, so the likelier the same conversation.
  const int64_t deepest = std::min<int64_t>(matched + group_blocks_ - 2,
                                            static_cast<int64_t>(blocks.size()) - 1);
  for (int64_t at = deepest; at >= matched - 2; --at) {
    if (at < 0) break;
    auto it = sessions_.find(blocks[static_cast<size_t>(at)]);
    if (it != sessions_.end()) {
      *key = it->first;
      return &it->second;
    }
  }
  return nullptr;
}

double ResidentTokens::Resident(int slot, int64_t now) const {
  const Sum& sum = sums_[static_cast<size_t>(slot)];
  return sum.tokens * Decay(sum.at, now);
}

double ResidentTokens::Contribution(const Session& session, int64_t now) const {
  return session.counted ? session.tokens * Decay(session.at, now) : 0;
}

void ResidentTokens::Subtract(const Session& session, int64_t now) {
  if (!session.counted) return;
  Sum& sum = sums_[static_cast<size_t>(session.slot)];
  sum.tokens = std::max(0.0, Resident(session.slot, now) - Contribution(session, now));
  sum.at = now;
}

void ResidentTokens::Record(absl::Span<const uint64_t> blocks, uint64_t previous_key, int slot,
                            double tokens, int64_t now) {
  if (blocks.empty()) return;
  if (previous_key != 0) {
    auto it = sessions_.find(previous_key);
    if (it != sessions_.end()) {
      Subtract(it->second, now);
      sessions_.erase(it);
    }
  }
  const uint64_t key = KeyOf(blocks);
  if (auto it = sessions_.find(key); it != sessions_.end()) {  // the same prompt again
    Subtract(it->second, now);
    sessions_.erase(it);
  }
  // A first turn is kept (its next turn finds it by key) but counts only from that next turn on.
  const bool counted = previous_key != 0;
  if (counted) {
    Sum& sum = sums_[static_cast<size_t>(slot)];
    sum.tokens = Resident(slot, now) + tokens;
    sum.at = now;
  }
  sessions_[key] = {slot, tokens, now, counted};
  order_.emplace_back(key, now);
  // Sessions fade to nothing after a few half-lives; forget them then (or when there are too
  // many), oldest first, taking off whatever they still count.
  const int64_t horizon = now - static_cast<int64_t>(8 * half_life_nanos_);
  while (!order_.empty() && (order_.front().second < horizon || sessions_.size() > kMaxSessions ||
                             order_.size() > 2 * kMaxSessions)) {
    const auto [old_key, at] = order_.front();
    order_.pop_front();
    auto it = sessions_.find(old_key);
    if (it == sessions_.end() || it->second.at != at) continue;  // routed again since
    Subtract(it->second, now);
    sessions_.erase(it);
  }
}

void ResidentTokens::Drop(int slot) {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto here = it++;
    if (here->second.slot == slot) sessions_.erase(here);
  }
  sums_[static_cast<size_t>(slot)] = Sum();
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
