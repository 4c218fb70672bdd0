"""A vLLM-v1-like replica: chunked prefill, continuous batching, a page-granular prefix cache.

Independent of benchmarks/fleet/replica.cc (which charges a fixed per-sequence step cost and
caches prompt blocks only). Here, written from vLLM v1's published design (the V1 scheduler's
single token budget per step, `max_num_batched_tokens`; the KV cache manager's block hashes
chained over the parent block and its free-block queue that evicts least recently freed blocks,
tail blocks first):

* one step serves every running sequence: one token per decoding sequence, then prefill chunks,
  then new sequences from the waiting queue (first come first served), within TOKEN_BUDGET
  tokens; a prompt longer than the budget takes ceil(uncached tokens / budget) steps;
* the cache is pages of PAGE tokens, each keyed by a hash of everything before it (so a page
  is shared only by sequences with the same prefix); full pages are registered as they are
  computed, generated tokens included, so a conversation's next turn hits its previous answer;
* a page no running sequence uses stays cached and evictable; eviction takes the least
  recently freed page, and a finished sequence frees its pages deepest first (leaf first);
* when a running sequence cannot get a page, the most recently admitted one is preempted
  (its pages freed, recomputed later), as vLLM v1 does;
* TTFT = arrival to the end of the step that computes the prompt's last token (the step
  that samples the first output token).

Step time (a roofline, `step_seconds`): OVERHEAD + max(FLOPs / effective FLOP/s,
bytes / effective bandwidth). Bytes: the weights once per step plus the KV cache of every
context the step attends over; FLOPs: 2 x parameters per token plus causal attention. Decode is
memory-bound (a batch of 1 costs the weights' read, ~12 ms; 64k tokens of context add ~5 ms);
a 2,048-token prefill chunk is compute-bound (~0.22 s). The constants are Llama-3.1-8B (bf16)
on one A100-SXM4-80GB; see MODEL below.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

PAGE = 16            # vLLM's default block size (tokens)
TOKEN_BUDGET = 2048  # vLLM v1's default max_num_batched_tokens for online serving
MAX_RUNNING = 256    # vLLM's default max_num_seqs


@dataclass(frozen=True)
class CostModel:
    """Roofline step-time model. Defaults: Llama-3.1-8B bf16 on one A100-SXM4-80GB."""
    params: float = 8.03e9             # Llama-3.1-8B parameter count (model card)
    layers: int = 32                   # config.json num_hidden_layers
    hidden: int = 4096                 # config.json hidden_size
    kv_heads: int = 8                  # config.json num_key_value_heads (GQA)
    head_dim: int = 128                # hidden_size / num_attention_heads (4096 / 32)
    dtype_bytes: int = 2               # bf16
    peak_flops: float = 312e12         # A100 dense bf16 tensor-core peak (NVIDIA datasheet)
    mfu: float = 0.5                   # achieved share of peak in prefill (assumed; typical 40-60%)
    hbm_bytes_per_s: float = 2.039e12  # A100-SXM4-80GB HBM2e bandwidth (NVIDIA datasheet)
    bandwidth_efficiency: float = 0.8  # achieved share of HBM bandwidth in decode (assumed)
    overhead: float = 0.003            # scheduler, sampling and launch per step (assumed, s)
    slowdown: float = 1.0              # 2.0 = a replica at half speed

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes  # 128 KiB

    def step_seconds(self, prefill: Sequence[Tuple[int, int]], decode_contexts: Sequence[int]) -> float:
        """prefill: (chunk tokens, tokens before the chunk) per prefilling sequence;
        decode_contexts: the context length of each decoding sequence."""
        flops = 0.0
        kv_tokens_read = 0
        for chunk, before in prefill:
            # 2 x params per token; causal attention ~4 x layers x hidden x mean context.
            flops += chunk * (2 * self.params + 4 * self.layers * self.hidden * (before + chunk / 2))
            kv_tokens_read += before + chunk
        for context in decode_contexts:
            flops += 2 * self.params + 4 * self.layers * self.hidden * context
            kv_tokens_read += context
        compute = flops / (self.peak_flops * self.mfu)
        memory = (self.params * self.dtype_bytes + kv_tokens_read * self.kv_bytes_per_token) / (
            self.hbm_bytes_per_s * self.bandwidth_efficiency)
        return (self.overhead + max(compute, memory)) * self.slowdown


MODEL = CostModel()


def page_keys(segments: Sequence[Tuple[int, int]], tokens: int) -> List[int]:
    """Keys of the full pages among the first `tokens` tokens of a sequence made of
    (segment id, length) pieces. A page's key hashes the ids of every segment up to the one
    holding its last token and that token's offset in it, so it stands for the whole prefix
    (vLLM chains each block's hash over its parent's)."""
    keys: List[int] = []
    chain = 0
    start = 0
    next_end = PAGE  # one past the last token of the next page
    for seg_id, length in segments:
        chain = hash((chain, seg_id))
        seg_end = start + length
        limit = min(seg_end, tokens)
        while next_end <= limit:
            keys.append(hash((chain, next_end - 1 - start)))
            next_end += PAGE
        start = seg_end
        if start >= tokens:
            break
    return keys


@dataclass
class Sequence_:
    """One request on a replica."""
    rid: int
    segments: List[Tuple[int, int]]   # prompt pieces, then the answer appended when known
    prompt_tokens: int
    output_tokens: int
    arrival: float
    on_first_token: Callable[[float], None]
    on_finish: Callable[[float], None]
    keys: List[int] = field(default_factory=list)   # full-page keys of prompt + answer
    computed: int = 0          # tokens whose KV is computed
    generated: int = 0
    pages: List[Optional[int]] = field(default_factory=list)  # cache key, or None if private
    cached_tokens: int = 0     # prompt tokens served from the cache at (last) admission
    registered: int = 0        # pages[:registered] were offered to the cache
    first_token_at: Optional[float] = None


class Replica:
    """One engine. `schedule(now)` plans a step and returns its duration (None when idle);
    `finish_step(end)` applies it."""

    def __init__(self, kv_tokens: int, model: CostModel = MODEL):
        self.model = model
        self.capacity = kv_tokens // PAGE
        self.refs: dict = {}                 # cached key -> sequences using it
        self.evictable: OrderedDict = OrderedDict()  # cached keys nobody uses, LRU first
        self.private = 0                     # pages in use that are not in the cache
        self.waiting: List[Sequence_] = []
        self.running: List[Sequence_] = []
        self.plan: List[Tuple[Sequence_, int]] = []
        self.busy = False
        self.prompt_tokens = 0
        self.hit_tokens = 0
        self.preemptions = 0
        self.steps = 0

    # --- the cache ---------------------------------------------------------------------
    def used_pages(self) -> int:
        return len(self.refs) - len(self.evictable) + self.private

    def free_pages(self) -> int:
        return self.capacity - self.used_pages() - len(self.evictable)

    def cached(self, key: int) -> bool:
        return key in self.refs

    def _take_page(self) -> bool:
        if self.free_pages() > 0:
            return True
        if self.evictable:
            key, _ = self.evictable.popitem(last=False)
            del self.refs[key]
            return True
        return False

    def _grow(self, seq: Sequence_, tokens: int) -> bool:
        """Gives `seq` pages for `tokens` tokens; False (nothing kept) if they cannot be had."""
        need = -(-tokens // PAGE) - len(seq.pages)
        if need <= 0:
            return True
        if need > self.free_pages() + len(self.evictable):
            return False
        for _ in range(need):
            self._take_page()
            seq.pages.append(None)
            self.private += 1
        return True

    def _release(self, seq: Sequence_) -> None:
        # Deepest first: the tail of a sequence is the first of it to be evicted.
        for key in reversed(seq.pages):
            if key is None:
                self.private -= 1
                continue
            self.refs[key] -= 1
            if self.refs[key] == 0:
                self.evictable[key] = True
        seq.pages = []
        seq.computed = 0
        seq.registered = 0

    def _register(self, seq: Sequence_) -> None:
        """Moves the sequence's newly full pages into the cache."""
        full = min(seq.computed // PAGE, len(seq.keys))
        for i in range(seq.registered, full):
            if seq.pages[i] is not None:
                continue
            key = seq.keys[i]
            if key in self.refs:
                continue  # computed twice concurrently: ours stays private
            seq.pages[i] = key
            self.private -= 1
            self.refs[key] = 1
        seq.registered = max(seq.registered, full)

    def _admit_hits(self, seq: Sequence_) -> None:
        """Attaches the cached pages of the prompt's longest cached prefix."""
        hit = 0
        for key in seq.keys:
            if key not in self.refs:
                break
            hit += 1
        # At least one prompt token is computed, to sample the first output token.
        hit = min(hit, (seq.prompt_tokens - 1) // PAGE)
        for key in seq.keys[:hit]:
            if self.refs[key] == 0:
                del self.evictable[key]
            self.refs[key] += 1
            seq.pages.append(key)
        seq.computed = hit * PAGE
        seq.registered = hit
        seq.cached_tokens = seq.computed

    # --- the scheduler -----------------------------------------------------------------
    def fits(self, tokens: int) -> bool:
        """Whether a sequence of `tokens` tokens fits the KV cache at all (vLLM refuses a
        longer one with a 400)."""
        return -(-tokens // PAGE) <= self.capacity

    def submit(self, seq: Sequence_) -> None:
        seq.keys = page_keys(seq.segments, seq.prompt_tokens + seq.output_tokens)
        self.waiting.append(seq)

    def load(self) -> int:
        return len(self.waiting) + len(self.running)

    def schedule(self, now: float) -> Optional[float]:
        budget = TOKEN_BUDGET
        plan: List[Tuple[Sequence_, int]] = []
        preempted = False
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            if seq.computed < seq.prompt_tokens:
                new = min(seq.prompt_tokens - seq.computed, budget)
            else:
                new = 1
            while not self._grow(seq, seq.computed + new):
                victim = self.running.pop()
                self._preempt(victim, plan)
                preempted = True
                if victim is seq:
                    break
            else:
                plan.append((seq, new))
                budget -= new
                i += 1
                continue
            # seq itself was preempted; the loop index now points past the end
        while not preempted and self.waiting and budget > 0 and len(self.running) < MAX_RUNNING:
            seq = self.waiting[0]
            self._admit_hits(seq)
            new = min(seq.prompt_tokens - seq.computed, budget)
            if not self._grow(seq, seq.computed + new):
                self._release(seq)
                break
            self.waiting.pop(0)
            self.running.append(seq)
            self.prompt_tokens += seq.prompt_tokens
            self.hit_tokens += seq.cached_tokens
            plan.append((seq, new))
            budget -= new
        self.plan = plan
        if not plan:
            self.busy = False
            return None
        self.busy = True
        self.steps += 1
        prefill = [(n, s.computed) for s, n in plan if s.computed < s.prompt_tokens]
        decode = [s.computed for s, n in plan if s.computed >= s.prompt_tokens]
        return self.model.step_seconds(prefill, decode)

    def _preempt(self, victim: Sequence_, plan: List[Tuple[Sequence_, int]]) -> None:
        self.preemptions += 1
        for j, (s, _) in enumerate(plan):
            if s is victim:
                del plan[j]
                break
        self.prompt_tokens -= victim.prompt_tokens
        self.hit_tokens -= victim.cached_tokens
        self._release(victim)
        # Recomputed from scratch (its answer so far becomes part of its prompt in vLLM;
        # here its tokens are regenerated, which costs the same prefill).
        victim.generated = 0
        self.waiting.insert(0, victim)

    def finish_step(self, end: float) -> None:
        for seq, new in self.plan:
            was_prefill = seq.computed < seq.prompt_tokens
            seq.computed += new
            if was_prefill and seq.computed < seq.prompt_tokens:
                self._register(seq)
                continue
            seq.generated += 1
            if seq.first_token_at is None:
                seq.first_token_at = end
                seq.on_first_token(end)
            self._register(seq)
            if seq.generated >= seq.output_tokens:
                self.running.remove(seq)
                self._release(seq)
                seq.on_finish(end)
        self.plan = []
        self.busy = False
