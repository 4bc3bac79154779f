#!/usr/bin/env python3
"""The MPS table as one study (a sweep of dev's share beside baseline at 100%), beside the
seeds', from the run's committed files: report/compare.json (each share's comparison
with baseline's blocks beside it: words, changes and 95% intervals) and blocks.json (each
block's figures, from ../blocks.py extract).

Prints, per share: the verdict on each primary; dev's mean over its blocks of each figure
with the 95% t interval of that mean; the change against baseline's blocks at that share,
block by block (pairs of the same share and repetition); each engine's KV cache and GPU
memory; then our curve and the seeds' as ratios to 100%, beside the first run's
(../table.py, no verdicts). With --plot, writes curves.png: mean TTFT, mean ITL and
request throughput as ratios to 100%, ours with the pairs' 95% intervals, the seeds' and
the first run's.
Usage: .venv/bin/python docs/evidence/h200-mps/sweep/table.py [DIR...] [--plot]
Each DIR (default: this folder) holds one run's report/compare.json and blocks.json; the
first also workload.txt (the workload in a few words, for the plot; 2048/16 at 2 req/s
where absent), and curves.png goes there. Runs of other shares of one workload are read
as one table, each share against the baseline blocks of its own run.
"""

import json
import math
import statistics
import sys
from pathlib import Path

from scipy import stats

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
import table as first  # noqa: E402  (the seeds' figures and the first run's blocks)

FIGURES = first.FIGURES  # metric, heading, decimals
PRIMARY = ("median_ttft_ms", "median_tpot_ms", "output_throughput")


def share_of(point: str) -> int:
    return int(point.rpartition("-")[2])


def mean_ci(values: list[float], digits: int) -> str:
    m = statistics.fmean(values)
    if len(values) < 2:
        return f"{m:.{digits}f}"
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{m:.{digits}f} [{m - half:.{digits}f}, {m + half:.{digits}f}]"


def load(folders: list[Path]) -> tuple[dict, list[dict]]:
    comparisons: dict = {}
    blocks: list[dict] = []
    for data in folders:
        more = json.loads((data / "report/compare.json").read_text())["comparisons"]
        if set(more) & set(comparisons):
            sys.exit(f"{data}: shares {sorted(set(more) & set(comparisons))} read twice")
        comparisons.update(more)
        blocks += json.loads((data / "blocks.json").read_text())
    return comparisons, blocks


def rows_of(comparisons: dict) -> dict[int, dict[str, dict]]:
    rows = {share_of(p): {r["metric"]: r for r in rows} for p, rows in comparisons.items()}
    return dict(sorted(rows.items(), reverse=True))


def pct(row: dict) -> str:
    return f"{row['change_pct']:+.1f}% [{row['low_pct']:+.1f}, {row['high_pct']:+.1f}]"


def print_tables(comparisons: dict, blocks: list[dict]) -> None:
    rows = rows_of(comparisons)
    shares = list(rows)
    print("Verdicts, dev at each share against baseline at 100% beside it:\n")
    print("| share | pairs | median TTFT | median TPOT | output tok/s |")
    print("|---|---|---|---|---|")
    for s in shares:
        cells = [
            f"**{r['verdict']}** {pct(r)}" if r.get("verdict") not in (None, "-") else pct(r)
            for r in (rows[s][m] for m in PRIMARY)
        ]
        print(f"| {s}% | {rows[s]['median_ttft_ms']['pairs']} | " + " | ".join(cells) + " |")

    print("\nMeans over the blocks, 95% t interval of the mean:\n")
    print("| share | group | blocks | " + " | ".join(h for _, h, _ in FIGURES) + " |")
    print("|---|---|---|" + "---|" * len(FIGURES))
    base = [b for b in blocks if b["group"] == "baseline"]
    print(f"| 100% | baseline (all) | {len(base)} | "
          + " | ".join(mean_ci([b[m] for b in base], d) for m, _, d in FIGURES) + " |")  # fmt: skip
    for s in shares:
        sel = [b for b in blocks if b["group"] == "dev" and share_of(b["point"]) == s]
        cells = [mean_ci([b[m] for b in sel], d) for m, _, d in FIGURES]
        print(f"| {s}% | dev | {len(sel)} | " + " | ".join(cells) + " |")

    print("\nDev over baseline, block by block at the same share and repetition (geometric "
          "mean of the pairs' ratios, 95% t interval, not adjusted for the shares):\n")  # fmt: skip
    print("| share | " + " | ".join(h for _, h, _ in FIGURES) + " |")
    print("|---|" + "---|" * len(FIGURES))
    for s in shares:
        print(f"| {s}% | " + " | ".join(shown(paired(blocks, s, m)) for m, _, _ in FIGURES) + " |")

    print("\nEngines (every block's summary): KV cache tokens and GPU memory MiB, per group:")
    for g in ("baseline", "dev"):
        sel = [b for b in blocks if b["group"] == g]
        kv = sorted({b["kv_cache_tokens"] for b in sel})
        mem = sorted({int(str(m).removesuffix("MiB")) for b in sel for m in b["gpu_memory"] if m})
        sms = sorted({f"{'/'.join(b['mps_share'] or [])}%={'/'.join(map(str, b['mps_sms'] or []))}"
                      for b in sel})  # fmt: skip
        print(f"  {g}: KV {kv[0]:,}-{kv[-1]:,}; GPU memory {mem[0]:,}-{mem[-1]:,} MiB; "
              f"share=SMs {', '.join(sms)}")  # fmt: skip

    old = first.blocks()
    print(
        "\nAs ratios to 100% (ours: the pairs' geometric mean ratio, as above; the first run: "
        "its share's mean over its 100% block; the seeds': their table):\n"
    )
    print("| share | ours: mean TTFT | first run | seeds | ours: mean ITL | first run | seeds "
          "| ours: req/s | seeds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for s in shares:
        print(f"| {s}% | {shown(paired(blocks, s, 'mean_ttft_ms'), 'x')} | "
              f"x{then(old, s, 'mean_ttft_ms'):.2f} | x{seeds_ratio(s, 1):.2f} | "
              f"{shown(paired(blocks, s, 'mean_itl_ms'), 'x')} | "
              f"x{then(old, s, 'mean_itl_ms'):.2f} | x{seeds_ratio(s, 2):.2f} | "
              f"{shown(paired(blocks, s, 'request_throughput'), 'x')} | "
              f"x{seeds_ratio(s, 0):.2f} |")  # fmt: skip


def paired(blocks: list[dict], share: int, metric: str) -> tuple[float, float, float]:
    """Dev over baseline at a share: the geometric mean of the ratios of the blocks of a
    pair (same share, same repetition), with the 95% t interval of the mean log ratio."""
    at = {(b["group"], b["rep"]): b[metric] for b in blocks if share_of(b["point"]) == share}
    logs = [
        math.log(at["dev", r] / at["baseline", r])
        for g, r in at
        if g == "dev" and ("baseline", r) in at
    ]
    m = statistics.fmean(logs)
    half = stats.t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(m), math.exp(m - half), math.exp(m + half)


def shown(r: tuple[float, float, float], style: str = "%") -> str:
    mid, lo, hi = r
    if style == "x":
        return f"x{mid:.2f} [{lo:.2f}, {hi:.2f}]"
    return f"{(mid - 1) * 100:+.1f}% [{(lo - 1) * 100:+.1f}, {(hi - 1) * 100:+.1f}]"


def then(old: dict, share: int, metric: str) -> float:
    """The first run's mean at a share over its mean at 100%."""
    return statistics.fmean(b[metric] for b in old[share]) / statistics.fmean(
        b[metric] for b in old[100]
    )


def seeds_ratio(share: int, column: int) -> float:
    return first.SEEDS[share][column] / first.SEEDS[100][column]


def plot(comparisons: dict, blocks: list[dict], data: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows_of(comparisons)
    old = first.blocks()
    shares = [100, *rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (metric, label, col) in zip(axes, [("mean_ttft_ms", "mean TTFT", 1),
                                              ("mean_itl_ms", "mean ITL", 2),
                                              ("request_throughput", "request throughput", 0)],
                                        strict=True):  # fmt: skip
        got = [paired(blocks, s, metric) for s in rows]
        mid = [1.0] + [m for m, _, _ in got]
        low = [0.0] + [m - lo for m, lo, _ in got]
        high = [0.0] + [hi - m for m, _, hi in got]
        ax.errorbar(shares, mid, yerr=[low, high], marker="o", capsize=3,
                    label=f"H200, {workload(data)}: pairs against 100% (95%)")  # fmt: skip
        ax.plot(first.SHARES, [then(old, s, metric) for s in first.SHARES], marker="^",
                linestyle=":", label="H200 first run (one group, no verdict)")  # fmt: skip
        ax.plot(first.SHARES, [seeds_ratio(s, col) for s in first.SHARES], marker="s",
                linestyle="--", label="seeds (RTX 4090, ShareGPT 4 req/s)")  # fmt: skip
        ax.set(xlabel="MPS active thread %", ylabel=f"{label} / at 100%", title=label)
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(data / "curves.png", dpi=110)
    print(f"wrote {data / 'curves.png'}")


def workload(data: Path) -> str:
    f = data / "workload.txt"
    return f.read_text().strip() if f.exists() else "2048/16, 2 req/s"


def main() -> int:
    folders = [Path(a) for a in sys.argv[1:] if not a.startswith("--")] or [HERE]
    comparisons, blocks = load(folders)
    print_tables(comparisons, blocks)
    if "--plot" in sys.argv[1:]:
        plot(comparisons, blocks, folders[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
