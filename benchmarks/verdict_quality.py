#!/usr/bin/env python3
"""How the verdict behaves: error rates, power and blocks to a decision, by simulation.

Each simulated run goes through the code a real run does: blocks in ABBA order, the
stopping rule (compare.go_on) after every round, then compare.compare_run and
compare.gate over the blocks it ran. A block's value of each primary metric is
lognormal around its group's level, with a per-block spread (CV), a drift over the run
(a linear trend of DRIFT from the first block to the last) and an optional cost for
the second block of a pair (POSITION). Prints, per scenario:
  - A/A: the family-wise false-alarm rate (any BETTER or WORSE), the gate's false
    alarms, and the rate of SAME on every primary;
  - a change of exactly the margin: the rates of WORSE and of SAME there (each claim's
    error rate, at its hardest);
  - +5% and +10% on median TTFT: power (WORSE) and the blocks a group it took;
  - a 4-point sweep of A/As: the false-alarm rate across the points.
Usage: benchmarks/verdict_quality.py [--runs N] [--cv 0.03] [--drift 0.05] [--margin 5]
                                    [--min 4] [--max 12] [--position 0] [--seed 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collections"))
import numpy as np
from ansible_collections.servelab.vllm.plugins.module_utils.records import BlockSummary
from ansible_collections.servelab.vllm.plugins.module_utils.results import compare, stats
from ansible_collections.servelab.vllm.plugins.module_utils.results.collect import (
    RepResult,
    RunResults,
)

LEVELS = {"median_ttft_ms": 200.0, "median_tpot_ms": 80.0, "output_throughput": 12.0}


def simulate(
    rng: np.random.Generator,
    s: compare.Settings,
    effect: dict[str, float],
    cv: float,
    drift: float,
    position: float,
    points: int = 1,
    closed_loop: bool = True,
) -> RunResults:
    """One sequential run: rounds of ABBA blocks at every point until go_on says stop."""
    run = RunResults("sim")
    order = 0
    labels = [f"p{i}" if points > 1 else "default" for i in range(points)]
    for rep in range(1, s.max_pairs + 1):
        for label in labels:
            groups = ["baseline", "dev"] if rep % 2 else ["dev", "baseline"]
            for slot, group in enumerate(groups):
                order += 1
                t = order / (2 * s.max_pairs * points)  # 0..1 over the longest run
                summary = {"spec": {"request_rate": float("inf") if closed_loop else 1.0},
                           "context": {"order": order}, "saturated": False}  # fmt: skip
                for metric, level in LEVELS.items():
                    change = effect.get(metric, 0.0) if group == "dev" else 0.0
                    log = (np.log(level) + np.log1p(change) + drift * t + position * slot
                           + rng.normal(0, cv))  # fmt: skip
                    summary[metric] = float(np.exp(log))
                run.reps.append(
                    RepResult(
                        group, f"{group}-sim", label, rep, BlockSummary.from_json(summary), []
                    )
                )
        if rep % s.step == 0 or rep == s.max_pairs:  # the loop asks after each round
            go, _ = compare.go_on(run, s)
            if not go:
                break
    return run


def scenario(args, s: compare.Settings, effect: dict, points: int = 1) -> dict:
    """Rates over args.runs simulated runs: any false word (`alarm`: BETTER or WORSE on a
    metric with no effect), the gate, SAME on every primary, WORSE on median TTFT, and
    the blocks a group each run took."""
    rng = np.random.default_rng(args.seed)
    counts = {"alarm": 0, "gate": 0, "same": 0, "worse_ttft": 0, "same_ttft": 0, "undecided": 0}
    blocks = []
    for _ in range(args.runs):
        run = simulate(rng, s, effect, args.cv, args.drift, args.position, points)
        rows = [r for point in compare.compare_run(run, s).values() for r in point]
        null = [r["verdict"] for r in rows if r["primary"] and r["metric"] not in effect]
        words = [r["verdict"] for r in rows if r["primary"]]
        counts["alarm"] += any(w in (stats.BETTER, stats.WORSE) for w in null)
        counts["gate"] += bool(compare.gate({"all": rows}, [])) and not effect
        counts["same"] += all(w == stats.SAME for w in words)
        counts["undecided"] += any(w == stats.UNDECIDED for w in words)
        ttft = [r for r in rows if r["metric"] == "median_ttft_ms"]
        counts["worse_ttft"] += ttft[0]["verdict"] == stats.WORSE
        counts["same_ttft"] += ttft[0]["verdict"] == stats.SAME
        blocks.append(max(r.rep for r in run.reps))
    out = {k: v / args.runs for k, v in counts.items()}
    out["blocks_mean"] = statistics.fmean(blocks)
    out["blocks_max"] = max(blocks)
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--cv", type=float, default=0.03, help="per-block spread of a metric")
    p.add_argument("--drift", type=float, default=0.05, help="trend over the run (log)")
    p.add_argument("--position", type=float, default=0.0, help="cost of running second (log)")
    p.add_argument("--margin", type=float, default=5.0)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--min", type=int, default=4, dest="min_pairs")
    p.add_argument("--max", type=int, default=16, dest="max_pairs")
    p.add_argument("--rho", type=float, default=compare.Settings.rho)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def settings(args: argparse.Namespace) -> compare.Settings:
    return compare.Settings(
        confidence=args.confidence, margin_pct=args.margin, min_pairs=args.min_pairs,
        max_pairs=args.max_pairs, rho=args.rho,
    )  # fmt: skip


def main(argv: list[str]) -> int:
    args = parse(argv[1:])
    s = settings(args)
    alpha = 1 - args.confidence
    print(
        f"{args.runs} runs a scenario; per-block CV {args.cv:.1%}, drift {args.drift:.1%}, "
        f"position {args.position:.1%}; margin +-{args.margin:g}%, first look "
        f"{args.min_pairs}, budget {args.max_pairs} blocks a group, spending rho "
        f"{args.rho:g}, alpha {alpha:g}"
    )
    aa = scenario(args, s, {})
    print(
        f"A/A: false words (family) {aa['alarm']:.1%}, gate {aa['gate']:.1%} (nominal "
        f"<= {alpha:.0%}); SAME on every primary {aa['same']:.1%}; some UNDECIDED "
        f"{aa['undecided']:.1%}; blocks a group: mean {aa['blocks_mean']:.1f}, "
        f"max {aa['blocks_max']}"
    )
    # The claims' own error rates: a true change of exactly the margin is the hardest case
    # for both WORSE (which needs more than the margin) and SAME (which needs less).
    edge = scenario(args, s, {"median_ttft_ms": args.margin / 100})
    print(
        f"+{args.margin:g}% median TTFT (exactly the margin): WORSE {edge['worse_ttft']:.1%}, "
        f"SAME {edge['same_ttft']:.1%} (each nominal <= {alpha:.0%})"
    )
    for change in (0.05, 0.10):
        r = scenario(args, s, {"median_ttft_ms": change})
        print(
            f"+{change:.0%} median TTFT: WORSE {r['worse_ttft']:.1%}; false words on the "
            f"other primaries {r['alarm']:.1%}; blocks a group: mean {r['blocks_mean']:.1f}, "
            f"max {r['blocks_max']}"
        )
    sweep = scenario(args, s, {}, points=4)
    print(
        f"A/A sweep of 4 points: false words {sweep['alarm']:.1%}, gate {sweep['gate']:.1%} "
        f"(nominal <= {alpha:.0%}); SAME everywhere {sweep['same']:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
