// Internal: one connection to one Redis server, over TCP or a Unix socket, in plain text or TLS
// (OpenSSL), speaking RESP through hiredis's reply reader and command formatter. Debian 12's
// hiredis (0.14) has no TLS, and its redisContext reads and writes the socket itself, so the
// transport is ours and the protocol is hiredis's.
//
// Blocking, with timeouts: every call returns within the link's timeout per read or write.
// Not thread-safe: a link belongs to one thread (a RedisStore's connection thread).
//
// Example:
//
//   auto link = RedisLink::Open({"127.0.0.1", 6379, ""}, tls, absl::Milliseconds(200));
//   if (!link.ok()) return link.status();
//   (*link)->SetTimeout(absl::Milliseconds(5));
//   absl::StatusOr<RedisReplyPtr> pong = (*link)->Command({"PING"});
#ifndef SLUICE_LIB_STORES_REDIS_LINK_H_
#define SLUICE_LIB_STORES_REDIS_LINK_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sluice/redis_store.h"

struct redisReply;

namespace sluice {
inline namespace v1 {
namespace internal {

// Frees a hiredis reply.
struct RedisReplyDeleter {
  void operator()(redisReply* reply) const;
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyDeleter>;

// Where a link connects: `unix_socket` when non-empty, else `host`:`port`.
struct RedisEndpoint {
  std::string host;
  int port = 0;
  std::string unix_socket;
  // "host:port" (IPv6 hosts in brackets) or the socket path.
  std::string ToString() const;
  bool operator==(const RedisEndpoint& o) const {
    return host == o.host && port == o.port && unix_socket == o.unix_socket;
  }
};

class RedisLink {
 public:
  // Connects to `at` within `timeout` (name resolution, TCP and, when `tls.enabled`, the TLS
  // handshake with verification of the server's certificate). Errors:
  //   Unavailable / DeadlineExceeded   the server cannot be reached (refused, unreachable, timeout)
  //   FailedPrecondition               TLS refused: the certificate did not verify (the message
  //                                    says why, e.g. "unable to get local issuer certificate" or
  //                                    a name mismatch), the server does not speak TLS, or the
  //                                    CA / client certificate / key file cannot be read
  //   InvalidArgument                  a malformed endpoint (empty or NUL in host, port outside
  //                                    [1, 65535], socket path over 107 bytes), only one of
  //                                    cert_file / key_file, or TLS over a Unix socket (Redis
  //                                    serves TLS on TCP only)
  // Messages start with "redis <endpoint>: " (e.g. "redis 127.0.0.1:6380: TLS: certificate verify
  // failed: unable to get local issuer certificate"). A host name is resolved with getaddrinfo,
  // which the timeout does not bound (an IP literal resolves at once). TLS client contexts are
  // shared between links with the same options (lib/stores/redis_tls.h). Safe in a fork() child.
  static absl::StatusOr<std::unique_ptr<RedisLink>> Open(const RedisEndpoint& at,
                                                          const RedisTlsOptions& tls,
                                                          absl::Duration timeout);
  ~RedisLink();  // closes the connection (no TLS close_notify wait)
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  // How long one GetReply (its write and its read together) may block from now on.
  // REQUIRES: timeout > 0. Default: Open's timeout.
  void SetTimeout(absl::Duration timeout);

  // Formats `argv` as one command and queues it; nothing is written yet. REQUIRES: !argv.empty().
  void Append(const std::vector<absl::string_view>& argv);
  // Writes whatever is queued, then reads one reply: the oldest unanswered command's. A server
  // error reply is a reply (type REDIS_REPLY_ERROR), not an error. Errors: Unavailable (closed,
  // reset, a protocol error) or DeadlineExceeded (the timeout passed), or FailedPrecondition
  // when the server refuses the connection by a TLS alert (with TLS 1.3 a missing or rejected
  // client certificate shows on the first read, not in Open) or answers a plain link in TLS;
  // after one, the link is broken and every later call fails the same way. Never raises SIGPIPE.
  absl::StatusOr<RedisReplyPtr> GetReply();
  // Writes whatever is queued, without reading (so that several links' pipelines are on their
  // way at once before the first reply is read). Errors as GetReply's, which then fails the same.
  absl::Status Flush();
  // Append, then GetReply.
  absl::StatusOr<RedisReplyPtr> Command(const std::vector<absl::string_view>& argv);

  // The socket (for a fork() child to close its copy), or -1.
  int fd() const;
  const RedisEndpoint& endpoint() const;

 private:
  struct State;
  explicit RedisLink(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_STORES_REDIS_LINK_H_
