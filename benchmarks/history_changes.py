#!/usr/bin/env python3
"""Change points in a run history (module_utils/results/history.py), on synthetic series
with known truth: how often each kind of series gets a change, an outlier or a
FAIL_ON_CHANGE, printed as rates over many series.

Series: one value a run (a primary metric's estimate), in log-normal noise of a run's
spread (default 3%: the embedded default's per-run estimates over 8-16 blocks a group);
a noisy-but-unchanged series at twice that; a step of 5% and of 10%; a slow drift of 10%
over the history; a single outlier run; a step in the newest two runs. Each run also has
the standard error its blocks give (the spread, as estimated from --blocks blocks: a
scaled chi-square draw), which floors the noise the scan assumes, as `make vllm-history`
does; --no-floor leaves it out.

    .venv/bin/python benchmarks/history_changes.py [--series 400] [--runs 20] [--spread 0.03]
        [--blocks 16] [--no-floor]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "collections"))

from ansible_collections.servelab.vllm.plugins.module_utils.results import history  # noqa: E402


def scenarios(n: int, spread: float) -> dict:
    """name -> (log level per run, noise, the run where the truth changes or None)."""
    flat = np.zeros(n)
    step_at = n * 3 // 5
    step = lambda size: np.r_[np.zeros(step_at), np.full(n - step_at, math.log1p(size))]  # noqa: E731
    outlier = flat.copy()
    outlier[n // 3] = math.log1p(0.25)
    late = np.r_[np.zeros(n - 2), np.full(2, math.log1p(0.10))]
    return {
        "unchanged": (flat, spread, None),
        "unchanged, twice the noise": (flat, 2 * spread, None),
        "step +5%": (step(0.05), spread, step_at),
        "step +10%": (step(0.10), spread, step_at),
        "drift +10% over the history": (np.linspace(0, math.log1p(0.10), n), spread, None),
        "one outlier run (+25%)": (outlier, spread, None),
        "step +10% in the newest 2 runs": (late, spread, n - 2),
    }


def measure(level, noise: float, truth, series: int, rng, blocks: int) -> dict:
    n = len(level)
    counts = {"any change": 0, "found at +-1": 0, "outlier named": 0, "FAIL_ON_CHANGE": 0}
    for _ in range(series):
        values = np.exp(level + rng.normal(0, noise, n)).tolist()
        # each run's own standard error, as its blocks estimate it (0 blocks: none)
        ses = noise * np.sqrt(rng.chisquare(blocks - 1, n) / (blocks - 1)) if blocks else []
        scan = history.changes(values, floor=history.noise_floor(list(ses)))
        counts["any change"] += bool(scan.changes)
        if truth is not None:
            counts["found at +-1"] += any(abs(c.index - truth) <= 1 for c in scan.changes)
        counts["outlier named"] += bool(scan.outliers)
        counts["FAIL_ON_CHANGE"] += bool(scan.regression(n))
    return {k: v / series for k, v in counts.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=400)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--spread", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--blocks", type=int, default=16, help="blocks a run (its standard error)")
    ap.add_argument("--no-floor", action="store_true", help="no floor from the runs' errors")
    args = ap.parse_args()
    blocks = 0 if args.no_floor else args.blocks
    rng = np.random.default_rng(args.seed)
    print(
        f"{args.series} series of {args.runs} runs, spread {args.spread:.0%} a run; penalty "
        f"{history.PENALTY:g} x spread^2 x ln(n), segments of {history.MIN_SEGMENT}+ runs, "
        f"outliers at {history.OUTLIER_Z:g} spreads, newest run flagged at {history.DEPART_Z:g}; "
        + ("no floor" if not blocks else f"floored by the runs' errors from {blocks} blocks")
    )
    header = ["series", "any change", "found at +-1", "outlier named", "FAIL_ON_CHANGE"]
    print(" | ".join(header))
    for name, (level, noise, truth) in scenarios(args.runs, args.spread).items():
        rates = measure(level, noise, truth, args.series, rng, blocks)
        cells = [f"{rates[k]:.1%}" if (k != "found at +-1" or truth is not None) else "-"
                 for k in header[1:]]  # fmt: skip
        print(" | ".join([name, *cells]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
