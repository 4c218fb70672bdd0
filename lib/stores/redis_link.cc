// One connection to one Redis server (see redis_link.h): our socket, hiredis's RESP.
#include "stores/redis_link.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "stores/redis_tls.h"

namespace sluice {
inline namespace v1 {
namespace internal {

void RedisReplyDeleter::operator()(redisReply* reply) const { freeReplyObject(reply); }

std::string RedisEndpoint::ToString() const {
  if (!unix_socket.empty()) return unix_socket;
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

namespace {

using Clock = std::chrono::steady_clock;

// The longest wait a link computes with, so that now + timeout cannot overflow.
constexpr absl::Duration kLongestWait = absl::Hours(24);

Clock::time_point DeadlineAfter(absl::Duration timeout) {
  timeout = std::clamp(timeout, absl::ZeroDuration(), kLongestWait);
  return Clock::now() + absl::ToChronoNanoseconds(timeout);
}

// A first byte that starts a TLS record: a handshake (22) or an alert (21).
bool IsTlsRecordByte(int byte) { return byte == 22 || byte == 21; }

bool IsIpLiteral(const std::string& name) {
  unsigned char addr[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), addr) == 1 || inet_pton(AF_INET6, name.c_str(), addr) == 1;
}

absl::Status CheckEndpoint(const RedisEndpoint& at, const RedisTlsOptions& tls) {
  if (!at.unix_socket.empty()) {
    if (at.unix_socket.size() > sizeof(sockaddr_un::sun_path) - 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "redis: unix_socket must be at most ", sizeof(sockaddr_un::sun_path) - 1,
          " bytes, got ", at.unix_socket.size()));
    }
    if (at.unix_socket.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("redis: unix_socket must not contain a NUL byte");
    }
    if (tls.enabled) {
      // Redis serves TLS on TCP only: a TLS link over its socket could never connect, and
      // quietly going plain would drop what the configuration asked for.
      return absl::InvalidArgumentError(
          "redis: tls.enabled with unix_socket: Redis serves TLS on TCP ports only");
    }
    return absl::OkStatus();
  }
  if (at.host.empty() || at.host.size() > 255 || at.host.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "redis: host must be 1 to 255 bytes without NUL, got ", at.host.size(), " bytes"));
  }
  if (at.port < 1 || at.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis: port must be in [1, 65535], got ", at.port));
  }
  if (tls.server_name.size() > 255 || tls.server_name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        "redis TLS: tls.server_name must be at most 255 bytes without NUL");
  }
  return absl::OkStatus();
}

}  // namespace

struct RedisLink::State {
  RedisEndpoint at;
  TlsSocket socket;  // the fd, and what the server sent first (also for plain links)
  SSL* ssl = nullptr;
  redisReader* reader = nullptr;
  std::string out;  // formatted commands not yet written, from out_sent on
  size_t out_sent = 0;
  absl::Duration timeout = absl::Seconds(1);
  absl::Status broken;  // the first failure; OK while the link works

  ~State() {
    if (ssl != nullptr) SSL_free(ssl);  // frees the BIO; no close_notify: the socket just closes
    if (socket.fd >= 0) close(socket.fd);
    if (reader != nullptr) redisReaderFree(reader);
  }

  absl::Status Fail(absl::StatusCode code, absl::string_view what, absl::string_view why) const {
    return absl::Status(code, absl::StrCat("redis ", at.ToString(), ": ", what, ": ", why));
  }
  absl::Status TimedOut(absl::string_view what) const {
    std::string why = "timed out";
    if (ssl != nullptr && socket.first_byte < 0 && what == "TLS handshake") {
      why += " (the server sent nothing: is it a plain-text port?)";
    }
    return Fail(absl::StatusCode::kDeadlineExceeded, what, why);
  }
  absl::Status Break(absl::Status status) {
    if (broken.ok()) broken = status;
    return broken;
  }

  // Waits until the socket is ready for `events` (or failed), at most until `deadline`. Returns
  // the ready events.
  absl::StatusOr<int> Wait(int events, Clock::time_point deadline,
                             absl::string_view what) const {
    for (;;) {
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) return TimedOut(what);
      // Rounded up, so that a wait never ends before the deadline and spins.
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
      pollfd p{socket.fd, static_cast<short>(events), 0};
      const int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
      if (n > 0) return p.revents;
      if (n < 0 && errno != EINTR) {
        return Fail(absl::StatusCode::kUnavailable, what, std::strerror(errno));
      }
    }
  }

  // The failure of an SSL call that returned `ret`, or how to wait for it (`*want`).
  absl::Status SslOutcome(int ret, absl::string_view what, int* want) {
    const int error = SSL_get_error(ssl, ret);
    switch (error) {
      case SSL_ERROR_WANT_READ:
        *want = POLLIN;
        return absl::OkStatus();
      case SSL_ERROR_WANT_WRITE:
        *want = POLLOUT;
        return absl::OkStatus();
      case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return Fail(absl::StatusCode::kUnavailable, what, "connection closed by the server");
      case SSL_ERROR_SSL: {
        const int reason = ERR_GET_REASON(ERR_peek_error());
        const std::string text = TakeTlsError("TLS error");
        if (IsClientRefusedAlert(reason)) {
          return Fail(absl::StatusCode::kFailedPrecondition, "TLS",
                      absl::StrCat("the server refused this client: ", text,
                                   " (does it require a client certificate? see tls.cert_file)"));
        }
        if (socket.eof || socket.error != 0) return TransportFailure(what);
        return Fail(absl::StatusCode::kUnavailable, absl::StrCat(what, ": TLS"), text);
      }
      default:  // SSL_ERROR_SYSCALL: the socket failed or closed
        ERR_clear_error();
        return TransportFailure(what);
    }
  }

  absl::Status TransportFailure(absl::string_view what) const {
    std::string why = socket.error != 0 ? std::strerror(socket.error)
                                        : "connection closed by the server";
    if (ssl == nullptr && socket.first_byte < 0) {
      // A TLS port drops a plain-text client without a word.
      why += " (before any reply: is it a TLS port? see tls.enabled)";
    }
    return Fail(absl::StatusCode::kUnavailable, what, why);
  }

  // A server that refuses this client's certificate sends an alert and closes, so a write may
  // fail (reset) before the alert is read: the alert, when it is there, is the better answer.
  absl::Status PreferRefusal(absl::Status failure) {
    if (ssl == nullptr) return failure;
    char buf[512];
    int want = 0;
    absl::StatusOr<size_t> n = Read(buf, sizeof(buf), &want);
    return absl::IsFailedPrecondition(n.status()) ? n.status() : failure;
  }

  // Moves at most `len` bytes. Returns how many moved; 0 with `*want` set when it must wait.
  absl::StatusOr<size_t> Write(const char* data, size_t len, int* want) {
    if (ssl != nullptr) {
      ERR_clear_error();
      size_t n = 0;
      const int ret = SSL_write_ex(ssl, data, len, &n);
      if (ret == 1) return n;
      absl::Status s = SslOutcome(ret, "write", want);
      if (!s.ok()) return s;
      return 0;
    }
    ssize_t n;
    do {
      n = send(socket.fd, data, len, MSG_NOSIGNAL);  // never SIGPIPE: a library must not
    } while (n < 0 && errno == EINTR);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *want = POLLOUT;
      return 0;
    }
    socket.error = errno;
    return TransportFailure("write");
  }

  absl::StatusOr<size_t> Read(char* data, size_t len, int* want) {
    if (ssl != nullptr) {
      ERR_clear_error();
      size_t n = 0;
      const int ret = SSL_read_ex(ssl, data, len, &n);
      if (ret == 1) return n;
      absl::Status s = SslOutcome(ret, "read", want);
      if (!s.ok()) return s;
      return 0;
    }
    ssize_t n;
    do {
      n = recv(socket.fd, data, len, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
      if (socket.first_byte < 0) socket.first_byte = static_cast<unsigned char>(data[0]);
      return static_cast<size_t>(n);
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      *want = POLLIN;
      return 0;
    }
    if (n < 0) socket.error = errno;
    return TransportFailure("read");
  }

  // Reads what is there into the reader; returns false when it must wait for `*want`.
  absl::StatusOr<bool> ReadSome(int* want) {
    char buf[16 * 1024];
    absl::StatusOr<size_t> n = Read(buf, sizeof(buf), want);
    if (!n.ok()) return n.status();
    if (*n == 0) return false;
    redisReaderFeed(reader, buf, *n);
    return true;
  }

  // Writes everything queued. While the server cannot take more, reads what it has answered
  // already, so that neither side waits for the other to read (a long pipeline).
  absl::Status Flush(Clock::time_point deadline) {
    while (out_sent < out.size()) {
      int want = 0;
      absl::StatusOr<size_t> n = Write(out.data() + out_sent, out.size() - out_sent, &want);
      if (!n.ok()) return PreferRefusal(n.status());
      if (*n > 0) {
        out_sent += *n;
        continue;
      }
      absl::StatusOr<int> ready = Wait(want | POLLIN, deadline, "write");
      if (!ready.ok()) return ready.status();
      if (want == POLLOUT && (*ready & POLLIN) != 0) {
        int read_want = 0;
        if (absl::StatusOr<bool> read = ReadSome(&read_want); !read.ok()) return read.status();
      }
    }
    out.clear();
    out_sent = 0;
    return absl::OkStatus();
  }

  absl::Status ProtocolError() const {
    if (ssl == nullptr && IsTlsRecordByte(socket.first_byte)) {
      return Fail(absl::StatusCode::kFailedPrecondition, "read",
                  "the server answered in TLS (is it a TLS port? set tls.enabled)");
    }
    return Fail(absl::StatusCode::kUnavailable, "protocol error", reader->errstr);
  }

  static absl::Status ConnectOne(State& s, const sockaddr* addr, socklen_t addr_len,
                                 Clock::time_point deadline);
  static absl::Status ConnectTcp(State& s, Clock::time_point deadline);
  static absl::Status ConnectUnix(State& s, Clock::time_point deadline);
  static absl::Status Handshake(State& s, SSL_CTX* ctx, const RedisTlsOptions& tls,
                                Clock::time_point deadline);
};

// Connects a non-blocking socket to one address within `deadline`.
absl::Status RedisLink::State::ConnectOne(State& s, const sockaddr* addr, socklen_t addr_len,
                        Clock::time_point deadline) {
  const int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return s.Fail(absl::StatusCode::kUnavailable, "connect", std::strerror(errno));
  s.socket.fd = fd;
  int rc;
  do {
    rc = connect(fd, addr, addr_len);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 && errno != EINPROGRESS) {
    return s.Fail(absl::StatusCode::kUnavailable, "connect", std::strerror(errno));
  }
  if (rc < 0) {
    absl::StatusOr<int> ready = s.Wait(POLLOUT, deadline, "connect");
    if (!ready.ok()) return ready.status();
    int error = 0;
    socklen_t len = sizeof(error);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
    if (error != 0) return s.Fail(absl::StatusCode::kUnavailable, "connect", std::strerror(error));
  }
  if (addr->sa_family != AF_UNIX) {
    const int one = 1;  // commands are small and latency-bound: no Nagle delay
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return absl::OkStatus();
}

absl::Status RedisLink::State::ConnectTcp(State& s, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  // getaddrinfo has no timeout of its own: a name waits for the resolver (resolv.conf's
  // timeout); an IP literal returns at once.
  const int rc = getaddrinfo(s.at.host.c_str(), std::to_string(s.at.port).c_str(), &hints, &found);
  if (rc != 0) {
    return s.Fail(absl::StatusCode::kUnavailable, "cannot resolve the host",
                  rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc));
  }
  absl::Status status = s.Fail(absl::StatusCode::kUnavailable, "connect", "no address");
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    status = ConnectOne(s, a->ai_addr, a->ai_addrlen, deadline);
    if (status.ok() || absl::IsDeadlineExceeded(status)) break;
    close(s.socket.fd);
    s.socket.fd = -1;
  }
  freeaddrinfo(found);
  return status;
}

absl::Status RedisLink::State::ConnectUnix(State& s, Clock::time_point deadline) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, s.at.unix_socket.data(), s.at.unix_socket.size());  // checked
  return ConnectOne(s, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr), deadline);
}

absl::Status RedisLink::State::Handshake(State& s, SSL_CTX* ctx, const RedisTlsOptions& tls,
                                         Clock::time_point deadline) {
  ERR_clear_error();
  s.ssl = SSL_new(ctx);  // holds its own reference to the context
  BIO* bio = s.ssl != nullptr ? NewTlsSocketBio(&s.socket) : nullptr;
  if (bio == nullptr) {
    return s.Fail(absl::StatusCode::kResourceExhausted, "TLS", TakeTlsError("out of memory"));
  }
  SSL_set_bio(s.ssl, bio, bio);
  const std::string& name = tls.server_name.empty() ? s.at.host : tls.server_name;
  const bool ip = IsIpLiteral(name);
  if (tls.verify_peer) {
    const int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s.ssl), name.c_str())
                      : SSL_set1_host(s.ssl, name.c_str());
    if (ok != 1) {
      return s.Fail(absl::StatusCode::kInvalidArgument, "TLS",
                    absl::StrCat("cannot verify against the name \"", name, "\""));
    }
  }
  // SNI carries host names only (RFC 6066 section 3).
  if (!ip) SSL_set_tlsext_host_name(s.ssl, name.c_str());
  SSL_set_connect_state(s.ssl);
  for (;;) {
    ERR_clear_error();
    const int ret = SSL_do_handshake(s.ssl);
    if (ret == 1) return absl::OkStatus();
    const int error = SSL_get_error(s.ssl, ret);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
      absl::StatusOr<int> ready =
          s.Wait(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, "TLS handshake");
      if (!ready.ok()) return ready.status();
      continue;
    }
    const long verify = SSL_get_verify_result(s.ssl);
    if (tls.verify_peer && verify != X509_V_OK) {
      ERR_clear_error();
      std::string why = absl::StrCat("certificate verify failed: ",
                                     X509_verify_cert_error_string(verify));
      if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        absl::StrAppend(&why, " (expected \"", name, "\"; see tls.server_name)");
      }
      return s.Fail(absl::StatusCode::kFailedPrecondition, "TLS", why);
    }
    if (s.socket.first_byte >= 0 && !IsTlsRecordByte(s.socket.first_byte)) {
      ERR_clear_error();
      return s.Fail(absl::StatusCode::kFailedPrecondition, "TLS",
                    "the server did not answer TLS (is it a plain-text port?)");
    }
    int unused = 0;
    absl::Status failed = s.SslOutcome(ret, "TLS handshake", &unused);
    if (failed.ok()) failed = s.Fail(absl::StatusCode::kUnavailable, "TLS handshake", "failed");
    if (error == SSL_ERROR_SSL && !s.socket.eof && s.socket.error == 0 &&
        absl::IsUnavailable(failed)) {
      // An alert or a malformed answer, not a broken connection: the server refuses us.
      return absl::FailedPreconditionError(failed.message());
    }
    return failed;
  }
}

absl::StatusOr<std::unique_ptr<RedisLink>> RedisLink::Open(const RedisEndpoint& at,
                                                           const RedisTlsOptions& tls,
                                                           absl::Duration timeout) {
  if (absl::Status s = CheckEndpoint(at, tls); !s.ok()) return s;
  const Clock::time_point deadline = DeadlineAfter(timeout);
  // The files first: a configuration error is reported whether or not the server is up.
  SslCtxPtr ctx;
  if (tls.enabled) {
    absl::StatusOr<SslCtxPtr> made = ClientTlsContext(tls);
    if (!made.ok()) return made.status();
    ctx = std::move(*made);
  }
  auto state = std::make_unique<State>();
  state->at = at;
  state->timeout = timeout > absl::ZeroDuration() ? timeout : state->timeout;
  state->reader = redisReaderCreate();
  if (state->reader == nullptr) return absl::ResourceExhaustedError("redis: out of memory");
  absl::Status s = at.unix_socket.empty() ? State::ConnectTcp(*state, deadline)
                                          : State::ConnectUnix(*state, deadline);
  if (s.ok() && ctx != nullptr) s = State::Handshake(*state, ctx.get(), tls, deadline);
  if (!s.ok()) return s;
  return std::unique_ptr<RedisLink>(new RedisLink(std::move(state)));
}

RedisLink::RedisLink(std::unique_ptr<State> state) : state_(std::move(state)) {}
RedisLink::~RedisLink() = default;

void RedisLink::SetTimeout(absl::Duration timeout) {
  assert(timeout > absl::ZeroDuration());
  state_->timeout = timeout;
}

void RedisLink::Append(const std::vector<absl::string_view>& argv) {
  assert(!argv.empty());
  State& s = *state_;
  if (!s.broken.ok()) return;
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  ptrs.reserve(argv.size());
  lens.reserve(argv.size());
  for (absl::string_view a : argv) ptrs.push_back(a.data()), lens.push_back(a.size());
  char* command = nullptr;
  const int len =
      redisFormatCommandArgv(&command, static_cast<int>(argv.size()), ptrs.data(), lens.data());
  if (len < 0) {
    s.broken = absl::ResourceExhaustedError(
        absl::StrCat("redis ", s.at.ToString(), ": cannot format a command: out of memory"));
    return;
  }
  s.out.append(command, static_cast<size_t>(len));
  free(command);  // NOLINT: hiredis allocates with malloc
}

absl::StatusOr<RedisReplyPtr> RedisLink::GetReply() {
  State& s = *state_;
  if (!s.broken.ok()) return s.broken;
  const Clock::time_point deadline = DeadlineAfter(s.timeout);
  if (absl::Status flushed = s.Flush(deadline); !flushed.ok()) return s.Break(flushed);
  for (;;) {
    void* reply = nullptr;
    if (redisReaderGetReply(s.reader, &reply) != REDIS_OK) return s.Break(s.ProtocolError());
    if (reply != nullptr) return RedisReplyPtr(static_cast<redisReply*>(reply));
    int want = 0;
    absl::StatusOr<bool> read = s.ReadSome(&want);
    if (!read.ok()) return s.Break(read.status());
    if (*read) continue;
    if (absl::StatusOr<int> ready = s.Wait(want, deadline, "read"); !ready.ok()) {
      return s.Break(ready.status());
    }
  }
}

absl::Status RedisLink::Flush() {
  State& s = *state_;
  if (!s.broken.ok()) return s.broken;
  if (absl::Status flushed = s.Flush(DeadlineAfter(s.timeout)); !flushed.ok()) {
    return s.Break(flushed);
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisReplyPtr> RedisLink::Command(const std::vector<absl::string_view>& argv) {
  Append(argv);
  return GetReply();
}

int RedisLink::fd() const { return state_->socket.fd; }
const RedisEndpoint& RedisLink::endpoint() const { return state_->at; }

}  // namespace internal
}  // namespace v1
}  // namespace sluice
