"""The second fleet simulator: sluice's Balancer and an SGLang-style peer on a vLLM-v1-like
replica model, several workloads and seeds. See BENCHMARKS.md "Balancer: a second simulator".

    python benchmarks/fleet2/run.py --quick            # 20-50 s
    python benchmarks/fleet2/run.py --json build/fleet2/report.json --plot build/fleet2/ttft.png
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from fleet2 import workloads as W  # noqa: E402
from fleet2.replica import MODEL, PAGE, TOKEN_BUDGET  # noqa: E402
from fleet2.sim import PEERS, STRATEGIES, simulate  # noqa: E402

K = 1024


def configs(quick: bool):
    """(label, workload factory, KV tokens per replica, shared state)."""
    rag_n = 500 if quick else 1200
    out = [
        ("RAG", lambda s: W.rag(s, requests=rag_n), 64 * K, False),
        ("agentic", lambda s: W.agentic(s), 64 * K, False),
        ("heterogeneous", lambda s: W.heterogeneous(s, one_offs=80 if quick else 150), 64 * K, False),
        ("bursty RAG", lambda s: W.rag(s, requests=rag_n, bursty=True), 64 * K, False),
        ("unshared", lambda s: W.unshared(s, requests=300 if quick else 800), 64 * K, False),
        ("RAG, 4 workers", lambda s: W.rag(s, requests=rag_n, workers=4), 64 * K, False),
        ("RAG, 4 workers shared", lambda s: W.rag(s, requests=rag_n, workers=4), 64 * K, True),
        ("agentic, 4 workers", lambda s: W.agentic(s, workers=4), 64 * K, False),
        ("agentic, 4 workers shared", lambda s: W.agentic(s, workers=4), 64 * K, True),
    ]
    for kv in ((24,) if quick else (16, 24, 32)):
        out.append((f"agentic, KV {kv}k", lambda s: W.agentic(s), kv * K, False))
    return out


def _run(task):
    import numpy as np  # requirements-bench.txt; the tests import this module without it

    label, index, seed, strategy, quick = task
    _, factory, kv, shared = configs(quick)[index]
    started = time.time()
    workload = factory(seed)
    result = simulate(workload, strategy, kv, shared=shared, seed=seed)
    ttft = np.array(result.ttft)
    share = max(result.per_replica) / max(1, sum(result.per_replica))
    return dict(config=label, seed=seed, strategy=strategy, description=workload.description,
                kv_tokens=kv, shared=shared, requests=len(ttft),
                mean=float(ttft.mean()), p99=float(np.percentile(ttft, 99)),
                hit=result.hit_tokens / max(1, result.prompt_tokens), preemptions=result.preemptions,
                rejected=result.rejected, max_share=share,
                moved=result.moved / result.follow_ups if result.follow_ups else None, wall=time.time() - started,
                ttft=[round(x, 5) for x in result.ttft])


def _ratio_cell(values):
    return f"{statistics.median(values):.2f} ({max(values):.2f})"


def any_seed(by_seed):
    return next(iter(by_seed.values()))


def summarize(runs, seeds):
    """Per config and strategy: medians over seeds, and ratios per seed (median, worst)."""
    table = {}
    for run in runs:
        table.setdefault(run["config"], {}).setdefault(run["strategy"], {})[run["seed"]] = run
    summary = {}
    for config, by_strategy in table.items():
        rows = {}
        for strategy, by_seed in by_strategy.items():
            row = dict(mean_ms=1000 * statistics.median(r["mean"] for r in by_seed.values()),
                       p99_ms=1000 * statistics.median(r["p99"] for r in by_seed.values()),
                       hit=statistics.median(r["hit"] for r in by_seed.values()),
                       max_share=statistics.median(r["max_share"] for r in by_seed.values()),
                       moved=(statistics.median(r["moved"] for r in by_seed.values())
                              if any_seed(by_seed)["moved"] is not None else None),
                       preemptions=sum(r["preemptions"] for r in by_seed.values()),
                       rejected=sum(r["rejected"] for r in by_seed.values()))
            for base in ("round_robin", "least_request", "sglang", "sglang-small"):
                for metric in ("mean", "p99"):
                    ratios = [by_seed[s][metric] / by_strategy[base][s][metric] for s in seeds]
                    row[f"{metric}_vs_{base}"] = ratios
            rows[strategy] = row
        any_run = next(iter(by_strategy["round_robin"].values()))
        pa = by_strategy["prefix_affinity"]
        summary[config] = dict(description=any_run["description"], kv_tokens=any_run["kv_tokens"],
                               shared=any_run["shared"], strategies=rows,
                               per_seed={m: {s: pa[s][m] for s in seeds} for m in ("mean", "p99")})
    return summary


def markdown(summary, seeds, argv, wall):
    m = MODEL
    lines = [
        "# sluice fleet2: the Balancer on a vLLM-v1-like replica model",
        "",
        f"command: `{argv}`  ({len(seeds)} seeds: {', '.join(map(str, seeds))}; {wall:.0f} s)",
        "",
        f"replica: chunked prefill {TOKEN_BUDGET} tokens a step, continuous batching, {PAGE}-token pages "
        f"cached with generated tokens, leaf-first LRU; step = {m.overhead * 1000:g} ms + max(FLOPs / "
        f"({m.peak_flops / 1e12:g} TFLOP/s x {m.mfu:g}), bytes / ({m.hbm_bytes_per_s / 1e12:g} TB/s x "
        f"{m.bandwidth_efficiency:g})); Llama-3.1-8B bf16 ({m.params / 1e9:g}B params, "
        f"{m.kv_bytes_per_token // 1024} KiB KV a token) on an A100-80GB",
        "",
        "Cells: median over seeds; ratios: median over seeds (worst seed). TTFT = arrival to first token. "
        "hit: prompt tokens served from the replicas' caches; top replica: the busiest replica's share of "
        "the requests; moved: a session's turns sent to another replica than its previous turn.",
    ]
    for config, s in summary.items():
        lines += ["", f"## {config}: KV {s['kv_tokens'] // K}k tokens per replica"
                  + (" (in-flight counts and routes shared)" if s["shared"] else ""), "", s["description"], "",
                  "| strategy | mean ms | p99 ms | mean / RR | p99 / RR | mean / LR | p99 / LR | hit | top replica | moved |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for strategy, row in s["strategies"].items():
            extra = ""
            if row["rejected"]:
                extra = f" ({row['rejected']} rejected: longer than the KV cache)"
            lines.append(
                f"| {strategy}{extra} | {row['mean_ms']:.0f} | {row['p99_ms']:.0f} | "
                f"{_ratio_cell(row['mean_vs_round_robin'])} | {_ratio_cell(row['p99_vs_round_robin'])} | "
                f"{_ratio_cell(row['mean_vs_least_request'])} | {_ratio_cell(row['p99_vs_least_request'])} | "
                f"{row['hit']:.0%} | {row['max_share']:.0%} | "
                + ("-" if row["moved"] is None else f"{row['moved']:.0%}") + " |")
    lines += ["", "## prefix_affinity (sluice) against each baseline: mean / p99 ratio, median (worst seed)", "",
              "| workload | vs round robin | vs least request | vs sglang (32, 1.5) | vs sglang-small (4, 1.5) |",
              "|---|---|---|---|---|"]
    for config, s in summary.items():
        row = s["strategies"]["prefix_affinity"]
        cells = [f"{_ratio_cell(row[f'mean_vs_{b}'])} / {_ratio_cell(row[f'p99_vs_{b}'])}"
                 for b in ("round_robin", "least_request", "sglang", "sglang-small")]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    alone = [(config, config.split(",")[0]) for config in summary
             if "workers" in config and config.split(",")[0] in summary]
    if alone:
        lines += ["", "## several workers against one process routing alone (prefix_affinity, same seeds): "
                  "mean / p99 ratio, median (worst seed)", "",
                  "| workload | vs one process |", "|---|---|"]
        for config, single in alone:
            cells = []
            for metric in ("mean", "p99"):
                many = summary[config]["per_seed"][metric]
                one = summary[single]["per_seed"][metric]
                cells.append(_ratio_cell([many[s] / one[s] for s in seeds]))
            lines.append(f"| {config} | {cells[0]} / {cells[1]} |")
    return "\n".join(lines)


def plot(runs, path):
    import numpy as np

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs_seen = list(dict.fromkeys(r["config"] for r in runs))
    cols = 3
    rows = -(-len(configs_seen) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, config in zip(axes.flat, configs_seen):
        for strategy in STRATEGIES:
            samples = np.sort(np.concatenate([np.array(r["ttft"]) for r in runs
                                              if r["config"] == config and r["strategy"] == strategy]))
            ax.plot(samples * 1000, np.arange(1, len(samples) + 1) / len(samples), label=strategy)
        ax.set_xscale("log")
        ax.set_title(config, fontsize=10)
        ax.set_xlabel("TTFT ms (all seeds)")
        ax.set_ylabel("CDF")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(configs_seen):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("fleet2: TTFT distribution per strategy (sluice round_robin / least_request / "
                 "prefix_affinity; SGLang-style peer)", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 seeds, smaller workloads, one KV size in the sweep")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5, quick 2)")
    parser.add_argument("--first-seed", type=int, default=1,
                        help="the first seed (default 1): another set of seeds for a second look")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--json", default=None, help="write the summary and every run's numbers here")
    parser.add_argument("--plot", default="build/fleet2/ttft.png", help="PNG of the TTFT CDFs")
    args = parser.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + (args.seeds or (2 if args.quick else 5))))
    started = time.time()
    tasks = [(label, i, seed, strategy, args.quick)
             for i, (label, *_rest) in enumerate(configs(args.quick))
             for seed in seeds for strategy in STRATEGIES]
    if args.jobs > 1:
        with multiprocessing.Pool(args.jobs) as pool:
            runs = pool.map(_run, tasks, chunksize=1)
    else:
        runs = [_run(t) for t in tasks]
    wall = time.time() - started
    summary = summarize(runs, seeds)
    argv = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(markdown(summary, seeds, argv, wall))
    plot(runs, args.plot)
    print(f"\nplot: {args.plot}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(command=argv, seeds=seeds, model=MODEL.__dict__, peers=PEERS,
                           summary=summary, runs=[{k: v for k, v in r.items() if k != "ttft"} for r in runs]),
                      f, indent=1)
        print(f"json: {args.json}")


if __name__ == "__main__":
    main()
