#!/usr/bin/env python3
"""The blocks of an H200 run, kept small enough to commit, and the tables read from them.

  blocks.py extract RUN_DIR OUT.json   # a run directory as fetched -> one JSON, a block each
  blocks.py table BLOCKS.json          # per block: order, group, point, rep, latencies,
                                       # throughput, prefix cache hits, KV cache, GPU memory,
                                       # MPS share and SMs read back; then per group and
                                       # point the mean and its 95% t interval

Each block keeps what its summary.json recorded: the metrics below, the engines' prefix
cache and KV cache counters, the engine process's GPU memory and the MPS proof's share and
SMs, and its context (group, point, repetition, order, seed of its prompts where recorded).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

METRICS = ("mean_ttft_ms", "median_ttft_ms", "mean_itl_ms", "median_itl_ms", "median_tpot_ms",
           "request_throughput", "output_throughput", "achieved_rate")  # fmt: skip
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131}  # fmt: skip


def extract(run_dir: Path) -> list[dict]:
    out = []
    for path in sorted(run_dir.glob("*/*/*/rep-*/summary.json")):
        doc = json.loads(path.read_text())
        ctx = doc["context"]
        engines = [v for k, v in (doc.get("server") or {}).items() if "engine" in k]
        mps = ctx.get("mps") or {}
        procs = [p for e in mps.get("engines", []) for p in e.get("processes", [])]
        out.append({
            "order": ctx.get("order"), "group": ctx["group"], "point": ctx["point"],
            "rep": ctx["repetition"], "seed": (doc.get("dataset") or {}).get("seed"),
            "offered": (doc.get("spec") or {}).get("request_rate"),
            "saturated": doc.get("saturated"),
            **{m: doc.get(m) for m in METRICS},
            "prefix_cache_hits": sum(e.get("prefix_cache_hits") or 0 for e in engines),
            "prefix_cache_queries": sum(e.get("prefix_cache_queries") or 0 for e in engines),
            "kv_cache_tokens": sum((e.get("kv_cache") or {}).get("tokens") or 0 for e in engines),
            "gpu_memory": [p.get("memory") for p in procs],
            "mps_share": mps.get("active_thread_percentages"), "mps_sms": mps.get("sms"),
            "device_sms": mps.get("device_sms"),
        })  # fmt: skip
    return sorted(out, key=lambda b: b["order"] or 0)


def interval(values: list[float]) -> str:
    m = statistics.fmean(values)
    if len(values) < 2:
        return f"{m:.2f}"
    half = T975[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
    return f"{m:.2f} [{m - half:.2f}, {m + half:.2f}]"


def _point_order(key: tuple[str, str]) -> tuple:
    """rate-2 before rate-16: the point's number, then the group."""
    group, point = key
    name, _, number = point.rpartition("-")
    try:
        return name, float(number), group
    except ValueError:
        return point, 0.0, group


def table(blocks: list[dict]) -> None:
    print("| order | group | point | rep | median TTFT | median TPOT | out tok/s | prefix hits "
          "| KV tokens | GPU memory | MPS share (SMs) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for b in blocks:
        hit = b["prefix_cache_hits"] / b["prefix_cache_queries"] if b["prefix_cache_queries"] else 0
        print(f"| {b['order']} | {b['group']} | {b['point']} | {b['rep']} | "
              f"{b['median_ttft_ms']:.2f} | {b['median_tpot_ms']:.2f} | "
              f"{b['output_throughput']:.1f} | {hit:.1%} | {b['kv_cache_tokens']} | "
              f"{'/'.join(b['gpu_memory'])} | {'/'.join(b['mps_share'] or [])}% "
              f"({'/'.join(map(str, b['mps_sms'] or []))} of {b['device_sms']}) |")  # fmt: skip
    print("\n| group | point | blocks | " + " | ".join(METRICS) + " |")
    print("|---|---|---|" + "---|" * len(METRICS))
    keys = sorted({(b["group"], b["point"]) for b in blocks}, key=_point_order)
    for group, point in keys:
        sel = [b for b in blocks if b["group"] == group and b["point"] == point]
        cells = [interval([b[m] for b in sel]) for m in METRICS]
        print(f"| {group} | {point} | {len(sel)} | " + " | ".join(cells) + " |")


def main() -> int:
    if sys.argv[1:2] == ["extract"] and len(sys.argv) == 4:
        data = extract(Path(sys.argv[2]))
        Path(sys.argv[3]).write_text(json.dumps(data, indent=1) + "\n")
        print(f"{len(data)} blocks -> {sys.argv[3]}")
        return 0
    if sys.argv[1:2] == ["table"] and len(sys.argv) == 3:
        table(json.loads(Path(sys.argv[2]).read_text()))
        return 0
    sys.exit(__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
