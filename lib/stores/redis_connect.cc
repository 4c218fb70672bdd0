// Connecting to Redis and checking what answers (see redis_connection_thread.h): the one
// standalone server, the master a Sentinel group names, or a Redis Cluster's masters.
#include <hiredis/hiredis.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/optional.h"
#include "sluice/clock.h"
#include "stores/redis_connection_thread.h"
#include "stores/redis_errors.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

std::vector<absl::string_view> Views(const std::vector<std::string>& argv) {
  return std::vector<absl::string_view>(argv.begin(), argv.end());
}

// Runs one setup command on `link`. An error reply is classified; a reply is returned otherwise.
absl::StatusOr<RedisReplyPtr> Setup(RedisLink& link, const std::vector<std::string>& argv,
                                    absl::string_view what) {
  absl::StatusOr<RedisReplyPtr> r = link.Command(Views(argv));
  if (!r.ok()) return r.status();
  if ((*r)->type == REDIS_REPLY_ERROR) {
    return ClassifyRedisError(what, absl::string_view((*r)->str, (*r)->len)).status;
  }
  return r;
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

std::string NodesToString(const std::vector<RedisNode>& nodes) {
  return absl::StrJoin(nodes, ",", [](std::string* out, const RedisNode& n) {
    out->append(RedisEndpoint{n.host, n.port, ""}.ToString());
  });
}

}  // namespace

RedisTopology TopologyOf(const RedisOptions& o) {
  if (!o.cluster_nodes.empty()) return RedisTopology::kCluster;
  if (!o.sentinel_master.empty()) return RedisTopology::kSentinel;
  return RedisTopology::kStandalone;
}

std::string DescribeRedisServers(const RedisOptions& o) {
  switch (TopologyOf(o)) {
    case RedisTopology::kCluster:
      return absl::StrCat("cluster ", NodesToString(o.cluster_nodes));
    case RedisTopology::kSentinel:
      return absl::StrCat("sentinel '", o.sentinel_master, "' ", NodesToString(o.sentinels));
    case RedisTopology::kStandalone:
      break;
  }
  return o.unix_socket.empty() ? RedisEndpoint{o.host, o.port, ""}.ToString() : o.unix_socket;
}

void RedisConnectionThread::Disconnect(Links& links) {
  for (auto& [name, node] : links.nodes) {
    if (node.link != nullptr) UntrackSocket(node.link->fd());  // before the close: see sockets_
  }
  links.nodes.clear();
  links.slots = SlotMap();
  if (links.sentinel != nullptr) UntrackSocket(links.sentinel->fd());
  links.sentinel.reset();
  connected_ = false;
}

absl::StatusOr<RedisConnectionThread::NodeLink> RedisConnectionThread::OpenDataNode(
    const RedisEndpoint& at) {
  absl::StatusOr<std::unique_ptr<RedisLink>> opened =
      RedisLink::Open(at, options_.tls, options_.connect_timeout);
  if (!opened.ok()) return opened.status();
  NodeLink node;
  node.link = *std::move(opened);
  RedisLink& link = *node.link;
  link.SetTimeout(options_.command_timeout + options_.connect_timeout);
  const std::string where = at.ToString();
  if (!options_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!options_.username.empty()) auth.push_back(options_.username);
    auth.push_back(options_.password);
    if (auto r = Setup(link, auth, "AUTH"); !r.ok()) return r.status();
  }
  // What kind of server is this? (Redis < 6 has no HELLO, and an ACL may deny it: then the
  // first write says READONLY, if it is a replica.)
  absl::StatusOr<RedisReplyPtr> hello = Setup(link, {"HELLO", "2"}, "HELLO");
  if (!hello.ok()) {
    if (IsTransportError(hello.status()) ||
        (absl::IsPermissionDenied(hello.status()) &&
         absl::StrContains(hello.status().message(), "NOAUTH"))) {
      return hello.status();
    }
  } else {
    const std::string mode = HelloField(hello->get(), "mode");
    const std::string role = HelloField(hello->get(), "role");
    if (mode == "sentinel") {
      return absl::FailedPreconditionError(absl::StrCat(
          "redis ", where, ": the server is a Sentinel (HELLO mode=sentinel), which holds no "
          "data: set RedisOptions.sentinel_master and sentinels (or a redis+sentinel:// URL) "
          "to use the master it monitors"));
    }
    if (topology_ == RedisTopology::kCluster && mode != "cluster") {
      return absl::FailedPreconditionError(absl::StrCat(
          "redis ", where, ": RedisOptions.cluster_nodes names a server that is not a Redis "
          "Cluster node (HELLO mode=", mode, "): use host and port for a standalone server"));
    }
    if (topology_ != RedisTopology::kCluster && mode == "cluster") {
      return absl::FailedPreconditionError(absl::StrCat(
          "redis ", where, ": the server is a Redis Cluster node (HELLO mode=cluster): list "
          "the cluster's nodes in RedisOptions.cluster_nodes (or a redis+cluster:// URL)"));
    }
    if (role == "replica" || role == "slave") {
      if (topology_ == RedisTopology::kStandalone) {
        return absl::FailedPreconditionError(absl::StrCat(
            "redis ", where, ": the server is a read-only replica (HELLO role=replica): point "
            "the store at the master"));
      }
      // A Sentinel or a slot map that named it master a moment ago: a failover is under way.
      return absl::UnavailableError(absl::StrCat(
          "redis ", where, ": named master but answers as a replica (a failover under way)"));
    }
  }
  if (options_.db != 0) {
    if (auto r = Setup(link, {"SELECT", absl::StrCat(options_.db)}, "SELECT"); !r.ok()) {
      return r.status();
    }
  }
  link.SetTimeout(options_.command_timeout);
  return node;
}

absl::StatusOr<RedisEndpoint> RedisConnectionThread::ResolveSentinelMaster() {
  absl::Status last = absl::UnavailableError("redis: no sentinel answered");
  bool unknown = false;  // a sentinel answered that it knows no such master
  for (size_t i = 0; i < options_.sentinels.size(); ++i) {
    const RedisEndpoint at{options_.sentinels[i].host, options_.sentinels[i].port, ""};
    const std::string which = absl::StrCat("sentinels[", i, "] ", at.ToString());
    absl::StatusOr<std::unique_ptr<RedisLink>> link =
        RedisLink::Open(at, options_.tls, options_.connect_timeout);
    if (!link.ok()) {
      if (!IsTransportError(link.status())) return link.status();  // TLS refused: loud
      last = link.status();
      continue;
    }
    (*link)->SetTimeout(options_.command_timeout + options_.connect_timeout);
    if (!options_.sentinel_password.empty()) {
      std::vector<std::string> auth = {"AUTH"};
      if (!options_.sentinel_username.empty()) auth.push_back(options_.sentinel_username);
      auth.push_back(options_.sentinel_password);
      absl::StatusOr<RedisReplyPtr> r = Setup(**link, auth, "AUTH");
      if (!r.ok() && !IsTransportError(r.status())) {
        return absl::Status(r.status().code(),
                            absl::StrCat(which, ": ", r.status().message(),
                                         " (RedisOptions.sentinel_username / sentinel_password)"));
      }
      if (!r.ok()) {
        last = r.status();
        continue;
      }
    }
    absl::StatusOr<RedisReplyPtr> r = Setup(
        **link, {"SENTINEL", "get-master-addr-by-name", options_.sentinel_master}, "SENTINEL");
    if (!r.ok()) {
      if (IsTransportError(r.status())) {
        last = r.status();
        continue;
      }
      if (absl::IsPermissionDenied(r.status())) {
        return absl::Status(r.status().code(),
                            absl::StrCat(which, ": ", r.status().message(),
                                         " (RedisOptions.sentinel_username / sentinel_password)"));
      }
      return absl::FailedPreconditionError(
          absl::StrCat("redis ", which, " is not a Sentinel (", r.status().message(), ")"));
    }
    const redisReply* reply = r->get();
    if (reply->type == REDIS_REPLY_NIL) {
      unknown = true;
      continue;
    }
    int port = 0;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING ||
        !absl::SimpleAtoi(absl::string_view(reply->element[1]->str, reply->element[1]->len),
                          &port) ||
        port < 1 || port > 65535) {
      last = absl::InternalError(absl::StrCat("redis ", which, ": unexpected reply to SENTINEL "
                                              "get-master-addr-by-name"));
      continue;
    }
    return RedisEndpoint{std::string(reply->element[0]->str, reply->element[0]->len), port, ""};
  }
  if (unknown) {
    return absl::FailedPreconditionError(absl::StrCat(
        "redis: no sentinel knows a master named '", options_.sentinel_master,
        "' (RedisOptions.sentinel_master; `SENTINEL masters` lists the names they watch)"));
  }
  return last;
}

void RedisConnectionThread::CheckSentinelMaster(Links& links) {
  links.next_master_check =
      Clock::Steady()->NowNanos() + absl::ToInt64Nanoseconds(options_.reconnect_interval);
  if (!links.connected()) return;
  const std::vector<std::string> ask = {"SENTINEL", "get-master-addr-by-name",
                                        options_.sentinel_master};
  // The sentinel that answered last, else the next one; sentinels down say nothing about the
  // master, so no answer leaves it as it is.
  for (size_t tries = 0; tries < options_.sentinels.size(); ++tries) {
    if (links.sentinel == nullptr) {
      const RedisNode& n = options_.sentinels[links.sentinel_index % options_.sentinels.size()];
      absl::StatusOr<std::unique_ptr<RedisLink>> opened =
          RedisLink::Open({n.host, n.port, ""}, options_.tls, options_.connect_timeout);
      bool usable = opened.ok();
      if (usable) {
        (*opened)->SetTimeout(options_.command_timeout + options_.connect_timeout);
        if (!options_.sentinel_password.empty()) {
          std::vector<std::string> auth = {"AUTH"};
          if (!options_.sentinel_username.empty()) auth.push_back(options_.sentinel_username);
          auth.push_back(options_.sentinel_password);
          usable = Setup(**opened, auth, "AUTH").ok();
        }
      }
      if (!usable) {
        ++links.sentinel_index;
        continue;
      }
      links.sentinel = *std::move(opened);
      TrackSocket(links.sentinel->fd());
    }
    absl::StatusOr<RedisReplyPtr> r = Setup(*links.sentinel, ask, "SENTINEL");
    if (!r.ok() || (*r)->type != REDIS_REPLY_ARRAY || (*r)->elements != 2 ||
        (*r)->element[0]->type != REDIS_REPLY_STRING ||
        (*r)->element[1]->type != REDIS_REPLY_STRING) {
      UntrackSocket(links.sentinel->fd());
      links.sentinel.reset();
      ++links.sentinel_index;
      continue;
    }
    int port = 0;
    const redisReply* reply = r->get();
    (void)absl::SimpleAtoi(absl::string_view(reply->element[1]->str, reply->element[1]->len),
                           &port);
    const RedisEndpoint named{std::string(reply->element[0]->str, reply->element[0]->len), port,
                              ""};
    if (links.nodes.find(named.ToString()) == links.nodes.end()) {
      Log(LogLevel::kInfo, absl::StrCat("redis ", where_, ": the sentinels name a new master, ",
                                        named.ToString(), ": reconnecting"));
      Disconnect(links);  // Run() connects to the new master at once
    }
    return;
  }
}

RedisConnectionThread::NodeLink* RedisConnectionThread::NodeAt(Links& links,
                                                               const RedisEndpoint& at,
                                                               absl::Status* status) {
  const std::string name = at.ToString();
  if (auto it = links.nodes.find(name); it != links.nodes.end()) return &it->second;
  if (links.nodes.size() >= kMaxTrackedSockets - 1) {
    *status = absl::ResourceExhaustedError(
        absl::StrCat("redis ", where_, ": more than ", kMaxTrackedSockets - 1, " masters"));
    return nullptr;
  }
  absl::StatusOr<NodeLink> opened = OpenDataNode(at);
  if (!opened.ok()) {
    *status = opened.status();
    return nullptr;
  }
  TrackSocket(opened->link->fd());
  return &links.nodes.emplace(name, *std::move(opened)).first->second;
}

absl::Status RedisConnectionThread::RefreshSlots(Links& links) {
  // Masters we hold a link to know the map best; the seeds are the fallback.
  std::vector<RedisEndpoint> candidates;
  for (const RedisEndpoint& m : links.slots.masters()) candidates.push_back(m);
  for (const RedisNode& n : options_.cluster_nodes) candidates.push_back({n.host, n.port, ""});
  absl::Status last = absl::UnavailableError("redis: no cluster node answered");
  for (const RedisEndpoint& at : candidates) {
    NodeLink* node = nullptr;
    absl::optional<NodeLink> temporary;  // a seed that is not (or no longer) a master
    if (auto it = links.nodes.find(at.ToString()); it != links.nodes.end()) {
      node = &it->second;
    } else {
      absl::StatusOr<NodeLink> opened = OpenDataNode(at);
      if (!opened.ok()) {
        if (!IsTransportError(opened.status())) return opened.status();
        last = opened.status();
        continue;
      }
      temporary = *std::move(opened);
      node = &*temporary;
    }
    absl::StatusOr<RedisReplyPtr> r = Setup(*node->link, {"CLUSTER", "SLOTS"}, "CLUSTER SLOTS");
    if (!r.ok()) {
      if (!IsTransportError(r.status()) && !absl::IsInternal(r.status())) return r.status();
      last = r.status();
      continue;
    }
    absl::StatusOr<SlotMap> map = SlotMap::FromClusterSlots(**r, at);
    if (!map.ok()) {
      last = map.status();
      continue;
    }
    if (map->uncovered() == kClusterSlots) {
      last = absl::UnavailableError(
          absl::StrCat("redis ", at.ToString(), ": the cluster serves no slot yet"));
      continue;
    }
    links.slots = *std::move(map);
    if (temporary.has_value()) {
      for (const RedisEndpoint& m : links.slots.masters()) {
        if (m == at) {
          TrackSocket(temporary->link->fd());
          links.nodes.emplace(at.ToString(), *std::move(temporary));
          break;
        }
      }
    }
    // Links to servers that are no longer masters go (a demoted master answers READONLY).
    for (auto it = links.nodes.begin(); it != links.nodes.end();) {
      bool master = false;
      for (const RedisEndpoint& m : links.slots.masters()) master |= m.ToString() == it->first;
      if (!master) {
        UntrackSocket(it->second.link->fd());
        links.nodes.erase(it++);
      } else {
        ++it;
      }
    }
    return absl::OkStatus();
  }
  return last;
}

absl::Status RedisConnectionThread::Connect(Links& links) {
  Disconnect(links);
  absl::Status status;
  switch (topology_) {
    case RedisTopology::kStandalone: {
      const RedisEndpoint at{options_.host, options_.port, options_.unix_socket};
      NodeAt(links, at, &status);
      break;
    }
    case RedisTopology::kSentinel: {
      absl::StatusOr<RedisEndpoint> master = ResolveSentinelMaster();
      if (!master.ok()) {
        status = master.status();
      } else {
        RedisEndpoint before;
        {
          MutexLock lock(&mu_);  // the fork hooks hold it: a child never sees it half-written
          before = std::exchange(last_master_, *master);
        }
        if (!before.host.empty() && !(before == *master)) {
          topology_changes_.fetch_add(1, std::memory_order_relaxed);
          Log(LogLevel::kInfo, absl::StrCat("redis ", where_, ": the master is now ",
                                            master->ToString(), " (was ", before.ToString(),
                                            ")"));
        }
        NodeAt(links, *master, &status);
      }
      break;
    }
    case RedisTopology::kCluster: {
      status = RefreshSlots(links);
      // Every master at once: a link that cannot be opened is an outage of its slots, which
      // (like any transport failure) sends the whole store to the failure mode until the
      // cluster has failed over and the map names a master that answers.
      for (size_t i = 0; status.ok() && i < links.slots.masters().size(); ++i) {
        const RedisEndpoint at = links.slots.masters()[i];
        NodeAt(links, at, &status);
      }
      break;
    }
  }
  if (!status.ok()) {
    Disconnect(links);
    return status;
  }
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

absl::Status RedisConnectionThread::LoadScript(NodeLink& node, const std::string* script) {
  script_loads_.fetch_add(1, std::memory_order_relaxed);
  absl::StatusOr<RedisReplyPtr> r = node.link->Command({"SCRIPT", "LOAD", *script});
  if (!r.ok()) return r.status();
  if ((*r)->type == REDIS_REPLY_STRING) {
    node.shas[script] = std::string((*r)->str, (*r)->len);
    return absl::OkStatus();
  }
  if ((*r)->type == REDIS_REPLY_ERROR) {
    return ClassifyReply("SCRIPT LOAD", absl::string_view((*r)->str, (*r)->len)).status;
  }
  return absl::InternalError("redis: SCRIPT LOAD: unexpected reply");
}

RedisError RedisConnectionThread::ClassifyReply(absl::string_view command,
                                                absl::string_view error) const {
  const bool readonly = absl::StartsWith(error, "READONLY");
  if (topology_ == RedisTopology::kCluster &&
      (readonly || absl::StartsWith(error, "CLUSTERDOWN"))) {
    return {absl::UnavailableError(absl::StrCat("redis: ", command, ": ", error,
                                                "; the cluster is reconfiguring")),
            true};
  }
  if (topology_ == RedisTopology::kSentinel && readonly) {
    return {absl::UnavailableError(absl::StrCat("redis: ", command, ": ", error,
                                                "; the master stepped down: asking the "
                                                "sentinels again")),
            true};
  }
  return ClassifyRedisError(command, error);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
