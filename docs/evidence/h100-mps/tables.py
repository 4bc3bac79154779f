"""Every figure of h100-mps.md's earlier record (2026-11-23), from the files beside this.

Each run's compare.json (the report's comparison: each metric's means, change, interval
of dev - baseline and verdict) and summary.csv (one row per repetition) give the tables
of runs 1-3 and the per-repetition values the text quotes. Prints them as Markdown.
Usage: .venv/bin/python docs/evidence/h100-mps/tables.py
"""

import csv
import json
from pathlib import Path

HERE = Path(__file__).parent
NAMES = {"median_ttft_ms": "median TTFT ms", "p99_ttft_ms": "p99 TTFT ms",
         "median_tpot_ms": "median TPOT ms", "p99_tpot_ms": "p99 TPOT ms",
         "median_itl_ms": "median ITL ms", "p99_e2el_ms": "p99 E2E ms",
         "request_throughput": "request throughput /s"}  # fmt: skip


def compare(run: str) -> dict[str, dict[str, dict]]:
    found = json.loads((HERE / run / "compare.json").read_text())["comparisons"]
    return {point: {c["metric"]: c for c in cs} for point, cs in found.items()}


def reps(run: str, point: str, group: str, key: str) -> list[str]:
    with (HERE / run / "summary.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["point"] == point and r["group"] == group]
    return [f"{float(r[key]):.2f}" for r in sorted(rows, key=lambda r: int(r["repetition"]))]


def verdict(c: dict) -> str:
    return "no significant change" if c["verdict"] == "no_change" else c["verdict"]


def run1() -> None:
    by = compare("1-fixed-rate")["default"]
    print("| metric | baseline (100%) | dev (50%) | delta % | 95% CI of dev - baseline | verdict |")
    print("|---|---|---|---|---|---|")
    for key, name in NAMES.items():
        c = by[key]
        print(f"| {name} | {c['baseline']:.2f} | {c['dev']:.2f} | {100 * c['relative']:.1f} "
              f"| [{c['ci_low']:.2f}, {c['ci_high']:.2f}] | {verdict(c)} |")  # fmt: skip
    base, dev = (reps("1-fixed-rate", "default", g, "median_tpot_ms") for g in ("baseline", "dev"))
    print(f"\nPer repetition, median TPOT ms: baseline {', '.join(base)}; dev {', '.join(dev)}.")


def run2() -> None:
    print("\n| concurrency | req/s baseline | req/s dev | delta % (95% CI of the difference) "
          "| median ITL ms base / dev | better or worse |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for point, by in compare("2-concurrency").items():
        rate, itl = by["request_throughput"], by["median_itl_ms"]
        moved = [f"{k} {verdict(c)} ({100 * c['relative']:+.1f}%)" for k, c in by.items()
                 if c["verdict"] in ("better", "worse")]  # fmt: skip
        ci = f"[{rate['ci_low']:.2f}, {rate['ci_high']:.2f}]"
        print(f"| {point.split('-')[1]} | {rate['baseline']:.2f} | {rate['dev']:.2f} "
              f"| {100 * rate['relative']:+.1f} ({ci}) "
              f"| {itl['baseline']:.2f} / {itl['dev']:.2f} "
              f"| {'; '.join(moved) or 'none'} |")  # fmt: skip
    base, dev = (reps("2-concurrency", "concurrency-64", g, "request_throughput")
                 for g in ("baseline", "dev"))  # fmt: skip
    print(f"\nPer repetition at 64, req/s: baseline {', '.join(base)}; dev {', '.join(dev)}.")


def run3() -> None:
    print("\n| MPS % | req/s (mean of 3) | per repetition | median ITL ms | better or worse "
          "against 100% |")  # fmt: skip
    print("|---|---|---|---|---|")
    points = compare("3-mps-sweep")
    first = next(iter(points.values()))
    base = "mps_active_thread_percentage-100"
    print(f"| 100 | {first['request_throughput']['baseline']:.2f} "
          f"| {', '.join(reps('3-mps-sweep', base, 'baseline', 'request_throughput'))} "
          f"| {first['median_itl_ms']['baseline']:.2f} | - |")  # fmt: skip
    for point, by in points.items():
        share = point.split(" ")[0].rsplit("-", 1)[1]
        moved = [f"{k} {verdict(c)} {100 * c['relative']:+.1f}% [{c['ci_low']:.2f}, "
                 f"{c['ci_high']:.2f}]" for k, c in by.items()
                 if c["verdict"] in ("better", "worse")]  # fmt: skip
        rate = by["request_throughput"]
        each = ", ".join(reps("3-mps-sweep", point.split(" ")[0], "baseline", "request_throughput"))
        ci = f"[{rate['ci_low']:.2f}, {rate['ci_high']:.2f}]"
        print(f"| {share} | {rate['dev']:.2f} | {each} "
              f"| {by['median_itl_ms']['dev']:.2f} | {'; '.join(moved) or 'none'}; throughput "
              f"{100 * rate['relative']:+.1f}% {ci} |")  # fmt: skip


if __name__ == "__main__":
    run1()
    run2()
    run3()
