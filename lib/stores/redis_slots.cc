#include "stores/redis_slots.h"

#include <hiredis/hiredis.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), bit by bit: a key is hashed once per
// command, and a table would be one more thing to get wrong.
uint16_t Crc16(absl::string_view data) {
  uint16_t crc = 0;
  for (unsigned char byte : data) {
    crc ^= static_cast<uint16_t>(byte) << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

bool IntegerOf(const redisReply* r, int64_t* out) {
  if (r == nullptr || r->type != REDIS_REPLY_INTEGER) return false;
  *out = r->integer;
  return true;
}

}  // namespace

int KeySlot(absl::string_view key) {
  const size_t open = key.find('{');
  if (open != absl::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != absl::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return Crc16(key) % kClusterSlots;
}

int SlotMap::IndexOf(const RedisEndpoint& at) {
  for (size_t i = 0; i < masters_.size(); ++i) {
    if (masters_[i] == at) return static_cast<int>(i);
  }
  masters_.push_back(at);
  return static_cast<int>(masters_.size() - 1);
}

void SlotMap::Assign(int slot, const RedisEndpoint& at) {
  if (slot < 0 || slot >= kClusterSlots) return;
  owner_[slot] = static_cast<int16_t>(IndexOf(at));
}

int SlotMap::uncovered() const {
  return static_cast<int>(std::count(owner_.begin(), owner_.end(), -1));
}

absl::StatusOr<SlotMap> SlotMap::FromClusterSlots(const redisReply& reply,
                                                  const RedisEndpoint& asked) {
  auto bad = [](absl::string_view why) {
    return absl::InternalError(absl::StrCat("redis: CLUSTER SLOTS: unexpected reply: ", why));
  };
  if (reply.type != REDIS_REPLY_ARRAY) return bad("not an array");
  SlotMap map;
  for (size_t i = 0; i < reply.elements; ++i) {
    const redisReply* range = reply.element[i];
    int64_t first = 0, last = 0, port = 0;
    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
        !IntegerOf(range->element[0], &first) || !IntegerOf(range->element[1], &last) ||
        first < 0 || last >= kClusterSlots || first > last) {
      return bad("a slot range");
    }
    const redisReply* master = range->element[2];
    if (master->type != REDIS_REPLY_ARRAY || master->elements < 2 ||
        master->element[0]->type != REDIS_REPLY_STRING || !IntegerOf(master->element[1], &port) ||
        port < 1 || port > 65535) {
      return bad("a master's address");
    }
    RedisEndpoint at;
    at.host.assign(master->element[0]->str, master->element[0]->len);
    if (at.host.empty()) at.host = asked.host;
    at.port = static_cast<int>(port);
    if (at.host == "?") continue;  // a master whose address is not known yet: as if unserved
    const int16_t index = static_cast<int16_t>(map.IndexOf(at));
    std::fill(map.owner_.begin() + first, map.owner_.begin() + last + 1, index);
  }
  return map;
}

bool ParseRedirection(absl::string_view error, const RedisEndpoint& answered, Redirection* out) {
  Redirection r;
  if (absl::ConsumePrefix(&error, "MOVED ")) {
    r.ask = false;
  } else if (absl::ConsumePrefix(&error, "ASK ")) {
    r.ask = true;
  } else {
    return false;
  }
  const size_t space = error.find(' ');
  const size_t colon = error.rfind(':');
  if (space == absl::string_view::npos || colon == absl::string_view::npos || colon < space) {
    return false;
  }
  int port = 0;
  if (!absl::SimpleAtoi(error.substr(0, space), &r.slot) || r.slot < 0 ||
      r.slot >= kClusterSlots || !absl::SimpleAtoi(error.substr(colon + 1), &port) || port < 1 ||
      port > 65535) {
    return false;
  }
  r.to.host = std::string(error.substr(space + 1, colon - space - 1));
  if (r.to.host.empty()) r.to.host = answered.host;
  r.to.port = port;
  *out = std::move(r);
  return true;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
