// Redis topologies for tests: a Redis Cluster (LocalRedisCluster) and a Sentinel group
// (LocalSentinelGroup), built from LocalRedis servers on free loopback ports, in a temp dir of
// their own, stopped and removed when the object goes away (and killed with the test thread's
// death, as LocalRedis is). Python twin: benchmarks/python/redis_topologies.py.
//
// Every wait is bounded: construction throws std::runtime_error when the topology does not form
// in time; Wait*() return std::nullopt on timeout. The procedures follow Redis's documentation
// (cluster specification and tutorial, "High availability with Redis Sentinel"); the commands are
// sent with hiredis, as a client would.
#ifndef SLUICE_TESTS_CPP_REDIS_TOPOLOGIES_H_
#define SLUICE_TESTS_CPP_REDIS_TOPOLOGIES_H_

#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <hiredis/hiredis.h>

#include "local_redis.h"
#include "stores/redis_slots.h"

namespace redis_topologies {

struct Node {
  std::string host;
  int port;
};

using Reply = std::unique_ptr<redisReply, void (*)(void*)>;
using Millis = std::chrono::milliseconds;

// One command on a fresh connection to 127.0.0.1:`port` (AUTH first when `password` is set).
// nullptr when the node cannot be reached or does not answer within 2 s.
inline Reply Command(int port, const std::string& password, const std::vector<std::string>& args) {
  timeval tv{2, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  Reply none(nullptr, freeReplyObject);
  if (c == nullptr || c->err) {
    if (c != nullptr) redisFree(c);
    return none;
  }
  redisSetTimeout(c, tv);
  if (!password.empty()) {
    Reply auth(static_cast<redisReply*>(redisCommand(c, "AUTH %s", password.c_str())),
               freeReplyObject);
  }
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (const std::string& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  Reply reply(static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()),
                                                        argv.data(), lengths.data())),
              freeReplyObject);
  redisFree(c);
  return reply;
}

// The reply's text (status, string, error), or "" for other types and no reply.
inline std::string Text(const Reply& r) {
  if (r == nullptr) return "";
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
      r->type == REDIS_REPLY_ERROR) {
    return std::string(r->str, r->len);
  }
  return "";
}

// "field:value" from INFO-style text (CLUSTER INFO, INFO replication); "" when absent.
inline std::string InfoField(const std::string& info, const std::string& field) {
  const std::string needle = field + ":";
  size_t at = 0;
  while ((at = info.find(needle, at)) != std::string::npos) {
    if (at == 0 || info[at - 1] == '\n') {
      const size_t start = at + needle.size();
      return info.substr(start, info.find_first_of("\r\n", start) - start);
    }
    at += needle.size();
  }
  return "";
}

// Polls `probe` every 20 ms until it is true; the time it took, or nullopt after `timeout`.
inline std::optional<Millis> WaitUntil(Millis timeout, const std::function<bool()>& probe) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const bool reached = probe();
    const auto waited = std::chrono::steady_clock::now() - start;
    if (reached) return std::chrono::duration_cast<Millis>(waited);
    if (waited > timeout) return std::nullopt;
    std::this_thread::sleep_for(Millis(20));
  }
}

// The key's hash slot: sluice's own (lib/stores/redis_slots.h), which the fixture test checks
// against the servers' CLUSTER KEYSLOT.
inline int KeySlot(const std::string& key) { return sluice::internal::KeySlot(key); }

// Free loopback ports, distinct from each other.
inline std::vector<int> FreePorts(size_t count) {
  std::set<int> seen;
  std::vector<int> ports;
  while (ports.size() < count) {
    const int port = LocalRedis::FreePort();
    if (seen.insert(port).second) ports.push_back(port);
  }
  return ports;
}

inline std::string MakeTempDir(const char* prefix) {
  std::string pattern = (std::filesystem::temp_directory_path() / prefix).string() + "XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + pattern);
  return pattern;
}

// requirepass guards a data node; masterauth lets its replicas (and it, as a replica) sync.
// diskless sync without the default 5 s delay: a replica attaches at once.
inline std::vector<std::string> DataNodeArgs(const std::string& password) {
  std::vector<std::string> args = {"--repl-diskless-sync-delay", "0"};
  if (!password.empty()) {
    for (const char* a : {"--requirepass", "--masterauth"}) {
      args.push_back(a);
      args.push_back(password);
    }
  }
  return args;
}

// A Redis Cluster on loopback: `masters` masters sharing the 16384 slots in equal ranges, each
// with `replicas_per_master` replicas; cluster-node-timeout 1000 ms (a failover takes ~2-3 s).
// Nodes are numbered 0..masters-1 (the formation masters: node m serves range m) and then the
// replicas (ReplicaIndex(m, r) replicates master m). Each node has its own cluster bus port
// (cluster-port), so data ports need no +10000 headroom. `password` sets requirepass and
// masterauth on every node. Not thread-safe: drive it from the test's thread.
// Keeps a killed server's port taken until it restarts or the topology stops: the topology's
// other nodes (sentinels above all) keep addressing it, and a test running beside this one must
// not start a server there (sentinels would make it a replica of this topology's data).
class PortHolds {
 public:
  ~PortHolds() {
    for (auto& [port, fd] : fds_) close(fd);
  }
  void Hold(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
      fds_[port] = fd;
    } else if (fd >= 0) {
      close(fd);
    }
  }
  void Release(int port) {
    if (auto it = fds_.find(port); it != fds_.end()) {
      close(it->second);
      fds_.erase(it);
    }
  }

 private:
  std::map<int, int> fds_;
};

class LocalRedisCluster {
 public:
  // `tls_args` (e.g. TlsFiles::RedisArgs without its port): when given, every node also serves
  // TLS on a port of its own (TlsSeeds()), with `tls-cluster yes`: a client that reaches a node
  // over TLS is given the TLS ports in CLUSTER SLOTS.
  explicit LocalRedisCluster(int masters = 3, int replicas_per_master = 1,
                             std::vector<std::string> extra_args = {}, std::string password = {},
                             Millis timeout = Millis(20000),
                             std::vector<std::string> tls_args = {})
      : masters_(masters),
        replicas_per_master_(replicas_per_master),
        tls_args_(std::move(tls_args)),
        password_(std::move(password)),
        timeout_(timeout),
        dir_(MakeTempDir("sluice-cluster-")) {
    if (masters < 1 || replicas_per_master < 0) {
      throw std::invalid_argument("LocalRedisCluster: masters must be >= 1 and "
                                  "replicas_per_master >= 0");
    }
    try {
      Form(extra_args);
    } catch (...) {
      Stop();
      throw;
    }
  }
  ~LocalRedisCluster() { Stop(); }
  LocalRedisCluster(const LocalRedisCluster&) = delete;
  LocalRedisCluster& operator=(const LocalRedisCluster&) = delete;

  int masters() const { return masters_; }
  int node_count() const { return static_cast<int>(nodes_.size()); }
  int port(int i) const { return nodes_[i]->port(); }
  bool alive(int i) const { return alive_[i]; }
  const std::string& node_id(int i) const { return ids_[i]; }
  const std::string& password() const { return password_; }
  int ReplicaIndex(int m, int r = 0) const { return masters_ + m * replicas_per_master_ + r; }
  // Every node's address: a client's seed list.
  std::vector<Node> Seeds() const {
    std::vector<Node> seeds;
    for (const auto& node : nodes_) seeds.push_back({"127.0.0.1", node->port()});
    return seeds;
  }
  // Every node's TLS address (empty without `tls_args`).
  std::vector<Node> TlsSeeds() const {
    std::vector<Node> seeds;
    for (int port : tls_ports_) seeds.push_back({"127.0.0.1", port});
    return seeds;
  }
  // The slots master m was given at formation (inclusive).
  std::pair<int, int> SlotRange(int m) const {
    constexpr int kSlots = sluice::internal::kClusterSlots;
    return {kSlots * m / masters_, kSlots * (m + 1) / masters_ - 1};
  }
  int ShardOfSlot(int slot) const {
    for (int m = 0; m < masters_; ++m) {
      if (SlotRange(m).first <= slot && slot <= SlotRange(m).second) return m;
    }
    return -1;
  }
  static int KeySlot(const std::string& key) { return redis_topologies::KeySlot(key); }

  // A command to node i (AUTH with the cluster's password first).
  Reply Call(int i, const std::vector<std::string>& args) const {
    return Command(port(i), password_, args);
  }

  // The node serving `slot` now, as the first live node's CLUSTER SLOTS says; -1 if none.
  int MasterForSlot(int slot) const {
    for (int i = 0; i < node_count(); ++i) {
      if (alive_[i]) return OwnerSeenBy(i, slot);
    }
    return -1;
  }
  // The node serving each formation slot range now.
  std::vector<int> CurrentMasters() const {
    std::vector<int> masters;
    for (int m = 0; m < masters_; ++m) masters.push_back(MasterForSlot(SlotRange(m).first));
    return masters;
  }

  // Until every live node says cluster_state:ok, knows every node, names a live master for every
  // slot range, and every live replica's link to its (live) master is up.
  std::optional<Millis> WaitHealthy(std::optional<Millis> timeout = std::nullopt) const {
    return WaitUntil(timeout.value_or(timeout_), [this] { return Healthy(); });
  }

  // SIGKILLs the node now serving formation slot range m; returns its index.
  int KillMaster(int m) {
    const int victim = MasterForSlot(SlotRange(m).first);
    if (victim < 0) throw std::runtime_error("LocalRedisCluster::KillMaster: no master found");
    nodes_[victim]->Kill();
    holds_.Hold(nodes_[victim]->port());
    alive_[victim] = false;
    killed_at_ = std::chrono::steady_clock::now();
    return victim;
  }
  // Until a replica serves what the killed master served and the cluster is healthy again: the
  // time since KillMaster (or since the call), or nullopt after `timeout`.
  std::optional<Millis> WaitForFailover(Millis timeout = Millis(15000)) {
    const auto since = killed_at_.value_or(std::chrono::steady_clock::now());
    if (!WaitHealthy(timeout)) return std::nullopt;
    killed_at_.reset();
    return std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - since);
  }
  // Starts node i again on its port with its nodes.conf (a killed master comes back as a replica
  // of the node that took over); true once the cluster is healthy.
  bool RestartNode(int i) {
    nodes_[i]->Kill();
    holds_.Release(nodes_[i]->port());
    alive_[i] = nodes_[i]->Restart();
    return alive_[i] && WaitHealthy().has_value();
  }

  // Slot migration in steps, so a test can act in between. Begin: IMPORTING on `to`, MIGRATING
  // on `from`; the source then answers ASK for keys of `slot` it no longer holds.
  void BeginMigration(int slot, int from, int to) {
    Expect(Call(to, {"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", ids_[from]}),
           "SETSLOT IMPORTING");
    Expect(Call(from, {"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", ids_[to]}),
           "SETSLOT MIGRATING");
    migrations_[slot] = {from, to};
  }
  // Moves every key of `slot` to the target (GETKEYSINSLOT + MIGRATE ... KEYS); how many moved.
  int MigrateKeys(int slot) {
    const auto [from, to] = migrations_.at(slot);
    int moved = 0;
    while (true) {
      Reply keys = Call(from, {"CLUSTER", "GETKEYSINSLOT", std::to_string(slot), "100"});
      if (keys == nullptr || keys->type != REDIS_REPLY_ARRAY) {
        throw std::runtime_error("LocalRedisCluster::MigrateKeys: GETKEYSINSLOT failed");
      }
      if (keys->elements == 0) return moved;
      std::vector<std::string> migrate = {"MIGRATE", "127.0.0.1", std::to_string(port(to)), "",
                                          "0", "5000"};
      if (!password_.empty()) {
        migrate.push_back("AUTH");
        migrate.push_back(password_);
      }
      migrate.push_back("KEYS");
      for (size_t k = 0; k < keys->elements; ++k) {
        migrate.emplace_back(keys->element[k]->str, keys->element[k]->len);
      }
      Expect(Call(from, migrate), "MIGRATE");
      moved += static_cast<int>(keys->elements);
    }
  }
  // SETSLOT NODE on the target, the source, then the other live masters; MOVED from then on.
  // True once every live node names the target.
  bool FinishMigration(int slot) {
    const auto [from, to] = migrations_.at(slot);
    migrations_.erase(slot);
    std::vector<int> order = {to, from};
    for (int i = 0; i < node_count(); ++i) {
      if (i != to && i != from && alive_[i] && Role(i) == "master") order.push_back(i);
    }
    for (int i : order) {
      Expect(Call(i, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", ids_[to]}),
             "SETSLOT NODE");
    }
    return WaitUntil(timeout_, [&, to = to] {
             for (int i = 0; i < node_count(); ++i) {
               if (alive_[i] && OwnerSeenBy(i, slot) != to) return false;
             }
             return true;
           }).has_value();
  }

  std::string Role(int i) const {
    return InfoField(Text(Call(i, {"INFO", "replication"})), "role");
  }

 private:
  void Form(const std::vector<std::string>& extra_args) {
    const int total = masters_ * (1 + replicas_per_master_);
    for (int i = 0; i < total; ++i) {
      // A free port can be taken by a test running beside this one before the node binds it:
      // such a node fails to start, and is tried again on other ports.
      for (int attempt = 0;; ++attempt) {
        const std::vector<int> ports = FreePorts(3);
        const int port = ports[0], bus = ports[1], tls_port = ports[2];
        std::vector<std::string> args = {
            "--cluster-enabled", "yes", "--cluster-config-file",
            dir_ + "/nodes-" + std::to_string(port) + ".conf", "--cluster-node-timeout", "1000",
            "--cluster-port", std::to_string(bus),
            // A replica fails over however stale its data (tests kill masters at will).
            "--cluster-replica-validity-factor", "0", "--cluster-allow-replica-migration", "no",
            "--dir", dir_};
        for (const std::string& a : DataNodeArgs(password_)) args.push_back(a);
        for (const std::string& a : extra_args) args.push_back(a);
        if (!tls_args_.empty()) {
          for (const std::string& a : {std::string("--tls-port"), std::to_string(tls_port),
                                       std::string("--tls-cluster"), std::string("yes"),
                                       std::string("--tls-replication"), std::string("yes")}) {
            args.push_back(a);
          }
          for (const std::string& a : tls_args_) args.push_back(a);
        }
        auto node = std::make_unique<LocalRedis>(args, std::string{}, port);
        if (node->Ping()) {
          nodes_.push_back(std::move(node));
          alive_.push_back(true);
          bus_ports_.push_back(bus);
          if (!tls_args_.empty()) tls_ports_.push_back(tls_port);
          break;
        }
        if (attempt == 2) throw std::runtime_error("LocalRedisCluster: a node did not start");
      }
    }
    for (int i = 0; i < total; ++i) {
      ids_.push_back(Text(Call(i, {"CLUSTER", "MYID"})));
      // Distinct config epochs before the nodes meet, as `redis-cli --cluster create` does.
      Expect(Call(i, {"CLUSTER", "SET-CONFIG-EPOCH", std::to_string(i + 1)}), "SET-CONFIG-EPOCH");
    }
    for (int m = 0; m < masters_; ++m) {
      Expect(Call(m, {"CLUSTER", "ADDSLOTSRANGE", std::to_string(SlotRange(m).first),
                      std::to_string(SlotRange(m).second)}),
             "ADDSLOTSRANGE");
    }
    for (int i = 1; i < total; ++i) {
      Expect(Call(0, {"CLUSTER", "MEET", "127.0.0.1", std::to_string(port(i)),
                      std::to_string(bus_ports_[i])}),
             "MEET");
    }
    if (!WaitUntil(timeout_, [&] {
          for (int i = 0; i < total; ++i) {
            if (KnownNodes(i) != total) return false;
          }
          return true;
        })) {
      throw std::runtime_error("LocalRedisCluster: the nodes did not all meet in time");
    }
    for (int m = 0; m < masters_; ++m) {
      for (int r = 0; r < replicas_per_master_; ++r) {
        Expect(Call(ReplicaIndex(m, r), {"CLUSTER", "REPLICATE", ids_[m]}), "REPLICATE");
      }
    }
    if (!WaitHealthy()) throw std::runtime_error("LocalRedisCluster: not healthy in time");
  }

  void Stop() {
    for (auto& node : nodes_) node->Kill();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  static void Expect(const Reply& r, const char* what) {
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      throw std::runtime_error(std::string("LocalRedisCluster: ") + what + " failed: " +
                               (r == nullptr ? "no reply" : Text(r)));
    }
  }

  int KnownNodes(int i) const {
    const std::string known = InfoField(Text(Call(i, {"CLUSTER", "INFO"})), "cluster_known_nodes");
    return known.empty() ? -1 : std::stoi(known);
  }

  int IndexOfPort(long long port) const {
    for (int i = 0; i < node_count(); ++i) {
      if (nodes_[i]->port() == port) return i;
    }
    return -1;
  }

  // The node node i says serves `slot`; -1 if it cannot say.
  int OwnerSeenBy(int i, int slot) const {
    Reply slots = Call(i, {"CLUSTER", "SLOTS"});
    if (slots == nullptr || slots->type != REDIS_REPLY_ARRAY) return -1;
    for (size_t e = 0; e < slots->elements; ++e) {
      // [start, end, [host, port, id, ...], replicas...]
      const redisReply* entry = slots->element[e];
      if (entry->elements < 3) continue;
      if (entry->element[0]->integer <= slot && slot <= entry->element[1]->integer) {
        return IndexOfPort(entry->element[2]->element[1]->integer);
      }
    }
    return -1;
  }

  bool Healthy() const {
    const int total = node_count();
    for (int i = 0; i < total; ++i) {
      if (!alive_[i]) continue;
      if (InfoField(Text(Call(i, {"CLUSTER", "INFO"})), "cluster_state") != "ok") return false;
      if (KnownNodes(i) != total) return false;
      for (int m = 0; m < masters_; ++m) {
        const int owner = OwnerSeenBy(i, SlotRange(m).first);
        if (owner < 0 || !alive_[owner]) return false;
      }
      const std::string replication = Text(Call(i, {"INFO", "replication"}));
      if (InfoField(replication, "role") == "slave") {
        if (InfoField(replication, "master_link_status") != "up") return false;
        const int master = IndexOfPort(std::stoll(InfoField(replication, "master_port")));
        if (master < 0 || !alive_[master]) return false;
      }
    }
    return true;
  }

  int masters_;
  int replicas_per_master_;
  std::vector<std::string> tls_args_;
  std::string password_;
  Millis timeout_;
  std::string dir_;
  std::vector<std::unique_ptr<LocalRedis>> nodes_;
  std::vector<int> bus_ports_;  // each node's cluster bus
  std::vector<int> tls_ports_;  // each node's TLS port, with tls_args_
  PortHolds holds_;
  std::vector<bool> alive_;
  std::vector<std::string> ids_;
  std::map<int, std::pair<int, int>> migrations_;
  std::optional<std::chrono::steady_clock::time_point> killed_at_;
};

// A master, one replica (--replicaof) and `sentinels` sentinels watching them as `service`
// (quorum 2, down-after-milliseconds 1000, failover-timeout 3000). Sentinel configs live in a
// per-instance temp dir (sentinels rewrite them). `password` sets requirepass and masterauth on
// the data nodes (and `sentinel auth-pass`); `sentinel_password` sets requirepass on the
// sentinels (and `sentinel sentinel-pass`, so they still talk to each other). Not thread-safe.
class LocalSentinelGroup {
 public:
  explicit LocalSentinelGroup(int sentinels = 3, std::string password = {},
                              std::string sentinel_password = {},
                              std::string service = "mymaster", Millis timeout = Millis(20000))
      : count_(sentinels),
        password_(std::move(password)),
        sentinel_password_(std::move(sentinel_password)),
        service_(std::move(service)),
        timeout_(timeout),
        dir_(MakeTempDir("sluice-sentinel-")) {
    if (sentinels < 1) throw std::invalid_argument("LocalSentinelGroup: sentinels must be >= 1");
    try {
      Form();
    } catch (...) {
      Stop();
      throw;
    }
  }
  ~LocalSentinelGroup() { Stop(); }
  LocalSentinelGroup(const LocalSentinelGroup&) = delete;
  LocalSentinelGroup& operator=(const LocalSentinelGroup&) = delete;

  const std::string& service() const { return service_; }
  const std::string& password() const { return password_; }
  const std::string& sentinel_password() const { return sentinel_password_; }
  std::vector<Node> Sentinels() const {
    std::vector<Node> nodes;
    for (const auto& s : sentinels_) nodes.push_back({"127.0.0.1", s->port()});
    return nodes;
  }
  // The data nodes' ports: [formation master, formation replica].
  std::vector<int> DataPorts() const { return {data_[0]->port(), data_[1]->port()}; }
  // The master the first answering sentinel names now; -1 if none answers.
  int MasterPort() const {
    for (const auto& s : sentinels_) {
      const int port = ReportedMaster(s->port());
      if (port > 0) return port;
    }
    return -1;
  }
  int ReplicaPort() const {
    const int master = MasterPort();
    return data_[0]->port() == master ? data_[1]->port() : data_[0]->port();
  }
  // The master port the sentinel on `sentinel_port` names; -1 if it does not answer.
  int ReportedMaster(int sentinel_port) const {
    Reply r = Command(sentinel_port, sentinel_password_,
                      {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", service_});
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 2) return -1;
    return std::stoi(std::string(r->element[1]->str, r->element[1]->len));
  }
  // A command to a data node (AUTH with the data password first).
  Reply CallData(int port, const std::vector<std::string>& args) const {
    return Command(port, password_, args);
  }

  // Until every sentinel sees the master up, a replica up (link and all) and the other
  // sentinels: after a failover, before the next one can elect the demoted node.
  std::optional<Millis> WaitReady() const {
    return WaitUntil(timeout_, [this] { return SentinelsReady(); });
  }

  // SENTINEL FAILOVER (forced, orderly); returns the old master's port.
  int Failover() {
    const int old = MasterPort();
    Reply r =
        Command(sentinels_[0]->port(), sentinel_password_, {"SENTINEL", "FAILOVER", service_});
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      throw std::runtime_error("LocalSentinelGroup::Failover: " + Text(r));
    }
    switched_at_ = std::chrono::steady_clock::now();
    return old;
  }
  // SIGKILLs the reported master; returns its port.
  int KillMaster() {
    const int old = MasterPort();
    for (auto& node : data_) {
      if (node->port() == old) node->Kill();
    }
    holds_.Hold(old);
    switched_at_ = std::chrono::steady_clock::now();
    return old;
  }
  // Starts a killed data node again (the sentinels turn an old master into a replica).
  bool RestartDataNode(int port) {
    for (auto& node : data_) {
      if (node->port() != port) continue;
      node->Kill();
      holds_.Release(port);
      return node->Restart();
    }
    return false;
  }
  // Until every sentinel names a master other than `old_port` and that node says role:master:
  // the time since Failover()/KillMaster() (or since the call), or nullopt after `timeout`.
  std::optional<Millis> WaitForNewMaster(int old_port, Millis timeout = Millis(15000)) {
    const auto since = switched_at_.value_or(std::chrono::steady_clock::now());
    const bool switched = WaitUntil(timeout, [&] {
                            int named = -1;
                            for (const auto& s : sentinels_) {
                              const int port = ReportedMaster(s->port());
                              if (port < 0 || port == old_port) return false;
                              if (named != -1 && port != named) return false;
                              named = port;
                            }
                            return InfoField(Text(CallData(named, {"INFO", "replication"})),
                                             "role") == "master";
                          }).has_value();
    if (!switched) return std::nullopt;
    switched_at_.reset();
    return std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - since);
  }

 private:
  void Form() {
    const std::vector<std::string> data_args = DataNodeArgs(password_);
    data_.push_back(std::make_unique<LocalRedis>(data_args));
    std::vector<std::string> replica_args = data_args;
    for (const std::string& a : {std::string("--replicaof"), std::string("127.0.0.1"),
                                 std::to_string(data_[0]->port())}) {
      replica_args.push_back(a);
    }
    data_.push_back(std::make_unique<LocalRedis>(replica_args));
    if (!WaitUntil(timeout_, [&] {
          return InfoField(Text(CallData(data_[1]->port(), {"INFO", "replication"})),
                           "master_link_status") == "up";
        })) {
      throw std::runtime_error("LocalSentinelGroup: the replica did not attach in time");
    }
    for (int port : FreePorts(count_)) {
      const std::string conf = dir_ + "/sentinel-" + std::to_string(port) + ".conf";
      {
        std::ofstream out(conf);
        out << "dir " << dir_ << "\n"
            << "sentinel monitor " << service_ << " 127.0.0.1 " << data_[0]->port() << " 2\n"
            << "sentinel down-after-milliseconds " << service_ << " 1000\n"
            << "sentinel failover-timeout " << service_ << " 3000\n";
        if (!password_.empty()) {
          out << "sentinel auth-pass " << service_ << " " << password_ << "\n";
        }
        if (!sentinel_password_.empty()) {
          out << "requirepass " << sentinel_password_ << "\n"
              << "sentinel sentinel-pass " << sentinel_password_ << "\n";
        }
      }
      sentinels_.push_back(
          std::make_unique<LocalRedis>(std::vector<std::string>{"--sentinel"}, conf, port));
      if (!sentinels_.back()->Ping()) throw std::runtime_error("LocalSentinelGroup: no sentinel");
    }
    if (!WaitReady()) {
      throw std::runtime_error("LocalSentinelGroup: the sentinels did not find everyone in time");
    }
  }

  // Every sentinel sees the master up, a replica up and the other sentinels.
  bool SentinelsReady() const {
    for (const auto& s : sentinels_) {
      Reply master = Command(s->port(), sentinel_password_, {"SENTINEL", "MASTER", service_});
      const std::map<std::string, std::string> state = Pairs(master.get());
      if (state.count("flags") == 0 || state.at("flags") != "master") return false;
      if (std::stoi(state.at("num-slaves")) < 1) return false;
      if (std::stoi(state.at("num-other-sentinels")) < count_ - 1) return false;
      Reply replicas = Command(s->port(), sentinel_password_, {"SENTINEL", "REPLICAS", service_});
      if (replicas == nullptr || replicas->type != REDIS_REPLY_ARRAY) return false;
      bool replica_up = false;
      for (size_t i = 0; i < replicas->elements; ++i) {
        const auto fields = Pairs(replicas->element[i]);
        replica_up |= fields.count("flags") != 0 && fields.at("flags") == "slave";
      }
      if (!replica_up) return false;
    }
    return true;
  }

  // A flat [name, value, ...] array as a map.
  static std::map<std::string, std::string> Pairs(const redisReply* r) {
    std::map<std::string, std::string> fields;
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return fields;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
      fields[std::string(r->element[i]->str, r->element[i]->len)] =
          std::string(r->element[i + 1]->str, r->element[i + 1]->len);
    }
    return fields;
  }

  void Stop() {
    for (auto& s : sentinels_) s->Kill();
    for (auto& d : data_) d->Kill();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  int count_;
  std::string password_;
  std::string sentinel_password_;
  std::string service_;
  Millis timeout_;
  std::string dir_;
  std::vector<std::unique_ptr<LocalRedis>> data_;
  std::vector<std::unique_ptr<LocalRedis>> sentinels_;
  PortHolds holds_;
  std::optional<std::chrono::steady_clock::time_point> switched_at_;
};

}  // namespace redis_topologies

#endif  // SLUICE_TESTS_CPP_REDIS_TOPOLOGIES_H_
