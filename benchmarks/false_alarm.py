#!/usr/bin/env python3
"""False-alarm rate of the comparison's intervals when nothing changed, by simulation.

Each simulated repetition has its own level (run-to-run spread, cv_between) and requests
scattered around it (lognormal, sigma 0.3); baseline and dev are drawn from the same
process. For 3 and 5 repetitions a side it prints how often each method calls a change
at a nominal 95%:
  - two-level bootstrap: resample repetitions, then requests (the method before 0.2);
  - Welch's t on one value per repetition (the method now);
and the family-wise rate over three independent primary metrics tested at 5%/3 each.
Usage: benchmarks/false_alarm.py [--trials 2000] [--cv 0.03 0.15]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collections"))
from ansible_collections.servelab.vllm.plugins.module_utils.results import stats


def two_level_bootstrap(base, dev, rng, resamples=400, confidence=0.95):
    """The former latency interval: repetitions, then requests within each, resampled."""

    def draw(clusters):
        picks = rng.integers(0, len(clusters), len(clusters))
        return np.concatenate(
            [clusters[i][rng.integers(0, len(clusters[i]), len(clusters[i]))] for i in picks]
        )

    diffs = np.array([np.median(draw(dev)) - np.median(draw(base)) for _ in range(resamples)])
    low, high = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    return low, high


def group(rng, reps, cv_between, requests=16):
    levels = 100 * np.exp(rng.normal(0, cv_between, reps))
    return [lvl * rng.lognormal(0, 0.3, requests) for lvl in levels]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--cv", type=float, nargs="+", default=[0.03, 0.15])
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    print(
        f"{'cv between reps':>16} {'reps/side':>9} {'bootstrap 2-level':>18} "
        f"{'Welch per rep':>14} {'3 primaries, Bonferroni':>24}"
    )
    for cv in args.cv:
        for reps in (3, 5):
            boot = welch = family = 0
            boot_trials = min(args.trials, 400)  # the bootstrap is slow; fewer trials
            for t in range(args.trials):
                b, d = group(rng, reps, cv), group(rng, reps, cv)
                mb, md = [float(np.median(x)) for x in b], [float(np.median(x)) for x in d]
                low, high, _ = stats.welch(mb, md, 0.95)
                welch += low > 0 or high < 0
                if t < boot_trials:
                    low, high = two_level_bootstrap(b, d, rng)
                    boot += low > 0 or high < 0
                hits = 0
                for _ in range(3):
                    b3 = [float(np.median(x)) for x in group(rng, reps, cv)]
                    d3 = [float(np.median(x)) for x in group(rng, reps, cv)]
                    low, high, _ = stats.welch(b3, d3, 1 - 0.05 / 3)
                    hits += low > 0 or high < 0
                family += hits > 0
            print(
                f"{cv:>16.2f} {reps:>9} {boot / boot_trials:>18.3f} {welch / args.trials:>14.3f} "
                f"{family / args.trials:>24.3f}"
            )
    print("nominal: 0.050 for each column")
    return 0


if __name__ == "__main__":
    sys.exit(main())
