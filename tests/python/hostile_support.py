"""The machinery of the hostile-input suite (issue 13).

The contract every case checks: a call into sluice either returns, or raises a documented
exception -- ``TypeError`` or a ``sluice.Error`` (``sluice.InvalidArgument`` is also a
``ValueError``; a *plain* ``ValueError``, ``RuntimeError``, ``SystemError``, ... is not
documented). It never crashes the process and never hangs.

How the cases run
-----------------
* Each ``test_hostile_*.py`` module registers its cases in a ``Suite`` when it is imported; no
  case runs then. A case is a function that makes the hostile call, and what it must do
  (``DOC``, ``raises(...)``, ``RETURNS``).
* The first hostile test of a session runs every *selected* case at once: a runner process per
  shard (this file, run as a script) imports sluice and the case modules once, then ``fork()``s a
  fresh child per case. The child runs the case and writes its verdict to a pipe. A child that
  dies on a signal, or outlives its case's time limit, fails exactly that case, and the next case
  starts in a fresh child: a corrupted heap cannot take the next case down with it, and one
  fork costs about a millisecond. The child's stderr (with ``faulthandler``'s traceback of a
  crash or a hang) goes into the verdict.
* Then each pytest test reports one case's verdict, so a failure reads as
  ``test_api[RateLimiter.start/process/key=None]: crashed: SIGSEGV ...``.

Cases under gevent run in a runner that calls ``gevent.monkey.patch_all()`` first. Cases that
need Redis get the port of a redis-server started for the session (``redis_port()``); cases that
need a shared-memory region get a name unique to the session (``region_name()``), and every
region left behind by a crash is removed at the end of the session.

This is the only place that knows how cases run; the case modules only say what to call.
"""

from __future__ import annotations

import faulthandler
import inspect
import gc
import json
import os
import re
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))

# Seconds per case, an upper bound for a case that keeps working; a case that waits for nothing
# is called hung much sooner (see IDLE_AFTER).
DEFAULT_TIMEOUT = 60.0
REDIS_PORT_ENV = "SLUICE_HOSTILE_REDIS_PORT"
REGION_PREFIX_ENV = "SLUICE_HOSTILE_REGION_PREFIX"


# ---- what a case must do ------------------------------------------------------------------------

def documented_exceptions() -> Tuple[type, ...]:
    import sluice

    return (TypeError, sluice.Error)


class CaseFailed(Exception):
    """Raised by a scenario case when it observed something wrong (the message says what)."""


@dataclass(frozen=True)
class Expect:
    """What a case must do: return (if ``may_return``), or raise an instance of one of
    ``exceptions`` (None: the documented ones, TypeError or sluice.Error)."""

    label: str
    may_return: bool
    exceptions: Optional[Tuple[type, ...]] = None

    def judge(self, returned: bool, exc: Optional[BaseException]) -> Tuple[bool, str]:
        if isinstance(exc, CaseFailed):
            return False, f"{exc}"
        if returned:
            if self.may_return:
                return True, "returned"
            return False, f"returned normally; expected {self.label}"
        allowed = self.exceptions if self.exceptions is not None else documented_exceptions()
        name = f"{type(exc).__module__}.{type(exc).__qualname__}"
        message = str(exc)[:300]
        if isinstance(exc, allowed):
            return True, f"raised {name}: {message}"
        return False, f"raised {name}: {message}; expected {self.label}"


DOC = Expect("to return, or raise TypeError or a sluice.Error", True)
RETURNS = Expect("to return", True, ())


def raises(*classes: type) -> Expect:
    names = " or ".join(f"{c.__module__}.{c.__qualname__}" for c in classes)
    return Expect(f"to raise {names}", False, tuple(classes))


def raises_documented() -> Expect:
    return Expect("to raise TypeError or a sluice.Error (not to return)", False)


# ---- the case registry ----------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    fn: Callable[[], Any]
    expect: Expect
    timeout: float = DEFAULT_TIMEOUT
    gevent: bool = False      # run under gevent.monkey.patch_all()
    redis: bool = False       # needs the session's redis-server
    covers: Tuple[str, ...] = ()  # the public API names the case calls (for the coverage checks)
    idle: float = 0.0         # seconds it may legitimately wait for nothing (0: IDLE_WINDOW)
    repro: str = ""           # a one-line reproduction, when the case is simple enough for one


SUITES: Dict[str, "Suite"] = {}


class Suite:
    """The cases of one test module, in registration order."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.cases: Dict[str, Case] = {}
        SUITES[module] = self

    def add(self, case_id: str, fn: Callable[[], Any], expect: Expect = DOC, **options: Any) -> Case:
        if case_id in self.cases:
            raise ValueError(f"duplicate hostile case id {case_id!r} in {self.module}")
        case = Case(case_id, fn, expect, **options)
        self.cases[case_id] = case
        return case

    def case(self, case_id: str, expect: Expect = RETURNS, **options: Any):
        """Decorator form of ``add`` for scenario cases."""

        def register(fn: Callable[[], Any]) -> Callable[[], Any]:
            self.add(case_id, fn, expect, **options)
            return fn

        return register

    def ids(self) -> List[str]:
        return list(self.cases)


def covered_names() -> set:
    return {name for suite in SUITES.values() for case in suite.cases.values() for name in case.covers}


# ---- resources cases share -------------------------------------------------------------------------

def redis_port() -> int:
    port = os.environ.get(REDIS_PORT_ENV)
    if not port:
        raise RuntimeError("this case needs the session's redis-server (register it with redis=True)")
    return int(port)


_region_counter = [0]
_regions_made: List[str] = []


def region_name() -> str:
    """A shared-memory region name unique to this session and process; the case removes it when
    it ends (a region is tens of MiB of RAM), and the session removes what a crash left."""
    _region_counter[0] += 1
    prefix = os.environ.get(REGION_PREFIX_ENV, f"hostile-{os.getpid()}")
    name = f"{prefix}-{os.getpid()}-{_region_counter[0]}"
    _regions_made.append(name)
    return name


def _remove_regions_made() -> None:
    import sluice

    for name in _regions_made:
        for made in (name, name + ".endpoints", name + ".routes"):  # a Balancer's holds, routes
            try:
                sluice.remove_shared_region(made)
            except Exception:  # noqa: BLE001 - not there, or never valid
                pass


_rule_counter = [0]


def rule_name() -> str:
    """A cluster rule name unique to this process (the server belongs to the session)."""
    _rule_counter[0] += 1
    return f"hostile-{os.getpid()}-{_rule_counter[0]}-{uuid.uuid4().hex[:6]}"


def run_forked(fn: Callable[[], Any], timeout: float = 30.0) -> Tuple[str, str]:
    """Runs ``fn`` in a fork()ed child of this (case) process. Returns ("returned", repr),
    ("raised", "module.Class: message"), ("crashed", "signal N ...") or ("hung", "...")."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into the caller's frames
        os.close(read_fd)
        try:
            try:
                value = fn()
                report = {"kind": "returned", "detail": repr(value)[:200]}
            except BaseException as exc:  # noqa: BLE001 - the verdict decides what is allowed
                report = {"kind": "raised", "class": f"{type(exc).__module__}.{type(exc).__qualname__}",
                          "detail": str(exc)[:300],
                          "documented": isinstance(exc, documented_exceptions())}
            os.write(write_fd, json.dumps(report).encode())
            gc.collect()
        finally:
            os._exit(0)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([read_fd], [], [], max(0.0, left))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_fd)
            return "hung", f"the forked child did not finish within {timeout}s"
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "crashed", f"the forked child died of {_signal_name(os.WTERMSIG(status))}"
    report = json.loads(data.decode()) if data else None
    if report is None:
        return "crashed", f"the forked child exited with status {os.WEXITSTATUS(status)} and no report"
    if report["kind"] == "returned":
        return "returned", report["detail"]
    if not report["documented"]:
        return "undocumented", f"{report['class']}: {report['detail']}"
    return "raised", f"{report['class']}: {report['detail']}"


def expect_forked(fn: Callable[[], Any], timeout: float = 30.0) -> str:
    """``run_forked``, failing the case unless the child returned or raised a documented
    exception."""
    kind, detail = run_forked(fn, timeout)
    if kind in ("returned", "raised"):
        return f"{kind}: {detail}"
    raise CaseFailed(f"in a fork()ed child: {kind}: {detail}")


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return f"signal {number}"


# ---- the public API, read from the running module -------------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    keyword_only: bool


def _split_top_level(text: str) -> List[str]:
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _pybind_params(doc: str, name: str) -> Optional[List[Param]]:
    """The parameters in a pybind11 docstring's first signature line, ``name(self: T, a: X, *,
    b: Y = 1) -> R``; None when there is none. An overloaded function's docstring starts with
    ``name(*args, **kwargs)`` and then numbers its overloads (``1. name(...)``): the first
    overload is the one read (sluice's later overloads only name a wrong argument's type)."""
    for line in (doc or "").splitlines():
        line = re.sub(r"^\d+\.\s+", "", line.strip())
        if not line.startswith(name + "(") or line.startswith(name + "(*args, **kwargs)"):
            continue
        depth, end = 0, None
        for i, ch in enumerate(line[len(name):], start=len(name)):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end is None:
            return None
        params, keyword_only = [], False
        for part in _split_top_level(line[len(name) + 1:end]):
            if part == "*":
                keyword_only = True
                continue
            pname = re.split(r"[:=]", part, 1)[0].strip()
            if pname in ("self", "/"):
                continue
            params.append(Param(pname, keyword_only))
        return params
    return None


def signature_params(fn: Any, name: str) -> Optional[List[Param]]:
    """The parameters of a public callable (without self), from pybind11's docstring or from
    inspect; None when they cannot be read."""
    params = _pybind_params(getattr(fn, "__doc__", "") or "", name)
    if params is not None:
        return params
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    out = []
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            out.append(Param(("*" if p.kind == p.VAR_POSITIONAL else "**") + p.name, True))
            continue
        out.append(Param(p.name, p.kind == p.KEYWORD_ONLY))
    return out


def _pybind_constructor(cls: type) -> Optional[Any]:
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and (getattr(init, "__doc__", "") or "").lstrip().startswith("__init__("):
            return init
    return None


def constructor_params(cls: type) -> Optional[List[Param]]:
    """A class's constructor parameters: the facade's own, with its ``**options`` replaced by the
    native constructor's keywords. None for a class Python cannot construct."""
    native = _pybind_constructor(cls)
    native_params = _pybind_params(native.__doc__, "__init__") if native is not None else None
    own = cls.__dict__.get("__init__")
    if own is not None and inspect.isfunction(own):
        params = signature_params(own, "__init__") or []
        if native_params is not None:
            named = {p.name for p in params}
            params = [p for p in params if not p.name.startswith("*")]
            params += [p for p in native_params if p.name not in named]
        return params
    if native_params is not None:
        return native_params
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and inspect.isfunction(init):
            return signature_params(init, "__init__")
    return None


PROTOCOL_METHODS = ("__enter__", "__exit__", "__bool__", "__eq__", "__hash__")


def public_api() -> Dict[str, Optional[List[Param]]]:
    """Every public callable of ``sluice.__all__`` and its parameters: ``name`` for a function,
    ``Class`` for a constructor, ``Class.method`` for a method, ``Class.__exit__`` and the other
    protocol methods a class defines itself. Properties are not callables (the lifetime cases read
    them all)."""
    import sluice

    api: Dict[str, Optional[List[Param]]] = {}
    seen_classes: Dict[type, str] = {}
    for name in sluice.__all__:
        obj = getattr(sluice, name)
        if not inspect.isclass(obj):
            if callable(obj):  # constants (SLIDING_MAX_LIMIT) are not entry points
                api[name] = signature_params(obj, name)
            continue
        if obj in seen_classes:  # an alias (Attempt is FallbackCall): one class, one entry
            continue
        if obj.__name__ in sluice.__all__ and getattr(sluice, obj.__name__) is obj:
            name = obj.__name__  # the class's own name rather than an alias's
        seen_classes[obj] = name
        params = constructor_params(obj)
        if params is not None:
            api[name] = params
        for attr in sorted(dir(obj)):
            if attr.startswith("_") and attr not in PROTOCOL_METHODS:
                continue
            static = None
            for klass in obj.__mro__:
                if attr in klass.__dict__:
                    static = klass.__dict__[attr]
                    break
            if static is None or isinstance(static, property) or klass in (object, BaseException, Exception):
                continue
            if type(static).__name__ in ("pybind11_static_property",):
                continue
            if attr in PROTOCOL_METHODS and (klass.__name__ == "pybind11_object"
                                             or type(static).__name__ == "wrapper_descriptor"):
                continue
            if issubclass(obj, BaseException) and klass in (BaseException, Exception):
                continue
            member = getattr(obj, attr)
            if not callable(member):
                continue
            api[f"{name}.{attr}"] = signature_params(member, attr)
    return api


_API_CACHE: Dict[str, Optional[List[Param]]] = {}


def signature_params_cached(name: str) -> Optional[List[Param]]:
    """``public_api()[name]``, read once per process."""
    if not _API_CACHE:
        _API_CACHE.update(public_api())
    return _API_CACHE.get(name)


# ---- the runner (this file as a script): fork a child per case -------------------------------------

# A hostile size must fail as an error, not take the machine's memory: the address space bounds
# what a case maps, the file size what a shared-memory region may grow to (tmpfs is RAM).
CASE_ADDRESS_SPACE = 6 << 30
CASE_FILE_SIZE = 256 << 20


def _child(case: Case, write_fd: int, stderr_fd: int) -> None:
    os.setpgid(0, 0)  # the runner kills the whole group: grandchildren a case forked go too
    resource.setrlimit(resource.RLIMIT_AS, (CASE_ADDRESS_SPACE, CASE_ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_FSIZE, (CASE_FILE_SIZE, CASE_FILE_SIZE))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large region fails with EFBIG instead
    os.dup2(stderr_fd, 1)
    os.dup2(stderr_fd, 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    faulthandler.enable(file=sys.stderr, all_threads=True)
    # A hang leaves a traceback of where it waits: the runner signals before it kills.
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    returned, exc = False, None
    try:
        if case.gevent:
            import gevent

            greenlet = gevent.spawn(case.fn)
            greenlet.join()
            if greenlet.successful():
                returned = True
            else:
                exc = greenlet.exception
        else:
            case.fn()
            returned = True
    except BaseException as error:  # noqa: BLE001 - the verdict decides what is allowed
        exc = error
    try:
        passed, detail = case.expect.judge(returned, exc)
    except BaseException as error:  # noqa: BLE001
        passed, detail = False, f"judging the outcome failed: {error!r}"
    if exc is not None and not passed:
        detail += "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-1500:]
    exc = None
    os.write(write_fd, (json.dumps({"passed": passed, "detail": detail}) + "\n").encode())
    # Destructors run now, inside this case: a crash here is this case's.
    gc.collect()
    _remove_regions_made()
    os.write(write_fd, b'{"clean": true}\n')
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _tail(fd: int, limit: int = 2500) -> str:
    size = os.lseek(fd, 0, os.SEEK_END)
    os.lseek(fd, max(0, size - limit), os.SEEK_SET)
    text = os.read(fd, limit).decode(errors="replace")
    return text.strip()


def _group_cpu_ticks(pgid: int) -> int:
    """CPU time (clock ticks) used so far by the processes of group `pgid`."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[0] is the state: pgrp is the 5th field of stat
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


# A case is hung when, after IDLE_AFTER seconds, its processes used less than IDLE_TICKS of CPU
# over the last IDLE_WINDOW seconds: a case waiting for nothing (a sleep loop, a lost wake-up).
# A case that is merely slow (a loaded machine) keeps using CPU and gets up to its `timeout`.
IDLE_AFTER = 3.5
IDLE_WINDOW = 2.5
IDLE_TICKS = 4


def _run_one(case: Case) -> Dict[str, Any]:
    read_fd, write_fd = os.pipe()
    stderr_file = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            _child(case, write_fd, stderr_file.fileno())
        finally:
            os._exit(70)
    os.close(write_fd)
    started = time.monotonic()
    deadline = started + case.timeout
    data = b""
    hung = ""
    samples: List[Tuple[float, int]] = []
    idle_window = max(IDLE_WINDOW, case.idle)
    while True:
        now = time.monotonic()
        if now >= deadline:
            hung = f"no result within {case.timeout:.0f}s"
            break
        ready, _, _ = select.select([read_fd], [], [], min(0.25, deadline - now))
        if ready:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk
            continue
        now = time.monotonic()
        samples.append((now, _group_cpu_ticks(pid)))
        window = [(t, c) for t, c in samples if t >= now - idle_window - 0.01]
        if (now - started >= IDLE_AFTER + idle_window - IDLE_WINDOW
                and now - window[0][0] >= idle_window - 0.3
                and window[-1][1] - window[0][1] < IDLE_TICKS):
            hung = (f"no result after {now - started:.1f}s, and idle for the last "
                    f"{now - window[0][0]:.1f}s (waiting for something that does not come)")
            break
    os.close(read_fd)
    if hung:
        try:
            os.killpg(pid, signal.SIGUSR1)  # faulthandler: where does it wait?
            time.sleep(0.3)
        except ProcessLookupError:
            pass
        _kill_group(pid)
        _, status = os.waitpid(pid, 0)
    else:
        _, status = os.waitpid(pid, 0)
        _kill_group(pid)  # anything the case forked and left behind
    # Regions a crashed or hung case could not remove (their names carry its pid).
    remove_regions(f"{os.environ.get(REGION_PREFIX_ENV, 'hostile-' + str(os.getpid()))}-{pid}-")
    lines = [json.loads(line) for line in data.decode(errors="replace").splitlines() if line.strip()]
    verdict = next((line for line in lines if "passed" in line), None)
    clean = any(line.get("clean") for line in lines)
    stderr_text = _tail(stderr_file.fileno())
    stderr_file.close()
    elapsed = time.monotonic() - started
    if hung:
        detail = f"hung: {hung}"
        if verdict is not None:
            detail = f"hung after the call returned (in cleanup): {hung}"
        return {"passed": False, "detail": f"{detail}\n{stderr_text}", "seconds": elapsed}
    if verdict is None:
        how = (f"crashed: {_signal_name(os.WTERMSIG(status))}" if os.WIFSIGNALED(status)
               else f"the case process exited with status {os.WEXITSTATUS(status)} before a verdict")
        return {"passed": False, "detail": f"{how}\n{stderr_text}", "seconds": elapsed}
    if not clean or os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0:
        how = (_signal_name(os.WTERMSIG(status)) if os.WIFSIGNALED(status)
               else f"exit status {os.WEXITSTATUS(status)}")
        return {"passed": False,
                "detail": f"crashed after the call, while collecting its objects: {how} "
                          f"(the call itself: {verdict['detail']})\n{stderr_text}",
                "seconds": elapsed}
    return {"passed": verdict["passed"], "detail": verdict["detail"], "seconds": elapsed}


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def runner_main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    if spec.get("gevent"):
        from gevent import monkey

        monkey.patch_all()
    sys.path.insert(0, HERE)
    import importlib

    support = importlib.import_module("hostile_support")  # the registry the modules fill
    for module in spec["modules"]:
        importlib.import_module(module)
    support.signature_params_cached("")  # read the API once, before the first fork
    # What exists now is the runner's, not a case's: a case's gc.collect() skips it (and does not
    # copy every page of it on write).
    gc.collect()
    gc.freeze()
    out = sys.stdout
    for module, case_id in spec["cases"]:
        suite = support.SUITES.get(module)
        case = suite.cases.get(case_id) if suite is not None else None
        if case is None:
            result = {"passed": False, "detail": f"no case {case_id!r} in {module}", "seconds": 0.0}
        else:
            result = _run_one(case)
        result.update(module=module, id=case_id)
        out.write(json.dumps(result) + "\n")
        out.flush()
    return 0


# ---- the pytest side: run the selected cases once per session ----------------------------------------

class Results:
    """Every selected case's verdict, from one batched run per session."""

    def __init__(self) -> None:
        self.verdicts: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.redis = None
        self.region_prefix = f"hostile-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.users = 0
        self.ran = False
        self.runner_problems: List[str] = []
        self.seconds = 0.0

    def ensure_run(self, request) -> None:
        if self.ran:
            return
        self.ran = True
        wanted: List[Tuple[str, str]] = []
        for item in request.session.items:
            callspec = getattr(item, "callspec", None)
            module = getattr(getattr(item, "module", None), "__name__", None)
            if callspec is None or module not in SUITES or "case_id" not in callspec.params:
                continue
            wanted.append((module, callspec.params["case_id"]))
        self._run(wanted)

    def _run(self, wanted: Sequence[Tuple[str, str]]) -> None:
        started = time.monotonic()
        cases = [(m, i, SUITES[m].cases[i]) for m, i in wanted if i in SUITES[m].cases]
        env = dict(os.environ)
        env[REGION_PREFIX_ENV] = self.region_prefix
        env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONFAULTHANDLER"] = "1"
        if any(c.redis for _, _, c in cases):
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                            "benchmarks", "python"))
            from local_redis import LocalRedis

            self.redis = LocalRedis()
            self.redis.__enter__()
            env[REDIS_PORT_ENV] = str(self.redis.port)
        plain = [(m, i) for m, i, c in cases if not c.gevent]
        under_gevent = [(m, i) for m, i, c in cases if c.gevent]
        # Three plain runners for two cores: cases that wait (a hang being detected) leave a core.
        shards = [(plain[k::3], False) for k in range(3)] + [(under_gevent, True)]
        processes = []
        for number, (shard, gevent) in enumerate(shards):
            if not shard:
                continue
            spec = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
            json.dump({"gevent": gevent, "modules": sorted({m for m, _ in shard}),
                       "cases": shard}, spec)
            spec.close()
            out = tempfile.TemporaryFile()
            err = tempfile.TemporaryFile()
            budget = sum(SUITES[m].cases[i].timeout + 1.0 for m, i in shard) + 60.0
            process = subprocess.Popen([sys.executable, os.path.abspath(__file__), spec.name],
                                       stdout=out, stderr=err, env=env, cwd=HERE)
            processes.append((process, out, err, spec.name, budget, shard))
        for process, out, err, spec_name, budget, shard in processes:
            try:
                process.wait(timeout=budget)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                self.runner_problems.append(f"a runner exceeded its budget of {budget:.0f}s")
            out.seek(0)
            for line in out.read().decode(errors="replace").splitlines():
                try:
                    result = json.loads(line)
                except ValueError:
                    continue
                self.verdicts[(result["module"], result["id"])] = result
            if process.returncode != 0:
                err.seek(0)
                self.runner_problems.append(
                    f"a runner exited with {process.returncode}: "
                    f"{err.read().decode(errors='replace')[-2000:]}")
            os.unlink(spec_name)
        self.seconds = time.monotonic() - started
        report = os.environ.get("SLUICE_HOSTILE_REPORT")
        if report:  # every verdict, for triage: {"module::id": {"passed", "detail", "seconds"}}
            with open(report, "w") as f:
                json.dump({f"{m}::{i}": v for (m, i), v in self.verdicts.items()}, f, indent=0)

    def verdict(self, module: str, case_id: str) -> Dict[str, Any]:
        result = self.verdicts.get((module, case_id))
        if result is None:
            problems = "; ".join(self.runner_problems) or "no verdict was reported"
            return {"passed": False, "detail": f"the runner gave no verdict: {problems}"}
        return result

    def close(self) -> None:
        if self.redis is not None:
            self.redis.__exit__(None, None, None)
            self.redis = None
        remove_regions(self.region_prefix)


def remove_regions(prefix: str) -> None:
    import sluice

    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return
    for entry in names:
        if entry.startswith("sluice." + prefix):
            try:
                sluice.remove_shared_region(entry[len("sluice."):])
            except sluice.Error:
                pass


RESULTS = Results()


def check(module: str, case_id: str, request) -> None:
    """The body of every hostile pytest test: the case's verdict, from the session's batch."""
    import pytest

    RESULTS.ensure_run(request)
    result = RESULTS.verdict(module, case_id)
    if not result["passed"]:
        case = SUITES[module].cases[case_id]
        repro = f"\nreproduce: {case.repro}" if case.repro else ""
        pytest.fail(f"{case_id}: {result['detail']}{repro}", pytrace=False)


def session_fixture():
    """The fixture each hostile module imports: it closes the batch's resources at the end."""
    import pytest

    @pytest.fixture(scope="session")
    def hostile_session():
        RESULTS.users += 1
        yield RESULTS
        RESULTS.users -= 1
        if RESULTS.users == 0:
            RESULTS.close()

    return hostile_session


if __name__ == "__main__":
    sys.exit(runner_main(sys.argv[1]))
