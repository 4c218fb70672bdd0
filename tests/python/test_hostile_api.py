"""Hostile arguments for every public callable of ``sluice`` (issue 13), generated from one table.

``SPECS`` says, for each public callable (``test_hostile_coverage.py`` fails when one is missing
or a parameter is not listed), how to reach it in each scope, a valid call, and what kind of
value each parameter takes. Each parameter is then fed every hostile value of its kind (wrong
types, None, NaN, infinities, negatives, zero, 2**63 and 2**64, INT64_MAX seconds, bools, empty,
NUL, surrogates, non-UTF-8 bytes, a 1 MiB string, ...) with the other arguments valid. After a
call that returns, ``after`` uses the result or the object (a limiter built from hostile options
decides; a balancer given a hostile weight picks), so that a value accepted but not handled shows
up too.

Expected outcome (``hostile_support``): return, or raise TypeError or a sluice.Error. Wrong types
must raise TypeError; NaN durations sluice.InvalidArgument; values a call must refuse (empty
windows, unknown names) a documented error. Nothing may crash or hang.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest

import hostile_support as hs
from hostile_support import DOC, RETURNS, raises

import sluice

MiB = 1 << 20
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
YEAR = 366 * 86400.0
TYPE = raises(TypeError)
INVALID = raises(sluice.InvalidArgument)
REFUSED = hs.raises_documented()

REQUEST = (b'{"model":"m","messages":[{"role":"system","content":"You are terse."},'
           b'{"role":"user","content":"hello there, how are you today?"}]}')
COMPLETION = (b'{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":'
              b'[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}')
METRICS = ("vllm:num_requests_waiting 3\nvllm:num_requests_running 2\n"
           "vllm:gpu_cache_usage_perc 0.5\n")


# ---- hostile objects --------------------------------------------------------------------------------

class StrSub(str):
    pass


class IntSub(int):
    pass


class FloatSub(float):
    pass


class IndexRaises:
    """An int-like object whose conversion raises."""

    def __index__(self):
        raise RuntimeError("hostile __index__")

    def __int__(self):
        raise RuntimeError("hostile __int__")


class FloatRaises:
    def __float__(self):
        raise RuntimeError("hostile __float__")


# ---- value kinds: (label, factory, expected) ------------------------------------------------------

@dataclass(frozen=True)
class Value:
    label: str
    make: Callable[[], Any]
    expect: hs.Expect = DOC


def V(label: str, make: Callable[[], Any], expect: hs.Expect = DOC) -> Value:
    return Value(label, make, expect)


def _doc(values: List[Value]) -> List[Value]:
    """The same values, each allowed to return."""
    return [Value(v.label, v.make, DOC) for v in values]


def _wrong(*skip: str) -> List[Value]:
    values = [V("None", lambda: None, TYPE), V("int", lambda: 5, TYPE), V("float", lambda: 1.5, TYPE),
              V("list", lambda: [], TYPE), V("dict", lambda: {}, TYPE), V("object", object, TYPE)]
    return [v for v in values if v.label not in skip]


STR_EDGES = [
    V("empty", lambda: ""),
    V("nul", lambda: "a\x00b"),
    V("surrogate", lambda: "\ud800"),
    V("non_utf8_bytes", lambda: b"\xff\xfe"),
    V("bytes", lambda: b"k"),
    V("bytearray", lambda: bytearray(b"k")),
    V("str_subclass", lambda: StrSub("k")),
    V("1MiB", lambda: "k" * MiB),
]
KEY = _wrong() + STR_EDGES
STR = KEY
OPT_STR = [V("None", lambda: None)] + _wrong("None") + STR_EDGES

INT = _wrong("int") + [
    V("str", lambda: "1", TYPE),
    V("nan", lambda: math.nan, TYPE),
    V("index_raises", IndexRaises, TYPE),
    V("True", lambda: True),
    V("False", lambda: False),
    V("zero", lambda: 0),
    V("minus_one", lambda: -1),
    V("int64_max", lambda: INT64_MAX),
    V("int64_min", lambda: INT64_MIN),
    V("2**63", lambda: 2**63),
    V("2**64", lambda: 2**64),
    V("-2**63-1", lambda: -(2**63) - 1),
    V("int_subclass", lambda: IntSub(3)),
]
# None: unset (the failure mode "local" then refuses to construct, a documented error).
OPT_INT = [V("None", lambda: None)] + [v for v in INT if v.label != "None"]
SECS = _wrong("float", "int") + [
    V("str", lambda: "1", TYPE),
    V("float_raises", FloatRaises, TYPE),
    V("nan", lambda: math.nan, INVALID),
    V("nan_subclass", lambda: FloatSub(math.nan), INVALID),
    V("inf", lambda: math.inf),
    V("-inf", lambda: -math.inf),
    V("minus_one", lambda: -1.0),
    V("zero", lambda: 0.0),
    V("minus_zero", lambda: -0.0),
    V("tiny", lambda: 1e-12),
    V("True", lambda: True),
    V("int", lambda: 3),
    V("int64_max_seconds", lambda: float(INT64_MAX)),
    V("int64_min_seconds", lambda: float(INT64_MIN)),
    V("past_int64_nanos", lambda: 9.3e9),
    V("1e300", lambda: 1e300),
    V("2**64_int", lambda: 2**64),
]
OPT_SECS = [V("None", lambda: None)] + [v for v in SECS if v.label != "None"]
FLOAT = SECS  # ratios, weights, multipliers: the same hostile numbers
BOOL = [V("None", lambda: None), V("str", lambda: "yes"), V("two", lambda: 2), V("half", lambda: 0.5),
        V("object", object), V("list", lambda: [])]

BODY = _wrong("float", "dict") + [
    V("str", lambda: REQUEST.decode()),
    V("bytearray", lambda: bytearray(REQUEST)),
    V("memoryview", lambda: memoryview(REQUEST)),
    V("empty", lambda: b""),
    V("non_utf8", lambda: b"\xff\xfe"),
    V("nul", lambda: b"\x00"),
    V("deep_array", lambda: b"[" * MiB),
    V("deep_object", lambda: b'{"a":' * 200_000),
    V("huge_number", lambda: b'{"model":"m","messages":[],"n":1e999999,"m":-0,"k":123456789012345678901234567890}'),
    V("lone_surrogate_escapes", lambda: b'{"model":"\\ud800","messages":[{"role":"user","content":"\\udfff"}]}'),
    V("nul_escape", lambda: b'{"model":"a\\u0000b","messages":[{"role":"user","content":"x\\u0000"}]}'),
    V("duplicate_keys", lambda: b'{"model":"a","model":"b","messages":[],"messages":[{"role":"user","content":"x"}]}'),
    V("wrong_shapes", lambda: b'{"model":5,"messages":{"role":"user"},"stream":"yes"}'),
    V("odd_parts", lambda: b'{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":5},{"type":"image_url"},null,7]}]}'),
    V("1MiB_content", lambda: b'{"model":"m","messages":[{"role":"user","content":"' + b"x" * MiB + b'"}]}'),
    V("many_messages", lambda: b'{"model":"m","messages":[' + b",".join([b'{"role":"user","content":"x"}'] * 100_000) + b"]}"),
    V("truncated", lambda: REQUEST[:-7]),
]
OPT_BODY = [V("None", lambda: None)] + [v for v in BODY if v.label != "None"]
METRICS_TEXT = STR + [
    V("nan_value", lambda: "vllm:num_requests_waiting nan\nvllm:gpu_cache_usage_perc NaN\n"),
    V("inf_value", lambda: "vllm:num_requests_waiting +Inf\nvllm:num_requests_running -Inf\n"),
    V("huge_value", lambda: "vllm:num_requests_waiting 1e999\nvllm:gpu_cache_usage_perc -1e308\n"),
    V("bad_labels", lambda: 'vllm:num_requests_waiting{a="\\"} 1\nvllm:num_requests_running{ 2\n'),
    V("many_lines", lambda: "# TYPE x gauge\n" * 100_000),
    V("newlines", lambda: "\n" * MiB),
]
RETRY_AFTER = STR + [
    V(label, (lambda v=v: v)) for label, v in [
        ("negative", "-1"), ("nan_text", "nan"), ("inf_text", "inf"), ("1e308", "1e308"),
        ("20_digits", "99999999999999999999"), ("year_9999", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ("year_1", "Mon, 01 Jan 0001 00:00:00 GMT"), ("hex", "0x10"), ("spaces", " 1 "),
        ("exponent", "1.5e3"), ("int64_max_text", str(INT64_MAX)),
    ]
]

CLOCK = [V("None", lambda: None), V("object", object, TYPE), V("int", lambda: 5, TYPE),
         V("str", lambda: "clock", TYPE),
         V("manual_origin", lambda: sluice.ManualClock(0.0)),  # clocks read in [0, 2^62 ns]
         V("manual_far", lambda: sluice.ManualClock(4.6e9)),
         V("coarse", sluice.coarse_steady_clock), V("tsc", sluice.tsc_clock)]


def _dead_store():
    return sluice.RedisStore(port=1, connect_timeout=0.05, command_timeout=0.05)


STORE = [V("None", lambda: None), V("object", object, TYPE), V("int", lambda: 5, TYPE),
         V("str", lambda: "redis", TYPE), V("dead_store", _dead_store)]

WINDOWS = _wrong("list", "dict") + [
    V("empty", lambda: [], INVALID),
    V("nine", lambda: [sluice.Window.per_second(1)] * 9, INVALID),
    V("list_of_None", lambda: [None], TYPE),
    V("list_of_int", lambda: [5], TYPE),
    V("tuple", lambda: (sluice.Window.per_second(5),)),
    V("iterator", lambda: iter([sluice.Window.per_second(5)])),
    V("limit_int64_max_per_ns", lambda: [sluice.Window(INT64_MAX, 1e-9)]),
    V("burst_int64_max", lambda: [sluice.Window(1, 9.0e9, INT64_MAX)]),
    V("per_day_int64_max", lambda: [sluice.Window.per_day(INT64_MAX)]),
    V("all_int64_max", lambda: [sluice.Window(INT64_MAX, 9.0e9, INT64_MAX)]),
    V("one_per_ns", lambda: [sluice.Window(1, 1e-9)]),
    V("eight_mixed", lambda: [sluice.Window(INT64_MAX, 1e-9), sluice.Window(1, 9.0e9)] * 4),
]


def _long_region():
    name = hs.region_name()
    return name + "x" * (200 - len(name))


REGION = [V("None", lambda: None)] + _wrong("None") + [
    V("empty", lambda: ""),
    V("nul", lambda: "a\x00b"),
    V("surrogate", lambda: "\ud800"),
    V("dotdot_slash", lambda: "../etc/x", INVALID),
    V("slash", lambda: "a/b", INVALID),
    V("201_chars", lambda: "x" * 201, INVALID),
    V("1MiB", lambda: "x" * MiB, INVALID),
    V("200_chars", _long_region),
]
REGION_NAME = _wrong() + [
    V("empty", lambda: ""),
    V("nul", lambda: "a\x00b"),
    V("surrogate", lambda: "\ud800"),
    V("dotdot_slash", lambda: "../etc/x"),
    V("201_chars", lambda: "x" * 201),
    V("not_there", hs.region_name),
]


def _enum(valid: Sequence[str], optional: bool = False) -> List[Value]:
    values = [V("None", lambda: None)] if optional else []
    values += _wrong("None") if optional else _wrong()
    values += [V("empty", lambda: "", INVALID if not optional else REFUSED),
               V("upper", lambda: valid[0].upper(), REFUSED),
               V("nul_suffix", lambda: valid[0] + "\x00", REFUSED),
               V("surrogate", lambda: "\ud800"),
               V("1MiB", lambda: "x" * MiB, REFUSED)]
    values += [V(f"valid_{name}", (lambda n=name: n)) for name in valid]
    return values


LABELS = [V("None", lambda: None, TYPE), V("list", lambda: [], TYPE), V("str", lambda: "x", TYPE),
          V("value_None", lambda: {"k": None}, TYPE), V("key_int", lambda: {1: "v"}, TYPE),
          V("value_int", lambda: {"k": 5}, TYPE), V("empty_strings", lambda: {"": ""}),
          V("nul_surrogate", lambda: {"a\x00b": "\ud800"}), V("model_1MiB", lambda: {"model": "x" * MiB}),
          V("bytes_value", lambda: {"url": b"\xff"})]
WEIGHTS = [V("None", lambda: None, TYPE), V("list", lambda: [], TYPE),
           V("nan", lambda: {"prefix": math.nan}, INVALID), V("inf", lambda: {"prefix": math.inf}),
           V("negative", lambda: {"prefix": -1.0}), V("unknown", lambda: {"bogus": 1.0}, INVALID),
           V("str_value", lambda: {"prefix": "x"}, TYPE), V("None_value", lambda: {"prefix": None}, TYPE),
           V("int_key", lambda: {5: 1.0}, TYPE),
           V("all_1e308", lambda: {"prefix": 1e308, "queue": 1e308, "kv_cache": 1e308, "in_flight": 1e308})]
BREAKER = [V("None", lambda: None), V("empty", lambda: {}), V("int", lambda: 5, TYPE),
           V("list", lambda: [], TYPE), V("window_nan", lambda: {"window": math.nan}, INVALID),
           V("window_str", lambda: {"window": "x"}, TYPE), V("window_None", lambda: {"window": None}, TYPE),
           V("unknown", lambda: {"bogus": 1}, INVALID),
           V("failures_2**64", lambda: {"consecutive_failures": 2**64}, TYPE),
           V("probes_float", lambda: {"half_open_probes": 1.5}, TYPE),
           V("failures_negative", lambda: {"consecutive_failures": -1}),
           V("ratio_nan", lambda: {"failure_ratio": math.nan}, INVALID),
           V("ratio_inf", lambda: {"failure_ratio": math.inf, "slow_call_ratio": -math.inf}),
           V("open_forever", lambda: {"open_time_multiplier": 1e308, "max_open_time": 9.0e9, "open_time": 9.0e9}),
           V("minimum_calls_int64_max", lambda: {"minimum_calls": INT64_MAX, "half_open_probes": INT64_MAX}),
           V("window_tiny", lambda: {"window": 1e-9, "slow_call_duration": 1e-9}),
           V("int_key", lambda: {1: 2}, REFUSED)]
ACTIONS = [V("None", lambda: None, TYPE), V("int", lambda: 5, TYPE),
           V("bad_action", lambda: {"server": "explode"}, INVALID),
           V("bad_failure", lambda: {"bogus": "fatal"}, INVALID),
           V("None_action", lambda: {"server": None}, TYPE), V("int_key", lambda: {5: "fatal"}, TYPE),
           V("empty", lambda: {}), V("valid", lambda: {"server": "fatal", "rate_limited": "retry_same"})]
TARGETS = [V("None", lambda: None, TYPE), V("int", lambda: 5, TYPE), V("str", lambda: "ab", TYPE),
           V("empty", lambda: [], REFUSED), V("list_of_None", lambda: [None], TYPE),
           V("list_of_int", lambda: [5], TYPE), V("empty_dict", lambda: [{}], REFUSED),
           V("name_None", lambda: [{"name": None}], TYPE), V("name_int", lambda: [{"name": 5}], TYPE),
           V("name_empty", lambda: [{"name": ""}]),
           V("unknown_field", lambda: [{"name": "a", "bogus": 1}], INVALID),
           V("balancer_int", lambda: [{"name": "a", "balancer": 5}], TYPE),
           V("balancer_empty", lambda: [{"name": "a", "balancer": sluice.Balancer()}]),
           V("breaker_int", lambda: [{"name": "a", "breaker": 5}], TYPE),
           V("breaker_nan", lambda: [{"name": "a", "breaker": {"window": math.nan}}], INVALID),
           V("duplicate_names", lambda: [{"name": "a"}, {"name": "a"}]),
           V("thousand", lambda: [{"name": f"t{i}"} for i in range(1000)]),
           V("name_1MiB", lambda: [{"name": "x" * MiB}]),
           V("model_bytes", lambda: [{"name": "a", "model": b"\xff"}]),
           V("tuple_of_dicts", lambda: ({"name": "a"},))]
CALLBACK = [V("None", lambda: None), V("int", lambda: 5), V("str", lambda: "x"),
            V("lambda", lambda: (lambda *a: None))]


class _WeirdResponse:
    status_code = 2**64
    headers = 5
    content = 5


def _exc_with(**attrs):
    return type("HostileError", (Exception,), attrs)()


EXC = [V("None", lambda: None), V("int", lambda: 5), V("object", object),
       V("ValueError", lambda: ValueError("x")), V("TimeoutError", TimeoutError),
       V("status_str", lambda: _exc_with(status_code="x")),
       V("status_2**64", lambda: _exc_with(status_code=2**64)),
       V("status_bool", lambda: _exc_with(status_code=True)),
       V("weird_response", lambda: _exc_with(response=_WeirdResponse())),
       V("retry_after_surrogate", lambda: _exc_with(status_code=429, response=type(
           "R", (), {"headers": {"retry-after": "\ud800"}, "content": b"{}"})())),
       V("retry_after_nan", lambda: _exc_with(status_code=429, response=type(
           "R", (), {"headers": {"retry-after": "nan"}, "content": b"{}"})())),
       V("AttemptFailed_junk", lambda: sluice.AttemptFailed(status="x", transport=5, error_body=5,
                                                            retry_after="x"))]
CACHE_KEY = [V("None", lambda: None, TYPE), V("str", lambda: "k", TYPE), V("bytes", lambda: b"{}", TYPE),
             V("int", lambda: 5, TYPE), V("object", object, TYPE)]
LLM_REQUEST = [V("None", lambda: None, TYPE), V("int", lambda: 5, TYPE), V("bytes", lambda: REQUEST, TYPE),
               V("object", object, TYPE)]
STR_LIST = [V("None", lambda: None), V("str", lambda: "user", TYPE), V("list_of_None", lambda: [None], TYPE),
            V("list_of_int", lambda: [5], TYPE), V("int", lambda: 5, TYPE), V("empty_name", lambda: [""]),
            V("surrogate", lambda: ["\ud800"]), V("everything", lambda: ["model", "messages"]),
            V("1MiB", lambda: ["x" * MiB])]
CHUNKS = [V("None", lambda: None, TYPE), V("int", lambda: 5, TYPE), V("bytes", lambda: b"abc", TYPE),
          V("list_of_None", lambda: [None], TYPE), V("list_of_int", lambda: [5], TYPE),
          V("empty", lambda: []), V("empty_chunk", lambda: [b""]), V("non_utf8", lambda: [b"\xff\xfe"]),
          V("str_chunk", lambda: ["data: {}\n\n"]), V("done_only", lambda: [b"data: [DONE]\n\n"]),
          V("content_int", lambda: [b'data: {"choices":[{"delta":{"content":5}}]}\n\n']),
          V("deep", lambda: [b"data: " + b"[" * 100_000 + b"\n\n"]),
          V("ten_thousand", lambda: [b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'] * 10_000)]
ANSWER = [V("None", lambda: None, TYPE), V("int", lambda: 5, TYPE), V("list_of_None", lambda: [None], TYPE),
          V("list_of_int", lambda: [5], TYPE), V("bytearray", lambda: bytearray(b"x")),
          V("str", lambda: "answer"), V("empty", lambda: b""), V("no_chunks", lambda: []),
          V("empty_chunk", lambda: [b""]), V("iterator", lambda: iter([b"a", b"b"])),
          V("1MiB", lambda: b"x" * MiB), V("memoryview", lambda: memoryview(b"x")),
          V("dict", lambda: {b"a": 1})]


def _fn_values(wrap: Callable[[Callable[[], Any]], Any]) -> List[Value]:
    return [V("None", lambda: None), V("int", lambda: 5),
            V("returns_None", lambda: wrap(lambda: None)), V("returns_int", lambda: wrap(lambda: 5)),
            V("returns_list_of_None", lambda: wrap(lambda: [None])),
            V("returns_str", lambda: wrap(lambda: "answer")),
            V("returns_list_of_str", lambda: wrap(lambda: ["data: x\n\n"])),
            V("returns_empty", lambda: wrap(lambda: b"")),
            V("returns_no_chunks", lambda: wrap(lambda: []))]


def _sync(fn):
    return lambda: fn()


def _async(fn):
    async def run():
        return fn()
    return run


def _async_chunks(fn):
    def make():
        async def gen():
            for chunk in fn():
                yield chunk
        return gen()
    return make


ANSWER_FN = _fn_values(_sync)
ANSWER_ASYNC_FN = _fn_values(_async) + [V("sync_function", lambda: (lambda: b"x"))]
CHUNKS_FN = _fn_values(_sync)
CHUNKS_ASYNC_FN = [v for v in _fn_values(_async_chunks) if v.label not in ("returns_None", "returns_int")] + [
    V("returns_bytes_iterable", lambda: (lambda: [b"x"])), V("coroutine", lambda: _async(lambda: b"x"))]


class _Flaky:
    """Fails its first attempt with a connection reset, then answers."""

    def __init__(self, answer: Any = "ok", is_async: bool = False, stream: bool = False):
        self.calls = 0
        self.answer, self.is_async, self.stream = answer, is_async, stream

    def __call__(self, attempt):
        self.calls += 1
        if self.calls == 1:
            if self.is_async:
                async def fail():
                    raise ConnectionResetError("hostile reset")
                return fail() if not self.stream else _failing_agen()
            raise ConnectionResetError("hostile reset")
        if self.stream:
            return _agen([b"a", b"b"]) if self.is_async else iter([b"a", b"b"])
        if self.is_async:
            async def answer():
                return self.answer
            return answer()
        return self.answer


async def _agen(items):
    for item in items:
        yield item


async def _failing_agen():
    raise ConnectionResetError("hostile reset")
    yield b""  # pragma: no cover


ATTEMPT_FN = [V("None", lambda: None), V("int", lambda: 5), V("returns_None", lambda: (lambda a: None)),
              V("takes_nothing", lambda: (lambda: "ok"))]
STREAM_FN = ATTEMPT_FN + [V("returns_int", lambda: (lambda a: 5)), V("returns_empty", lambda: (lambda a: []))]
CLASSIFY = [V("None", lambda: None), V("int", lambda: 5), V("returns_int", lambda: (lambda e: 5)),
            V("returns_unknown_field", lambda: (lambda e: {"bogus": 1})),
            V("status_2**64", lambda: (lambda e: {"status": 2**64})),
            V("retry_after_nan", lambda: (lambda e: {"status": 429, "retry_after": math.nan}), INVALID),
            V("retry_after_1e9", lambda: (lambda e: {"status": 429, "retry_after": 1e9})),
            V("transport_bogus", lambda: (lambda e: {"transport": "bogus"}), INVALID),
            V("error_body_str", lambda: (lambda e: {"status": 400, "error_body": "x"}))]
EXIT_ARG = [V("None", lambda: None), V("int", lambda: 5), V("exception_class", lambda: ValueError),
            V("object", object)]


# ---- how each callable is reached ------------------------------------------------------------------

class Ctx:
    """One case's world: its scope, and the objects it made (kept alive for ``after``)."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.keep: List[Any] = []

    def keep_return(self, obj: Any) -> Any:
        """Keeps `obj` alive for the whole case (``after`` uses it), and returns it."""
        self.keep.append(obj)
        return obj

    def store(self, **options: Any) -> sluice.RedisStore:
        options.setdefault("command_timeout", 0.5)
        return sluice.RedisStore(port=hs.redis_port(), **options)

    def scoped(self, **options: Any) -> Dict[str, Any]:
        """Options that put an admission object in this case's scope."""
        if self.scope == "host":
            options["shared_region"] = hs.region_name()
        elif self.scope in ("cluster", "leased"):
            options.update(redis=self.store(), redis_name=hs.rule_name(), local_share=1)
            if self.scope == "leased":
                options["mode"] = "leased"
        return options


Args = Callable[[Ctx], Dict[str, Any]]


@dataclass
class Spec:
    name: str                                   # the public name: "RateLimiter.try_acquire"
    target: Callable[[Ctx], Any]                # the callable, in this case's world
    args: Args                                  # a valid call's arguments
    kinds: Dict[str, List[Value]]               # each parameter's hostile values
    scopes: Tuple[str, ...] = ("process",)
    after: Optional[Callable[[Ctx, Any], Any]] = None  # exercises what the call returned
    skip: Dict[str, Tuple[str, ...]] = field(default_factory=dict)  # values that are no attack here
    extra: Dict[str, List[Value]] = field(default_factory=dict)     # values only this callable gets
    baseline: hs.Expect = RETURNS
    waits: bool = False                         # also run under gevent (it may wait)
    only_process: Tuple[str, ...] = ()          # parameters whose code does not depend on the scope
    full: bool = False                          # every value of every kind (else CORE for numbers)
    timeout: float = hs.DEFAULT_TIMEOUT


SPECS: List[Spec] = []


def spec(name: str, target, args, kinds=None, **options) -> Spec:
    if not callable(args):
        fixed = dict(args)
        args = lambda ctx: dict(fixed)  # noqa: E731
    s = Spec(name, target, args, kinds or {}, **options)
    SPECS.append(s)
    return s


def _consume(result: Any) -> Any:
    """Runs what a call returned when it is a coroutine, an async generator or a generator."""
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    if inspect.isasyncgen(result):
        async def collect():
            return [item async for item in result]
        return asyncio.run(collect())
    if inspect.isgenerator(result):
        return list(result)
    return result


def _invoke(s: Spec, ctx: Ctx, args: Dict[str, Any]) -> Any:
    fn = s.target(ctx)
    params = hs.signature_params_cached(s.name)
    positional = []
    keywords = dict(args)
    if params is not None:
        for p in params:
            if p.keyword_only or p.name not in keywords:
                break
            positional.append(keywords.pop(p.name))
    result = _consume(fn(*positional, **keywords))
    if s.after is not None:
        s.after(ctx, result)
    return result


def _case_fn(s: Spec, scope: str, param: Optional[str], value: Optional[Value]):
    def run():
        ctx = Ctx(scope)
        args = s.args(ctx)
        if param is not None:
            args[param] = value.make()
        return _invoke(s, ctx, args)
    return run


def _repro(s: Spec, scope: str, param: str, value: Value) -> str:
    return f"{s.name}(..., {param}=<{value.label}>) in {scope} scope, other arguments valid"


# ---- the table ---------------------------------------------------------------------------------------

LIMITER_SCOPES = ("process", "host", "cluster")


def _pending_after(ctx, pending):
    pending.done()
    pending.fileno()
    return pending.result()


def _exercise_clock(ctx, clock):
    rl = sluice.RateLimiter([sluice.Window.per_second(5)], clock=clock)
    rl.try_acquire("k")
    rl.peek("k")
    cl = sluice.ConcurrencyLimiter(1, lease=1.0, clock=clock)
    permit = cl.try_acquire("k")
    clock.advance(2.0)
    cl.reclaim_expired()
    permit.release()
    sluice.LeakyBucket(10, clock=clock).try_acquire("k")
    budget = sluice.TokenBudget([sluice.Window.per_minute(100)], clock=clock)
    budget.try_reserve("k", 10).settle(20)
    budget.peek("k")
    balancer = sluice.Balancer("round_robin", clock=clock)
    balancer.add_endpoint("a")
    balancer.pick(model="").complete(status=429, latency=0.5)
    balancer.endpoints()
    policy = sluice.FallbackPolicy([{"name": "a"}], clock=clock)
    policy.begin().next(status=500)
    policy.targets()
    cache = sluice.ResponseCache(clock=clock)
    key = sluice.cache_key(REQUEST)
    cache.put(key, b"x", ttl=1.0)
    clock.advance(1.0)
    cache.get(key)


def _use_limiter(ctx, rl):
    rl.try_acquire("k")
    rl.try_acquire("k")
    rl.peek("k")
    rl.key_count, rl.memory_bytes, rl.windows, rl.max_keys, rl.cluster  # noqa: B018


def _use_bucket(ctx, bucket):
    bucket.try_acquire("k")
    bucket.drop_idle_keys()
    bucket.rate, bucket.per, bucket.burst, bucket.max_wait, bucket.key_count  # noqa: B018


def _use_concurrency(ctx, cl):
    permit = cl.try_acquire("k")
    cl.in_flight("k")
    if permit:
        permit.renew()
        permit.release()
    cl.reclaim_expired()
    cl.max_in_flight, cl.lease  # noqa: B018


def _use_budget(ctx, budget):
    reservation = budget.try_reserve("k", 1)
    if reservation:
        reservation.settle(2)
    budget.charge("k", 1)
    budget.peek("k")
    budget.drop_idle_keys()


def _use_window(ctx, window):
    _use_limiter(ctx, sluice.RateLimiter([window]))
    budget = sluice.TokenBudget([window])
    budget.try_reserve("k", 1)
    budget.charge("k", INT64_MAX)
    budget.charge("k", INT64_MAX)
    budget.peek("k")


INT_ARGS = {"limit": INT, "burst": INT}

spec("Window", lambda ctx: sluice.Window, {"limit": 5, "period": 1.0, "burst": 0},
     {"limit": INT, "period": SECS, "burst": INT}, after=_use_window)
for _name in ("per_second", "per_minute", "per_hour", "per_day"):
    spec(f"Window.{_name}", (lambda ctx, n=_name: getattr(sluice.Window, n)), {"limit": 5, "burst": 0},
         INT_ARGS, after=_use_window)



def _use_sliding_window(ctx, window):
    _use_limiter(ctx, sluice.RateLimiter([window], max_keys=64))


spec("Window.sliding", lambda ctx: sluice.Window.sliding, {"limit": 5, "period": 60.0},
     {"limit": INT, "period": SECS}, after=_use_sliding_window)

spec("ManualClock", lambda ctx: sluice.ManualClock, {"start": 0.0}, {"start": SECS}, after=_exercise_clock)
for _name, _args, _kind in (("advance", {"seconds": 1.0}, SECS), ("set", {"seconds": 5.0}, SECS),
                            ("advance_nanos", {"nanos": 1000}, INT)):
    spec(f"ManualClock.{_name}",
         (lambda ctx, n=_name: getattr(ctx.keep_return(sluice.ManualClock(100.0)), n)),
         _args, {next(iter(_args)): _kind},
         after=(lambda ctx, result: _exercise_clock(ctx, ctx.keep[0])))
spec("ManualClock.now", lambda ctx: sluice.ManualClock(5.0).now, {})
spec("ManualClock.now_nanos", lambda ctx: sluice.ManualClock(4.6e9).now_nanos, {})
spec("Clock.now", lambda ctx: sluice.coarse_steady_clock().now, {})
spec("Clock.now_nanos", lambda ctx: sluice.steady_clock().now_nanos, {})
spec("steady_clock", lambda ctx: sluice.steady_clock, {}, after=lambda ctx, c: _exercise_clock_read(c))
spec("coarse_steady_clock", lambda ctx: sluice.coarse_steady_clock, {},
     after=lambda ctx, c: _exercise_clock_read(c))
spec("tsc_clock", lambda ctx: sluice.tsc_clock, {}, after=lambda ctx, c: _exercise_clock_read(c))
spec("tsc_clock_status", lambda ctx: sluice.tsc_clock_status, {},
     after=lambda ctx, s: _check_tsc_status(s))


def _check_tsc_status(status):
    assert set(status) == {"uses_tsc", "reason", "ticks_per_second", "last_offset_nanos",
                           "max_half_bracket_nanos", "anchors"}
    assert status["uses_tsc"] == (status["reason"] == "")


def _exercise_clock_read(clock):
    clock.now()
    clock.now_nanos()
    sluice.RateLimiter([sluice.Window.per_second(1)], clock=clock).try_acquire("k")


def _refused_decision(ctx):
    rl = ctx.keep_return(sluice.RateLimiter([sluice.Window(1, YEAR)]))
    rl.try_acquire("k")
    return rl.try_acquire("k")


spec("Decision.headers", lambda ctx: _refused_decision(ctx).headers,
     {"ietf": True, "x_ratelimit": True, "retry_after": True, "policy_name": "sluice"},
     {"ietf": BOOL, "x_ratelimit": BOOL, "retry_after": BOOL, "policy_name": STR},
     extra={"policy_name": [V("header_injection", lambda: "a\r\nX-Evil: 1")]})
spec("Decision.__bool__", lambda ctx: _refused_decision(ctx).__bool__, {})

spec("remove_shared_region", lambda ctx: sluice.remove_shared_region, lambda ctx: {"name": hs.region_name()},
     {"name": REGION_NAME}, baseline=raises(sluice.NotFound))


def _use_store(ctx, store):
    store.stats()
    limiter = sluice.RateLimiter([sluice.Window(10, YEAR)], redis=store, redis_name=hs.rule_name(),
                                 on_failure="deny")
    limiter.try_acquire("k")
    store.stats()


# sentinels= and cluster_nodes=: None, "h:p,h:p", or a list of "host:port" / (host, port).
NODES = [V("None", lambda: None), V("int", lambda: 5, TYPE), V("float", lambda: 1.5, TYPE),
         V("dict", lambda: {}, TYPE), V("object", object, TYPE), V("bytes", lambda: b"h:1", TYPE),
         V("empty_list", lambda: []), V("empty_str", lambda: "", INVALID),
         V("list_of_None", lambda: [None], TYPE), V("list_of_int", lambda: [5], TYPE),
         V("list_of_bytes", lambda: [b"\xff"], TYPE), V("tuple_of_3", lambda: [("h", 1, 2)], TYPE),
         V("bool_port", lambda: [("h", True)], TYPE), V("nan_port", lambda: [("h", math.nan)], TYPE),
         V("port_2**70", lambda: [("h", 2**70)], INVALID), V("port_0", lambda: ["h:0"], INVALID),
         V("surrogate", lambda: ["\ud800"], INVALID), V("nul", lambda: ["a\x00b:1"]),
         V("ipv6", lambda: ["[::1]:1"]), V("ipv6_unbracketed", lambda: ["::1"], INVALID),
         V("two_in_one_item", lambda: ["a:1,b:2"], INVALID),
         V("100k_items", lambda: ["h:1"] * 100000, INVALID), V("1MiB", lambda: "k" * MiB),
         V("generator", lambda: (x for x in ["h:1"]), TYPE)]
URL = _wrong() + STR_EDGES + [
    V("password_in_bad_port", lambda: "redis://:Hunter2@h:abc/0", INVALID),
    V("unclosed_ipv6", lambda: "redis://[::1", INVALID),
    V("bad_escape", lambda: "redis://h?key_prefix=%zz", INVALID),
    V("cluster_db", lambda: "redis+cluster://h/3", INVALID),
    V("sentinel_no_service", lambda: "redis+sentinel://s1", INVALID),
    V("1MiB_host", lambda: "redis://" + "h" * MiB, INVALID),
]


def _store_keywords(ctx) -> Dict[str, Any]:
    return {"host": "127.0.0.1", "port": hs.redis_port(), "unix_socket": None, "username": None,
            "password": None, "db": 0, "connect_timeout": 0.2, "command_timeout": 0.5,
            "reconnect_interval": 0.1, "key_prefix": "hostile", "tls": False, "tls_ca_file": None,
            "tls_cert_file": None, "tls_key_file": None, "tls_server_name": None,
            "tls_verify_peer": True, "sentinel_master": None, "sentinels": None,
            "sentinel_username": None, "sentinel_password": None, "cluster_nodes": None}


spec("RedisStore.from_url", lambda ctx: sluice.RedisStore.from_url,
     lambda ctx: {"url": f"redis://127.0.0.1:{hs.redis_port()}/0?key_prefix=hostile&"
                         "command_timeout=0.5"},
     {"url": URL}, after=_use_store)
spec("RedisStore", lambda ctx: sluice.RedisStore, _store_keywords,
     {"host": STR, "port": INT, "unix_socket": OPT_STR, "username": OPT_STR, "password": OPT_STR,
      "db": INT, "connect_timeout": SECS, "command_timeout": SECS, "reconnect_interval": SECS,
      "key_prefix": STR, "tls": BOOL, "tls_ca_file": OPT_STR, "tls_cert_file": OPT_STR,
      "tls_key_file": OPT_STR, "tls_server_name": OPT_STR, "tls_verify_peer": BOOL,
      "sentinel_master": OPT_STR, "sentinels": NODES, "sentinel_username": OPT_STR,
      "sentinel_password": OPT_STR, "cluster_nodes": NODES},
     after=_use_store,
     # A host or socket path is handed to the resolver as a C string: an embedded NUL would
     # silently connect somewhere else.
     extra={"host": [V("nul_then_loopback", lambda: "127.0.0.1\x00evil.example", INVALID)],
            "unix_socket": [V("nul_path", lambda: "/tmp/sock\x00evil", INVALID),
                            V("past_sun_path", lambda: "/tmp/" + "s" * 200),
                            V("missing", lambda: "/nonexistent/hostile.sock")],
            "port": [V("65536", lambda: 65536), V("2**31", lambda: 2**31)]},
     # Only values that fail fast: a resolvable far-away host would wait out connect_timeout.
     skip={"connect_timeout": ("inf", "1e300", "int64_max_seconds", "past_int64_nanos", "2**64_int"),
           "command_timeout": ("inf", "1e300", "int64_max_seconds", "past_int64_nanos", "2**64_int")})
spec("RedisStore.stats", lambda ctx: ctx.store().stats, {}, scopes=("cluster",))
spec("RedisStore.check", lambda ctx: ctx.store().check, {"timeout": 2.0}, {"timeout": SECS},
     scopes=("cluster",), skip={"timeout": ("inf", "1e300", "int64_max_seconds", "past_int64_nanos",
                                           "2**64_int")})

# The four admission objects: every constructor keyword, in every scope.
_LIMITER_CTOR_KINDS = {"max_keys": INT, "clock": CLOCK, "shared_region": REGION, "redis": STORE,
                       "redis_name": OPT_STR, "rule": OPT_STR, "on_failure": _enum(["allow", "deny", "local"]),
                       "local_share": OPT_INT}

spec("RateLimiter", lambda ctx: sluice.RateLimiter,
     lambda ctx: ctx.scoped(windows=[sluice.Window.per_second(10)], max_keys=1024),
     dict(_LIMITER_CTOR_KINDS, windows=WINDOWS, mode=_enum(["strict", "leased"]), lease_units=INT,
          lease_ttl=SECS),
     scopes=LIMITER_SCOPES + ("leased",), after=_use_limiter)
spec("LeakyBucket", lambda ctx: sluice.LeakyBucket,
     lambda ctx: ctx.scoped(rate=100, per=1.0, burst=1, max_wait=0.5, max_keys=1024),
     dict(_LIMITER_CTOR_KINDS, rate=INT, per=SECS, burst=INT, max_wait=SECS),
     scopes=LIMITER_SCOPES, after=_use_bucket)
spec("ConcurrencyLimiter", lambda ctx: sluice.ConcurrencyLimiter,
     lambda ctx: ctx.scoped(max_in_flight=2, lease=60.0, retry_after=1.0, max_keys=1024),
     dict(_LIMITER_CTOR_KINDS, max_in_flight=INT, lease=SECS, retry_after=SECS),
     scopes=LIMITER_SCOPES, after=_use_concurrency)
spec("TokenBudget", lambda ctx: sluice.TokenBudget,
     lambda ctx: ctx.scoped(windows=[sluice.Window.per_minute(1000)], max_keys=1024),
     dict(_LIMITER_CTOR_KINDS, windows=WINDOWS),
     scopes=LIMITER_SCOPES, after=_use_budget)

# Their methods, in every scope. `timeout`s that mean "wait that long" (inf, 1e300) are no attack:
# the call would rightly wait.
_LONG_WAITS = ("inf", "1e300", "int64_max_seconds", "past_int64_nanos", "2**64_int", "int", "True",
               "nan_subclass")
KC = {"key": KEY, "cost": INT}


def _rate_limiter(ctx, exhausted=False):
    rl = ctx.keep_return(sluice.RateLimiter([sluice.Window(1 if exhausted else 10, YEAR)],
                                            **ctx.scoped(max_keys=1024)))
    if exhausted:
        rl.try_acquire("k")  # the key's window is spent for a year: acquire must give up or wait
    return rl


RL_SCOPES = LIMITER_SCOPES + ("leased",)
spec("RateLimiter.start", lambda ctx: _rate_limiter(ctx).start, {"key": "k", "cost": 1}, KC,
     scopes=RL_SCOPES, after=_pending_after)
for _name in ("allow_without_waiting", "allow", "try_acquire", "decide"):
    spec(f"RateLimiter.{_name}", (lambda ctx, n=_name: getattr(_rate_limiter(ctx), n)),
         {"key": "k", "cost": 1}, KC, scopes=RL_SCOPES, waits=_name != "allow_without_waiting")
spec("RateLimiter.peek", lambda ctx: _rate_limiter(ctx).peek, {"key": "k"}, {"key": KEY}, scopes=RL_SCOPES)
spec("RateLimiter.start_peek", lambda ctx: _rate_limiter(ctx).start_peek, {"key": "k"}, {"key": KEY},
     scopes=RL_SCOPES, after=_pending_after)
spec("RateLimiter.drop_idle_keys", lambda ctx: _rate_limiter(ctx).drop_idle_keys, {}, scopes=RL_SCOPES)
for _name in ("try_acquire_async", "decide_async"):
    spec(f"RateLimiter.{_name}", (lambda ctx, n=_name: getattr(_rate_limiter(ctx), n)),
         {"key": "k", "cost": 1}, KC, scopes=RL_SCOPES)
for _name in ("acquire", "acquire_async"):
    spec(f"RateLimiter.{_name}", (lambda ctx, n=_name: getattr(_rate_limiter(ctx, exhausted=True), n)),
         {"key": "k", "cost": 1, "timeout": 0.01}, dict(KC, timeout=SECS), scopes=RL_SCOPES,
         skip={"timeout": _LONG_WAITS}, baseline=raises(sluice.RateLimited), waits=True,
         only_process=("timeout",))


def _bucket(ctx):
    return ctx.keep_return(sluice.LeakyBucket(1000, max_wait=0.5, **ctx.scoped(max_keys=1024)))


for _name in ("try_acquire", "start", "acquire", "acquire_async", "try_acquire_async"):
    spec(f"LeakyBucket.{_name}", (lambda ctx, n=_name: getattr(_bucket(ctx), n)),
         {"key": "k", "cost": 1}, KC, scopes=LIMITER_SCOPES,
         after=_pending_after if _name == "start" else None, waits=_name in ("try_acquire", "acquire"))
spec("LeakyBucket.drop_idle_keys", lambda ctx: _bucket(ctx).drop_idle_keys, {}, scopes=LIMITER_SCOPES)


def _concurrency(ctx, held=False):
    cl = ctx.keep_return(sluice.ConcurrencyLimiter(1, **ctx.scoped(max_keys=1024)))
    if held:
        ctx.keep.append(cl.try_acquire("k"))  # the key's one slot stays taken
    return cl


def _permit_after(ctx, permit):
    if hasattr(permit, "result"):
        permit = _pending_after(ctx, permit)
    permit.held, permit.expires_at, permit.decision  # noqa: B018
    permit.release()


for _name in ("try_acquire", "start", "try_acquire_async"):
    spec(f"ConcurrencyLimiter.{_name}", (lambda ctx, n=_name: getattr(_concurrency(ctx), n)),
         {"key": "k"}, {"key": KEY}, scopes=LIMITER_SCOPES, after=_permit_after,
         waits=_name == "try_acquire")
spec("ConcurrencyLimiter.in_flight", lambda ctx: _concurrency(ctx).in_flight, {"key": "k"}, {"key": KEY},
     scopes=LIMITER_SCOPES)
spec("ConcurrencyLimiter.start_in_flight", lambda ctx: _concurrency(ctx).start_in_flight, {"key": "k"},
     {"key": KEY}, scopes=LIMITER_SCOPES, after=_pending_after)
spec("ConcurrencyLimiter.reclaim_expired", lambda ctx: _concurrency(ctx).reclaim_expired, {},
     scopes=LIMITER_SCOPES)
for _name in ("acquire", "acquire_async"):
    spec(f"ConcurrencyLimiter.{_name}", (lambda ctx, n=_name: getattr(_concurrency(ctx, held=True), n)),
         {"key": "k", "timeout": 0.01}, {"key": KEY, "timeout": SECS}, scopes=LIMITER_SCOPES,
         skip={"timeout": _LONG_WAITS}, baseline=raises(sluice.RateLimited), waits=True,
         only_process=("timeout",), after=lambda ctx, permit: permit.release())


def _budget(ctx):
    return ctx.keep_return(sluice.TokenBudget([sluice.Window.per_minute(1000)], **ctx.scoped(max_keys=1024)))


def _reservation_after(ctx, reservation):
    if hasattr(reservation, "result"):
        reservation = _pending_after(ctx, reservation)
    reservation.pending, reservation.decision, reservation.estimate  # noqa: B018
    if reservation:
        reservation.settle(1)


def _charge_after(ctx, decision):
    if hasattr(decision, "result"):
        decision = _pending_after(ctx, decision)
    ctx.keep[0].peek("k")


KE = {"key": KEY, "estimate": INT}
for _name in ("try_reserve", "start_reserve", "reserve", "reserve_async"):
    spec(f"TokenBudget.{_name}", (lambda ctx, n=_name: getattr(_budget(ctx), n)),
         {"key": "k", "estimate": 10}, KE, scopes=LIMITER_SCOPES, after=_reservation_after,
         waits=_name in ("try_reserve", "reserve"))
for _name in ("charge", "start_charge"):
    spec(f"TokenBudget.{_name}", (lambda ctx, n=_name: getattr(_budget(ctx), n)),
         {"key": "k", "tokens": 10}, {"key": KEY, "tokens": INT}, scopes=LIMITER_SCOPES,
         after=lambda ctx, d: (_charge_after(ctx, d), ctx.keep[0].charge("k", INT64_MAX),
                               ctx.keep[0].charge("k", INT64_MAX), ctx.keep[0].peek("k")),
         waits=_name == "charge")
spec("TokenBudget.peek", lambda ctx: _budget(ctx).peek, {"key": "k"}, {"key": KEY}, scopes=LIMITER_SCOPES)
spec("TokenBudget.start_peek", lambda ctx: _budget(ctx).start_peek, {"key": "k"}, {"key": KEY},
     scopes=LIMITER_SCOPES, after=_pending_after)
spec("TokenBudget.drop_idle_keys", lambda ctx: _budget(ctx).drop_idle_keys, {}, scopes=LIMITER_SCOPES)


def _permit(ctx):
    return ctx.keep_return(_concurrency(ctx).try_acquire("k"))


for _name in ("renew", "renew_async"):
    spec(f"Permit.{_name}", (lambda ctx, n=_name: getattr(_permit(ctx), n)), {"lease": None},
         {"lease": OPT_SECS}, scopes=LIMITER_SCOPES, waits=_name == "renew",
         after=lambda ctx, r: (ctx.keep[-1].expires_at, ctx.keep[-1].release(), ctx.keep[0].in_flight("k")))
spec("Permit.release", lambda ctx: _permit(ctx).release, {}, scopes=LIMITER_SCOPES)
spec("Permit.__bool__", lambda ctx: _permit(ctx).__bool__, {}, scopes=LIMITER_SCOPES)


def _reservation(ctx):
    return ctx.keep_return(_budget(ctx).try_reserve("k", 10))


for _name in ("settle", "settle_async"):
    spec(f"Reservation.{_name}", (lambda ctx, n=_name: getattr(_reservation(ctx), n)), {"actual": 5},
         {"actual": INT}, scopes=LIMITER_SCOPES, waits=_name == "settle",
         after=lambda ctx, d: (ctx.keep[0].peek("k"), ctx.keep[0].charge("k", 1)))
spec("Reservation.cancel", lambda ctx: _reservation(ctx).cancel, {}, scopes=LIMITER_SCOPES)
spec("Reservation.__bool__", lambda ctx: _reservation(ctx).__bool__, {}, scopes=LIMITER_SCOPES)

for _cls, _make in (("PendingDecision", lambda ctx: _rate_limiter(ctx).start("k")),
                    ("PendingPermit", lambda ctx: _concurrency(ctx).start("k")),
                    ("PendingReservation", lambda ctx: _budget(ctx).start_reserve("k", 5)),
                    ("PendingCount", lambda ctx: _concurrency(ctx).start_in_flight("k"))):
    for _name in ("done", "fileno", "result"):
        spec(f"{_cls}.{_name}", (lambda ctx, m=_make, n=_name: getattr(ctx.keep_return(m(ctx)), n)), {},
             scopes=LIMITER_SCOPES)


# The balancer.
def _use_balancer(ctx, balancer):
    balancer.add_endpoint("a", labels={"model": "m", "url": "u"})
    balancer.add_endpoint("b", weight=3, max_concurrency=2)
    balancer.update_metrics("b", METRICS)
    for _ in range(3):
        with balancer.pick(REQUEST) as pick:
            pick.label("url")
        balancer.pick(model="m").complete(status=200, ttft=0.1, latency=0.2)
        balancer.pick(model="", affinity_key="user-1").complete(error="server", latency=5.0)
    balancer.endpoints()


def _balancer_ctor_args(ctx):
    args = {"strategy": "least_request"}
    if ctx.scope == "host":
        args["shared_region"] = hs.region_name()
    if ctx.scope == "cluster":  # cooldowns shared through Redis
        args.update(redis=ctx.store(), redis_name=hs.rule_name())
    return args


spec("Balancer", lambda ctx: sluice.Balancer, _balancer_ctor_args,
     {"strategy": _enum(["round_robin", "weighted_round_robin", "least_request", "prefix_affinity",
                         "scored", "consistent_hash"]),
      "block_chars": INT, "max_blocks": INT, "kv_capacity_blocks": INT, "imbalance_abs": INT,
      "imbalance_rel": FLOAT, "hot_spot_sigmas": FLOAT, "weights": WEIGHTS, "metrics_max_age": SECS,
      "score_load_slack": FLOAT, "kv_session_half_life": SECS, "kv_full_usage": FLOAT,
      "load_bound": FLOAT, "virtual_nodes": INT, "failures_before_cooldown": INT,
      "cooldown_rate_limited": SECS, "cooldown_auth": SECS, "cooldown_connection": SECS,
      "cooldown_timeout": SECS, "cooldown_server": SECS, "ewma_weight": FLOAT, "seed": INT,
      "clock": CLOCK, "shared_region": REGION, "shared_max_in_flight": INT, "shared_lease": SECS,
      "redis": STORE, "redis_name": OPT_STR, "redis_refresh": SECS,
      "min_shared_affinity_blocks": INT},
     scopes=("process", "host", "cluster"), after=_use_balancer,
     # A host-scope balancer maps 33 MiB: there, the options of the shared counts.
     only_process=("strategy", "block_chars", "max_blocks", "kv_capacity_blocks", "imbalance_abs",
                   "imbalance_rel", "hot_spot_sigmas", "weights", "metrics_max_age",
                   "score_load_slack", "kv_session_half_life", "kv_full_usage", "load_bound",
                   "virtual_nodes", "failures_before_cooldown", "cooldown_rate_limited",
                   "cooldown_auth", "cooldown_connection", "cooldown_timeout", "cooldown_server",
                   "ewma_weight", "seed", "min_shared_affinity_blocks"))


def _balancer(ctx, strategy="weighted_round_robin"):
    options = {"shared_region": hs.region_name()} if ctx.scope == "host" else {}
    balancer = ctx.keep_return(sluice.Balancer(strategy, **options))
    balancer.add_endpoint("a", labels={"model": "m", "url": "u"})
    return balancer


def _picks(ctx, _result):
    balancer = ctx.keep[0]
    for _ in range(4):
        try:
            balancer.pick(REQUEST).complete(status=200, latency=0.1)
        except sluice.Error:
            pass
    balancer.endpoints()


# A host-scope balancer maps 33 MiB: host scope is for the calls that touch the shared in-flight
# counts (pick, complete), the rest runs in process scope.
ENDPOINT = {"id": STR, "weight": INT, "max_concurrency": INT, "kv_capacity_blocks": INT, "labels": LABELS}
BALANCER_SCOPES = ("process", "host")
spec("Balancer.add_endpoint", lambda ctx: _balancer(ctx).add_endpoint,
     {"id": "c", "weight": 1, "max_concurrency": 0, "kv_capacity_blocks": 0, "labels": {}},
     ENDPOINT, scopes=("process",), after=_picks)
spec("Balancer.update_endpoint", lambda ctx: _balancer(ctx).update_endpoint,
     {"id": "a", "weight": 2, "max_concurrency": 0, "kv_capacity_blocks": 0, "labels": {"model": "m"}},
     ENDPOINT, scopes=("process",), after=_picks)
spec("Balancer.remove_endpoint", lambda ctx: _balancer(ctx).remove_endpoint, {"id": "a"}, {"id": STR},
     scopes=("process",), after=_picks)
spec("Balancer.update_metrics", lambda ctx: _balancer(ctx, "scored").update_metrics,
     {"id": "a", "text": METRICS}, {"id": STR, "text": METRICS_TEXT}, scopes=("process",), after=_picks)
spec("Balancer.pick", lambda ctx: _balancer(ctx, "prefix_affinity").pick,
     {"body": REQUEST, "model": "", "affinity_key": ""},
     {"body": OPT_BODY, "model": STR, "affinity_key": STR}, scopes=BALANCER_SCOPES,
     after=lambda ctx, pick: (pick.complete(status=200), _picks(ctx, None)))
spec("Balancer.pick_parsed", lambda ctx: _balancer(ctx, "prefix_affinity").pick_parsed,
     lambda ctx: {"request": sluice.parse_request(REQUEST), "affinity_key": ""},
     {"request": LLM_REQUEST, "affinity_key": STR}, scopes=("process",),
     after=lambda ctx, pick: pick.complete(status=200))
spec("Balancer.endpoints", lambda ctx: _balancer(ctx).endpoints, {}, scopes=("process",))
# Administration: host scope writes the shared holds ("<region>.endpoints"); the id and the reason
# are parsed before any scope is involved.
FAILURE_NAMES = ["rate_limited", "auth", "connect", "reset", "timeout", "server", "client",
                 "context_length", "content_filter", "abandoned"]
spec("Balancer.cooldown", lambda ctx: _balancer(ctx).cooldown,
     {"id": "a", "seconds": 1.0, "reason": None},
     {"id": STR, "seconds": SECS, "reason": _enum(FAILURE_NAMES, optional=True)},
     scopes=BALANCER_SCOPES, only_process=("id", "reason"), after=_picks)
spec("Balancer.eject", lambda ctx: _balancer(ctx).eject, {"id": "a", "seconds": 1.0},
     {"id": STR, "seconds": SECS}, scopes=BALANCER_SCOPES, only_process=("id",), after=_picks)
spec("Balancer.restore", lambda ctx: _balancer(ctx).restore, {"id": "a"}, {"id": STR},
     scopes=BALANCER_SCOPES, after=_picks)


def _pick(ctx):
    return ctx.keep_return(_balancer(ctx, "least_request").pick(model=""))


spec("Pick.complete", lambda ctx: _pick(ctx).complete,  # host scope: the shared in-flight count
     {"status": 200, "error": None, "ttft": 0.1, "latency": 0.2, "prompt_tokens": 10,
      "completion_tokens": 20},
     {"status": INT, "error": _enum(["rate_limited", "auth", "connection", "timeout", "server", "client",
                                     "abandoned"], optional=True),
      "ttft": SECS, "latency": SECS, "prompt_tokens": INT, "completion_tokens": INT},
     scopes=BALANCER_SCOPES, after=_picks, only_process=("ttft", "prompt_tokens", "completion_tokens"))
spec("Pick.label", lambda ctx: _pick(ctx).label, {"name": "url"}, {"name": STR}, scopes=("process",))

# Parsers and keys.
spec("parse_request", lambda ctx: sluice.parse_request, {"body": REQUEST}, {"body": BODY},
     after=lambda ctx, r: (r.model, [(m.role, m.content) for m in r.messages], r.stream, r.prompt_chars,
                           r.estimated_prompt_tokens, sluice.prefix_block_hashes(r)))
spec("prefix_block_hashes", lambda ctx: sluice.prefix_block_hashes,
     lambda ctx: {"request": sluice.parse_request(REQUEST), "block_chars": 8, "max_blocks": 256},
     {"request": LLM_REQUEST, "block_chars": INT, "max_blocks": INT})
spec("parse_engine_metrics", lambda ctx: sluice.parse_engine_metrics, {"text": METRICS},
     {"text": METRICS_TEXT}, after=lambda ctx, m: (m.waiting, m.running, m.kv_usage))
spec("cache_key", lambda ctx: sluice.cache_key, {"body": REQUEST, "namespace": "ns", "exclude": None},
     {"body": BODY, "namespace": STR, "exclude": STR_LIST},
     after=lambda ctx, k: (k.digest, k.canonical, hash(k), k == k))
spec("canonical_json", lambda ctx: sluice.canonical_json, {"json": REQUEST}, {"json": BODY})
spec("completion_to_sse", lambda ctx: sluice.completion_to_sse, {"completion": COMPLETION},
     {"completion": BODY}, after=lambda ctx, chunks: sluice.sse_to_completion(chunks))
spec("sse_to_completion", lambda ctx: sluice.sse_to_completion,
     lambda ctx: {"chunks": sluice.completion_to_sse(COMPLETION)}, {"chunks": CHUNKS})

# ---- usage metering (sluice/usage.h) -------------------------------------------------------------

USAGE_STREAM = (b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,'
                b'"total_tokens":5}}\n\ndata: [DONE]\n\n')
PROVIDER = _wrong() + [V("unknown", lambda: "openai", INVALID), V("empty", lambda: "", INVALID),
                       V("nul", lambda: "auto\x00", INVALID), V("huge", lambda: "a" * MiB, INVALID),
                       V("non_utf8", lambda: "\udcff", TYPE)]
EVENT_BYTES = INT  # zero and below: InvalidArgument (documented)
TOKENS = INT


def _use_usage(ctx, usage):
    if usage is not None:
        (usage.prompt_tokens, usage.total_tokens, usage.reported, usage.provider, repr(usage))


def _use_reader(ctx, reader):
    reader.feed(USAGE_STREAM)
    _use_usage(ctx, reader.finish())
    reader.stats


spec("UsageReader", lambda ctx: sluice.UsageReader, {"provider": "auto", "max_event_bytes": 1024},
     {"provider": PROVIDER, "max_event_bytes": EVENT_BYTES}, after=_use_reader)
spec("UsageReader.feed", lambda ctx: sluice.UsageReader().feed, {"chunk": USAGE_STREAM},
     {"chunk": BODY})
spec("UsageReader.finish", lambda ctx: sluice.UsageReader().finish, {}, after=_use_usage)
spec("read_usage", lambda ctx: sluice.read_usage, {"body": USAGE_STREAM, "provider": "auto"},
     {"body": BODY, "provider": PROVIDER}, after=_use_usage)
spec("include_usage_in_stream", lambda ctx: sluice.include_usage_in_stream,
     {"request_body": b'{"model":"m","messages":[],"stream":true}'}, {"request_body": BODY})
_ESTIMATE_ARGS = {"tokens_per_message": 3, "tokens_per_request": 3, "tokens_per_image": 765,
                  "cjk_chars_per_token": 1.2, "scale": 1.0}
_ESTIMATE_KINDS = {"tokens_per_message": TOKENS, "tokens_per_request": TOKENS,
                   "tokens_per_image": TOKENS, "cjk_chars_per_token": FLOAT, "scale": FLOAT}
spec("estimate_prompt_tokens", lambda ctx: sluice.estimate_prompt_tokens,
     dict(_ESTIMATE_ARGS, request_body=REQUEST), dict(_ESTIMATE_KINDS, request_body=BODY))
spec("estimate_text_tokens", lambda ctx: sluice.estimate_text_tokens,
     dict(_ESTIMATE_ARGS, text="hello"), dict(_ESTIMATE_KINDS, text=STR))

spec("classify", lambda ctx: sluice.classify, {"status": 500, "transport": None, "error_body": b""},
     {"status": INT, "transport": _enum(["connect", "timeout", "reset"], optional=True), "error_body": BODY})
spec("parse_retry_after", lambda ctx: sluice.parse_retry_after, {"value": "120"}, {"value": RETRY_AFTER})
spec("outcome_of", lambda ctx: sluice.outcome_of, lambda ctx: {"exc": ConnectionResetError()}, {"exc": EXC})

# MetricsRegistry (sluice/metrics.h), its handles and the prometheus_client collector, in process
# and host scope. Label values are any str or bytes (rendered as valid UTF-8); NaN observations
# are ignored (documented), so they return.
METRIC_SCOPES = ("process", "host")
METRIC_NAME = STR + [V("dash", lambda: "a-b", INVALID), V("leading_digit", lambda: "1a", INVALID),
                     V("reserved", lambda: "sluice_metrics_dropped_series_total", INVALID)]
METRIC_LABELS = [v for v in LABELS if v.label != "None"] + [
    V("None", lambda: None, RETURNS),  # no labels
    V("reserved_name", lambda: {"__name__": "x"}, INVALID),
    V("le", lambda: {"le": "1"}),  # refused by histograms only
    V("non_utf8_values", lambda: {"a": b"\xff\xfe", "b": "\udcff", "c": "\ud800"}),
    V("many", lambda: {f"l{i}": "v" for i in range(3000)}),
]
BOUNDS = [V("None", lambda: None), V("empty", lambda: [], INVALID), V("str", lambda: "1", TYPE),
          V("dict", lambda: {}, TYPE), V("nan", lambda: [math.nan], INVALID),
          V("inf", lambda: [math.inf], INVALID), V("decreasing", lambda: [2.0, 1.0], INVALID),
          V("str_item", lambda: ["1"], TYPE), V("None_item", lambda: [None], TYPE),
          V("300", lambda: [float(i) for i in range(300)], INVALID), V("tuple", lambda: (1, 2.5))]


def _metrics(ctx):
    return ctx.keep_return(sluice.MetricsRegistry(**ctx.scoped(max_series=64)))


def _use_metrics(ctx, registry):
    registry.counter("c_total", "C.", {"k": "v"}).add()
    registry.histogram("h_seconds", "H.", {}).observe(1e-6)
    _parse_metrics(ctx, registry.render())
    (registry.series_count, registry.dropped_series, registry.memory_bytes)


def _parse_metrics(ctx, text):
    from prometheus_client.parser import text_string_to_metric_families

    list(text_string_to_metric_families(text))


def _use_handle(ctx, handle):
    if handle is not None:
        bool(handle)
        getattr(handle, "value", None) if not isinstance(handle, sluice.Histogram) else (
            handle.count, handle.sum)
    _parse_metrics(ctx, ctx.keep[0].render())


class _TextSource:
    def __init__(self, text):
        self.text = text

    def metrics_text(self):
        return self.text


_SERIES_ARGS = {"name": "m_total", "help": "M.", "labels": {"k": "v"}}
_SERIES_KINDS = {"name": METRIC_NAME, "help": STR, "labels": METRIC_LABELS}
spec("MetricsRegistry", lambda ctx: sluice.MetricsRegistry, lambda ctx: ctx.scoped(max_series=64),
     {"shared_region": REGION, "max_series": INT}, scopes=METRIC_SCOPES, after=_use_metrics)
spec("MetricsRegistry.counter", lambda ctx: _metrics(ctx).counter, _SERIES_ARGS, _SERIES_KINDS,
     scopes=METRIC_SCOPES, after=_use_handle)
spec("MetricsRegistry.gauge", lambda ctx: _metrics(ctx).gauge, _SERIES_ARGS, _SERIES_KINDS,
     scopes=METRIC_SCOPES, after=_use_handle)
spec("MetricsRegistry.histogram", lambda ctx: _metrics(ctx).histogram,
     dict(_SERIES_ARGS, name="m_seconds", bounds=None), dict(_SERIES_KINDS, bounds=BOUNDS),
     scopes=METRIC_SCOPES, after=_use_handle, extra={"labels": [V("le_on_histogram", lambda: {"le": "1"}, INVALID)]},
     skip={"labels": ("le",)})
spec("MetricsRegistry.render", lambda ctx: _metrics(ctx).render, {}, scopes=METRIC_SCOPES,
     after=_parse_metrics)
spec("Counter.add", lambda ctx: _metrics(ctx).counter("c_total", "C.", {}).add, {"n": 1}, {"n": INT},
     scopes=METRIC_SCOPES, after=lambda ctx, _r: _parse_metrics(ctx, ctx.keep[0].render()))
spec("Gauge.set", lambda ctx: _metrics(ctx).gauge("g", "G.", {}).set, {"value": 1}, {"value": INT},
     scopes=METRIC_SCOPES, after=lambda ctx, _r: _parse_metrics(ctx, ctx.keep[0].render()))
spec("Gauge.add", lambda ctx: _metrics(ctx).gauge("g", "G.", {}).add, {"n": 1}, {"n": INT},
     scopes=METRIC_SCOPES, after=lambda ctx, _r: _parse_metrics(ctx, ctx.keep[0].render()))
spec("Histogram.observe", lambda ctx: _metrics(ctx).histogram("h", "H.", {}, [1.0]).observe,
     {"value": 0.5}, {"value": FLOAT}, scopes=METRIC_SCOPES,
     after=lambda ctx, _r: _parse_metrics(ctx, ctx.keep[0].render()),
     skip={"value": ("nan", "nan_subclass")},
     extra={"value": [V("nan_ignored", lambda: math.nan, RETURNS)]})
spec("Counter.__bool__", lambda ctx: _metrics(ctx).counter("c_total", "C.", {}).__bool__, {},
     scopes=METRIC_SCOPES)
spec("Gauge.__bool__", lambda ctx: _metrics(ctx).gauge("g", "G.", {}).__bool__, {},
     scopes=METRIC_SCOPES)
spec("Histogram.__bool__", lambda ctx: _metrics(ctx).histogram("h", "H.", {}).__bool__, {},
     scopes=METRIC_SCOPES)
COLLECTOR_SOURCE = [
    V("None", lambda: None, TYPE), V("int", lambda: 5, TYPE), V("object", object, TYPE),
    V("str", lambda: "x", TYPE),
    V("text_not_str", lambda: _TextSource(5), TYPE),
    V("text_bytes", lambda: _TextSource(b"x_total 1\n")),
    V("text_garbage", lambda: _TextSource('x{a="\\"} 1\n{{{\n'), INVALID),
] + [V(f"text_{v.label}", (lambda v=v: _TextSource(v.make()))) for v in METRICS_TEXT
     if isinstance(v.make(), str)]
spec("PrometheusCollector", lambda ctx: sluice.PrometheusCollector, lambda ctx: {"source": _metrics(ctx)},
     {"source": COLLECTOR_SOURCE}, after=lambda ctx, c: list(c.collect()))
spec("PrometheusCollector.collect", lambda ctx: sluice.PrometheusCollector(_metrics(ctx)).collect, {},
     scopes=METRIC_SCOPES)


# Exceptions with constructors of their own.
# Exception constructors store what they are given: returning is fine; a wrong type must not
# turn into an undocumented error when the exception is used.
spec("RateLimited", lambda ctx: sluice.RateLimited, lambda ctx: {"decision": _refused_decision(ctx),
                                                                 "message": None},
     {"decision": [V("None", lambda: None), V("int", lambda: 5), V("object", object)],
      "message": _doc(OPT_STR)},
     after=lambda ctx, e: (str(e), e.retry_after, e.headers()))
spec("RateLimited.headers", lambda ctx: sluice.RateLimited(_refused_decision(ctx)).headers,
     {"policy_name": "sluice"}, {"policy_name": STR})
spec("Unavailable", lambda ctx: sluice.Unavailable, {"message": "m", "retry_after": 1.0},
     {"message": _doc(STR), "retry_after": _doc(SECS)}, after=lambda ctx, e: (str(e), e.retry_after))


def _raise_in_policy(ctx, exc):
    policy = sluice.FallbackPolicy([{"name": "a"}], max_retries_per_target=0)

    def fn(attempt):
        raise exc
    policy.call(fn)


spec("AttemptFailed", lambda ctx: sluice.AttemptFailed,
     {"status": 500, "transport": None, "error_body": b"", "retry_after": 0.0, "message": ""},
     {"status": _doc(INT), "transport": _doc(_enum(["connect", "timeout", "reset"], optional=True)),
      "error_body": _doc(BODY), "retry_after": _doc(SECS), "message": _doc(STR)},
     after=_raise_in_policy, baseline=raises(sluice.Unavailable))


# The fallback policy.
def _use_policy(ctx, policy):
    call = policy.begin()
    for outcome in ({"status": 500}, {"status": 429, "retry_after": 1.0}, {"transport": "timeout"}):
        if call.kind != "attempt":
            break
        call.next(**outcome)
    (call.kind, call.attempt, call.number, call.target, call.target_index, call.model, call.endpoint_id,
     call.labels, call.delay, call.timeout, call.retry, call.failure, call.status, call.message,
     call.retry_after, call.first_byte_marked)
    policy.targets()
    policy.retries_refused, policy.calls_in_flight, policy.retries_in_flight  # noqa: B018
    try:
        policy.call(lambda attempt: "ok")
    except sluice.Error:
        pass


spec("FallbackPolicy", lambda ctx: sluice.FallbackPolicy,
     {"targets": [{"name": "a", "model": "m"}, {"name": "b"}], "on_breaker_transition": None,
      "max_retries_per_target": 1, "deadline": 120.0, "attempt_timeout": 0.0, "backoff_base": 0.001,
      "backoff_max": 0.002, "retry_budget_ratio": 0.2, "retry_budget_min": 3,
      "context_length_target": None, "breaker": None, "actions": {}, "clock": None},
     {"targets": TARGETS, "on_breaker_transition": CALLBACK, "max_retries_per_target": INT,
      "deadline": SECS, "attempt_timeout": SECS, "backoff_base": SECS, "backoff_max": SECS,
      "retry_budget_ratio": FLOAT, "retry_budget_min": INT, "context_length_target": OPT_STR,
      "breaker": BREAKER, "actions": ACTIONS, "clock": CLOCK},
     after=_use_policy,
     extra={"context_length_target": [V("unknown_target", lambda: "nope", REFUSED)]})


def _policy(ctx, balanced=False):
    targets = [{"name": "a", "model": "m"}, {"name": "b"}]
    if balanced:
        balancer = sluice.Balancer()
        balancer.add_endpoint("e1", labels={"url": "u"})
        targets[0]["balancer"] = balancer
    return ctx.keep_return(sluice.FallbackPolicy(targets, backoff_base=0.001, backoff_max=0.002))


spec("FallbackPolicy.begin", lambda ctx: _policy(ctx).begin, {"deadline": 0.0}, {"deadline": SECS},
     after=lambda ctx, call: call.next(status=500) if call.kind == "attempt" else None)
spec("FallbackPolicy.targets", lambda ctx: _policy(ctx).targets, {})
_CALL_KINDS = {"deadline": SECS, "classify": CLASSIFY}
spec("FallbackPolicy.call", lambda ctx: _policy(ctx).call,
     lambda ctx: {"fn": _Flaky(), "deadline": 0.0, "classify": sluice.outcome_of},
     dict(_CALL_KINDS, fn=ATTEMPT_FN), waits=True)
spec("FallbackPolicy.call_async", lambda ctx: _policy(ctx).call_async,
     lambda ctx: {"fn": _Flaky(is_async=True), "deadline": 0.0, "classify": sluice.outcome_of},
     dict(_CALL_KINDS, fn=ATTEMPT_FN))
spec("FallbackPolicy.stream", lambda ctx: _policy(ctx).stream,
     lambda ctx: {"fn": _Flaky(stream=True), "deadline": 0.0, "classify": sluice.outcome_of},
     dict(_CALL_KINDS, fn=STREAM_FN), waits=True)
spec("FallbackPolicy.stream_async", lambda ctx: _policy(ctx).stream_async,
     lambda ctx: {"fn": _Flaky(is_async=True, stream=True), "deadline": 0.0, "classify": sluice.outcome_of},
     dict(_CALL_KINDS, fn=STREAM_FN))


def _call(ctx):
    return ctx.keep_return(_policy(ctx, balanced=ctx.scope == "balanced").begin())


def _after_next(ctx, call):
    (call.kind, call.target, call.model, call.endpoint_id, call.labels, call.delay, call.timeout,
     call.failure, call.status, call.message, call.retry_after)
    if call.kind == "attempt":
        call.next(status=200)
    ctx.keep[0].targets()


spec("FallbackCall.next", lambda ctx: _call(ctx).next,
     {"status": 500, "transport": None, "error_body": b"", "retry_after": 0.0, "latency": 0.0, "ttft": 0.0},
     {"status": INT, "transport": _enum(["connect", "timeout", "reset"], optional=True), "error_body": BODY,
      "retry_after": SECS, "latency": SECS, "ttft": SECS},
     scopes=("process", "balanced"), after=_after_next)
spec("FallbackCall.mark_first_byte", lambda ctx: _call(ctx).mark_first_byte, {},
     scopes=("process", "balanced"), after=lambda ctx, r: ctx.keep[-1].next(status=500))


# The response cache.
def _use_cache(ctx, cache):
    key = sluice.cache_key(REQUEST)
    cache.put(key, b"answer")
    cache.get(key)
    cache.get_as(key, stream=True)
    cache.get_or_fetch(sluice.cache_key(REQUEST, "other"), lambda: b"x")
    list(cache.stream_or_fetch(sluice.cache_key(REQUEST, "stream"), lambda: [b"data: x\n\n"]))
    cache.erase(key)
    cache.stats()


def _cache_ctor_args(ctx):
    args = {"max_bytes": MiB, "shards": 4, "default_ttl": 60.0, "protected_share": 0.8, "admission": True,
            "store_tool_calls": True, "redis": None, "redis_name": "cache", "clock": None}
    if ctx.scope == "cluster":
        args.update(redis=ctx.store(), redis_name=hs.rule_name())
    return args


CACHE_SCOPES = ("process", "cluster")
spec("ResponseCache", lambda ctx: sluice.ResponseCache, _cache_ctor_args,
     {"max_bytes": INT, "shards": INT, "default_ttl": SECS, "protected_share": FLOAT, "admission": BOOL,
      "store_tool_calls": BOOL, "redis": STORE, "redis_name": STR, "clock": CLOCK},
     scopes=CACHE_SCOPES, after=_use_cache)


def _cache(ctx):
    options = {"redis": ctx.store(), "redis_name": hs.rule_name()} if ctx.scope == "cluster" else {}
    cache = ctx.keep_return(sluice.ResponseCache(max_bytes=4 * MiB, **options))
    cache.put(sluice.cache_key(REQUEST), b"stored answer")
    return cache


def _key(ctx):
    return {"key": sluice.cache_key(REQUEST)}


def _cache_after(ctx, _result):
    """The key is still usable: one more caller gets an answer (a lead left dangling would make
    it wait forever)."""
    cache, key = ctx.keep[0], sluice.cache_key(REQUEST, "after")
    cache.get(sluice.cache_key(REQUEST))
    cache.get_or_fetch(key, lambda: b"again")
    list(cache.stream_or_fetch(sluice.cache_key(REQUEST, "after-stream"), lambda: [b"data: y\n\n"]))
    cache.stats()


spec("ResponseCache.get", lambda ctx: _cache(ctx).get, _key, {"key": CACHE_KEY}, scopes=CACHE_SCOPES)
spec("ResponseCache.erase", lambda ctx: _cache(ctx).erase, _key, {"key": CACHE_KEY}, scopes=CACHE_SCOPES)
spec("ResponseCache.stats", lambda ctx: _cache(ctx).stats, {}, scopes=CACHE_SCOPES)
spec("ResponseCache.get_as", lambda ctx: _cache(ctx).get_as, lambda ctx: dict(_key(ctx), stream=True),
     {"key": CACHE_KEY, "stream": BOOL}, scopes=CACHE_SCOPES)
spec("ResponseCache.put", lambda ctx: _cache(ctx).put,
     lambda ctx: {"key": sluice.cache_key(REQUEST, "put"), "answer": b"x", "ttl": 0.0},
     {"key": CACHE_KEY, "answer": ANSWER, "ttl": SECS}, scopes=CACHE_SCOPES,
     after=lambda ctx, stored: (ctx.keep[0].get(sluice.cache_key(REQUEST, "put")), _cache_after(ctx, None)))
_FETCH_KINDS = {"key": CACHE_KEY, "ttl": SECS, "store": BOOL, "no_cache": BOOL}


def _fetch_args(fn):
    return lambda ctx: {"key": sluice.cache_key(REQUEST, "miss"), "fn": fn(), "ttl": 0.0, "store": True,
                        "no_cache": False}


spec("ResponseCache.get_or_fetch", lambda ctx: _cache(ctx).get_or_fetch, _fetch_args(lambda: lambda: b"x"),
     dict(_FETCH_KINDS, fn=ANSWER_FN), scopes=CACHE_SCOPES, after=_cache_after, waits=True)
spec("ResponseCache.get_or_fetch_async", lambda ctx: _cache(ctx).get_or_fetch_async,
     _fetch_args(lambda: _async(lambda: b"x")), dict(_FETCH_KINDS, fn=ANSWER_ASYNC_FN),
     scopes=CACHE_SCOPES, after=_cache_after)
spec("ResponseCache.stream_or_fetch", lambda ctx: _cache(ctx).stream_or_fetch,
     _fetch_args(lambda: lambda: [b"data: a\n\n"]), dict(_FETCH_KINDS, fn=CHUNKS_FN),
     scopes=CACHE_SCOPES, after=_cache_after, waits=True)
spec("ResponseCache.stream_or_fetch_async", lambda ctx: _cache(ctx).stream_or_fetch_async,
     _fetch_args(lambda: _async_chunks(lambda: [b"data: a\n\n"])), dict(_FETCH_KINDS, fn=CHUNKS_ASYNC_FN),
     scopes=CACHE_SCOPES, after=_cache_after)


# ---- the Governor (sluice/_governor.py over bind_governor.cc) ------------------------------------
# One policy per scope: every rule kind (requests, tokens, concurrency, shaping), header and CIDR
# matches, key limits, the cache and a fallback chain. The policy's name is unique to the case in
# host scope (its regions are "<name>.<rule>.<kind>.<digest>": the runner removes them with the
# case's other regions) and in cluster scope (its Redis names).
GOV_SCOPES = ("process", "host", "cluster")


def _gov_policy(ctx: Ctx) -> str:
    scope = ctx.scope if ctx.scope in GOV_SCOPES else "process"
    name = hs.region_name() if scope == "host" else (hs.rule_name() if scope == "cluster" else "hostile")
    where = {"process": "",
             "host": "\n    scope: host\n    max_keys: 64",
             "cluster": "\n    scope: cluster\n    store: main\n    on_failure: deny"}[scope]
    stores = (f"stores: [{{name: main, host: 127.0.0.1, port: {hs.redis_port()}, command_timeout: 500ms}}]\n"
              if scope == "cluster" else "")
    metrics = f"metrics: {{shared_region: {name}.metrics}}\n" if scope == "host" else ""
    return (f"version: 1\nname: {name}\n{stores}{metrics}rules:\n"
            f"  - name: rpm\n    key: [tenant]\n    requests: [1000/1d]{where}\n"
            f"    key_limits: [{{key: gold, requests: [2000/1d]}}]\n"
            f"  - name: tpm\n    key: [tenant]\n    tokens: [1000000/1d]{where}\n"
            f"  - name: cap\n    key: [app]\n    concurrency: 4{where}\n"
            f"  - name: plan\n    match: {{header.X-Plan: free, ip: {{cidr: [10.0.0.0/8, 'fd00::/8'], negate: true}}}}\n"
            f"    key: ip\n    requests: [1000/1d]{where}\n"
            f"  - name: pace\n    match: {{model: paced}}\n    shaping: {{rate: 1000, max_wait: 1s}}\n"
            "cache: {max_bytes: 1MiB}\n"
            "fallbacks:\n  - {name: chain, targets: [{name: a, model: m}, {name: b}], backoff_base: 1ms,"
            " backoff_max: 2ms}\n")


def _governor(ctx: Ctx) -> sluice.Governor:
    return ctx.keep_return(sluice.Governor(_gov_policy(ctx)))


ATTRS = {"tenant": "t", "app": "a", "model": "m"}


def _use_admission(ctx, a):
    (bool(a), a.allowed, a.rule, a.decision, a.delay, a.matched_rules, a.token_estimate, a.headers())
    if a:
        a.cached_answer()
        a.store_answer(COMPLETION)
        try:
            call = a.begin_call()
        except sluice.NotFound:
            pass
        else:
            call.next(status=200)
    a.settle(1)
    a.cancel()
    a.release()


def _use_governor(ctx, g):
    """The governor still decides, renders parseable metrics, reloads and takes key limits."""
    g = g if isinstance(g, sluice.Governor) else ctx.keep[0]
    with g.admit(ATTRS, headers={"X-Plan": "free"}, ip="192.0.2.1", body=REQUEST) as a:
        _use_admission(ctx, a)
    if "rpm" in g.rule_names:  # the case's own policy (a hostile one may have other rules)
        g.set_key_limits("rpm", "k", requests=[sluice.Window.per_day(5)])
        g.clear_key_limits("rpm", "k")
    _parse_metrics(ctx, g.metrics_text())
    (g.waits_for_redis, g.rule_names)


def _gov_after(ctx, result):
    if isinstance(result, sluice.Admission):
        _use_admission(ctx, result)
    _use_governor(ctx, ctx.keep[0])


def _yaml_bomb_aliases():
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\nrules: *a9\n"


def _yaml_bomb_in_match():
    lines = ["version: 1", "x0: &x0 [v, v, v, v, v, v, v, v, v, v]"]
    for i in range(1, 10):
        lines.append(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\nrules:\n  - name: r\n    match: {model: *x9}\n    requests: [1/1m]\n"


def _many_rules(n):
    return "version: 1\nrules:\n" + "".join(f"  - {{name: r{i}, key: [tenant], requests: [5/1m]}}\n"
                                             for i in range(n))


POLICY_TEXT = [V("None", lambda: None)] + _wrong("None") + [
    V("empty", lambda: "", REFUSED),
    V("nul", lambda: "version: 1\x00\nrules: []\n", REFUSED),
    V("surrogate", lambda: "version: 1\nname: \ud800\n", TYPE),
    V("non_utf8_bytes", lambda: b"version: 1\nname: \xff\xfe\n"),
    V("bytes_valid", lambda: b"version: 1\nrules: [{name: r, requests: [1/1m]}]\n"),
    V("1MiB", lambda: "k" * MiB, REFUSED),
    V("1MiB_value", lambda: "version: 1\nname: " + "n" * MiB + "\n", REFUSED),
    V("deep_flow", lambda: "version: 1\nrules: " + "[" * 100_000, REFUSED),
    V("deep_block", lambda: "version: 1\nrules:\n" + "".join(" " * i + "- \n" for i in range(5000)), REFUSED),
    V("deep_mapping", lambda: "version: 1\nx: " + "{a: " * 100_000, REFUSED),
    V("alias_bomb", _yaml_bomb_aliases, REFUSED),
    V("alias_bomb_in_match", _yaml_bomb_in_match),
    V("anchor_cycle_like", lambda: "version: 1\nrules: &r [*r]\n", REFUSED),
    V("merge_key", lambda: "version: 1\nw: &w {limit: 1, per: 1m}\nrules: [{name: r, requests: [{<<: *w}]}]\n",
      REFUSED),
    V("two_documents", lambda: "version: 1\n---\nversion: 1\n", REFUSED),
    V("json", lambda: '{"version": 1, "rules": [{"name": "r", "requests": ["5/1m"]}]}'),
    V("huge_numbers", lambda: "version: 1\nrules: [{name: r, requests: [99999999999999999999999/1s],"
      " max_keys: 1e999, concurrency: -0}]\n", REFUSED),
    V("int64_limits", lambda: f"version: 1\nrules: [{{name: r, requests: [{{limit: {INT64_MAX}, per: 366d,"
      f" burst: {INT64_MAX}}}], tokens: [{{limit: {INT64_MAX}, per: 1ns}}], concurrency: {INT64_MAX}}}]\n"),
    V("thousand_rules", lambda: _many_rules(1000)),
    V("duplicate_keys", lambda: "version: 1\nversion: 1\nrules: []\n", REFUSED),
    V("tabs_and_crlf", lambda: "version: 1\r\nrules:\r\n\t- name: r\r\n", REFUSED),
    V("bad_cidr", lambda: "version: 1\nrules: [{name: r, match: {ip: {cidr: [300.1.1.1/99, '::/129', x]}},"
      " requests: [1/1m]}]\n", REFUSED),
    V("store_port_1", lambda: "version: 1\nstores: [{name: s, port: 1, connect_timeout: 50ms,"
      " command_timeout: 50ms}]\nrules: [{name: r, requests: [1/1m], scope: cluster, store: s,"
      " on_failure: deny}]\n"),
]


def _real_policy_path():
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".yaml")
    os.write(fd, b"version: 1\nrules: [{name: r, requests: [1/1m]}]\n")
    os.close(fd)
    return path


def _fifo_path():
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "policy.fifo")
    os.mkfifo(path)
    return path


POLICY_PATH = [V("None", lambda: None)] + _wrong("None") + [
    V("empty", lambda: "", REFUSED),  # $SLUICE_CONFIG is not set in the runner
    V("nul_then_real", lambda: _real_policy_path() + "\x00evil", INVALID),
    V("surrogate", lambda: "/tmp/\ud800.yaml", TYPE),
    V("non_utf8_bytes", lambda: b"/tmp/\xff\xfe", REFUSED),
    V("1MiB", lambda: "/" + "k" * MiB, REFUSED),
    V("missing", lambda: "/nonexistent/policy.yaml", raises(sluice.NotFound)),
    V("directory", lambda: "/tmp", REFUSED),
    V("dev_zero", lambda: "/dev/zero", REFUSED),
    V("dev_urandom", lambda: "/dev/urandom", REFUSED),
    V("fifo", _fifo_path, REFUSED),
    V("proc_self_mem", lambda: "/proc/self/mem", REFUSED),
    V("real", _real_policy_path, RETURNS),
]


def _text_or_path(fn):
    """``fn`` with the policy text left out when a path is given (both together is one
    documented refusal; this way every path value reaches the file loader)."""
    def call(policy=None, *, path=None, **options):
        return fn(None if path is not None else policy, path=path, **options)
    return call


def _gov_args(ctx, **extra):
    return dict({"policy": _gov_policy(ctx), "path": None, "source": "hostile.yaml", "clock": None}, **extra)


spec("Governor", lambda ctx: _text_or_path(lambda *a, **k: ctx.keep_return(sluice.Governor(*a, **k))),
     _gov_args, {"policy": POLICY_TEXT, "path": POLICY_PATH, "source": STR, "clock": CLOCK},
     scopes=GOV_SCOPES, after=_use_governor, only_process=("policy", "path", "source", "clock"))

MAPPING = [V("None", lambda: None), V("int", lambda: 5, TYPE), V("str", lambda: "tenant", TYPE),
           V("list_of_pairs", lambda: [("tenant", "t")], TYPE), V("object", object, TYPE),
           V("empty", lambda: {}), V("key_int", lambda: {1: "v"}, TYPE),
           V("value_None", lambda: {"tenant": None}, TYPE), V("value_int", lambda: {"tenant": 5}, TYPE),
           V("value_bytes", lambda: {"tenant": b"t"}, TYPE),
           V("value_surrogate", lambda: {"tenant": "\ud800"}, TYPE),
           V("key_surrogate", lambda: {"\udcff": "t"}, TYPE),
           V("nul", lambda: {"tenant": "a\x00b", "a\x00": "\x00"}),
           V("empty_strings", lambda: {"": ""}),
           V("value_1MiB", lambda: {"tenant": "t" * MiB, "model": "m" * MiB}),
           V("key_1MiB", lambda: {"k" * MiB: "v"}),
           V("ten_thousand", lambda: {f"a{i}": "v" for i in range(10_000)}),
           V("str_subclass", lambda: {StrSub("tenant"): StrSub("t")}),
           V("mapping_proxy", lambda: __import__("types").MappingProxyType({"tenant": "t"})),
           V("header_like", lambda: {"X-Plan": "free", "x-plan": "paid", "X-PLAN\r\n": "\r\n"})]
IP = OPT_STR + [V("v4", lambda: "192.0.2.1"), V("v6", lambda: "fd00::1"),
                V("mapped_v4", lambda: "::ffff:10.0.0.1"), V("cidr_text", lambda: "10.0.0.0/8"),
                V("garbage", lambda: "999.1.1.1"), V("v6_zone", lambda: "fe80::1%eth0")]
TOKEN_ESTIMATE = INT + [V("nan_float", lambda: math.nan, TYPE), V("inf", lambda: math.inf, TYPE),
                        V("huge_float", lambda: 1e300, TYPE)]
_ADMIT_ARGS = {"attributes": ATTRS, "headers": {"X-Plan": "free"}, "ip": "192.0.2.1", "body": REQUEST,
               "token_estimate": -1}
_ADMIT_KINDS = {"attributes": MAPPING, "headers": MAPPING, "ip": IP, "body": OPT_BODY,
                "token_estimate": TOKEN_ESTIMATE}
spec("Governor.admit", lambda ctx: _governor(ctx).admit, _ADMIT_ARGS, _ADMIT_KINDS, scopes=GOV_SCOPES,
     after=_gov_after, waits=True)
spec("Governor.admit_async", lambda ctx: _governor(ctx).admit_async, _ADMIT_ARGS, _ADMIT_KINDS,
     scopes=GOV_SCOPES, after=_gov_after)


def _gov_fn(is_async=False):
    """The call's function: a 429 on the first target, then an answer with usage."""
    def fn(attempt):
        if attempt is not None and attempt.target == "a":
            raise sluice.AttemptFailed(status=429)
        return {"usage": {"total_tokens": 7}}

    if not is_async:
        return fn

    async def afn(attempt):
        return fn(attempt)
    return afn


USAGE_FN = [V("None", lambda: None), V("int", lambda: 5), V("returns_None", lambda: (lambda a: None)),
            V("returns_str", lambda: (lambda a: "x")), V("returns_negative", lambda: (lambda a: -5)),
            V("returns_2**64", lambda: (lambda a: 2**64)), V("returns_nan", lambda: (lambda a: math.nan)),
            V("raises", lambda: (lambda a: 1 / 0), raises(ZeroDivisionError))]
_CALL_GOV_KINDS = dict(_ADMIT_KINDS, usage=USAGE_FN, classify=CLASSIFY)
for _name, _is_async in (("call", False), ("call_async", True)):
    spec(f"Governor.{_name}", (lambda ctx, n=_name: getattr(_governor(ctx), n)),
         (lambda ctx, a=_is_async: dict(_ADMIT_ARGS, fn=_gov_fn(a), usage=sluice._governor._usage_of,
                                        classify=sluice.outcome_of)),
         dict(_CALL_GOV_KINDS, fn=ATTEMPT_FN if not _is_async else
              [V("None", lambda: None), V("int", lambda: 5), V("sync_function", lambda: (lambda a: "ok")),
               V("returns_None", lambda: _async(lambda: None))]),
         scopes=GOV_SCOPES, after=lambda ctx, r: _use_governor(ctx, ctx.keep[0]), waits=not _is_async,
         only_process=("fn", "usage", "classify", "body"),
         extra={"fn": [V("cached_twice", lambda: (lambda a: REQUEST))]})
def _gov_stream_fn(is_async=False):
    """The stream's function: a 429 on the first target, then SSE chunks with usage."""
    def fn(attempt):
        if attempt is not None and attempt.target == "a":
            raise sluice.AttemptFailed(status=429)
        return iter([b'data: {"object":"chat.completion.chunk","choices":[],"usage":'
                     b'{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n',
                     b"data: [DONE]\n\n"])

    if not is_async:
        return fn

    async def afn(attempt):
        chunks = fn(attempt)

        async def gen():
            for chunk in chunks:
                yield chunk
        return gen()
    return afn


PROVIDER_NAME = STR + [V("unknown", lambda: "bogus", INVALID), V("anthropic", lambda: "anthropic")]
for _name, _is_async in (("stream", False), ("stream_async", True)):
    spec(f"Governor.{_name}", (lambda ctx, n=_name: getattr(_governor(ctx), n)),
         (lambda ctx, a=_is_async: dict(_ADMIT_ARGS, fn=_gov_stream_fn(a), provider="auto",
                                        classify=sluice.outcome_of)),
         dict(_ADMIT_KINDS, provider=PROVIDER_NAME, classify=CLASSIFY,
              fn=STREAM_FN if not _is_async else
              [V("None", lambda: None), V("int", lambda: 5),
               V("sync_function", lambda: (lambda a: [b"x"])),
               V("returns_None", lambda: _async(lambda: None))]),
         scopes=GOV_SCOPES, after=lambda ctx, r: _use_governor(ctx, ctx.keep[0]),
         waits=not _is_async, only_process=("fn", "provider", "classify", "body"))
spec("Governor.reload", lambda ctx: _text_or_path(_governor(ctx).reload),
     lambda ctx: {"policy": _gov_policy(ctx), "path": None, "source": "reload.yaml"},
     {"policy": POLICY_TEXT, "path": POLICY_PATH, "source": STR}, scopes=GOV_SCOPES,
     after=_gov_after, only_process=("policy", "path", "source"),
     extra={"policy": [V("drop_all_rules", lambda: "version: 1\n")]})
_UNSET_OR_WINDOWS = [V("empty", lambda: [])] + [v for v in WINDOWS if v.label != "empty"]
_KEY_LIMIT_KINDS = {"rule": STR, "key": KEY, "requests": _UNSET_OR_WINDOWS, "tokens": _UNSET_OR_WINDOWS,
                    "concurrency": INT}
spec("Governor.set_key_limits", lambda ctx: _governor(ctx).set_key_limits,
     {"rule": "rpm", "key": "k", "requests": [sluice.Window.per_day(5)], "tokens": [], "concurrency": 0},
     _KEY_LIMIT_KINDS, scopes=GOV_SCOPES, after=_gov_after, only_process=("rule", "tokens", "concurrency"),
     extra={"rule": [V("unknown", lambda: "nope", raises(sluice.NotFound))],
            "concurrency": [V("above_rule", lambda: 1000)]})
spec("Governor.clear_key_limits", lambda ctx: _governor(ctx).clear_key_limits, {"rule": "rpm", "key": "k"},
     {"rule": STR, "key": KEY}, scopes=GOV_SCOPES, after=_gov_after,
     extra={"rule": [V("unknown", lambda: "nope", raises(sluice.NotFound))]})
spec("Governor.metrics_text", lambda ctx: _governor(ctx).metrics_text, {}, scopes=GOV_SCOPES,
     after=_parse_metrics)


def _admission(ctx, refused=False):
    g = _governor(ctx)
    if refused:
        for _ in range(5):
            ctx.keep.append(g.admit({"app": "a"}))  # the cap is 4: the fifth is refused
    return ctx.keep_return(g.admit(ATTRS, body=REQUEST))


def _after_admission_call(ctx, _result):
    a = ctx.keep[-1]
    _use_admission(ctx, a)
    _use_governor(ctx, ctx.keep[0])


SETTLE_USAGE = INT + [V("usage", lambda: sluice.read_usage(COMPLETION)),
                      V("usage_stream", lambda: sluice.read_usage(USAGE_STREAM)),
                      V("float_2.5", lambda: 2.5, TYPE)]
for _name, _args, _kinds in (("__bool__", {}, {}), ("headers", {}, {}), ("cached_answer", {}, {}),
                             ("store_answer", {"answer": COMPLETION}, {"answer": ANSWER}),
                             ("begin_call", {"deadline": 0.0}, {"deadline": SECS}),
                             ("settle", {"usage": 5}, {"usage": SETTLE_USAGE}),
                             ("cancel", {}, {}), ("release", {}, {})):
    spec(f"Admission.{_name}", (lambda ctx, n=_name: getattr(_admission(ctx), n)), _args, _kinds,
         scopes=GOV_SCOPES, after=_after_admission_call, only_process=tuple(_kinds))


# RuleRateLimited: built by the facade from a refused Admission.
def _refused_admission(ctx):
    g = _governor(ctx)
    for _ in range(4):
        ctx.keep.append(g.admit({"app": "a"}))
    return ctx.keep_return(g.admit({"app": "a"}))


spec("RuleRateLimited", lambda ctx: sluice.RuleRateLimited, lambda ctx: {"admission": _refused_admission(ctx)},
     {"admission": [V("None", lambda: None, TYPE), V("int", lambda: 5, TYPE), V("object", object, TYPE),
                    V("decision", lambda: sluice.RateLimiter([sluice.Window(1, YEAR)]).try_acquire("k"), TYPE),
                    V("allowed_admission", lambda: sluice.Governor("version: 1\n").admit())]},
     after=lambda ctx, e: (str(e), e.rule, e.retry_after, e.headers(), e.headers("p")))
spec("RuleRateLimited.headers",
     lambda ctx: sluice.RuleRateLimited(_refused_admission(ctx)).headers,
     {"policy_name": None}, {"policy_name": OPT_STR},
     extra={"policy_name": [V("header_injection", lambda: "a\r\nX-Evil: 1")]})


# PolicyWatcher.
def _watched(ctx):
    path = _real_policy_path()
    g = ctx.keep_return(sluice.Governor(path=path))
    return g, path


def _watcher_after(ctx, w):
    w = w if isinstance(w, sluice.PolicyWatcher) else ctx.keep[-1]
    w.check()
    (w.reloads, w.errors)
    w.stop()


def _new_watcher(ctx):
    g, path = _watched(ctx)
    return ctx.keep_return(sluice.PolicyWatcher(g, path, interval=0.01))


spec("PolicyWatcher", lambda ctx: (lambda *a, **k: ctx.keep_return(sluice.PolicyWatcher(*a, **k))),
     lambda ctx: dict(zip(("governor", "path"), _watched(ctx)), interval=0.01, on_reload=None, on_error=None),
     {"governor": [V("None", lambda: None, TYPE), V("int", lambda: 5, TYPE), V("object", object, TYPE),
                   V("core_governor", lambda: sluice._core.Governor("version: 1\n"))],
      "path": [V("None", lambda: None, TYPE), V("int", lambda: 5, TYPE), V("list", lambda: [], TYPE),
               V("empty", lambda: ""), V("nul", lambda: "a\x00b"), V("missing", lambda: "/nonexistent/p.yaml"),
               V("bytes", lambda: b"/tmp"), V("pathlike", lambda: __import__("pathlib").Path("/tmp/p.yaml")),
               V("surrogate", lambda: "/tmp/\ud800"), V("fifo", _fifo_path), V("dev_zero", lambda: "/dev/zero"),
               V("1MiB", lambda: "/" + "k" * MiB)],
      "interval": [V("None", lambda: None, TYPE), V("str", lambda: "1", TYPE), V("True", lambda: True, TYPE),
                   V("nan", lambda: math.nan, INVALID), V("inf", lambda: math.inf, INVALID),
                   V("zero", lambda: 0, INVALID), V("minus_one", lambda: -1.0, INVALID),
                   V("2**64", lambda: 2**64, INVALID), V("min", lambda: 0.01), V("int", lambda: 1)],
      "on_reload": CALLBACK[:1] + [V("int", lambda: 5, TYPE), V("lambda", lambda: (lambda: None))],
      "on_error": CALLBACK[:1] + [V("int", lambda: 5, TYPE), V("raises", lambda: (lambda e: 1 / 0))]},
     after=_watcher_after)
spec("PolicyWatcher.check", lambda ctx: _new_watcher(ctx).check, {}, after=lambda ctx, r: ctx.keep[-1].stop())
spec("PolicyWatcher.start", lambda ctx: _new_watcher(ctx).start, {}, after=lambda ctx, w: w.stop(), waits=True)
spec("PolicyWatcher.stop", lambda ctx: _new_watcher(ctx).stop, {}, after=lambda ctx, r: ctx.keep[-1].check())


def _run_async_briefly(ctx):
    """run_async as a task that stop() ends (awaited alone it would watch forever)."""
    w = _new_watcher(ctx)

    async def run():
        task = asyncio.get_running_loop().create_task(w.run_async())
        await asyncio.sleep(0.05)
        w.stop()
        await asyncio.wait_for(task, 30)
    return run


spec("PolicyWatcher.run_async", _run_async_briefly, {}, after=lambda ctx, r: ctx.keep[-1].check())


# ---- the cases ---------------------------------------------------------------------------------------

# The calls made for every request get every value of every kind (in process scope).
FULL = {"RateLimiter.try_acquire", "RateLimiter.allow", "RateLimiter.decide", "RateLimiter.start", "RateLimiter.acquire",
        "LeakyBucket.try_acquire", "LeakyBucket.acquire", "ConcurrencyLimiter.try_acquire",
        "ConcurrencyLimiter.acquire", "TokenBudget.try_reserve", "TokenBudget.reserve",
        "TokenBudget.charge", "Reservation.settle", "Permit.renew", "Balancer.pick", "Pick.complete",
        "FallbackCall.next", "ResponseCache.get", "ResponseCache.put", "ResponseCache.get_or_fetch",
        "cache_key", "parse_request", "Window", "ManualClock.advance", "Governor.admit", "Admission.settle"}
for _s in SPECS:
    _s.full = _s.name in FULL

SUITE = hs.Suite(__name__)
NEEDS_REDIS = ("cluster", "leased")
# Under gevent: the waiting callables, with the values that reach their waiting code.
GEVENT_VALUES = ("None", "int", "str", "nan", "inf", "-inf", "minus_one", "zero", "int64_max",
                 "int64_min", "2**64", "surrogate", "nul", "empty", "returns_None", "returns_int")


# Outside process scope the same conversion code runs again; there, the values that reach
# scope-specific code (keys, costs, durations) are enough.
CORE = {"None", "int", "str", "object", "empty", "nul", "surrogate", "non_utf8_bytes", "1MiB", "nan",
        "inf", "-inf", "minus_one", "zero", "True", "int64_max", "int64_min", "2**63", "2**64",
        "int64_max_seconds", "past_int64_nanos"}
GENERIC_KINDS = [KEY, OPT_STR, INT, SECS, OPT_SECS, BOOL, BODY, OPT_BODY, LABELS]


def _values(s: Spec, scope: str, param: str) -> List[Value]:
    """A parameter's hostile values. Every parameter of one kind goes through the same conversion
    code, so the full set runs where it matters (`full` specs: keys, costs and durations of the
    calls made per request, in process scope); elsewhere the CORE values of the generic kinds."""
    values = s.kinds[param] + s.extra.get(param, [])
    skipped = s.skip.get(param, ())
    if not (s.full and scope == "process") and any(s.kinds[param] is kind for kind in GENERIC_KINDS):
        values = [v for v in values if v.label in CORE or v in s.extra.get(param, [])]
    return [v for v in values if v.label not in skipped]


def _register() -> None:
    for s in SPECS:
        for scope in s.scopes:
            base = f"{s.name}/{scope}"
            redis = scope in NEEDS_REDIS or s.name.startswith("RedisStore")
            common = dict(redis=redis, timeout=s.timeout, covers=(s.name,))
            SUITE.add(f"{base}/valid", _case_fn(s, scope, None, None), s.baseline, **common)
            for param in s.kinds:
                if param in s.only_process and scope != "process":
                    continue
                for value in _values(s, scope, param):
                    case_id = f"{base}/{param}={value.label}"
                    SUITE.add(case_id, _case_fn(s, scope, param, value), value.expect,
                              repro=_repro(s, scope, param, value), **common)
                    if s.waits and scope == "process" and value.label in GEVENT_VALUES:
                        SUITE.add(f"gevent/{case_id}", _case_fn(s, scope, param, value), value.expect,
                                  gevent=True, repro="under gevent.monkey.patch_all(), in a greenlet: "
                                  + _repro(s, scope, param, value), **common)


_register()


# ---- the Governor's lifetimes, protocols and fork (scenario cases) ---------------------------------
_ADMISSION_ALL = ("Admission.__bool__", "Admission.headers", "Admission.cached_answer",
                  "Admission.store_answer", "Admission.begin_call", "Admission.settle", "Admission.cancel",
                  "Admission.release", "Admission.__enter__", "Admission.__exit__")


def _exit_every_way(obj):
    obj.__exit__(None, None, None)
    obj.__exit__(None, None, None)  # twice
    obj.__exit__(ValueError, ValueError("x"), None)
    obj.__exit__(5, "junk", object())


def _admission_outlives_governor(scope):
    def run():
        import gc

        ctx = Ctx(scope)
        g = sluice.Governor(_gov_policy(ctx))
        a = g.admit(ATTRS, body=REQUEST, token_estimate=10)
        refused = None
        for _ in range(5):
            refused = g.admit({"app": "held"})
            ctx.keep.append(refused)
        call = a.begin_call()
        del g
        gc.collect()
        assert a and not refused
        with a as entered:
            assert entered is a
            _use_admission(ctx, a)
        call.next(status=200)
        _exit_every_way(a)
        _exit_every_way(refused)
        refused.headers(), refused.cached_answer(), refused.store_answer(b"x"), refused.settle(1)
        try:
            refused.begin_call()
        except sluice.FailedPrecondition:
            pass
        ctx.keep.clear()
        gc.collect()
    return run


def _governor_across_fork(scope):
    def run():
        ctx = Ctx(scope)
        g = sluice.Governor(_gov_policy(ctx))
        held = g.admit(ATTRS, body=REQUEST, token_estimate=10)  # a permit and a reservation
        refused_rule = RuleRateLimited_from(g)

        def child():
            with g.admit(ATTRS, body=REQUEST) as a:
                _use_admission(ctx, a)
            held.settle(3)
            g.reload(_gov_policy(ctx))
            _parse_metrics(ctx, g.metrics_text())
            refused_rule.headers()

        def parent():
            held.release()
            _use_governor(ctx, g)
        hs.expect_forked(child, 30.0)
        parent()
    return run


def RuleRateLimited_from(g):
    for _ in range(4):
        g.admit({"app": "fork"})
    return sluice.RuleRateLimited(g.admit({"app": "fork"}))


def _watcher_protocol(use_gevent):
    def run():
        g, path = _watched(Ctx("process"))
        w = sluice.PolicyWatcher(g, path, interval=0.01)
        with w as entered:
            assert entered is w
            with open(path, "a") as f:
                f.write("# changed\n")
            os.utime(path, ns=(10**18, 10**18))
            deadline = __import__("time").monotonic() + 30
            while w.reloads == 0:
                assert __import__("time").monotonic() < deadline, "no reload"
                __import__("time").sleep(0.01)
        _exit_every_way(w)
        w.stop()
        try:
            w.start()  # once stopped, it stays stopped
        except sluice.FailedPrecondition:
            pass
        w.check()
    return run


for _scope in GOV_SCOPES:
    SUITE.add(f"scenario/admission_outlives_governor/{_scope}", _admission_outlives_governor(_scope),
              RETURNS, covers=_ADMISSION_ALL, redis=_scope == "cluster")
    SUITE.add(f"scenario/governor_across_fork/{_scope}", _governor_across_fork(_scope), RETURNS,
              covers=("Governor.admit", "Governor.reload", "Governor.metrics_text", "Admission.settle",
                      "RuleRateLimited.headers"), redis=_scope == "cluster", timeout=90.0)
for _gevent in (False, True):
    SUITE.add(f"scenario/policy_watcher_protocol/{'gevent' if _gevent else 'thread'}",
              _watcher_protocol(_gevent), RETURNS, gevent=_gevent,
              covers=("PolicyWatcher.__enter__", "PolicyWatcher.__exit__", "PolicyWatcher.start",
                      "PolicyWatcher.stop"))

hostile_session = hs.session_fixture()


@pytest.mark.parametrize("case_id", SUITE.ids())
def test_api(case_id, hostile_session, request):
    hs.check(__name__, case_id, request)
