"""The H200 study's table beside the seeds', and its plot, from the blocks' summaries.

Reads summaries/<share>-rep-<n>.json (each block's summary.json as the run wrote it) and
prints, per MPS share, the mean over its blocks of each figure with the 95% t interval of
that mean (none for one block), the blocks' values, each engine's KV cache capacity and
GPU memory, and the seeds' row with both curves as ratios to 100%. With --plot, writes
curves.png: mean TTFT, mean ITL and request throughput against the share, ours and the
seeds', each as a ratio to its own 100% (dots: blocks).
Usage: .venv/bin/python docs/evidence/h200-mps/table.py [--plot]
"""

import json
import statistics
import sys
from pathlib import Path

from scipy import stats

HERE = Path(__file__).parent
SHARES = [100, 80, 60, 40, 20]
# The seeds' study: RTX 4090, Qwen2.5-1.5B, ShareGPT, 100 prompts at 4 req/s (issue #29).
SEEDS = {  # share: (req/s, mean TTFT ms, mean ITL ms)
    20: (3.47, 42.97, 7.00),
    40: (3.56, 25.50, 5.77),
    60: (3.57, 21.12, 5.50),
    80: (3.58, 17.95, 5.25),
    100: (3.57, 17.21, 5.48),
}
FIGURES = [
    ("mean_ttft_ms", "mean TTFT ms", 1),
    ("median_ttft_ms", "median TTFT ms", 1),
    ("mean_itl_ms", "mean ITL ms", 2),
    ("median_itl_ms", "median ITL ms", 2),
    ("median_tpot_ms", "median TPOT ms", 2),
    ("request_throughput", "req/s", 3),
    ("output_throughput", "output tok/s", 2),
]


def blocks() -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {s: [] for s in SHARES}
    for f in sorted(HERE.glob("summaries/*.json")):
        s = json.loads(f.read_text())
        share = int(s["point"].rpartition("-")[2])
        engine = s["mps"]["engines"][0]
        assert engine["env"]["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == str(share), f
        out[share].append(s)
    return out


def mean_interval(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    se = statistics.stdev(values) / len(values) ** 0.5
    return mean, stats.t.ppf(0.975, len(values) - 1) * se


def cell(values: list[float], digits: int) -> str:
    mean, half = mean_interval(values)
    text = f"{mean:.{digits}f}"
    if half is not None:
        text += f" [{mean - half:.{digits}f}, {mean + half:.{digits}f}]"
    return text


def engine_memory_mib(s: dict) -> float:
    procs = s["mps"]["engines"][0]["processes"]
    return sum(float(p["memory"].removesuffix("MiB")) for p in procs)


def table(data: dict[int, list[dict]]) -> None:
    print("| share | blocks | " + " | ".join(label for _, label, _ in FIGURES) + " |")
    print("|---" * (len(FIGURES) + 2) + "|")
    for share in SHARES:
        got = data[share]
        cells = [cell([b[k] for b in got], d) for k, _, d in FIGURES]
        print(f"| {share}% | {len(got)} | " + " | ".join(cells) + " |")
    print("\nEach block's values (mean TTFT ms / mean ITL ms), in run order:")
    for share in SHARES:
        vals = ", ".join(
            f"block {b['order']}: {b['mean_ttft_ms']:.1f} / {b['mean_itl_ms']:.2f}"
            for b in sorted(data[share], key=lambda b: b["order"])
        )
        print(f"- {share}%: {vals}")
    print("\nEqual engines (each block's engine, as the summary recorded it):\n")
    print("| share | KV cache tokens | engine GPU memory MiB (nvidia-smi) | MPS client, share |")
    print("|---|---|---|---|")
    for share in SHARES:
        for b in sorted(data[share], key=lambda b: b["order"]):
            e = b["mps"]["engines"][0]
            kv = b["server"]["baseline-engine-0"]["kv_cache"]["tokens"]
            kind = ",".join(p["type"] for p in e["processes"])
            print(
                f"| {share}% (block {b['order']}) | {kv} | {engine_memory_mib(b):.0f} "
                f"| {len(e['clients'])} client(s) {kind}, "
                f"{e['env']['CUDA_MPS_ACTIVE_THREAD_PERCENTAGE']}% |"
            )
    every = [b for share in SHARES for b in data[share]]
    kvs = [b["server"]["baseline-engine-0"]["kv_cache"]["tokens"] for b in every]
    mems = [engine_memory_mib(b) for b in every]
    print(
        f"\nSpread over all blocks: KV cache {min(kvs)}-{max(kvs)} tokens "
        f"({100 * (max(kvs) - min(kvs)) / min(kvs):.2f}%), engine memory "
        f"{min(mems):.0f}-{max(mems):.0f} MiB ({100 * (max(mems) - min(mems)) / min(mems):.2f}%)"
    )
    base = {k: statistics.fmean(b[k] for b in data[100]) for k in ("mean_ttft_ms", "mean_itl_ms")}
    print("\nBeside the seeds (ratio to each study's own 100%):\n")
    print(
        "| share | ours: mean TTFT ms (x100%) | seeds: mean TTFT ms (x100%) "
        "| ours: mean ITL ms (x100%) | seeds: mean ITL ms (x100%) | ours: req/s | seeds: req/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for share in SHARES:
        got = data[share]
        ttft = statistics.fmean(b["mean_ttft_ms"] for b in got)
        itl = statistics.fmean(b["mean_itl_ms"] for b in got)
        rps = statistics.fmean(b["request_throughput"] for b in got)
        s_rps, s_ttft, s_itl = SEEDS[share]
        print(
            f"| {share}% | {ttft:.1f} (x{ttft / base['mean_ttft_ms']:.2f}) "
            f"| {s_ttft:.2f} (x{s_ttft / SEEDS[100][1]:.2f}) "
            f"| {itl:.2f} (x{itl / base['mean_itl_ms']:.2f}) "
            f"| {s_itl:.2f} (x{s_itl / SEEDS[100][2]:.2f}) | {rps:.2f} | {s_rps:.2f} |"
        )


def plot(data: dict[int, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("mean_ttft_ms", 1, "mean TTFT"), ("mean_itl_ms", 2, "mean ITL"),
              ("request_throughput", 0, "request throughput")]  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (key, seed_col, title) in zip(axes, panels, strict=True):
        ref = statistics.fmean(b[key] for b in data[100])
        for share in SHARES:
            ys = [b[key] / ref for b in data[share]]
            ax.plot([share] * len(ys), ys, "o", color="tab:blue", alpha=0.4, ms=4)
        ax.plot(SHARES, [statistics.fmean(b[key] for b in data[s]) / ref for s in SHARES],
                "-", color="tab:blue", label="H200, 8B shape, 2048/16 at 2 req/s")  # fmt: skip
        ax.plot(SHARES, [SEEDS[s][seed_col] / SEEDS[100][seed_col] for s in SHARES], "s--",
                color="tab:orange", label="seeds: RTX 4090, ShareGPT at 4 req/s")  # fmt: skip
        ax.set(title=title, xlabel="MPS active thread %", ylabel="ratio to 100%")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=90)


if __name__ == "__main__":
    data = blocks()
    table(data)
    if "--plot" in sys.argv:
        plot(data)
