#!/usr/bin/env python3
"""Where a smaller MPS share starts to cost throughput, from the rate sweep's blocks.

Reads blocks.json (../blocks.py extract of the run) and prints, per offered rate and
group, the mean over its blocks of the achieved rate (first tokens a second, the
saturation flag's measure), the request throughput, median TTFT and median TPOT, the
blocks flagged saturated, and dev over baseline for each. With --plot writes
curves.png: those four against the offered rate, one line a group, dots the blocks.
Usage: .venv/bin/python docs/evidence/h200-mps/saturation/curves.py [--plot]
"""

import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).parent
FIGURES = [  # metric, heading, decimals
    ("achieved_rate", "achieved req/s", 2),
    ("request_throughput", "req/s", 2),
    ("median_ttft_ms", "median TTFT ms", 1),
    ("median_tpot_ms", "median TPOT ms", 2),
]


def by_point(blocks: list[dict]) -> dict[float, dict[str, list[dict]]]:
    out: dict[float, dict[str, list[dict]]] = {}
    for b in blocks:
        out.setdefault(float(b["offered"]), {}).setdefault(b["group"], []).append(b)
    return dict(sorted(out.items()))


def main() -> int:
    blocks = json.loads((HERE / "blocks.json").read_text())
    points = by_point(blocks)
    print("| offered req/s | group | blocks | saturated | "
          + " | ".join(h for _, h, _ in FIGURES) + " |")  # fmt: skip
    print("|---|---|---|---|" + "---|" * len(FIGURES))
    for rate, groups in points.items():
        mean = {g: [statistics.fmean(b[m] for b in groups[g]) for m, _, _ in FIGURES]
                for g in groups}  # fmt: skip
        for group in ("baseline", "dev"):
            sel = groups[group]
            cells = [f"{v:.{d}f}" for v, (_, _, d) in zip(mean[group], FIGURES, strict=True)]
            flagged = sum(bool(b["saturated"]) for b in sel)
            print(f"| {rate:g} | {group} | {len(sel)} | {flagged} | " + " | ".join(cells) + " |")
        ratio = [d / b for d, b in zip(mean["dev"], mean["baseline"], strict=True)]
        print(f"| {rate:g} | dev / baseline | | | " + " | ".join(f"x{r:.2f}" for r in ratio) + " |")
    if "--plot" in sys.argv[1:]:
        plot(points)
    return 0


def plot(points: dict[float, dict[str, list[dict]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = list(points)
    fig, axes = plt.subplots(1, len(FIGURES), figsize=(16, 4))
    for ax, (metric, label, _) in zip(axes, FIGURES, strict=True):
        for group, name, mark in (("baseline", "baseline, 100% of the SMs", "o"),
                                  ("dev", "dev, 20%", "s")):  # fmt: skip
            means = [statistics.fmean(b[metric] for b in points[r][group]) for r in rates]
            line = ax.plot(rates, means, marker=mark, label=name)[0]
            dots = [(r, b[metric]) for r in rates for b in points[r][group]]
            ax.scatter(*zip(*dots, strict=True), s=8, alpha=0.5, color=line.get_color())
        if metric in ("achieved_rate", "request_throughput"):
            ax.plot(rates, rates, linestyle=":", color="grey", label="offered")
        else:
            ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="offered req/s", title=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("H200, 8B shape, random 2048 in / 16 out, fixed pace, 24 requests a block")
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=110)
    print(f"wrote {HERE / 'curves.png'}")


if __name__ == "__main__":
    raise SystemExit(main())
