"""Every figure of h100-mps.md's study, from the runs' files beside this file.

- The table "in the seeds' form", from each run's summary.csv: per run and group, the
  mean over the repetitions, with the 95% t interval of that mean, of the request rate,
  mean TTFT, median TPOT (the per-request decode step: the summaries hold no mean ITL)
  and output throughput.
- The verdicts table, from each run's compare.json (the report's comparison): verdict,
  relative change and interval of each primary metric, and the MDE.
- The ratios the reading quotes (mean TTFT at 20% over 100%, median TPOT's change).
Prints the Markdown of h100-mps.md.
Usage: .venv/bin/python docs/evidence/h100-mps-8b/table.py
"""

import json

from curves import HERE, interval, rows

# run -> (workload, baseline's label, dev's label)
RUNS = {
    "ab-100-20-prefill": ("prefill 2048/16", "100 (run 100 vs 20)", "20"),
    "ab-100-50-prefill": ("prefill 2048/16", "100 (run 100 vs 50)", "50"),
    "aa-100-100-prefill": ("prefill 2048/16", "100 (A/A, baseline)", "100 (A/A, dev)"),
    "ab-100-20-decode": ("decode 128/256", "100", "20"),
}


def cell(values: list[float], digits: int) -> str:
    mean, half = interval(values)
    return f"{mean:.{digits}f} [{mean - half:.{digits}f}, {mean + half:.{digits}f}]"


PRIMARY = ("median_ttft_ms", "median_tpot_ms", "output_throughput")
VERDICT_RUNS = {
    "ab-100-20-prefill": "100 vs 20, prefill",
    "ab-100-50-prefill": "100 vs 50, prefill",
    "aa-100-100-prefill": "A/A 100 vs 100, prefill",
    "ab-100-20-decode": "100 vs 20, decode",
}


def verdict_cell(c: dict) -> str:
    change = f"{100 * c['relative']:+.1f}%"
    if c["verdict"] in ("better", "worse"):
        digits = 2 if abs(c["ci_high"]) < 10 else 1
        unit = " ms" if c["metric"].endswith("_ms") else ""
        return (
            f"{c['verdict']}, {change} [{c['ci_low']:.{digits}f}, {c['ci_high']:.{digits}f}]{unit}"
        )
    return f"no significant change ({100 * c['relative']:.1f}%)"


def verdicts() -> None:
    print("| run | median TTFT | median TPOT | output throughput | MDE TTFT / TPOT / output |")
    print("|---|---|---|---|---|")
    for run, label in VERDICT_RUNS.items():
        found = json.loads((HERE / run / "compare.json").read_text())
        by = {c["metric"]: c for c in found["comparisons"]["default"]}
        mde = " / ".join(f"{by[m]['mde_pct']:.1f}" for m in PRIMARY)
        print(f"| {label} | " + " | ".join(verdict_cell(by[m]) for m in PRIMARY) + f" | {mde}% |")


def ratios() -> None:
    def mean(run: str, group: str, key: str) -> float:
        return interval([float(r[key]) for r in rows(run) if r["group"] == group])[0]

    ttft = [mean("ab-100-20-prefill", g, "mean_ttft_ms") for g in ("baseline", "dev")]
    print(f"mean TTFT at 20% over 100% (prefill): x{ttft[1] / ttft[0]:.2f}")
    for run in ("ab-100-20-prefill", "ab-100-20-decode"):
        tpot = [mean(run, g, "median_tpot_ms") for g in ("baseline", "dev")]
        print(f"median TPOT at 20% against 100% ({run}): {100 * (tpot[1] / tpot[0] - 1):+.1f}%")


def main() -> None:
    seeds_form()
    print()
    verdicts()
    print()
    ratios()


def seeds_form() -> None:
    print("| workload | share | req/s | mean TTFT (ms) | median TPOT (ms) | output tok/s |")
    print("|---|---|---|---|---|---|")
    for run, (workload, *labels) in RUNS.items():
        for group, label in zip(("baseline", "dev"), labels, strict=True):
            got = [r for r in rows(run) if r["group"] == group]
            col = {k: [float(r[k]) for r in got] for k in got[0]
                   if k not in ("group", "host", "point")}  # fmt: skip
            print(
                f"| {workload} | {label} | {interval(col['request_throughput'])[0]:.2f} "
                f"| {cell(col['mean_ttft_ms'], 1)} | {cell(col['median_tpot_ms'], 2)} "
                f"| {interval(col['output_throughput'])[0]:.1f} |"
            )


if __name__ == "__main__":
    main()
