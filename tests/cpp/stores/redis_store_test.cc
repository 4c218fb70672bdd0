// RedisStore itself: option validation, error classification, the log hook, Check(), replies
// that cannot be right, and a store whose last reference goes on its own connection thread.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "admission/redis_gcra.h"
#include "stores/redis_scripts.h"
#include "admission/redis_leases.h"
#include "cluster_test_support.h"
#include "local_redis.h"
#include "stores/redis_errors.h"
#include "sluice/sluice.hpp"
#include "test_support.h"

using sluice::RedisOptions;
using sluice::RedisStore;
using sluice_test::ErrorOf;
using sluice_test::Store;
using sluice_test::Value;

namespace {

// Collects what sluice logs while it lives; restores the default handler after.
class CapturedLog {
 public:
  CapturedLog() {
    sluice::SetLogHandler([this](sluice::LogLevel level, std::string_view message) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.emplace_back(level, std::string(message));
    });
  }
  ~CapturedLog() { sluice::SetLogHandler(nullptr); }
  // How many lines at `level` contain `text`.
  int Count(sluice::LogLevel level, const std::string& text) const {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& [l, line] : lines_) n += (l == level && line.find(text) != std::string::npos);
    return n;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<sluice::LogLevel, std::string>> lines_;
};

}  // namespace

TEST_CASE("RedisOptions are validated at the boundary, naming the field") {
  RedisOptions o;
  o.host = std::string("redis\0evil.example", 18);
  CHECK(ErrorOf(RedisStore::Create(o)).find("host must be 1 to 255 bytes without NUL") !=
        std::string::npos);
  o.host = std::string(256, 'h');
  CHECK(ErrorOf(RedisStore::Create(o)).find("host must be") != std::string::npos);
  o.host = "127.0.0.1";
  o.unix_socket = std::string("/tmp/a\0b", 8);
  CHECK(ErrorOf(RedisStore::Create(o)).find("unix_socket must be at most 107 bytes without NUL") !=
        std::string::npos);
  o.unix_socket = "/tmp/" + std::string(110, 's');
  CHECK(ErrorOf(RedisStore::Create(o)).find("unix_socket") != std::string::npos);
  o.unix_socket.clear();
  o.username = "bad user";
  o.password = "pw";
  CHECK(ErrorOf(RedisStore::Create(o)).find("username must not hold") != std::string::npos);
  o.username.clear();
  // Durations near INT64_MAX nanoseconds would overflow the breaker's deadline and hiredis's
  // timeval: refused, with the documented limit.
  for (const absl::Duration huge : {absl::InfiniteDuration(),
                                    absl::Nanoseconds(std::numeric_limits<int64_t>::max()),
                                    absl::Hours(2)}) {
    for (const char* field : {"connect_timeout", "command_timeout", "reconnect_interval"}) {
      RedisOptions bad = o;
      if (std::string(field) == "connect_timeout") bad.connect_timeout = huge;
      if (std::string(field) == "command_timeout") bad.command_timeout = huge;
      if (std::string(field) == "reconnect_interval") bad.reconnect_interval = huge;
      INFO(field);
      CHECK(ErrorOf(RedisStore::Create(bad)).find(std::string(field) + " must be > 0 and <= 1h") !=
            std::string::npos);
    }
  }
  o.key_prefix = "has space";
  CHECK(ErrorOf(RedisStore::Create(o)).find("key_prefix must be 1 to 100 printable") !=
        std::string::npos);
  o.key_prefix = std::string(101, 'p');
  CHECK(ErrorOf(RedisStore::Create(o)).find("key_prefix") != std::string::npos);
  o.key_prefix = "app:sluice";
  CHECK(RedisStore::Create(o).ok());
  o.command_timeout = sluice::kMaxRedisTimeout;
  CHECK(RedisStore::Create(o).ok());
}

TEST_CASE("Sentinel, Cluster and TLS options are validated, naming the field and the index") {
  auto error = [](const RedisOptions& o) { return ErrorOf(RedisStore::Create(o)); };
  using sluice::RedisNode;
  RedisOptions cluster;
  cluster.cluster_nodes = {{"n1", 7000}, {"n2", 7001}, {"n3", 0}};
  CHECK(error(cluster) == "sluice.RedisStore: cluster_nodes[2].port must be 1..65535, got 0");
  cluster.cluster_nodes[2] = {"", 7002};
  CHECK(error(cluster) ==
        "sluice.RedisStore: cluster_nodes[2].host must be 1 to 255 bytes without NUL, got 0 bytes");
  cluster.cluster_nodes[2] = {std::string("n\0x", 3), 7002};
  CHECK(error(cluster).find("cluster_nodes[2].host must be") != std::string::npos);
  cluster.cluster_nodes[2] = {std::string(256, 'n'), 7002};
  CHECK(error(cluster).find("cluster_nodes[2].host must be") != std::string::npos);
  cluster.cluster_nodes.resize(65, RedisNode{"n", 7000});
  CHECK(error(cluster) == "sluice.RedisStore: cluster_nodes must list 1 to 64 nodes, got 65");
  cluster.cluster_nodes.resize(64);
  cluster.cluster_nodes[2] = {"n3", 7002};
  CHECK(RedisStore::Create(cluster).ok());
  cluster.host.clear();  // ignored with cluster_nodes
  CHECK(RedisStore::Create(cluster).ok());
  cluster.db = 3;
  CHECK(error(cluster).find("db must be 0 with cluster_nodes") != std::string::npos);
  cluster.db = 0;
  cluster.unix_socket = "/tmp/r.sock";
  CHECK(error(cluster).find("unix_socket cannot be set with cluster_nodes") != std::string::npos);
  cluster.unix_socket.clear();
  cluster.sentinel_master = "m";
  cluster.sentinels = {{"s", 26379}};
  CHECK(error(cluster).find("cluster_nodes cannot be set with sentinel_master") !=
        std::string::npos);

  RedisOptions sentinel;
  sentinel.sentinel_master = "mymaster";
  CHECK(error(sentinel) ==
        "sluice.RedisStore: sentinels must list 1 to 64 sentinels with sentinel_master, got 0");
  sentinel.sentinels = {{"s1", 26379}, {"s2", 70000}};
  CHECK(error(sentinel) == "sluice.RedisStore: sentinels[1].port must be 1..65535, got 70000");
  sentinel.sentinels[1].port = 26379;
  CHECK(RedisStore::Create(sentinel).ok());
  for (const std::string bad : {std::string("my master"), std::string("m\x01"),
                                std::string(256, 'm'), std::string("caf\xc3\xa9")}) {
    sentinel.sentinel_master = bad;
    CHECK(error(sentinel).find("sentinel_master must be 1 to 255 printable ASCII") !=
          std::string::npos);
  }
  sentinel.sentinel_master = "mymaster";
  sentinel.unix_socket = "/tmp/r.sock";
  CHECK(error(sentinel).find("unix_socket cannot be set with sentinel_master") !=
        std::string::npos);
  sentinel.unix_socket.clear();
  sentinel.sentinel_username = "watcher";
  CHECK(error(sentinel).find("sentinel_username needs a sentinel_password") != std::string::npos);
  sentinel.sentinel_password = "pw";
  CHECK(RedisStore::Create(sentinel).ok());
  sentinel.sentinel_username = "bad user";
  CHECK(error(sentinel).find("sentinel_username must not hold") != std::string::npos);

  RedisOptions orphan;
  orphan.sentinels = {{"s1", 26379}};
  CHECK(error(orphan).find("sentinels need sentinel_master") != std::string::npos);
  orphan.sentinels.clear();
  orphan.sentinel_password = "pw";
  CHECK(error(orphan).find("sentinel_password needs sentinel_master") != std::string::npos);

  RedisOptions tls;
  tls.tls.ca_file = "/etc/ssl/ca.pem";  // enabled forgotten: must not silently connect in clear
  CHECK(error(tls) == "sluice.RedisStore: tls.ca_file is set but tls.enabled is false (enable "
                      "TLS, or clear tls.ca_file)");
  tls.tls.ca_file.clear();
  tls.tls.verify_peer = false;
  CHECK(error(tls).find("tls.verify_peer is false but tls.enabled is false") != std::string::npos);
  tls.tls.verify_peer = true;
  tls.tls.server_name = "redis.example";
  CHECK(error(tls).find("tls.server_name is set but tls.enabled is false") != std::string::npos);
  tls.tls.enabled = true;
  CHECK(RedisStore::Create(tls).ok());
  tls.tls.cert_file = "/etc/ssl/client.pem";
  CHECK(error(tls).find("tls.cert_file and tls.key_file must be set together") !=
        std::string::npos);
  tls.tls.key_file = std::string("/etc/ssl/k\0ey.pem", 17);
  CHECK(error(tls).find("tls.key_file must be at most 4096 bytes without NUL") !=
        std::string::npos);
  tls.tls.key_file = "/etc/ssl/client.key";
  CHECK(RedisStore::Create(tls).ok());
  tls.unix_socket = "/tmp/r.sock";
  CHECK(error(tls).find("tls cannot be enabled with unix_socket") != std::string::npos);
}

TEST_CASE("Redis errors are classified: only transport failures mean unavailable") {
  using sluice::internal::ClassifyRedisError;
  using sluice::internal::IsTransportError;
  auto code = [](const char* error) { return ClassifyRedisError("EVALSHA", error).status.code(); };
  auto whole = [](const char* error) { return ClassifyRedisError("EVALSHA", error).whole_connection; };
  CHECK(code("NOAUTH Authentication required.") == absl::StatusCode::kPermissionDenied);
  CHECK(code("WRONGPASS invalid username-password pair or user is disabled.") ==
        absl::StatusCode::kPermissionDenied);
  CHECK(code("ERR AUTH <password> called without any password configured for the default user.") ==
        absl::StatusCode::kPermissionDenied);
  CHECK(code("NOPERM this user has no permissions to run the 'evalsha' command") ==
        absl::StatusCode::kPermissionDenied);
  CHECK(whole("NOPERM this user has no permissions to run the 'evalsha' command"));
  CHECK(code("NOPERM this user has no permissions to access one of the keys used as arguments") ==
        absl::StatusCode::kPermissionDenied);
  CHECK_FALSE(whole("NOPERM this user has no permissions to access one of the keys"));
  CHECK(code("READONLY You can't write against a read only replica. script: 1, on @user_script:1.") ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(whole("READONLY You can't write against a read only replica."));
  CHECK(code("MOVED 3999 127.0.0.1:6381") == absl::StatusCode::kFailedPrecondition);
  CHECK(code("ASK 3999 127.0.0.1:6381") == absl::StatusCode::kFailedPrecondition);
  CHECK(code("CROSSSLOT Keys in request don't hash to the same slot") ==
        absl::StatusCode::kFailedPrecondition);
  CHECK_FALSE(whole("MOVED 3999 127.0.0.1:6381"));
  CHECK(code("ERR unknown command 'EVALSHA', with args beginning with: 'abc'") ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(code("ERR DB index is out of range") == absl::StatusCode::kFailedPrecondition);
  CHECK(code("WRONGTYPE Operation against a key holding the wrong kind of value") ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(code("OOM command not allowed when used memory > 'maxmemory'.") ==
        absl::StatusCode::kResourceExhausted);
  CHECK(code("LOADING Redis is loading the dataset in memory") == absl::StatusCode::kUnavailable);
  CHECK(code("BUSY Redis is busy running a script.") == absl::StatusCode::kUnavailable);
  CHECK(code("ERR Error running script: attempt to compare nil with number") ==
        absl::StatusCode::kInternal);
  CHECK(IsTransportError(absl::UnavailableError("x")));
  CHECK(IsTransportError(absl::DeadlineExceededError("x")));
  CHECK_FALSE(IsTransportError(absl::PermissionDeniedError("x")));
  CHECK_FALSE(IsTransportError(absl::FailedPreconditionError("x")));
  // The message says what failed and what to check.
  const std::string m(ClassifyRedisError("AUTH", "WRONGPASS invalid").status.message());
  CHECK(m.find("redis: AUTH: WRONGPASS invalid; check RedisOptions.username and password") == 0);
}

TEST_CASE("the log hook gets each kind of message from a store at most once per interval") {
  CapturedLog log;
  LocalRedis redis({"--requirepass", "s3cret"});
  auto store = Store(redis.port(), /*reconnect=*/absl::Milliseconds(1));
  for (int i = 0; i < 20; ++i) {
    CHECK(absl::IsPermissionDenied(store->Check(absl::Seconds(2))));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // past the breaker: a new connect
  }
  CHECK(log.Count(sluice::LogLevel::kError, "NOAUTH") == 1);  // not 20
  CHECK(store->stats().config_errors >= 20);
  CHECK(store->stats().last_error.find("NOAUTH") != std::string::npos);
  CHECK(store->stats().last_error.find("127.0.0.1:" + std::to_string(redis.port())) !=
        std::string::npos);
}

TEST_CASE("Check() verifies the server, and says Unavailable when there is none") {
  LocalRedis redis;
  auto store = Store(redis.port());
  CHECK(store->Check().ok());
  CHECK(store->stats().connected);
  redis.Kill();
  const absl::Status gone = store->Check(absl::Seconds(2));
  CHECK(sluice::internal::IsTransportError(gone));
}

TEST_CASE("impossible replies are protocol errors: reported, logged and counted, never decided") {
  CapturedLog log;
  LocalRedis redis;  // never used: the replies below are handed over directly
  auto store = Store(redis.port());
  sluice::ClusterOptions c;
  c.store = store;
  c.redis_name = "impossible";
  c.on_failure = sluice::FailureMode::kAllow;
  auto gcra = Value(sluice::internal::ClusterGcra::Create(
      "test", c, {sluice::Window::PerSecond(10)}, sluice::Clock::Steady()));
  const sluice::internal::KeyDigest d = sluice::internal::DigestKey("k");
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  using Reply = std::vector<int64_t>;
  // An admit reply: {allowed, window, remaining, retry_after_us, reset_after_us, server time us}.
  for (const Reply& reply :
       {Reply{1, 1, 5, kMax, 0, 0}, Reply{1, 1, 5, 0, kMax / 999, 0}, Reply{2, 1, 5, 0, 0, 0},
        Reply{1, 2, 5, 0, 0, 0}, Reply{1, 1, 11, 0, 0, 0}, Reply{1, 1, 5, -1, 0, 0},
        Reply{1, 1, 5, 0, 0, -1}, Reply{1, 1, 5, 0, 0, kMax}, Reply{1, 1, 9, 0, 100000},
        Reply{1, 1, 5}}) {
    const absl::StatusOr<sluice::Decision> decided = gcra->Finish(d, 1, reply);
    CHECK(absl::IsInternal(decided.status()));
  }
  const absl::StatusOr<sluice::Decision> possible =
      gcra->Finish(d, 1, Reply{1, 1, 9, 0, 100000, 1'700'000'000'000'000});
  CHECK(possible.ok());  // a possible one, charged at the server's time (for Refund)
  CHECK(possible->charged_at_nanos == 1'700'000'000'000'000'000);
  CHECK(gcra->failure_decisions() == 0);  // none of them was decided as an outage
  CHECK(!gcra->CheckLeaseReply({11, 1, 0, 0, 0, 5}, /*want=*/10).ok());  // more than asked
  auto leases = Value(sluice::internal::ClusterLeases::Create("test", c, absl::Seconds(1)));
  CHECK(absl::IsInternal(leases->DecodeAcquire({1, 1, kMax}).status()));
  CHECK(absl::IsInternal(leases->DecodeAcquire({1, -1, 5}).status()));
  CHECK(leases->DecodeAcquire({1, 1, 1000000}).ok());
  CHECK(store->stats().config_errors >= 10);
  CHECK(log.Count(sluice::LogLevel::kError, "impossible reply") >= 1);
}

TEST_CASE("a store whose last reference goes on its own connection thread stops cleanly") {
  LocalRedis redis;
  std::atomic<bool> ran{false};
  {
    auto store = Store(redis.port());
    REQUIRE(store->Check().ok());
    redis.Pause();  // the command below waits in Redis while the test lets go of the store
    static const std::string kScript = "return 1";
    std::weak_ptr<RedisStore> weak = store;
    // The callback holds the store: once the test's reference is gone, the callback's is the last,
    // and it goes on the connection thread when the callback is destroyed there.
    sluice::internal::RedisScripts::RunThen(
        *store, kScript, {}, {},
        [keep = store, &ran](sluice::internal::PendingReply&) { ran = true; });
    store.reset();
    CHECK_FALSE(weak.expired());
    redis.Resume();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!weak.expired() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    CHECK(weak.expired());
  }
  CHECK(ran);  // (before the fix: std::system_error "Resource deadlock avoided", abort)
}
