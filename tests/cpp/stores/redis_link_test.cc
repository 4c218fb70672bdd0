// RedisLink (lib/stores/redis_link.h) against real redis-servers: plain TCP, a Unix socket and
// TLS (certificates from tls_test_support.h); pipelining, timeouts, broken links, hostile input,
// fork(), SIGPIPE.
#include "stores/redis_link.h"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "local_redis.h"
#include "tls_test_support.h"

using sluice::RedisTlsOptions;
using sluice::internal::RedisEndpoint;
using sluice::internal::RedisLink;
using sluice::internal::RedisReplyPtr;

namespace {

constexpr absl::Duration kTimeout = absl::Seconds(5);  // generous: only failures wait for it

RedisEndpoint Tcp(int port, std::string host = "127.0.0.1") { return {std::move(host), port, ""}; }

// A reply as text: "PONG", "42", "(nil)", "ERR:..." (an error reply), or "status:..." (a failure).
std::string Text(const absl::StatusOr<RedisReplyPtr>& r) {
  if (!r.ok()) return "status:" + r.status().ToString();
  const redisReply* reply = r->get();
  switch (reply->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      return std::string(reply->str, reply->len);
    case REDIS_REPLY_INTEGER:
      return std::to_string(reply->integer);
    case REDIS_REPLY_NIL:
      return "(nil)";
    case REDIS_REPLY_ERROR:
      return "ERR:" + std::string(reply->str, reply->len);
    default:
      return "type " + std::to_string(reply->type);
  }
}

std::unique_ptr<RedisLink> MustOpen(const RedisEndpoint& at, const RedisTlsOptions& tls = {}) {
  absl::StatusOr<std::unique_ptr<RedisLink>> link = RedisLink::Open(at, tls, kTimeout);
  INFO(link.status().ToString());
  REQUIRE(link.ok());
  return std::move(*link);
}

absl::Status OpenError(const RedisEndpoint& at, const RedisTlsOptions& tls = {},
                       absl::Duration timeout = kTimeout) {
  absl::StatusOr<std::unique_ptr<RedisLink>> link = RedisLink::Open(at, tls, timeout);
  return link.ok() ? absl::OkStatus() : link.status();
}

bool Contains(const absl::Status& s, const std::string& text) {
  return std::string(s.message()).find(text) != std::string::npos;
}

const sluice_test::TlsFiles& Certificates() {
  const sluice_test::TlsFiles& files = sluice_test::TestCertificates();
  REQUIRE_FALSE(files.ca.empty());  // the `openssl` command (Debian's openssl package) failed
  return files;
}

RedisTlsOptions TlsWith(const std::string& ca) {
  RedisTlsOptions tls;
  tls.enabled = true;
  tls.ca_file = ca;
  return tls;
}

// A redis-server with a plain port and a TLS port.
struct TlsRedis {
  explicit TlsRedis(bool require_client_cert = false)
      : tls_port(LocalRedis::FreePort()),
        redis(Certificates().RedisArgs(tls_port, require_client_cert)) {}
  int tls_port;
  LocalRedis redis;
};

void SetGetPing(RedisLink& link) {
  CHECK(Text(link.Command({"PING"})) == "PONG");
  CHECK(Text(link.Command({"SET", "link:k", std::string("v\0\r\nx", 5)})) == "OK");
  CHECK(Text(link.Command({"GET", "link:k"})) == std::string("v\0\r\nx", 5));
  CHECK(Text(link.Command({"GET", "link:missing"})) == "(nil)");
}

}  // namespace

TEST_CASE("RedisEndpoint::ToString names TCP, IPv6 and Unix endpoints") {
  CHECK(RedisEndpoint{"127.0.0.1", 6379, ""}.ToString() == "127.0.0.1:6379");
  CHECK(RedisEndpoint{"::1", 6380, ""}.ToString() == "[::1]:6380");
  CHECK(RedisEndpoint{"redis.internal", 1, ""}.ToString() == "redis.internal:1");
  CHECK(RedisEndpoint{"ignored", 1, "/run/redis.sock"}.ToString() == "/run/redis.sock");
}

TEST_CASE("A plain TCP link answers PING, SET and GET, and an error reply is a reply") {
  LocalRedis redis;
  auto link = MustOpen(Tcp(redis.port()));
  CHECK(link->fd() >= 0);
  CHECK(link->endpoint() == Tcp(redis.port()));
  SetGetPing(*link);
  absl::StatusOr<RedisReplyPtr> error = link->Command({"NO-SUCH-COMMAND"});
  REQUIRE(error.ok());
  CHECK((*error)->type == REDIS_REPLY_ERROR);
  CHECK(Text(link->Command({"PING"})) == "PONG");  // still usable
}

TEST_CASE("A link over a Unix socket answers PING, SET and GET") {
  const std::string path = "/tmp/sluice-link-" + std::to_string(getpid()) + ".sock";
  LocalRedis redis({"--unixsocket", path, "--unixsocketperm", "700"});
  auto link = MustOpen({"", 0, path});
  SetGetPing(*link);
  unlink(path.c_str());
}

TEST_CASE("1000 pipelined commands are answered in order, and a 4 MB value round-trips") {
  LocalRedis redis;
  auto link = MustOpen(Tcp(redis.port()));
  for (int i = 0; i < 1000; ++i) link->Append({"INCR", "link:counter"});
  for (int i = 1; i <= 1000; ++i) REQUIRE(Text(link->GetReply()) == std::to_string(i));
  const std::string big(4 << 20, 'x');
  link->Append({"SET", "link:big", big});
  link->Append({"GET", "link:big"});
  CHECK(Text(link->GetReply()) == "OK");
  CHECK(Text(link->GetReply()) == big);
}

TEST_CASE("A stopped server times out with DeadlineExceeded, and the link stays broken") {
  LocalRedis redis;
  auto link = MustOpen(Tcp(redis.port()));
  link->SetTimeout(absl::Milliseconds(50));
  REQUIRE(Text(link->Command({"PING"})) == "PONG");
  redis.Pause();
  absl::StatusOr<RedisReplyPtr> r = link->Command({"PING"});
  redis.Resume();
  REQUIRE(absl::IsDeadlineExceeded(r.status()));
  CHECK(r.status().message() == "redis 127.0.0.1:" + std::to_string(redis.port()) +
                                    ": read: timed out");
  // The late PONG must never be taken for the next command's reply.
  CHECK(link->Command({"GET", "link:k"}).status() == r.status());
}

TEST_CASE("A killed server fails the link with Unavailable, then every later call") {
  LocalRedis redis;
  auto link = MustOpen(Tcp(redis.port()));
  REQUIRE(Text(link->Command({"PING"})) == "PONG");
  redis.Kill();
  absl::StatusOr<RedisReplyPtr> r = link->Command({"PING"});
  REQUIRE(absl::IsUnavailable(r.status()));
  CHECK(Contains(r.status(), "redis 127.0.0.1:"));
  CHECK(link->Command({"PING"}).status() == r.status());
  link->Append({"PING"});
  CHECK(link->GetReply().status() == r.status());
}

TEST_CASE("Writing to a killed server raises no SIGPIPE (plain and TLS)") {
  // Without MSG_NOSIGNAL (or, for TLS, OpenSSL's own socket BIO, which writes with write()), the
  // default SIGPIPE action would end this test's process.
  TlsRedis server;
  const bool tls = GENERATE(false, true);
  auto link = tls ? MustOpen(Tcp(server.tls_port), TlsWith(Certificates().ca))
                  : MustOpen(Tcp(server.redis.port()));
  REQUIRE(Text(link->Command({"PING"})) == "PONG");
  server.redis.Kill();
  const std::string big(8 << 20, 'x');
  link->Append({"SET", "link:big", big});
  link->Append({"SET", "link:big", big});
  CHECK(absl::IsUnavailable(link->GetReply().status()));
}

TEST_CASE("Connection refused is Unavailable, within the timeout") {
  const int port = LocalRedis::FreePort();
  absl::Status s = OpenError(Tcp(port));
  CHECK(absl::IsUnavailable(s));
  CHECK(s.message() == "redis 127.0.0.1:" + std::to_string(port) + ": connect: Connection refused");
  s = OpenError({"", 0, "/tmp/sluice-link-no-such.sock"});
  CHECK(absl::IsUnavailable(s));
}

TEST_CASE("An IPv6 loopback link works when the machine has ::1") {
  const int probe = socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool has_v6 = probe >= 0 && bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  if (probe >= 0) close(probe);
  if (!has_v6) {
    WARN("no IPv6 loopback here: skipped");
    return;
  }
  LocalRedis redis({"--bind", "127.0.0.1", "::1"});
  auto link = MustOpen(Tcp(redis.port(), "::1"));
  CHECK(link->endpoint().ToString() == "[::1]:" + std::to_string(redis.port()));
  SetGetPing(*link);
}

TEST_CASE("Hostile endpoints are refused with InvalidArgument, never a crash") {
  const std::vector<RedisEndpoint> bad = {
      {"", 6379, ""},
      {"127.0.0.1", 0, ""},
      {"127.0.0.1", 65536, ""},
      {"127.0.0.1", -1, ""},
      {std::string(256, 'a'), 6379, ""},
      {std::string("127.0.0.1\0evil", 14), 6379, ""},
      {"", 0, std::string(108, 's')},
      {"", 0, std::string("/tmp/a\0b", 8)},
  };
  for (const RedisEndpoint& at : bad) {
    absl::Status s = OpenError(at);
    INFO(s.ToString());
    CHECK(absl::IsInvalidArgument(s));
  }
  // A long but legal name that resolves nowhere, and TLS over a Unix socket.
  CHECK(absl::IsUnavailable(OpenError({std::string(255, 'a'), 6379, ""})));
  CHECK(absl::IsInvalidArgument(OpenError({"", 0, "/tmp/x.sock"}, TlsWith(""))));
}

TEST_CASE("A TLS link verifies the server with the CA, by IP address and by name") {
  TlsRedis server;
  const std::string& ca = Certificates().ca;
  SetGetPing(*MustOpen(Tcp(server.tls_port), TlsWith(ca)));
  SetGetPing(*MustOpen(Tcp(server.tls_port, "localhost"), TlsWith(ca)));
  RedisTlsOptions named = TlsWith(ca);
  named.server_name = "localhost";  // checked instead of 127.0.0.1, and sent as SNI
  auto link = MustOpen(Tcp(server.tls_port), named);
  for (int i = 0; i < 1000; ++i) link->Append({"INCR", "link:tls-counter"});
  for (int i = 1; i <= 1000; ++i) REQUIRE(Text(link->GetReply()) == std::to_string(i));
}

TEST_CASE("A certificate from another CA, or for another name, is refused") {
  TlsRedis server;
  const std::string endpoint = "redis 127.0.0.1:" + std::to_string(server.tls_port);
  absl::Status s = OpenError(Tcp(server.tls_port), TlsWith(Certificates().other_ca));
  CHECK(absl::IsFailedPrecondition(s));
  // OpenSSL words it after the chain the server sent ("self-signed certificate in certificate
  // chain" when it includes its CA, "unable to get local issuer certificate" when not).
  CHECK(Contains(s, endpoint + ": TLS: certificate verify failed: "));
  RedisTlsOptions other_name = TlsWith(Certificates().ca);
  other_name.server_name = "redis.example";
  s = OpenError(Tcp(server.tls_port), other_name);
  CHECK(absl::IsFailedPrecondition(s));
  CHECK(Contains(s, "certificate verify failed: hostname mismatch (expected \"redis.example\""));
  s = OpenError(Tcp(server.tls_port, "::1"), TlsWith(Certificates().ca));
  CHECK_FALSE(s.ok());  // not listening on ::1, or (if it were) the IP would be checked
  // Without verification, any certificate is accepted (the documented danger).
  RedisTlsOptions trusting = TlsWith(Certificates().other_ca);
  trusting.verify_peer = false;
  SetGetPing(*MustOpen(Tcp(server.tls_port), trusting));
}

TEST_CASE("TLS to a plain port, and plain text to a TLS port, fail clearly within the timeout") {
  TlsRedis server;
  absl::Status s = OpenError(Tcp(server.redis.port()), TlsWith(Certificates().ca),
                             absl::Milliseconds(500));
  INFO(s.ToString());
  CHECK((absl::IsFailedPrecondition(s) || absl::IsDeadlineExceeded(s)));
  CHECK(Contains(s, "plain-text port?"));

  auto plain = MustOpen(Tcp(server.tls_port));  // TCP connects; the first command fails
  plain->SetTimeout(absl::Milliseconds(500));
  absl::StatusOr<RedisReplyPtr> r = plain->Command({"PING"});
  INFO(r.status().ToString());
  CHECK(absl::IsUnavailable(r.status()));
  CHECK(Contains(r.status(), "is it a TLS port?"));
}

TEST_CASE("A server that requires a client certificate refuses a link without one") {
  TlsRedis server(/*require_client_cert=*/true);
  absl::StatusOr<std::unique_ptr<RedisLink>> anonymous =
      RedisLink::Open(Tcp(server.tls_port), TlsWith(Certificates().ca), kTimeout);
  // TLS 1.3: the client's handshake ends before the server checks; the refusal is the first read.
  absl::Status s = anonymous.ok() ? (*anonymous)->Command({"PING"}).status() : anonymous.status();
  INFO(s.ToString());
  CHECK(absl::IsFailedPrecondition(s));
  CHECK(Contains(s, "certificate"));

  RedisTlsOptions with_cert = TlsWith(Certificates().ca);
  with_cert.cert_file = Certificates().client_cert;
  with_cert.key_file = Certificates().client_key;
  SetGetPing(*MustOpen(Tcp(server.tls_port), with_cert));
}

TEST_CASE("Unreadable or unusable TLS files are FailedPrecondition naming the file") {
  const sluice_test::TlsFiles& files = Certificates();
  const RedisEndpoint nowhere = Tcp(LocalRedis::FreePort());  // files are read before connecting
  absl::Status s = OpenError(nowhere, TlsWith(files.dir + "/missing-ca.pem"));
  CHECK(absl::IsFailedPrecondition(s));
  CHECK(s.message() == "redis TLS: cannot read tls.ca_file \"" + files.dir +
                           "/missing-ca.pem\": No such file or directory");
  s = OpenError(nowhere, TlsWith(files.dir));  // a directory
  CHECK(absl::IsFailedPrecondition(s));
  CHECK(Contains(s, "tls.ca_file"));
  s = OpenError(nowhere, TlsWith(files.server_key));  // a key, no certificate
  CHECK(absl::IsFailedPrecondition(s));
  CHECK(Contains(s, "tls.ca_file \"" + files.server_key + "\" holds no usable PEM certificate"));

  RedisTlsOptions tls = TlsWith(files.ca);
  tls.cert_file = files.dir + "/missing-cert.pem";
  tls.key_file = files.client_key;
  s = OpenError(nowhere, tls);
  CHECK(absl::IsFailedPrecondition(s));
  CHECK(Contains(s, "tls.cert_file \"" + files.dir + "/missing-cert.pem\""));
  tls.cert_file = files.client_cert;
  tls.key_file = files.server_key;  // not the client certificate's key
  s = OpenError(nowhere, tls);
  CHECK(absl::IsFailedPrecondition(s));
  CHECK(s.message() == "redis TLS: tls.key_file \"" + files.server_key +
                           "\" is not the key of tls.cert_file \"" + files.client_cert +
                           "\": key values mismatch");
  tls.key_file = files.client_cert;  // a certificate, no key
  s = OpenError(nowhere, tls);
  CHECK(absl::IsFailedPrecondition(s));
  CHECK(Contains(s, "tls.key_file \"" + files.client_cert + "\" holds no usable PEM private key"));
  tls.key_file = "";
  CHECK(absl::IsInvalidArgument(OpenError(nowhere, tls)));
}

TEST_CASE("A fork() child opens and uses its own TLS link while the parent keeps its own") {
  TlsRedis server;
  const RedisTlsOptions tls = TlsWith(Certificates().ca);
  auto parent = MustOpen(Tcp(server.tls_port), tls);
  REQUIRE(Text(parent->Command({"SET", "link:fork", "parent"})) == "OK");
  const pid_t pid = fork();
  if (pid == 0) {
    close(parent->fd());  // the child never uses the parent's link
    absl::StatusOr<std::unique_ptr<RedisLink>> child =
        RedisLink::Open(Tcp(server.tls_port), tls, kTimeout);
    bool ok = child.ok() &&
              Text((*child)->Command({"SET", "link:fork-child", "child"})) == "OK" &&
              Text((*child)->Command({"GET", "link:fork"})) == "parent";
    _exit(ok ? 0 : 1);
  }
  REQUIRE(pid > 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(Text(parent->Command({"GET", "link:fork-child"})) == "child");
  SetGetPing(*MustOpen(Tcp(server.tls_port), tls));  // the parent's context cache still works
}

TEST_CASE("A CA file replaced on disk is read again by the next link (contexts are shared)") {
  TlsRedis server;
  const sluice_test::TlsFiles& files = Certificates();
  const std::string rotating = files.dir + "/rotating-" + std::to_string(getpid()) + ".crt";
  auto install = [&](const std::string& from) {  // a new file under the same name, as tools do
    const std::string tmp = rotating + ".new";
    REQUIRE(std::system(("cp '" + from + "' '" + tmp + "'").c_str()) == 0);
    REQUIRE(rename(tmp.c_str(), rotating.c_str()) == 0);
  };
  install(files.ca);
  auto first = MustOpen(Tcp(server.tls_port), TlsWith(rotating));
  SetGetPing(*MustOpen(Tcp(server.tls_port), TlsWith(rotating)));  // the same context again
  install(files.other_ca);
  absl::Status s = OpenError(Tcp(server.tls_port), TlsWith(rotating));
  CHECK(absl::IsFailedPrecondition(s));
  CHECK(Contains(s, "certificate verify failed"));
  CHECK(Text(first->Command({"PING"})) == "PONG");  // an open link keeps its context
  install(files.ca);
  SetGetPing(*MustOpen(Tcp(server.tls_port), TlsWith(rotating)));
}
