"""Throwaway Redis topologies for tests and benchmarks: a Redis Cluster, a Sentinel group, a TLS
server. Every server is a LocalRedis (loopback, no persistence, stopped with its parent).

    with LocalRedisCluster(masters=3, replicas_per_master=1) as cluster:
        seeds = [ClusterNode(host, port) for host, port in cluster.seeds]
        client = redis.cluster.RedisCluster(startup_nodes=seeds)
    with LocalSentinelGroup() as group:
        master = redis.sentinel.Sentinel(group.sentinels).master_for(group.service)
    with local_tls_redis() as tls:
        client = redis.Redis(port=tls.tls_port, ssl=True, ssl_ca_certs=tls.ca_file)

Every wait is bounded: a topology that does not form raises instead of hanging. The C++ twin is
tests/cpp/redis_topologies.h; the procedures follow Redis's documentation (cluster tutorial and
specification, "High availability with Redis Sentinel", "TLS").
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import tempfile
import time

import redis

from local_redis import LocalRedis, free_port

CLUSTER_SLOTS = 16384


def _crc16_xmodem(data: bytes) -> int:
    # CRC-16/XMODEM (polynomial 0x1021, initial value 0): the hash Redis Cluster documents.
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def key_slot(key: str | bytes) -> int:
    """The key's hash slot: CRC16 of its hash tag (the first {...}, if not empty) or of the key."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return _crc16_xmodem(data) % CLUSTER_SLOTS


def _wait_until(what: str, timeout: float, probe) -> float:
    """Polls `probe` until it is truthy; returns the seconds it took, raises TimeoutError after
    `timeout` naming `what`."""
    start = time.monotonic()
    while True:
        try:
            if probe():
                return time.monotonic() - start
        except (redis.RedisError, OSError):
            pass  # a node mid-restart or mid-failover: ask again
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"redis_topologies: {what} not reached within {timeout} s")
        time.sleep(0.02)


def _auth_args(password: str | None) -> list[str]:
    # requirepass guards the node; masterauth lets its replicas (and it, as a replica) sync.
    return ["--requirepass", password, "--masterauth", password] if password else []


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class LocalRedisCluster:
    """A Redis Cluster on loopback: `masters` masters sharing the 16384 slots in equal ranges,
    `replicas_per_master` replicas each, cluster-node-timeout 1000 ms (a failover takes ~1-2 s).

    Nodes are numbered: 0..masters-1 the initial masters (node i serves slot range i), then the
    replicas (node masters + i*replicas_per_master + r replicates master i). Each node has its own
    cluster bus port (`cluster-port`), so data ports need no +10000 headroom."""

    def __init__(self, masters: int = 3, replicas_per_master: int = 1, extra_args=(),
                 password: str | None = None, timeout: float = 20.0) -> None:
        if masters < 1 or replicas_per_master < 0:
            raise ValueError(f"LocalRedisCluster: masters must be >= 1 and replicas_per_master "
                             f">= 0, got {masters}, {replicas_per_master}")
        self.masters, self.replicas_per_master = masters, replicas_per_master
        self.password = password
        self._timeout = timeout
        self._extra_args = list(extra_args)
        self._dir = ""
        self.nodes: list[LocalRedis] = []
        self._ids: list[str] = []
        self._migrations: dict[int, tuple[int, int]] = {}
        self._killed_at: float | None = None

    # -- life cycle --------------------------------------------------------------------------

    def __enter__(self) -> "LocalRedisCluster":
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.__exit__(None, None, None)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""

    def _start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="sluice-cluster-")
        total = self.masters * (1 + self.replicas_per_master)
        ports = _free_ports(2 * total)
        auth = _auth_args(self.password)
        for i in range(total):
            port, bus = ports[2 * i], ports[2 * i + 1]
            args = ["--cluster-enabled", "yes",
                    "--cluster-config-file", os.path.join(self._dir, f"nodes-{port}.conf"),
                    "--cluster-node-timeout", "1000", "--cluster-port", str(bus),
                    # A replica fails over however stale its data (tests kill masters at will).
                    "--cluster-replica-validity-factor", "0",
                    "--cluster-allow-replica-migration", "no", "--dir", self._dir,
                    # A replica syncs at once, not after the default 5 s.
                    "--repl-diskless-sync-delay", "0"] + auth
            node = LocalRedis(extra_args=args + self._extra_args, port=port)
            self.nodes.append(node)
            node.start()
        self._ids = [self.client(i).cluster("MYID") for i in range(total)]
        if isinstance(self._ids[0], bytes):
            self._ids = [i.decode() for i in self._ids]
        # Distinct config epochs before the nodes meet, as `redis-cli --cluster create` does.
        for i in range(total):
            self.client(i).execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
        for m in range(self.masters):
            lo, hi = self.slot_range(m)
            self.client(m).execute_command("CLUSTER ADDSLOTSRANGE", lo, hi)
        for i in range(1, total):
            port, bus = ports[2 * i], ports[2 * i + 1]
            self.client(0).execute_command("CLUSTER MEET", "127.0.0.1", port, bus)
        _wait_until("every node knows every node", self._timeout,
                    lambda: all(self._known_nodes(i) == total for i in range(total)))
        for m in range(self.masters):
            for r in range(self.replicas_per_master):
                self.client(self.replica_index(m, r)).execute_command(
                    "CLUSTER REPLICATE", self._ids[m])
        self.wait_healthy()

    def wait_healthy(self, timeout: float | None = None) -> float:
        """Waits until every running node says cluster_state:ok, agrees that each slot range's
        master is a running node, and every running replica's link to its master is up."""
        return _wait_until("a healthy cluster", timeout or self._timeout, self._healthy)

    def _healthy(self) -> bool:
        live = [i for i, n in enumerate(self.nodes) if n.running]
        for i in live:
            if self.client(i).cluster("INFO")["cluster_state"] != "ok":
                return False
            if self._known_nodes(i) != len(self.nodes):
                return False
            for start, _end, master_port in self._slot_table(i):
                if not self.nodes[self._index_of_port(master_port)].running:
                    return False
            info = self.client(i).info("replication")
            if info["role"] == "slave":
                if info.get("master_link_status") != "up":
                    return False
                if not self.nodes[self._index_of_port(info["master_port"])].running:
                    return False
        return True

    # -- accessors ---------------------------------------------------------------------------

    @property
    def seeds(self) -> list[tuple[str, int]]:
        """(host, port) of every node, for a client's startup nodes."""
        return [("127.0.0.1", n.port) for n in self.nodes]

    def node_id(self, i: int) -> str:
        return self._ids[i]

    def slot_range(self, m: int) -> tuple[int, int]:
        """The slots master `m` was given at formation (inclusive)."""
        return (CLUSTER_SLOTS * m // self.masters, CLUSTER_SLOTS * (m + 1) // self.masters - 1)

    def replica_index(self, m: int, r: int = 0) -> int:
        return self.masters + m * self.replicas_per_master + r

    def client(self, i: int, **kwargs) -> redis.Redis:
        """A plain (not cluster-aware) client of node `i`: it sees MOVED and ASK as errors."""
        return redis.Redis(host="127.0.0.1", port=self.nodes[i].port, password=self.password,
                           decode_responses=True, socket_timeout=2.0, **kwargs)

    @staticmethod
    def key_slot(key: str | bytes) -> int:
        return key_slot(key)

    def current_masters(self) -> list[int]:
        """Node index of the master serving each formation slot range now (by range)."""
        return [self.master_for_slot(self.slot_range(m)[0]) for m in range(self.masters)]

    def shard_of_slot(self, slot: int) -> int:
        """The formation slot range (0..masters-1) that holds `slot`."""
        return next(m for m in range(self.masters)
                    if self.slot_range(m)[0] <= slot <= self.slot_range(m)[1])

    def master_for_slot(self, slot: int) -> int:
        """The node index the cluster says serves `slot` now (asked of a running node)."""
        for i, node in enumerate(self.nodes):
            if not node.running:
                continue
            for start, end, master_port in self._slot_table(i):
                if start <= slot <= end:
                    return self._index_of_port(master_port)
        raise RuntimeError(f"LocalRedisCluster: no running node serves slot {slot}")

    def _slot_table(self, i: int) -> list[tuple[int, int, int]]:
        raw = self.client(i).execute_command("CLUSTER SLOTS")
        table = []
        for entry in raw:  # [start, end, [host, port, id, ...], replicas...]
            table.append((int(entry[0]), int(entry[1]), int(entry[2][1])))
        return table

    def _known_nodes(self, i: int) -> int:
        return int(self.client(i).cluster("INFO")["cluster_known_nodes"])

    def _index_of_port(self, port) -> int:
        port = int(port)
        for i, node in enumerate(self.nodes):
            if node.port == port:
                return i
        raise RuntimeError(f"LocalRedisCluster: no node on port {port}")

    # -- faults ------------------------------------------------------------------------------

    def kill_master(self, m: int) -> int:
        """SIGKILLs the node now serving master `m`'s formation slot range; returns its index."""
        victim = self.master_for_slot(self.slot_range(m)[0])
        self.nodes[victim].kill()
        self._killed_at = time.monotonic()
        return victim

    def wait_for_failover(self, timeout: float = 15.0) -> float:
        """Waits until a replica serves every slot a killed master served and the cluster is ok
        again; returns the seconds since the kill (or since the call, with no kill)."""
        since = self._killed_at or time.monotonic()
        self.wait_healthy(timeout)
        self._killed_at = None
        return time.monotonic() - since

    def restart_node(self, i: int) -> None:
        """Starts a killed node again on its port with its nodes.conf (a killed master comes back
        as a replica of the node that took over). Waits until the cluster is healthy."""
        self.nodes[i].kill()
        self.nodes[i].start()
        self.wait_healthy()

    # -- slot migration, in steps ------------------------------------------------------------

    def begin_migration(self, slot: int, source: int, target: int) -> None:
        """IMPORTING on the target, then MIGRATING on the source: from now on the source answers
        ASK for keys of `slot` it no longer holds."""
        self.client(target).execute_command("CLUSTER SETSLOT", slot, "IMPORTING", self._ids[source])
        self.client(source).execute_command("CLUSTER SETSLOT", slot, "MIGRATING", self._ids[target])
        self._migrations[slot] = (source, target)

    def migrate_keys(self, slot: int, batch: int = 100) -> int:
        """Moves every key of `slot` from source to target (MIGRATE ... KEYS); returns how many."""
        source, target = self._migrations[slot]
        src = self.client(source)
        moved = 0
        while True:
            keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, batch)
            if not keys:
                return moved
            auth = ["AUTH", self.password] if self.password else []
            src.execute_command("MIGRATE", "127.0.0.1", self.nodes[target].port, "", 0, 5000,
                                *auth, "KEYS", *keys)
            moved += len(keys)

    def finish_migration(self, slot: int) -> None:
        """Moves the keys still on the source (a source that holds keys of the slot refuses to
        give it up), then SETSLOT NODE on the target, the source, then the other masters: MOVED
        from now on."""
        self.migrate_keys(slot)
        source, target = self._migrations.pop(slot)
        order = [target, source] + [i for i in range(len(self.nodes))
                                    if i not in (source, target) and self.nodes[i].running
                                    and self.client(i).info("replication")["role"] == "master"]
        for i in order:
            self.client(i).execute_command("CLUSTER SETSLOT", slot, "NODE", self._ids[target])
        _wait_until(f"every node to see slot {slot} on node {target}", self._timeout,
                    lambda: all(self._owner_seen_by(i, slot) == target
                                for i, n in enumerate(self.nodes) if n.running))

    def _owner_seen_by(self, i: int, slot: int) -> int:
        for start, end, master_port in self._slot_table(i):
            if start <= slot <= end:
                return self._index_of_port(master_port)
        return -1


def _as_dict(reply) -> dict:
    # redis-py parses some SENTINEL replies into dicts and leaves others as flat lists.
    return reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2]))


class LocalSentinelGroup:
    """A master, one replica (`--replicaof`) and `sentinels` sentinels (quorum 2,
    down-after-milliseconds 1000, failover-timeout 3000) watching `service`. Sentinel configs live
    in a per-instance temp dir (sentinels rewrite them)."""

    def __init__(self, sentinels: int = 3, service: str = "mymaster",
                 password: str | None = None, sentinel_password: str | None = None,
                 timeout: float = 20.0) -> None:
        if sentinels < 1:
            raise ValueError(f"LocalSentinelGroup: sentinels must be >= 1, got {sentinels}")
        self.service, self.password, self.sentinel_password = service, password, sentinel_password
        self._count = sentinels
        self._timeout = timeout
        self._dir = ""
        self.data_nodes: list[LocalRedis] = []  # [initial master, initial replica]
        self.sentinel_nodes: list[LocalRedis] = []
        self._killed_at: float | None = None

    def __enter__(self) -> "LocalSentinelGroup":
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for node in self.sentinel_nodes + self.data_nodes:
            node.__exit__(None, None, None)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""

    def _start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="sluice-sentinel-")
        # The replica syncs at once, not after the default 5 s.
        auth = _auth_args(self.password) + ["--repl-diskless-sync-delay", "0"]
        master = LocalRedis(extra_args=auth)
        self.data_nodes.append(master)
        master.start()
        replica = LocalRedis(extra_args=auth + ["--replicaof", "127.0.0.1", str(master.port)])
        self.data_nodes.append(replica)
        replica.start()
        _wait_until("the replica's link to the master", self._timeout,
                    lambda: self._data_client(replica.port).info("replication")
                    .get("master_link_status") == "up")
        for port in _free_ports(self._count):
            conf = os.path.join(self._dir, f"sentinel-{port}.conf")
            lines = [f"dir {self._dir}",
                     f"sentinel monitor {self.service} 127.0.0.1 {master.port} 2",
                     f"sentinel down-after-milliseconds {self.service} 1000",
                     f"sentinel failover-timeout {self.service} 3000"]
            if self.password:
                lines.append(f"sentinel auth-pass {self.service} {self.password}")
            if self.sentinel_password:
                lines += [f"requirepass {self.sentinel_password}",
                          f"sentinel sentinel-pass {self.sentinel_password}"]
            with open(conf, "w") as f:
                f.write("\n".join(lines) + "\n")
            node = LocalRedis(extra_args=["--sentinel"], config_file=conf, port=port)
            self.sentinel_nodes.append(node)
            node.start()
        self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> float:
        """Waits until every sentinel sees the master up, a replica up (link and all) and the
        other sentinels: after a failover, before the next one can elect the demoted node."""
        return _wait_until("every sentinel knowing the master, a replica and the other sentinels",
                           timeout or self._timeout, self._sentinels_ready)

    def _sentinels_ready(self) -> bool:
        for node in self.sentinel_nodes:
            s = self.sentinel_client(node.port)
            state = _as_dict(s.execute_command("SENTINEL MASTER", self.service))
            if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < self._count - 1:
                return False
            if state["flags"] != "master":
                return False
            replicas = s.execute_command("SENTINEL REPLICAS", self.service)
            if not any(_as_dict(r)["flags"] == "slave" for r in replicas):
                return False
        return True

    # -- accessors ---------------------------------------------------------------------------

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", n.port) for n in self.sentinel_nodes]

    @property
    def master_port(self) -> int:
        """The port the sentinels name as master now."""
        return self.reported_master()[1]

    @property
    def replica_port(self) -> int:
        """The data node that is not the reported master."""
        master = self.master_port
        return next(n.port for n in self.data_nodes if n.port != master)

    def sentinel_client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.sentinel_password,
                           decode_responses=True, socket_timeout=2.0)

    def _data_client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.password,
                           decode_responses=True, socket_timeout=2.0)

    def reported_master(self, sentinel: int = 0) -> tuple[str, int]:
        host, port = self.sentinel_client(self.sentinel_nodes[sentinel].port).execute_command(
            "SENTINEL GET-MASTER-ADDR-BY-NAME", self.service)
        return host, int(port)

    # -- faults ------------------------------------------------------------------------------

    def failover(self) -> int:
        """SENTINEL FAILOVER (a forced, orderly switch); returns the old master's port."""
        old = self.master_port
        self.sentinel_client(self.sentinel_nodes[0].port).execute_command(
            "SENTINEL FAILOVER", self.service)
        self._killed_at = time.monotonic()
        return old

    def kill_master(self) -> int:
        """SIGKILLs the reported master; returns its port."""
        old = self.master_port
        next(n for n in self.data_nodes if n.port == old).kill()
        self._killed_at = time.monotonic()
        return old

    def restart_data_node(self, port: int) -> None:
        node = next(n for n in self.data_nodes if n.port == port)
        node.kill()
        node.start()

    def wait_for_new_master(self, old_port: int, timeout: float = 15.0) -> float:
        """Waits until every sentinel names a master other than `old_port` and that node says
        role:master; returns the seconds since failover()/kill_master() (or since the call)."""
        since = self._killed_at or time.monotonic()

        def switched() -> bool:
            named = {self.reported_master(i) for i in range(len(self.sentinel_nodes))}
            if len(named) != 1:
                return False
            (_, port), = named
            role = self._data_client(port).info("replication")["role"]
            return port != old_port and role == "master"

        _wait_until(f"a master other than port {old_port}", timeout, switched)
        self._killed_at = None
        return time.monotonic() - since


# -- TLS ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class TlsFiles:
    """PEM files in `dir`: the CA that signs the server and client certs, and an unrelated CA
    (for "the wrong CA is refused" tests)."""
    dir: str
    ca_file: str
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca_file: str


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=30)


def make_tls_files(directory: str) -> TlsFiles:
    """Generates the CAs and certs with the openssl CLI (EC P-256 keys: fast to make)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl not found")
    d = directory

    def key(name: str) -> str:
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name, cwd=d)
        return os.path.join(d, name)

    def ca(name: str, subject: str) -> str:
        key(f"{name}.key")
        _openssl("req", "-x509", "-new", "-key", f"{name}.key", "-sha256", "-days", "2",
                 "-subj", subject, "-out", f"{name}.crt", cwd=d)
        return os.path.join(d, f"{name}.crt")

    def signed(name: str, subject: str, extensions: str) -> str:
        key(f"{name}.key")
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr",
                 cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(extensions)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
                 "-out", f"{name}.crt", cwd=d)
        return os.path.join(d, f"{name}.crt")

    ca_file = ca("ca", "/CN=sluice test CA")
    other = ca("other-ca", "/CN=unrelated test CA")
    server = signed("server", "/CN=localhost",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                    "extendedKeyUsage=serverAuth\n")
    client = signed("client", "/CN=sluice test client", "extendedKeyUsage=clientAuth\n")
    return TlsFiles(dir=d, ca_file=ca_file, ca_key=os.path.join(d, "ca.key"),
                    server_cert=server, server_key=os.path.join(d, "server.key"),
                    client_cert=client, client_key=os.path.join(d, "client.key"),
                    other_ca_file=other)


class LocalTlsRedis(LocalRedis):
    """A redis-server with a TLS port (`tls_port`) beside its plain port (`port`, which readiness
    checks use). `files` holds the certs; `require_client_cert` sets tls-auth-clients."""

    def __init__(self, files: TlsFiles, require_client_cert: bool = False, extra_args=()) -> None:
        self.files = files
        self.tls_port = free_port()
        args = ["--tls-port", str(self.tls_port),
                "--tls-cert-file", files.server_cert, "--tls-key-file", files.server_key,
                "--tls-ca-cert-file", files.ca_file,
                "--tls-auth-clients", "yes" if require_client_cert else "no"]
        super().__init__(extra_args=args + list(extra_args))


@contextlib.contextmanager
def local_tls_redis(require_client_cert: bool = False, extra_args=()):
    """Certificates in a temp dir (removed afterwards) and a LocalTlsRedis using them."""
    directory = tempfile.mkdtemp(prefix="sluice-tls-")
    try:
        files = make_tls_files(directory)
        with LocalTlsRedis(files, require_client_cert, extra_args) as server:
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)
