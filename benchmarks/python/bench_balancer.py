"""Cost of one Balancer pick + complete from Python, median of 5.

    python benchmarks/python/bench_balancer.py

Part 1: 16 endpoints, synthetic bodies (by model, 1 kB and 32 kB raw bodies).
Part 2 (issue 15): an 8k-token chat conversation (a system prompt and 15 user / assistant turns,
32,000 bytes of content), raw body, 4 and 8 endpoints, the default strategy (least_request) and
prefix_affinity, four cases:
  new        a new conversation each pick (its own id leads the system prompt, so prefix affinity
             inserts 64 fresh groups of 4 blocks every pick; the index stays at its capacity
             bound), its body built right before its pick (untimed) and so in the CPU caches, as
             a server has a body it has just read; timed pick by pick;
  new cold   the same with the run's 2,000 bodies (64 MB) built before it, so each pick first
             reads its body from memory;
  next turn  a conversation picked once (untimed), then right away its next turn (one more
             assistant reply and user message) timed, pick by pick;
  same       the same body again.
Only the picks are timed.
"""

import json
import statistics
import time

import sluice
from timing import per_call

WORDS = ("the model request cache replica token prompt answer please explain why latency budget "
         "stream server queue of and a to in with routing prefix context window user system "
         "assist tool call json python error retry limit rate key value shard").split()


def prose(seed, chars):
    """Deterministic word salad of `chars` bytes (an LCG, as benchmarks/chat_body.h)."""
    out, x, n = [], (seed * 0x9E3779B97F4A7C15 + 1) % 2**64, 0
    size = 0
    while size < chars:
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        w = WORDS[(x >> 33) % len(WORDS)]
        n += 1
        sep = (".\\n" if n % 48 == 0 else ". ") if n % 12 == 0 else " "
        out.append(w + sep)
        size += len(w) + len(sep)
    text = "".join(out)[:chars]
    return text[:-1] + "." if text.endswith("\\") else text


def chat_parts(chars=32_000):
    """(head, tail) of a chat body; head + 16-digit id + tail is one conversation."""
    system = chars // 8
    head = '{"model":"qwen2.5-7b","stream":true,"messages":[{"role":"system","content":"Conversation '
    tail = ". " + prose(0, system - len("Conversation ") - 16 - 1) + '"}'
    left, turn = chars - system, 0
    while left > 0:
        n = min(left, 2000)
        role = "user" if turn % 2 == 0 else "assistant"
        tail += ',{"role":"%s","content":"%s"}' % (role, prose(1000 + turn, n))
        left -= n
        turn += 1
    return head.encode(), (tail + "]}").encode()


NEXT = (',{"role":"assistant","content":"%s"},{"role":"user","content":"%s"}]}'
        % (prose(7, 300), prose(8, 300))).encode()


def timed(b, bodies):
    """Seconds per pick + complete over `bodies` (one timed loop)."""
    start = time.perf_counter()
    for raw in bodies:
        b.pick(raw).complete(status=200)
    return (time.perf_counter() - start) / len(bodies)


def timed_each(b, make_body, number):
    """Seconds per pick + complete, each of `number` bodies built (untimed) right before it."""
    total = 0
    clock = time.perf_counter_ns
    for _ in range(number):
        raw = make_body()
        start = clock()
        b.pick(raw).complete(status=200)
        total += clock() - start
    return total / 1e9 / number


def timed_next_turns(b, bodies):
    """Seconds per pick + complete of each body's next turn, right after its first (untimed)."""
    turns = [raw[:-2] + NEXT for raw in bodies]
    total = 0
    clock = time.perf_counter_ns
    for raw, turn in zip(bodies, turns):
        b.pick(raw).complete(status=200)
        start = clock()
        b.pick(turn).complete(status=200)
        total += clock() - start
    return total / 1e9 / len(bodies)


def chat_cases(strategy, endpoints, number=2000, repeat=5):
    head, tail = chat_parts()
    ids = iter(range(1, 10**9))
    out = {}
    for case in ("new", "new cold", "next turn", "same"):
        b = sluice.Balancer(strategy, seed=1)
        for i in range(endpoints):
            b.add_endpoint(f"r{i}")
        runs = []
        for _ in range(repeat):
            if case == "new":
                runs.append(timed_each(b, lambda: head + b"%016d" % next(ids) + tail, number))
                continue
            if case == "same":
                bodies = [head + b"%016d" % 1 + tail] * number
            else:
                bodies = [head + b"%016d" % next(ids) + tail for _ in range(number)]
            if case == "next turn":
                runs.append(timed_next_turns(b, bodies))
            else:
                runs.append(timed(b, bodies))
        out[case] = statistics.median(runs)
    return out


def main():
    body = {1_000: None, 32_000: None}
    for chars in body:
        body[chars] = json.dumps({"model": "m", "messages": [
            {"role": "system", "content": "s" * (chars // 4)},
            {"role": "user", "content": "u" * (chars - chars // 4)}]}).encode()
    print("sluice.Balancer from Python, 16 endpoints, pick + complete (median of 5)")
    for strategy in ("round_robin", "least_request", "prefix_affinity"):
        b = sluice.Balancer(strategy, seed=1)
        for i in range(16):
            b.add_endpoint(f"r{i}")
        t = per_call(lambda: b.pick().complete(status=200), number=100_000)
        print(f"  {strategy:<16} by model only      {t * 1e6:6.2f} us")
        for chars, raw in body.items():
            t = per_call(lambda: b.pick(raw).complete(status=200), number=20_000)
            print(f"  {strategy:<16} raw body {chars:>6} B {t * 1e6:6.2f} us")
    print("\n8k-token chat body (%d B), raw body, pick + complete, median of 5 runs of 2,000"
          % (len(b"".join(chat_parts())) + 16))
    for strategy in ("least_request", "prefix_affinity"):
        for endpoints in (4, 8):
            r = chat_cases(strategy, endpoints)
            print(f"  {strategy:<16} {endpoints} endpoints  "
                  + "  ".join(f"{case} {t * 1e6:6.2f} us" for case, t in r.items()))


if __name__ == "__main__":
    main()
