// Connecting to Redis and checking what answers (see redis_connection_thread.h).
#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <cerrno>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "stores/redis_connection_thread.h"
#include "stores/redis_errors.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

// Runs one command synchronously on `c` (connection setup and SCRIPT LOAD only).
redisReply* Command(redisContext* c, const std::vector<std::string>& argv) {
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const auto& a : argv) ptrs.push_back(a.data()), lens.push_back(a.size());
  return static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
}

// A HELLO reply's field `name` (RESP2: a flat array of names and values), or empty.
std::string HelloField(const redisReply* r, absl::string_view name) {
  if (r->type != REDIS_REPLY_ARRAY) return "";
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    const redisReply* k = r->element[i];
    const redisReply* v = r->element[i + 1];
    if (k->type == REDIS_REPLY_STRING && absl::string_view(k->str, k->len) == name &&
        v->type == REDIS_REPLY_STRING) {
      return std::string(v->str, v->len);
    }
  }
  return "";
}

}  // namespace

absl::Status RedisTransportError(const redisContext* c, absl::string_view what) {
  if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return absl::DeadlineExceededError(absl::StrCat("redis: ", what, ": timed out"));
  }
  return absl::UnavailableError(absl::StrCat("redis: ", what, ": ", c->errstr));
}

void RedisConnectionThread::Disconnect(Link& link) {
  socket_fd_.store(-1);  // before the close, so a fork() child never closes a reused number
  if (link.context != nullptr) redisFree(link.context);
  link.context = nullptr;
  link.shas.clear();
  connected_ = false;
}

absl::Status RedisConnectionThread::Connect(Link& link) {
  Disconnect(link);
  redisContext* c =
      options_.unix_socket.empty()
          ? redisConnectWithTimeout(options_.host.c_str(), options_.port,
                                    absl::ToTimeval(options_.connect_timeout))
          : redisConnectUnixWithTimeout(options_.unix_socket.c_str(),
                                        absl::ToTimeval(options_.connect_timeout));
  if (c == nullptr) return absl::UnavailableError("redis: cannot connect: out of memory");
  if (c->err) {
    absl::Status s = absl::UnavailableError(absl::StrCat("redis: cannot connect: ", c->errstr));
    redisFree(c);
    return s;
  }
  socket_fd_.store(c->fd);
  redisSetTimeout(c, absl::ToTimeval(options_.command_timeout + options_.connect_timeout));
  // Runs one setup command; an error reply is classified, a null reply is a transport failure.
  auto run = [&](const std::vector<std::string>& argv, redisReply** out) -> absl::Status {
    redisReply* r = Command(c, argv);
    if (r == nullptr) return RedisTransportError(c, argv[0]);
    if (r->type == REDIS_REPLY_ERROR) {
      absl::Status s = ClassifyRedisError(argv[0], absl::string_view(r->str, r->len)).status;
      freeReplyObject(r);
      return s;
    }
    if (out != nullptr) {
      *out = r;
    } else {
      freeReplyObject(r);
    }
    return absl::OkStatus();
  };
  auto fail = [&](absl::Status s) {
    socket_fd_.store(-1);
    redisFree(c);
    return s;
  };
  if (!options_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!options_.username.empty()) auth.push_back(options_.username);
    auth.push_back(options_.password);
    if (absl::Status s = run(auth, nullptr); !s.ok()) return fail(s);
  }
  // What kind of server is this? A Sentinel or a replica cannot hold sluice's state. (Redis < 6
  // has no HELLO, and an ACL may deny it: then the first write says READONLY, if it is one.)
  redisReply* hello = nullptr;
  absl::Status said = run({"HELLO", "2"}, &hello);
  if (absl::IsPermissionDenied(said) && absl::StrContains(said.message(), "NOAUTH")) {
    return fail(said);
  }
  if (hello != nullptr) {
    const std::string mode = HelloField(hello, "mode");
    const std::string role = HelloField(hello, "role");
    freeReplyObject(hello);
    if (mode == "sentinel") {
      return fail(absl::FailedPreconditionError(
          "redis: the server is a Sentinel (HELLO mode=sentinel), which holds no data: point "
          "the store at the master it monitors"));
    }
    if (role == "replica" || role == "slave") {
      return fail(absl::FailedPreconditionError(
          "redis: the server is a read-only replica (HELLO role=replica): point the store at "
          "the master"));
    }
  } else if (!said.ok() && IsTransportError(said)) {
    return fail(said);
  }
  if (options_.db != 0) {
    if (absl::Status s = run({"SELECT", absl::StrCat(options_.db)}, nullptr); !s.ok()) {
      return fail(s);
    }
  }
  redisSetTimeout(c, absl::ToTimeval(options_.command_timeout));
  link.context = c;
  connected_ = true;
  connects_.fetch_add(1, std::memory_order_relaxed);
  {
    MutexLock lock(&mu_);
    breaker_open_until_.store(0, std::memory_order_release);
    breaker_status_ = absl::OkStatus();
  }
  if (unreachable_logged_.exchange(false)) {
    Log(LogLevel::kInfo, absl::StrCat("redis ", where_, ": connected again; decisions are strict"));
  }
  return absl::OkStatus();
}

absl::Status RedisConnectionThread::LoadScript(Link& link, const std::string* script) {
  script_loads_.fetch_add(1, std::memory_order_relaxed);
  redisReply* r = Command(link.context, {"SCRIPT", "LOAD", *script});
  if (r == nullptr) return RedisTransportError(link.context, "SCRIPT LOAD");
  absl::Status s;
  if (r->type == REDIS_REPLY_STRING) {
    link.shas[script] = std::string(r->str, r->len);
  } else if (r->type == REDIS_REPLY_ERROR) {
    s = ClassifyRedisError("SCRIPT LOAD", absl::string_view(r->str, r->len)).status;
  } else {
    s = absl::InternalError("redis: SCRIPT LOAD: unexpected reply");
  }
  freeReplyObject(r);
  return s;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
