"""The study's table "in the seeds' form", from the runs' summary.csv beside this file.

Per run and group: the mean over the repetitions, with the 95% t interval of that mean,
of the request rate, mean TTFT, median TPOT (the per-request decode step: the summaries
hold no mean ITL) and output throughput. Prints the Markdown rows of h100-mps.md.
Usage: .venv/bin/python docs/evidence/h100-mps-8b/table.py
"""

from curves import interval, rows

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


def main() -> None:
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
