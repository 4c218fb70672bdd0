"""Dify end to end (issue 17): the same load through three setups in one run, one markdown table.

    python benchmarks/dify_e2e/run.py            # ~3 min
    python benchmarks/dify_e2e/run.py --quick    # ~1 min (the main job's version)

Setups (benchmarks/dify_e2e/dify_app.py): ``peer`` (Dify's current Redis logic: HLEN/HSET cap,
INCR round robin with SETEX cooldowns, a sorted-set attempt limiter), ``sluice-host``
(sluice.dify.RateLimit and AttemptLimiter in shared memory, sluice.dify.LBModelManager in host
scope), ``sluice-cluster`` (the RateLimit, the AttemptLimiter and the LBModelManager's cooldowns
in Redis: ``--key-scope`` changes the sluice setups' key-rotation scope). Each gets its own
redis-server on a free loopback port, its own mock upstream (mock_upstream.py) and Gunicorn with
3 gevent workers, and runs six phases, each on an app (or e-mail) of its own (so one phase's
leftovers never touch the next):

1. load: 4 x cap clients back to back (60 % streaming chat, 25 % blocking chat, 15 % workflow
   runs) on one app capped at CAP: requests/s, p50/p99 latency of the 200s, the most calls the
   upstream saw at once for the app against the cap, the cap's 429s and how many carry
   Retry-After;
2. storm: cap clients while one of the three upstream keys answers 429 for most of the phase:
   the share of requests answered whole (200), the 429s the app drew from the storming key, and
   how many workers' consoles (get_config_in_cooldown_and_ttl) show the key cooling after it;
3. attempts: 4 x cap clients send login attempts for one e-mail back to back to a route limited
   to ATTEMPTS per ATTEMPT_WINDOW seconds (Dify's helper.RateLimiter): the most admissions
   certainly inside one window, admissions of all attempts, the 429s and their Retry-After;
4. #35895: streaming workflow runs (entered twice, exited once before the stream, as Dify's
   _stream_workflow) on an app capped at 1 and one capped at 3: the most streams at once at the
   upstream against the cap, and the streams refused;
5. worker kill: cap long streams held open, the workers holding them SIGKILLed, then cap new
   streams at once: how many are admitted (the rest are slots still held by the dead);
6. Redis kill: the load of phase 1, redis-server SIGKILLed a third of the way in: answers after
   the kill (200 / 429 / errors) and the most at once at the upstream after it.

Same seed, same load for every setup; every wait is bounded and everything started is stopped
(Gunicorn's session, the upstream, redis-server, the shared-memory regions).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "python"))
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(HERE))

import drive  # noqa: E402
from gunicorn_support import remove_regions, start_gunicorn, stop_gunicorn  # noqa: E402
from local_redis import LocalRedis  # noqa: E402

SETUPS = ("peer", "sluice-host", "sluice-cluster")
WORKERS = 3
CAP = 6
# The attempt limiter: Dify's are N per minutes (e-mail codes 3 per 300 s); here N per W seconds
# so that the phase is a few windows long. N <= W: Dify's members are whole seconds, so its set
# never holds more than W of them, and with N > W it would never refuse at all.
ATTEMPTS, ATTEMPT_WINDOW = 3, 3
WORKFLOW_CAPS = (1, 3)
WORKFLOW_CLIENTS = 8
# sluice.dify.configure_key_rotation's scope per sluice setup (--key-scope overrides both).
KEY_SCOPES = {"sluice-host": "host", "sluice-cluster": "cluster"}


class Upstream:
    """mock_upstream.py in a process of its own, stopped on exit."""

    def __enter__(self) -> "Upstream":
        self.dir = tempfile.TemporaryDirectory(prefix="dify-e2e-")
        port_file = Path(self.dir.name) / "port"
        self.process = subprocess.Popen([sys.executable, str(HERE / "mock_upstream.py"),
                                         str(port_file)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mock upstream did not start")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        return self

    def post(self, path: str, body: dict) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     data=json.dumps(body).encode(), method="POST")
        urllib.request.urlopen(req, timeout=5).read()

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stats", timeout=5) as r:
            return json.loads(r.read())

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.dir.cleanup()


def worker_pids(master: int):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True,
                         text=True).stdout
    return {int(p) for p in out.split()}


def failure_mode_decisions(port) -> int:
    """Cluster-scope decisions the workers took by the failure mode so far (a worker killed
    since took its count with it)."""
    return int(sum(a["decisions"] for a in ask_workers(port, "/_failure_mode").values()))


def ask_workers(port, path: str) -> dict:
    """worker pid -> answer of `path`, asked until every live worker answered (bounded)."""
    seen = {}
    for _ in range(30):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            answer = json.loads(r.read())
        seen[answer["worker"]] = answer
        if len(seen) >= WORKERS:
            break
    return seen


def most_in_window(spans, window: float) -> int:
    """The most admissions certainly inside one window of `window` seconds. Each admission
    happened somewhere in its (began, ended) span (monotonic, measured in the worker around the
    limiter's calls); a set counts when its last span ended less than `window` after its first
    began, so the timing's slack never makes a count larger than it was."""
    ends, most = [], 0
    for began, ended in sorted(spans, reverse=True):
        bisect.insort(ends, ended)  # ends of every admission that began at or after `began`
        most = max(most, bisect.bisect_left(ends, began + window))
    return most


def phase_load(port, upstream, app, args):
    upstream.post("/_reset_max", {})
    load = drive.run(port, app, clients=4 * CAP, seconds=args.load, seed=args.seed)
    results = load.results
    ok = [r for r in results if r.status == 200 and r.complete]
    capped = [r for r in results if r.status == 429 and r.code == "too_many_requests"]
    return {
        "requests": len(results),
        "rps": len(results) / load.seconds,
        "ok_rps": len(ok) / load.seconds,
        "p50": drive.percentile([r.latency for r in ok], 0.50),
        "p99": drive.percentile([r.latency for r in ok], 0.99),
        "most": upstream.stats()["most"].get(app, 0),
        "cap429": len(capped),
        "cap429_retry_after": sum(r.retry_after for r in capped),
        "errors": sum(r.status not in (200, 429) for r in results),
        "failure_mode": failure_mode_decisions(port),
    }


def phase_storm(port, upstream, app, args):
    # The storm starts a fifth into the phase and lasts past its end (a time window).
    timer = threading.Timer(args.storm / 5, upstream.post,
                            args=("/_storm", {"key": "key-0", "seconds": args.storm + 30}))
    before = upstream.stats()["rate_limited"].get("key-0", 0)
    timer.start()
    try:
        load = drive.run(port, app, clients=CAP, seconds=args.storm, seed=args.seed + 1)
    finally:
        timer.cancel()
    results = load.results
    console = ask_workers(port, "/_key_cooldown/key-0").values()
    return {
        "requests": len(results),
        "ok_share": sum(r.status == 200 and r.complete for r in results) / max(1, len(results)),
        "storm_429s": upstream.stats()["rate_limited"].get("key-0", 0) - before,
        "statuses": dict(Counter(r.status for r in results)),
        "console_cooling": sum(a["cooling"] for a in console),
        "console_workers": len(console),
        "console_ttl": max((a["ttl"] for a in console), default=0),
    }


def phase_attempts(port, args):
    load = drive.run(port, "-", clients=4 * CAP, seconds=args.attempts, seed=args.seed + 3,
                     routes=((drive.LOGIN, "-"),), mix=(1.0,))
    results = load.results
    admitted = [r.admitted for r in results if r.admitted]
    refused = [r for r in results if r.status == 429]
    return {
        "tried": len(results),
        "admitted": len(admitted),
        "most_in_window": most_in_window(admitted, ATTEMPT_WINDOW),
        "windows": load.seconds / ATTEMPT_WINDOW,
        "refused": len(refused),
        "refused_retry_after": sum(r.retry_after for r in refused),
        "refused_after_check": sum(r.refused_after_check for r in refused),
        "errors": sum(r.status not in (200, 429) for r in results),
    }


def phase_stream_workflows(port, upstream, args):
    result = {}
    for cap in WORKFLOW_CAPS:
        app = f"app-workflow.cap{cap}"  # dify_app.app_cap: an app id ending in .cap<N> has cap N
        upstream.post("/_reset_max", {})
        load = drive.run(port, app, clients=WORKFLOW_CLIENTS, seconds=args.workflow,
                         seed=args.seed + 4, chunks=8, gap=0.05,
                         routes=drive.STREAMING_WORKFLOWS, mix=(1.0,), pace=0.05)
        results = load.results
        result[cap] = {
            "streams": len(results),
            "ok": sum(r.status == 200 and r.complete for r in results),
            "refused": sum(r.status == 429 and r.code == "too_many_requests" for r in results),
            "errors": sum(r.status not in (200, 429) for r in results),
            "most": upstream.stats()["most"].get(app, 0),
        }
    return result


def phase_worker_kill(port, server, app):
    # CAP long streams (about 15 s each), held open by the client until the probe is done.
    from http.client import HTTPConnection
    opened = []

    def open_stream(_):
        connection = HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/v1/chat-messages", body=json.dumps(
            {"response_mode": "streaming", "chunks": 300, "gap": 0.05}),
            headers={"Authorization": f"Bearer {app}", "Content-Type": "application/json"})
        response = connection.getresponse()
        return connection, response

    with ThreadPoolExecutor(max_workers=CAP) as pool:
        opened = list(pool.map(open_stream, range(CAP)))
    admitted = [(c, r) for c, r in opened if r.status == 200]
    holders = {int(r.getheader("X-Worker")) for _, r in admitted}
    for pid in holders & worker_pids(server.pid):
        os.kill(pid, signal.SIGKILL)
    for connection, _ in opened:
        connection.close()
    time.sleep(1.0)  # Gunicorn notices and respawns; the probe may land on the new workers
    with ThreadPoolExecutor(max_workers=CAP) as pool:
        probe = list(pool.map(lambda _: drive.request(port, app, "/v1/chat-messages",
                                                      "streaming"), range(CAP)))
    return {"held_before": len(admitted), "killed_workers": len(holders),
            "probe_admitted": sum(r.status == 200 for r in probe)}


def phase_redis_kill(port, upstream, redis_server, app, args):
    kill_at = args.redis / 3

    def kill():
        redis_server.kill()
        upstream.post("/_reset_max", {})

    timer = threading.Timer(kill_at, kill)
    timer.start()
    try:
        load = drive.run(port, app, clients=4 * CAP, seconds=args.redis, seed=args.seed + 2)
    finally:
        timer.join()
    after = [r for r in load.results if r.started >= kill_at]
    return {
        "after": len(after),
        "ok": sum(r.status == 200 and r.complete for r in after),
        "cap429": sum(r.status == 429 for r in after),
        "errors": sum(r.status not in (200, 429) or (r.status == 200 and not r.complete)
                      for r in after),
        "most": upstream.stats()["most"].get(app, 0),
    }


def run_setup(setup: str, args) -> dict:
    key_scope = "-" if setup == "peer" else args.key_scope or KEY_SCOPES[setup]
    name = f"bench-dify-e2e-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    began = time.monotonic()
    # DIFY_E2E_LOG=<path> keeps Gunicorn's log (the last setup's) for a look after the run.
    log_path = os.environ.get("DIFY_E2E_LOG")
    log = open(log_path, "w+b") if log_path else tempfile.TemporaryFile()
    try:
        with LocalRedis() as redis_server, Upstream() as upstream:
            env = dict(DIFY_E2E_SETUP=setup, DIFY_E2E_REDIS_PORT=str(redis_server.port),
                       DIFY_E2E_UPSTREAM_PORT=str(upstream.port), DIFY_E2E_CAP=str(CAP),
                       DIFY_E2E_NAME=name, DIFY_E2E_WORKERS=str(WORKERS),
                       DIFY_E2E_ATTEMPTS=str(ATTEMPTS),
                       DIFY_E2E_ATTEMPT_WINDOW=str(ATTEMPT_WINDOW),
                       DIFY_E2E_KEY_SCOPE=key_scope,
                       PYTHONPATH=os.pathsep.join(filter(None, [str(HERE),
                                                              os.environ.get("PYTHONPATH")])))
            server, base = start_gunicorn(HERE, "dify_app:app", env, workers=WORKERS,
                                          worker_connections=4 * CAP, log=log)
            port = int(base.rsplit(":", 1)[1])
            try:
                result = {"load": phase_load(port, upstream, "app-load", args),
                          "storm": phase_storm(port, upstream, "app-storm", args),
                          "attempts": phase_attempts(port, args),
                          "workflows": phase_stream_workflows(port, upstream, args),
                          "kill": phase_worker_kill(port, server, "app-kill"),
                          "redis": phase_redis_kill(port, upstream, redis_server, "app-redis",
                                                    args)}
            finally:
                stop_gunicorn(server)
    finally:
        log.close()
        remove_regions(name)
    result["seconds"] = time.monotonic() - began
    result["key_scope"] = key_scope
    return result


def ms(value) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def table(results: dict) -> str:
    setups = list(results)
    rows = []

    def row(label, fn):
        rows.append(f"| {label} | " + " | ".join(fn(results[s]) for s in setups) + " |")

    row("requests/s (all answers)", lambda r: f"{r['load']['rps']:.0f}")
    row("requests/s answered 200 whole", lambda r: f"{r['load']['ok_rps']:.0f}")
    row("p50 / p99 latency of the 200s, ms",
        lambda r: f"{ms(r['load']['p50'])} / {ms(r['load']['p99'])}")
    row(f"most calls at once at the upstream (cap {CAP})", lambda r: f"{r['load']['most']}")
    row("cap 429s: with Retry-After / all",
        lambda r: f"{r['load']['cap429_retry_after']} / {r['load']['cap429']}")
    row("errors (not 200/429) under load", lambda r: f"{r['load']['errors']}")
    row("cluster decisions by the failure mode (Redis late) under load",
        lambda r: f"{r['load']['failure_mode']}")
    row("key rotation", lambda r: "INCR + SETEX" if r["key_scope"] == "-"
        else f"LBModelManager, {r['key_scope']} scope")
    row("429 storm on key-0: share answered 200 whole",
        lambda r: f"{100 * r['storm']['ok_share']:.1f} % of {r['storm']['requests']}")
    row("429 storm: 429s drawn from key-0", lambda r: f"{r['storm']['storm_429s']}")
    row("429 storm: workers whose console shows key-0 cooling (TTL s)",
        lambda r: f"{r['storm']['console_cooling']} of {r['storm']['console_workers']} "
                  f"({r['storm']['console_ttl']})")
    row(f"attempts ({ATTEMPTS} per {ATTEMPT_WINDOW} s, {4 * CAP} clients, one e-mail): most "
        f"admitted in one {ATTEMPT_WINDOW} s window",
        lambda r: f"{r['attempts']['most_in_window']}")
    row("attempts: admitted / tried",
        lambda r: f"{r['attempts']['admitted']} / {r['attempts']['tried']} "
                  f"({r['attempts']['windows']:.1f} windows)")
    row("attempt 429s: with Retry-After / all",
        lambda r: f"{r['attempts']['refused_retry_after']} / {r['attempts']['refused']}")
    row("attempt 429s refused at the record after the check passed",
        lambda r: "-" if r["key_scope"] == "-" else f"{r['attempts']['refused_after_check']}")
    for cap in WORKFLOW_CAPS:
        row(f"#35895 streaming workflows, cap {cap}: most at once at the upstream",
            lambda r, cap=cap: f"{r['workflows'][cap]['most']}")
        row(f"#35895 cap {cap}: streams answered 200 / refused / all",
            lambda r, cap=cap: f"{r['workflows'][cap]['ok']} / {r['workflows'][cap]['refused']}"
                               f" / {r['workflows'][cap]['streams']}")
    row(f"worker SIGKILL: new streams admitted at once (of {CAP})",
        lambda r: f"{r['kill']['probe_admitted']} ({r['kill']['held_before']} held by "
                  f"{r['kill']['killed_workers']} killed)")
    row("Redis SIGKILL: after it, 200 / 429 / errors",
        lambda r: f"{r['redis']['ok']} / {r['redis']['cap429']} / {r['redis']['errors']}")
    row(f"Redis SIGKILL: most at once at the upstream after it (cap {CAP})",
        lambda r: f"{r['redis']['most']}")
    row("setup wall time, s", lambda r: f"{r['seconds']:.0f}")
    head = "| | " + " | ".join(setups) + " |\n|---|" + "---:|" * len(setups)
    return head + "\n" + "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases (~1 min in all)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    parser.add_argument("--key-scope", choices=("cluster", "host", "process"),
                        help="the sluice setups' key-rotation scope (default: host for "
                             "sluice-host, cluster for sluice-cluster)")
    args = parser.parse_args()
    args.load, args.storm, args.redis = (2.5, 2.5, 3.0) if args.quick else (12.0, 8.0, 12.0)
    args.attempts, args.workflow = (4.0, 2.0) if args.quick else (10.0, 4.0)
    setups = [s for s in args.setups.split(",") if s]
    for s in setups:
        if s not in SETUPS:
            parser.error(f"--setups: each must be one of {', '.join(SETUPS)}, got {s!r}")
    began = time.monotonic()
    results = {}
    for setup in setups:
        results[setup] = run_setup(setup, args)
        print(f"dify_e2e: {setup} done in {results[setup]['seconds']:.0f} s", file=sys.stderr)
    command = "python benchmarks/dify_e2e/run.py" + (" --quick" if args.quick else "")
    if args.key_scope:
        command += f" --key-scope {args.key_scope}"
    print(f"Dify end to end ({command}; Gunicorn {WORKERS} gevent workers, cap {CAP} per app, "
          f"3 upstream keys, seed {args.seed}):\n")
    print(table(results))
    print(f"\nwhole run: {time.monotonic() - began:.0f} s")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
