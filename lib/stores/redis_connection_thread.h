// Internal: the background thread that owns a RedisStore's connections (see sluice/redis_store.h).
//
// One thread per store, whatever the topology: a standalone server or the master a Sentinel
// group names (one link), or every master of a Redis Cluster (one link each, commands routed by
// their keys' slot, MOVED and ASK followed). Each batch of queued commands is pipelined per link.
//
// What belongs to whom matters for fork(): the connections (links, loaded script SHAs, the slot
// map) are the thread's alone and live on its stack (`Links` in Run()), so a child of fork(),
// which has no such thread, never touches a socket buffer that the thread was resizing at the
// instant of the fork. Everything callers share (the queues, the breaker) is guarded by `mu_`,
// which the fork hooks hold across fork(), so the child sees it consistent and resets it.
#ifndef SLUICE_LIB_REDIS_CONNECTION_THREAD_H_
#define SLUICE_LIB_REDIS_CONNECTION_THREAD_H_

#include <sys/types.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>

#include "sluice/internal/mutex.h"
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "base/fork_hooks.h"
#include "base/log.h"
#include "sluice/redis_store.h"
#include "stores/redis_errors.h"
#include "stores/redis_link.h"
#include "stores/redis_scripts.h"
#include "stores/redis_slots.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct RedisCommand {
  ScriptCall call;
  std::shared_ptr<PendingReply> reply;
  Delivery delivery;
  int redirections = 0;  // MOVED / ASK followed so far (Redis Cluster)
};

// Which servers a store talks to (sluice/redis_store.h, RedisOptions).
enum class RedisTopology { kStandalone, kSentinel, kCluster };
RedisTopology TopologyOf(const RedisOptions& options);
// The servers `options` name, for messages: "host:port", a socket path, "sentinel 'name' h:p,..."
// or "cluster h:p,...". Not escaped.
std::string DescribeRedisServers(const RedisOptions& options);

class RedisConnectionThread {
 public:
  // Must-deliver commands kept while Redis is away, at most; beyond, the oldest are dropped
  // (counted and logged): a release then ends with its lease instead.
  static constexpr size_t kMaxDeferred = size_t{1} << 16;

  explicit RedisConnectionThread(const RedisOptions& options);
  ~RedisConnectionThread();

  // Queues `command` for the thread; while the breaker is open, fails it at once (or keeps it,
  // if it must be delivered).
  void Submit(RedisCommand command);
  RedisStats stats() const;
  // Whether the caller is this object's connection thread (which must not destroy it: it would
  // join itself).
  bool OnConnectionThread() const;
  // Counts and logs an error that is not a transport failure.
  void NoteConfigError(const absl::Status& status);

 private:
  // A Redis Cluster command redirected (MOVED, ASK) to another node: it did not run.
  struct Redirected {
    RedisCommand command;
    Redirection to;
  };
  // How often one command may be redirected before it fails (Unavailable: a resharding that
  // keeps moving its slot).
  static constexpr int kMaxRedirections = 5;
  // Sockets a fork() child closes its copies of, at most (a Cluster's masters, plus a seed).
  static constexpr int kMaxTrackedSockets = 256;

  // One server's connection and the scripts loaded on it.
  struct NodeLink {
    std::unique_ptr<RedisLink> link;
    absl::flat_hash_map<const std::string*, std::string> shas;  // loaded scripts
  };
  // The connections; owned by Run(), on the thread's stack. Connected when `nodes` is not
  // empty: the one server (standalone, Sentinel), or every master of the slot map (Cluster).
  struct Links {
    absl::node_hash_map<std::string, NodeLink> nodes;  // by RedisEndpoint::ToString()
    SlotMap slots;                                     // Cluster only
    bool connected() const { return !nodes.empty(); }
    // Sentinel: a link to the sentinel that last answered, and when to ask it next whether the
    // master changed (steady ns).
    std::unique_ptr<RedisLink> sentinel;
    size_t sentinel_index = 0;
    int64_t next_master_check = 0;
    // Sentinel and Cluster: must-deliver commands (releases, undos) that Redis acknowledged in
    // the last kReplayWindow, oldest first, with when. Replication is asynchronous, so a
    // failover can lose the last writes a master acknowledged; these are sent again to the new
    // master (they are safe to run twice), so a failover never leaks the slots they freed.
    std::deque<std::pair<int64_t, ScriptCall>> delivered;
    // Cluster: must-deliver commands a migrating slot answered TRYAGAIN, with when to send them
    // again (steady ns, in order).
    std::deque<std::pair<int64_t, RedisCommand>> later;
    int64_t next_slots_refresh = 0;  // Cluster: a slot without a master reads the map again
  };
  // How far back acknowledged must-deliver commands are replayed after a failover, and how many
  // at most.
  static constexpr absl::Duration kReplayWindow = absl::Seconds(5);
  static constexpr size_t kMaxReplayed = size_t{1} << 16;

  // fork() hooks: hold the lock across fork; the child forgets the parent's thread, queues and
  // condition variable, closes its copy of the socket, and starts its own thread on first use.
  void LockForFork();
  void UnlockAfterFork(bool in_child);

  void Run();
  // Connects and checks the servers: the one standalone server, or the master the sentinels
  // name, or the Cluster's slot map and every master in it. In redis_connect.cc, with the
  // functions below up to LoadScript.
  absl::Status Connect(Links& links);
  void Disconnect(Links& links);
  // Opens a link to a data node and checks it: AUTH, HELLO (the kind of server the topology
  // expects, a master), SELECT.
  absl::StatusOr<NodeLink> OpenDataNode(const RedisEndpoint& at);
  // Asks the sentinels, in order, for the master of `sentinel_master`.
  absl::StatusOr<RedisEndpoint> ResolveSentinelMaster();
  // Reads the slot map from a connected master or else a seed, into `links.slots`.
  absl::Status RefreshSlots(Links& links);
  // The link to `at` (a Cluster master), opened if need be; nullptr with `*status` on failure.
  NodeLink* NodeAt(Links& links, const RedisEndpoint& at, absl::Status* status);
  // Sentinel: asks a sentinel whether the master is still the one connected to (every
  // reconnect_interval); if not, disconnects, so that Run() connects to the new one at once
  // (a manual failover leaves the old master accepting writes until the sentinels demote it,
  // seconds later: every write there would be lost).
  void CheckSentinelMaster(Links& links);
  // A command that cannot run now for its slot's sake alone (a migration, no master yet): a
  // must-deliver one waits a reconnect_interval in `links.later` (no breaker opens for the other
  // slots, and the thread does not spin on it); any other fails with `status` (its failure mode).
  void Postpone(Links& links, RedisCommand command, const absl::Status& status);
  // After a reconnect (Sentinel, Cluster): queues the recently acknowledged must-deliver
  // commands again.
  void Replay(Links& links);
  // SCRIPT LOAD on the node. The error as classified (see redis_errors.h) on failure.
  absl::Status LoadScript(NodeLink& node, const std::string* script);
  // An error reply, classified for this topology: a Cluster's CLUSTERDOWN, or READONLY from a
  // Cluster node or a Sentinel-named master (it stepped down), mean "reconfiguring": transient.
  RedisError ClassifyReply(absl::string_view command, absl::string_view error) const;

  // Routes each command to its node (Cluster: by slot) and runs it there, following
  // redirections.
  void ExecuteBatch(Links& links, std::vector<RedisCommand>& batch);
  // What a pipeline's errors leave: at most one breaker (a configuration error wins over an
  // outage), and the commands to fail, which are completed only once the breaker is set, so that
  // a caller who learns of the failure and tries again is refused fast instead of queued behind
  // a dead connection.
  struct Outcome {
    absl::Status breaker;
    std::vector<std::pair<RedisCommand, absl::Status>> failed;
    void NoteBreaker(const absl::Status& s);
  };
  void CompleteFailed(Outcome& outcome);
  // Commands written to one node, waiting for their replies.
  struct Pipeline {
    NodeLink* node = nullptr;  // valid while `links` stay connected
    RedisEndpoint answered;
    bool asking = false;
    std::vector<RedisCommand> ready;  // in the order written
  };
  // Runs `batch` on `node` in one pipeline (each command preceded by ASKING when `asking`);
  // redirected commands go to `redirected`. Send, then Receive.
  void ExecuteOn(Links& links, NodeLink& node, std::vector<RedisCommand>& batch, bool asking,
                 std::vector<Redirected>& redirected);
  // Loads the scripts `batch` needs and queues its commands on `node` (failing what cannot
  // run); false when nothing is left to read.
  bool Send(Links& links, NodeLink& node, std::vector<RedisCommand>& batch, bool asking,
            Pipeline* out);
  // Reads `pipeline`'s replies and hands them over; undoes, keeps or fails what a lost
  // connection left unanswered.
  void Receive(Links& links, Pipeline& pipeline, std::vector<Redirected>& redirected);
  void FollowRedirections(Links& links, std::vector<Redirected> redirected);

  // "redis <where_>: <message>", unless the message already names where_ (a link's do).
  std::string About(absl::string_view message) const;
  // Sockets open on the thread, so that a fork() child can close its copies.
  void TrackSocket(int fd);
  void UntrackSocket(int fd);

  // Opens the breaker for a reconnect interval: callers fail fast with `why` meanwhile.
  void OpenBreaker(const absl::Status& why);
  bool BreakerOpenLocked() const;
  // After a transport failure, a must-deliver command goes back to wait for the next connection
  // (or is dropped, past its deadline); any other command, or any other error, fails with
  // `status`.
  void FailOrKeep(RedisCommand command, const absl::Status& status);
  void KeepLocked(RedisCommand command);
  const RedisOptions options_;
  const RedisTopology topology_;
  const std::string where_;  // "host:port", the socket path, "sentinel ...", "cluster ...": logs
  mutable Mutex mu_;
  // Held by pointer: a child of fork() must replace it (see UnlockAfterFork).
  std::unique_ptr<std::condition_variable_any> cv_ = std::make_unique<std::condition_variable_any>();
  std::deque<RedisCommand> queue_;     // guarded by mu_
  std::deque<RedisCommand> deferred_;  // must-deliver commands waiting for a connection; mu_
  absl::Status breaker_status_;        // why the breaker is open; mu_
  std::string last_error_;             // mu_
  bool stop_ = false;
  std::unique_ptr<std::thread> thread_;
  pid_t owner_pid_ = 0;  // the process the thread belongs to

  std::array<std::atomic<int>, kMaxTrackedSockets> sockets_;  // -1 = free; see TrackSocket
  std::atomic<int64_t> breaker_open_until_{0};   // steady nanoseconds; 0 = closed
  std::atomic<bool> connected_{false};
  std::atomic<bool> unreachable_logged_{false};  // a "reconnected" message is due
  std::atomic<int64_t> commands_{0}, pipelined_{0}, failures_{0}, fast_failures_{0},
      connects_{0}, script_loads_{0}, config_errors_{0}, retried_{0}, undone_{0}, dropped_{0},
      redirected_{0}, topology_changes_{0};
  RedisEndpoint last_master_;  // Sentinel: the master of the last connect; mu_
  LogThrottle unreachable_log_, config_log_, dropped_log_;
  std::unique_ptr<ForkHooks> fork_hooks_;  // registered last, unregistered first
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_REDIS_CONNECTION_THREAD_H_
