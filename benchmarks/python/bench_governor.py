"""sluice.Governor's whole request path from Python, beside Flask-Limiter and LiteLLM's Router.

    pip install -r requirements-bench.txt      # Flask-Limiter and litellm (PyPI)
    python benchmarks/python/bench_governor.py [--quick]

1. The whole path per request, process and host scope: ``admit`` against the 3 rules of
   benchmarks/governor_bench.cc (requests per minute by tenant, a token window by tenant, a
   concurrency cap by app) with a short chat body, ``cached_answer()`` (a miss), ``begin_call()``
   (a balancer pick over 2 endpoints) reported with ``next(200)``, ``settle(280)``. Also admit
   alone (admit + release, no body), ``Governor.call`` (the one-call helper), and a workload the
   code was not tuned on: 10 rules of which the same 3 match, and a 4 KiB body. Then the path
   step by step (admit, + cache lookup, + pick, + settle; and admit without the facade).
2. Flask: one app with one view, driven by a WSGI call loop (environ -> app(environ,
   start_response)): bare, with Flask-Limiter (memory storage, "1000000/minute" keyed by a
   header), with sluice.Governor in a before_request hook (3 rules; and 1 rule, Flask-Limiter's
   work), and the same hooks without sluice. A limiter's overhead is the median over the rounds
   of its round minus the bare view's round (and the fastest round minus the bare's fastest).
3. LiteLLM's Router routing: ``Router.get_available_deployment`` (sync) and ``await
   Router.select`` (async) over 2 deployments of one model, mock keys, no provider called, beside
   sluice's pick (``begin_call()`` + ``next(200)`` through an upstream of 2 endpoints).
4. ``--only profile`` (not in the default run): Python function calls per request or pick
   (cProfile's count), which explain the peers' figures.

Timing: the cases of a section run interleaved (each round runs every case once, in a rotated
order), so a load change on this shared machine hits all of them; a case's figure is the median
of its rounds' per-call means, and a ratio is the median of the rounds' ratios. The garbage
collector is off while a batch runs, as timeit does. Nothing here is asserted: it prints.
Keys cycle over 1,000 tenants and 4,000 apps, as in governor_bench.cc.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import os
import statistics
import sys
import time

# LiteLLM fetches its model cost map over the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import sluice  # noqa: E402

POLICY_NAME = f"govbench-{os.getpid()}"

# The 3 rules of governor_bench.cc's ThreeRules(), with its upstream, chain and cache.
RULES_3 = """
  - name: tenant-rpm
    match: {{any_of: [{{model: [gpt-4o, gpt-4o-mini]}}]}}
    key: [tenant]
    requests: [1000000/1m]
    max_keys: 8192
    scope: {scope}
  - name: tenant-tpm
    key: [tenant]
    tokens: [{{limit: 17179869184, per: 1m}}]
    max_keys: 8192
    scope: {scope}
  - name: app-concurrency
    key: [app]
    concurrency: 64
    max_keys: 8192
    scope: {scope}
"""

# The untuned workload's 7 rules that this traffic never matches, placed before and between the
# 3 that do (the same text is in governor_bench.cc's TenRules()).
RULES_7_UNMATCHED = """
  - name: claude-rpm
    match: {{model: claude-3-5-sonnet}}
    key: [tenant]
    requests: [600/1m]
    scope: {scope}
  - name: zhipu-shaping
    match: {{provider: zhipuai}}
    key: provider
    shaping: {{rate: 50, per: 1s, burst: 10, max_wait: 2s}}
    scope: {scope}
  - name: login-attempts
    match: {{route: /console/api/login}}
    key: ip
    window: sliding
    requests: [5/10m]
    scope: {scope}
  - name: free-plan
    match: {{header.x-plan: free}}
    key: [tenant]
    requests: [60/1m]
    scope: {scope}
  - name: app-keys
    match: {{api_key: {{prefix: app-}}}}
    key: api_key
    requests: [100/1s]
    scope: {scope}
  - name: glm-concurrency
    match: {{any_of: [{{model: {{prefix: [glm-]}}}}, {{provider: qwen}}]}}
    key: [tenant]
    concurrency: 8
    scope: {scope}
  - name: vip-tokens
    match: {{tenant: [tenant-vip]}}
    key: [tenant]
    tokens: [2000000/1m]
    scope: {scope}
"""

TAIL = """
upstreams:
  - name: openai
    endpoints: [{id: key-1}, {id: key-2}]
fallbacks:
  - name: chain
    targets:
      - {name: openai, model: gpt-4o, upstream: openai}
      - {name: backup, model: qwen-max}
cache: {max_bytes: 64MiB}
"""


def policy_text(scope: str, ten_rules: bool = False, name: str = POLICY_NAME) -> str:
    rules = RULES_3.format(scope=scope)
    if ten_rules:
        three = rules.split("  - name: ")
        seven = RULES_7_UNMATCHED.format(scope=scope).split("  - name: ")
        # claude-rpm, zhipu-shaping, tenant-rpm, login-attempts, free-plan, tenant-tpm, app-keys,
        # glm-concurrency, app-concurrency, vip-tokens
        order = [seven[1], seven[2], three[1], seven[3], seven[4], three[2], seven[5], seven[6],
                 three[3], seven[7]]
        rules = "".join("  - name: " + r for r in order)
    return f"version: 1\nname: {name}\nrules:\n{rules}{TAIL}"


BODY = (b'{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant."},'
        b'{"role":"user","content":"How do I reset my password?"}],"max_tokens":256}')


def body_of(size: int) -> bytes:
    """A chat request of exactly `size` bytes (a long user message)."""
    head = (b'{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful '
            b'assistant."},{"role":"user","content":"')
    tail = b'"}],"max_tokens":256}'
    words = b"Please summarise the attached support ticket and suggest a reply. "
    filler = (words * (size // len(words) + 1))[:size - len(head) - len(tail)]
    return head + filler + tail


BODY_4K = body_of(4096)
TENANTS = [f"tenant-{i}" for i in range(1000)]
APPS = [f"app-{i}" for i in range(4000)]
ATTRS = [{"tenant": TENANTS[i % 1000], "app": APPS[i], "model": "gpt-4o"} for i in range(4000)]


def remove_regions(name: str) -> None:
    """Host scope: the rules' regions are /dev/shm/sluice.<policy name>.<rule>...."""
    try:
        files = os.listdir("/dev/shm")
    except OSError:
        return
    for file in files:
        if file.startswith(f"sluice.{name}."):
            try:
                sluice.remove_shared_region(file[len("sluice."):])
            except Exception:  # already gone
                pass


# --- timing ------------------------------------------------------------------------------------


def interleaved(cases, number: int, rounds: int, base: str):
    """cases: [(label, run)] or [(label, run, calls)], where run(n) makes n calls (`number` unless
    the case gives its own). Returns {label: (median ns per call, median of the per-round ratios
    to `base`, min, max, [per-round ns per call])}."""
    cases = [(c[0], c[1], c[2] if len(c) > 2 else number) for c in cases]
    per_round = {label: [] for label, _, _ in cases}
    for label, run, calls in cases:  # warm every case once (tables, caches, lazy imports)
        run(max(calls // 10, 10))
    for r in range(rounds):
        shift = r % len(cases)
        for label, run, calls in cases[shift:] + cases[:shift]:
            enabled = gc.isenabled()
            gc.disable()
            try:
                start = time.perf_counter_ns()
                run(calls)
                per_round[label].append((time.perf_counter_ns() - start) / calls)
            finally:
                if enabled:
                    gc.enable()
    out = {}
    for label, _, _ in cases:
        ratios = [x / b for x, b in zip(per_round[label], per_round[base])]
        out[label] = (statistics.median(per_round[label]), statistics.median(ratios),
                      min(per_round[label]), max(per_round[label]), per_round[label])
    return out


def print_table(title: str, results, note: str = "") -> None:
    print(f"\n{title}")
    print(f"{'case':58} {'us/call':>8} {'min-max us':>13} {'ratio':>7}")
    for label, (median, ratio, lo, hi, _) in results.items():
        print(f"{label:58} {median / 1000:8.2f} {lo / 1000:6.2f}-{hi / 1000:<6.2f} {ratio:7.2f}")
    if note:
        print(note)


# --- 1. the whole path -------------------------------------------------------------------------


def whole_path_runner(gov, body):
    attrs_list = ATTRS

    def run(n):
        admit = gov.admit
        k = len(attrs_list)
        for i in range(n):
            admission = admit(attrs_list[i % k], body=body, token_estimate=300)
            if not admission:
                raise RuntimeError(f"refused by {admission.rule}")
            admission.cached_answer()
            admission.begin_call().next(200)
            admission.settle(280)
    return run


def admit_only_runner(gov):
    def run(n):
        admit = gov.admit
        k = len(ATTRS)
        for i in range(n):
            admission = admit(ATTRS[i % k], token_estimate=300)
            if not admission:
                raise RuntimeError(f"refused by {admission.rule}")
            admission.release()
    return run


ANSWER = {"usage": {"total_tokens": 280}}


def call_helper_runner(gov, body):
    def fn(attempt):
        return ANSWER

    def run(n):
        call = gov.call
        k = len(ATTRS)
        for i in range(n):
            call(fn, ATTRS[i % k], body=body, token_estimate=300)
    return run


def steps_runner(gov, upto: int, facade: bool = True):
    """The whole path cut after step `upto` (1 admit, 2 + cached_answer, 3 + begin_call().next,
    4 + settle); the permits are released where the path stops. facade=False calls the native
    admit (sluice._core.Governor.admit) without the Python facade."""
    def run(n):
        admit = gov.admit if facade else sluice._core.Governor.admit.__get__(gov)
        k = len(ATTRS)
        for i in range(n):
            admission = admit(ATTRS[i % k], body=BODY, token_estimate=300)
            if upto >= 2:
                admission.cached_answer()
            if upto >= 3:
                admission.begin_call().next(200)
            if upto >= 4:
                admission.settle(280)
            else:
                admission.release()
    return run


def governors(scope: str):
    """(label suffix, governor) for the tuned (3 rules) and untuned (10 rules) policies."""
    name3 = f"{POLICY_NAME}-{scope}-3"
    name10 = f"{POLICY_NAME}-{scope}-10"
    return (sluice.Governor(policy_text(scope, name=name3)),
            sluice.Governor(policy_text(scope, ten_rules=True, name=name10)), (name3, name10))


def whole_path(quick: bool) -> None:
    number, rounds = (5_000, 5) if quick else (20_000, 9)
    for scope in ("process", "host"):
        g3, g10, names = governors(scope)
        try:
            cases = [
                ("whole path: 3 rules, cache miss, pick, settle", whole_path_runner(g3, BODY)),
                ("admit + release only (3 rules, no body)", admit_only_runner(g3)),
                ("Governor.call(fn, ...) (the one-call helper)", call_helper_runner(g3, BODY)),
                ("untuned: whole path, 10 rules (3 match)", whole_path_runner(g10, BODY)),
                ("untuned: whole path, 3 rules, 4 KiB body", whole_path_runner(g3, BODY_4K)),
                ("untuned: whole path, 10 rules, 4 KiB body", whole_path_runner(g10, BODY_4K)),
            ]
            results = interleaved(cases, number, rounds, cases[0][0])
        finally:
            del g3, g10
            gc.collect()
            if scope == "host":
                for name in names:
                    remove_regions(name)
        print_table(f"sluice.Governor from Python, {scope} scope ({rounds} interleaved rounds of "
                    f"{number:,} requests; ratio to the whole path)", results,
                    "budget: whole path <= 10 us in Python, process scope" if scope == "process"
                    else "")
    # Where the whole path's time goes: each step added to the one before (process scope).
    gov = sluice.Governor(policy_text("process", name=f"{POLICY_NAME}-steps"))
    cases = [("admit(attributes, body=..., token_estimate=300) + release", steps_runner(gov, 1)),
             ("  the same, native admit without the facade", steps_runner(gov, 1, facade=False)),
             ("  + cached_answer() (a miss)", steps_runner(gov, 2)),
             ("  + begin_call().next(200) (the pick)", steps_runner(gov, 3)),
             ("  + settle(280) instead of release (the whole path)", steps_runner(gov, 4))]
    results = interleaved(cases, number, rounds, cases[4][0])
    print_table("The whole path step by step, process scope (ratio to the whole path)", results)


# --- 2. Flask ----------------------------------------------------------------------------------


def flask_apps():
    import flask

    def make_app():
        app = flask.Flask("bench")

        @app.post("/v1/chat/completions")
        def chat():
            return "ok"
        return app

    bare = make_app()

    from flask_limiter import Limiter
    limited = make_app()
    Limiter(lambda: flask.request.headers["X-Tenant"], app=limited,
            default_limits=["1000000/minute"], storage_uri="memory://")

    def governed(gov):
        app = make_app()

        @app.before_request
        def govern():
            headers = flask.request.headers
            if gov is None:  # the hooks alone: what Flask charges any before_request limiter
                _ = headers["X-Tenant"], headers["X-App"]
                flask.g.admission = None
                return None
            admission = gov.admit({"tenant": headers["X-Tenant"], "app": headers["X-App"],
                                   "model": "gpt-4o"}, token_estimate=300)
            if not admission:
                return "slow down", 429, admission.headers()
            flask.g.admission = admission
            return None

        @app.teardown_request
        def release(exc):
            admission = flask.g.pop("admission", None)
            if admission is not None:
                admission.release()
        return app

    gov3 = sluice.Governor(policy_text("process", name=f"{POLICY_NAME}-flask3"))
    gov1 = sluice.Governor(f"version: 1\nname: {POLICY_NAME}-flask1\nrules:\n"
                           "  - name: tenant-rpm\n    key: [tenant]\n    requests: [1000000/1m]\n")
    return bare, limited, governed(gov3), governed(gov1), governed(None)


def wsgi_runner(app):
    from werkzeug.test import EnvironBuilder
    environs = []
    for i in range(4000):
        builder = EnvironBuilder(path="/v1/chat/completions", method="POST", data=BODY,
                                 content_type="application/json",
                                 headers={"X-Tenant": TENANTS[i % 1000], "X-App": APPS[i]})
        environs.append(builder.get_environ())
        builder.close()
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def run(n):
        k = len(environs)
        for i in range(n):
            environ = dict(environs[i % k])
            result = app(environ, start_response)
            for _ in result:
                pass
            if hasattr(result, "close"):
                result.close()
        if statuses[-1] != "200 OK":
            raise RuntimeError(f"the app answered {statuses[-1]}")
        statuses.clear()
    return run


def flask_section(quick: bool) -> None:
    number, rounds = (2_000, 5) if quick else (10_000, 9)
    apps = flask_apps()
    labels = ["bare view (no limiter)", "Flask-Limiter, 1 limit (memory://)",
              "sluice.Governor before_request, 3 rules", "sluice.Governor before_request, 1 rule",
              "the same hooks without sluice (headers read, g set)"]
    cases = [(label, wsgi_runner(app)) for label, app in zip(labels, apps)]
    results = interleaved(cases, number, rounds, labels[0])
    print_table(f"Flask {importlib.metadata.version('flask')}: one view through a WSGI call loop "
                f"({rounds} interleaved rounds of {number:,} requests; ratio to the bare view)",
                results)
    # A limiter's overhead: its round minus the bare view's round, the median over the rounds
    # (paired, so a load change between rounds cancels out); and the fastest round minus the
    # bare view's fastest, the least disturbed estimate.
    bare = results[labels[0]][4]

    def overhead(label):
        rounds_ = results[label][4]
        return (statistics.median(x - b for x, b in zip(rounds_, bare)),
                min(rounds_) - min(bare))
    limiter = overhead(labels[1])
    print(f"overhead per request over the bare view: {'median of rounds':>17} {'fastest':>8} "
          f"{'x Flask-Limiter':>16}")
    for label in labels[1:]:
        paired, fastest = overhead(label)
        print(f"  {label:56} {paired / 1000:8.2f} us {fastest / 1000:6.2f} us "
              f"{paired / limiter[0]:7.2f} / {fastest / limiter[1]:4.2f}")


# --- 3. LiteLLM Router -------------------------------------------------------------------------


_NETWORK_EVENTS = []


def _audit(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.sendto", "urllib.Request"):
        _NETWORK_EVENTS.append((event, args[1:2] if event == "socket.connect" else args[:1]))


def litellm_section(quick: bool) -> None:
    import asyncio
    sys.addaudithook(_audit)
    before = len(_NETWORK_EVENTS)
    import litellm
    litellm.telemetry = False
    deployments = [{"model_name": "gpt-4o",
                    "litellm_params": {"model": "openai/gpt-4o", "api_key": f"sk-mock-{i}",
                                       "api_base": "http://127.0.0.1:9/v1"}}
                   for i in (1, 2)]
    router = litellm.Router(model_list=deployments)
    picked = {router.get_available_deployment(model="gpt-4o")["litellm_params"]["api_key"]
              for _ in range(200)}
    if picked != {"sk-mock-1", "sk-mock-2"}:
        raise RuntimeError(f"LiteLLM picked {picked}, not both deployments")

    gov = sluice.Governor(policy_text("process", name=f"{POLICY_NAME}-pick"))
    admission = gov.admit({"tenant": "t", "app": "a", "model": "gpt-4o"}, token_estimate=300)
    ids = set()
    for _ in range(200):
        call = admission.begin_call()
        ids.add(call.endpoint_id)
        call.next(200)
    if ids != {"key-1", "key-2"}:
        raise RuntimeError(f"sluice picked {ids}, not both endpoints")

    def sluice_pick(n):
        begin = admission.begin_call
        for _ in range(n):
            begin().next(200)

    def sluice_admit_pick(n):
        admit = gov.admit
        k = len(ATTRS)
        for i in range(n):
            a = admit(ATTRS[i % k], token_estimate=300)
            a.begin_call().next(200)
            a.release()

    def litellm_sync(n):
        pick = router.get_available_deployment
        for _ in range(n):
            pick(model="gpt-4o")

    loop = asyncio.new_event_loop()

    async def async_picks(n):
        select = router.select
        for _ in range(n):
            await select("gpt-4o")

    def litellm_async(n):
        loop.run_until_complete(async_picks(n))

    # LiteLLM's picks take hundreds of microseconds each: fewer of them per round.
    number, rounds = (2_000, 5) if quick else (10_000, 9)
    slow = number // 20
    cases = [("sluice begin_call() + next(200) (pick over 2 endpoints)", sluice_pick),
             ("sluice admit (3 rules) + begin_call() + next(200) + release", sluice_admit_pick),
             ("LiteLLM Router.get_available_deployment (sync)", litellm_sync, slow),
             ("LiteLLM await Router.select(model) (async pick)", litellm_async, slow)]
    try:
        results = interleaved(cases, number, rounds, cases[0][0])
    finally:
        loop.close()
        admission.release()
    print_table(f"Routing one request over 2 deployments: sluice vs LiteLLM "
                f"{importlib.metadata.version('litellm')} Router (simple-shuffle, its default; "
                f"{rounds} interleaved rounds of {number:,} sluice and {slow:,} LiteLLM picks; ratio to "
                f"sluice's pick)", results)
    network = _NETWORK_EVENTS[before:]
    print(f"network calls seen by an audit hook while importing and running LiteLLM: "
          f"{len(network)}{' ' + repr(network[:5]) if network else ''}")


def calls_per_run(run, n: int) -> float:
    """Python function calls (cProfile's count) per call of `run`'s unit of work."""
    import cProfile
    import pstats
    run(max(n // 10, 10))
    profile = cProfile.Profile()
    profile.enable()
    run(n)
    profile.disable()
    return sum(v[1] for v in pstats.Stats(profile).stats.values()) / n  # type: ignore[attr-defined]


def profile_section() -> None:
    """Why the peers cost what they do: Python function calls per request or pick."""
    print("\nPython function calls per request (cProfile counts, not timing)")
    apps = flask_apps()
    for label, app in zip(["Flask: bare view", "Flask: Flask-Limiter, 1 limit",
                           "Flask: sluice.Governor before_request, 3 rules"], apps):
        print(f"  {label:56} {calls_per_run(wsgi_runner(app), 1000):7.0f}")
    gov = sluice.Governor(policy_text("process", name=f"{POLICY_NAME}-profile"))
    print(f"  {'sluice whole path (3 rules)':56} "
          f"{calls_per_run(whole_path_runner(gov, BODY), 1000):7.0f}")
    import litellm
    deployments = [{"model_name": "gpt-4o",
                    "litellm_params": {"model": "openai/gpt-4o", "api_key": f"sk-mock-{i}",
                                       "api_base": "http://127.0.0.1:9/v1"}} for i in (1, 2)]
    router = litellm.Router(model_list=deployments)

    def picks(n):
        for _ in range(n):
            router.get_available_deployment(model="gpt-4o")
    print(f"  {'LiteLLM Router.get_available_deployment':56} {calls_per_run(picks, 1000):7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--only", choices=["governor", "flask", "litellm", "profile"],
                        action="append",
                        help="run only these sections (repeatable)")
    args = parser.parse_args()
    missing = []
    for package in ("Flask-Limiter", "litellm"):
        try:
            importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            missing.append(package)
    sections = args.only or ["governor", "flask", "litellm"]
    wanted = {"flask": ["Flask-Limiter"], "litellm": ["litellm"],
              "profile": ["Flask-Limiter", "litellm"]}
    if any(p in missing for s in sections for p in wanted.get(s, [])):
        sys.exit(f"bench_governor.py needs {', '.join(missing)} (PyPI): "
                 f"pip install -r requirements-bench.txt")
    load = os.getloadavg()
    print(f"sluice {sluice.__version__}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if "governor" in sections:
        whole_path(args.quick)
    if "flask" in sections:
        flask_section(args.quick)
    if "litellm" in sections:
        litellm_section(args.quick)
    if "profile" in sections:
        profile_section()


if __name__ == "__main__":
    main()
