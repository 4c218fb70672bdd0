// Fuzz target: the Balancer's shared routes, both of which read bytes another process wrote.
// First byte even: a Redis stream entry (lib/balancing/cluster_routes.h): whatever decodes must
// encode back to the same bytes. Odd: the rest overwrites the host ring's head and records
// (lib/balancing/shared_route_log.h, through its /dev/shm file, as a buggy or hostile process
// could), then a replay: nothing may crash or read out of bounds, and every route it hands on
// has at most the record's blocks and usable tokens.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "balancing/cluster_routes.h"
#include "balancing/shared_route_log.h"
#include "fuzz_support.h"
#include "sluice/shared_region.h"

namespace {

using sluice::internal::SharedRouteLog;

const std::string& RegionName() {
  static const std::string name = "fuzz-routes-" + std::to_string(getpid());
  return name;
}

struct OpenLog {
  SharedRouteLog* log;
  int fd;  // the region's file, opened before its name was removed
};

// The log and a descriptor of its file. The name is removed at once (the mapping and the
// descriptor keep the file), so no run leaves a file in /dev/shm, however it ends.
const OpenLog& Log() {
  static const OpenLog opened = [] {
    auto log = SharedRouteLog::Open(RegionName(), sluice::PrefixHashOptions{});
    FUZZ_CHECK(log.ok());
    const std::string region = SharedRouteLog::RegionNameFor(RegionName());
    const int fd = open(("/dev/shm/sluice." + region).c_str(), O_RDWR);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(sluice::RemoveSharedRegion(region).ok());
    return OpenLog{log->release(), fd};  // both live as long as the process
  }();
  return opened;
}

void FuzzEntry(std::string_view bytes) {
  sluice::internal::RouteEntry entry;
  if (!sluice::internal::DecodeRouteEntry(bytes, &entry)) return;
  FUZZ_CHECK(entry.blocks.size() <= static_cast<size_t>(sluice::internal::ClusterRoutes::kMaxBlocks));
  FUZZ_CHECK(sluice::internal::EncodeRouteEntry(entry.writer, entry.endpoint, entry.tokens,
                                                entry.blocks) == bytes);
}

void FuzzRing(std::string_view bytes) {
  SharedRouteLog& log = *Log().log;
  // After the region's 4 KiB header: the head word, then the ring (bounded by the file's size).
  const size_t room = static_cast<size_t>(8 + log.records() * 264) * 8;
  const size_t n = std::min(bytes.size(), room);
  FUZZ_CHECK(pwrite(Log().fd, bytes.data(), n, 4096) == static_cast<ssize_t>(n));
  const int64_t max_blocks = std::min<int64_t>(sluice::PrefixHashOptions{}.max_blocks,
                                               SharedRouteLog::kMaxRecordBlocks);
  log.ReplayNew([&](const SharedRouteLog::Route& route) {
    FUZZ_CHECK(static_cast<int64_t>(route.blocks.size()) <= max_blocks);
    FUZZ_CHECK(std::isfinite(route.tokens) && route.tokens >= 0);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest = sluice_fuzz::View(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    FuzzEntry(rest);
  } else {
    FuzzRing(rest);
  }
  return 0;
}
