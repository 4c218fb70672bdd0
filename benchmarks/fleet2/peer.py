"""A reference peer: an SGLang-router-style cache-aware policy, written from its design.

SGLang's router (sgl-project/sglang, `sgl-router`, the `CacheAware` policy; its design comment
in the router's source and docs/router/router.md; options --cache-threshold 0.5,
--balance-abs-threshold 32, --balance-rel-threshold 1.5, --max-tree-size 2^26) keeps, per
worker, an approximate radix tree of the request *text* it routed there (no tokenizer), and:

* the system is imbalanced when (max load - min load) > abs threshold AND
  max load > rel threshold x min load, load being the router's own count of requests in flight
  per worker; then the request goes to the least loaded worker (shortest queue);
* otherwise to the worker whose tree matches the longest prefix of the text, if the match is
  more than cache_threshold of the text; else to the worker with the smallest tree (the most
  free cache);
* the chosen worker's tree gets the text; trees are trimmed least-recently-used leaf first
  when they pass max_tree_size characters.

No code of SGLang is used. The tree here is approximate in its own way: the text is cut into
CHUNK-character pieces chained by hash (one node per piece), so a match is counted in whole
pieces; with CHUNK = 32 characters (8 tokens) that is close to SGLang's per-character match.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import List, Optional, Sequence

CHUNK = 32


def chunk_keys(text: str) -> List[int]:
    keys = []
    chain = 0
    for i in range(0, len(text) - CHUNK + 1, CHUNK):
        chain = hash((chain, text[i:i + CHUNK]))
        keys.append(chain)
    return keys


class ApproxTree:
    """One worker's tree: chained chunk keys with least-recently-used order (leaf first)."""

    def __init__(self, max_chars: int):
        self.max_nodes = max(1, max_chars // CHUNK)
        self.nodes: OrderedDict = OrderedDict()

    def match(self, keys: Sequence[int]) -> int:
        n = 0
        for key in keys:
            if key not in self.nodes:
                break
            n += 1
        return n

    def insert(self, keys: Sequence[int]) -> None:
        # Deepest first, so the shallow pieces of a path are the most recent and leaves go first.
        for key in reversed(keys):
            self.nodes[key] = True
            self.nodes.move_to_end(key)
        while len(self.nodes) > self.max_nodes:
            self.nodes.popitem(last=False)

    def chars(self) -> int:
        return len(self.nodes) * CHUNK


class SglangCacheAware:
    """Routes by the rules above. `loads` is the in-flight count per worker, which the caller
    keeps (picked + 1, completed - 1), as SGLang's router does."""

    def __init__(self, workers: int, balance_abs: int = 32, balance_rel: float = 1.5,
                 cache_threshold: float = 0.5, max_tree_chars: int = 2 ** 26):
        self.trees = [ApproxTree(max_tree_chars) for _ in range(workers)]
        self.balance_abs = balance_abs
        self.balance_rel = balance_rel
        self.cache_threshold = cache_threshold
        self.picks_by_load = 0
        self.picks_by_match = 0
        self.picks_by_tree = 0

    def imbalanced(self, loads: Sequence[int]) -> bool:
        hi, lo = max(loads), min(loads)
        return hi - lo > self.balance_abs and hi > self.balance_rel * lo

    def pick(self, text: str, loads: Sequence[int], keys: Optional[List[int]] = None) -> int:
        keys = chunk_keys(text) if keys is None else keys
        if self.imbalanced(loads):
            chosen = min(range(len(loads)), key=lambda w: (loads[w], w))
            self.picks_by_load += 1
        else:
            matches = [tree.match(keys) for tree in self.trees]
            best = max(range(len(matches)), key=lambda w: (matches[w], -loads[w], -w))
            rate = matches[best] * CHUNK / max(1, len(text))
            if rate > self.cache_threshold:
                chosen = best
                self.picks_by_match += 1
            else:
                chosen = min(range(len(self.trees)), key=lambda w: (self.trees[w].chars(), w))
                self.picks_by_tree += 1
        self.trees[chosen].insert(keys)
        return chosen
