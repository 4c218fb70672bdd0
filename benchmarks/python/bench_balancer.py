"""Cost of one Balancer pick + complete from Python (16 endpoints), median of 5 runs.

    python benchmarks/python/bench_balancer.py
"""

import json

import sluice
from timing import per_call




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


if __name__ == "__main__":
    main()
