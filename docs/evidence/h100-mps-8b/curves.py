"""TTFT, ITL and output throughput against the MPS share, from the study's reports.

Reads each run's summary.csv (one row per repetition) beside this file and writes
curves.png: every repetition as a dot, the mean with its 95% t interval as a bar.
Share 100 pools the baseline of the three prefill-heavy runs (and dev of the A/A).
Usage: .venv/bin/python docs/evidence/h100-mps-8b/curves.py
"""

import csv
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from scipy import stats

HERE = Path(__file__).parent
# run -> share of (baseline, dev); the decode-heavy run is plotted apart.
RUNS = {
    "ab-100-20-prefill": (100, 20),
    "ab-100-50-prefill": (100, 50),
    "aa-100-100-prefill": (100, 100),
}
METRICS = [("mean_ttft_ms", "mean TTFT (ms)"), ("median_itl_ms", "median ITL (ms)"),
           ("output_throughput", "output tokens/s")]  # fmt: skip


def rows(run: str) -> list[dict]:
    with (HERE / run / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def interval(values: list[float]) -> tuple[float, float]:
    mean, half = statistics.mean(values), 0.0
    if len(values) > 1:
        half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, half


def main() -> None:
    by_share: dict[int, list[dict]] = {}
    for run, shares in RUNS.items():
        for row in rows(run):
            share = shares[0] if row["group"] == "baseline" else shares[1]
            by_share.setdefault(share, []).append(row)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(13, 3.8))
    for ax, (key, label) in zip(axes, METRICS, strict=True):
        for share, group in sorted(by_share.items()):
            values = [float(r[key]) for r in group]
            ax.scatter([share] * len(values), values, s=10, alpha=0.5, color="tab:blue")
            mean, half = interval(values)
            ax.errorbar(share, mean, yerr=half, fmt="o", color="tab:red", capsize=4)
            print(f"{key:18s} share {share:3d}: {mean:9.2f} +- {half:.2f} (n={len(values)})")
        ax.set_xlabel("MPS active thread percentage")
        ax.set_ylabel(label)
        ax.set_xticks(sorted(by_share))
        ax.grid(alpha=0.3)
    fig.suptitle("8B shape, dummy weights, H100, prefill-heavy (2048 in, 16 out) at 2 req/s")
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=110)


if __name__ == "__main__":
    main()
