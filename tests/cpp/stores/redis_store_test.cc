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
