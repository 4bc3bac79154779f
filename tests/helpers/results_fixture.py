"""Synthetic benchmark results on disk, laid out as the benchmark module writes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ansible_collections.servelab.vllm.plugins.module_utils import layout
from ansible_collections.servelab.vllm.plugins.module_utils.bench import summary as bench_summary
from ansible_collections.servelab.vllm.plugins.module_utils.bench.spec import RunSpec
from ansible_collections.servelab.vllm.plugins.module_utils.records import RequestOutcome


def write_run(
    root: Path,
    run_id: str = "20261122T000000Z-abcdef123456",
    dev_scale: float = 1.5,
    reps: int = 3,
    points: tuple[str, ...] = ("default",),
    n: int = 40,
    seed: int = 0,
    config: dict | None = None,
    deployment_scales: tuple[float, ...] = (),
    hosts: dict | None = None,
    run_kind: str = "ab",
    crossover_after: int = 0,
    host_scales: dict | None = None,
) -> Path:
    """Baseline and dev results in ABBA order; dev's latencies are dev_scale times
    baseline's. The summaries are the benchmark's own (bench/summary.summarize). With
    `deployment_scales`, the repetitions ran in that many deployments (engines restarted
    between), and dev's latencies in deployment k are also scaled by its scale. `hosts`:
    group -> the host its blocks ran on (default <group>-local). `crossover_after` r:
    from repetition r + 1 each group runs on the other's host (a crossover), and every
    latency is also scaled by its host's `host_scales` entry."""
    rng = np.random.default_rng(seed)
    run = root / run_id
    where = {g: (hosts or {}).get(g, f"{g}-local") for g in ("baseline", "dev")}
    for group, scale in (("baseline", 1.0), ("dev", dev_scale)):
        for p_i, point in enumerate(points):
            load = 1 + p_i * 0.5
            for rep in range(1, reps + 1):
                crossed = rep > crossover_after if crossover_after else None
                name = (
                    where["dev" if group == "baseline" else "baseline"] if crossed else where[group]
                )
                host = run / group / name
                deployment = None
                scale_now = scale * (host_scales or {}).get(name, 1.0)
                if deployment_scales:
                    deployment = (rep - 1) * len(deployment_scales) // reps
                    scale_now *= deployment_scales[deployment] if group == "dev" else 1
                rep_dir = layout.rep_dir(host / point, rep)
                rep_dir.mkdir(parents=True)
                requests = []
                for i in range(n):
                    ttft = float(rng.lognormal(np.log(0.1 * load), 0.2)) * scale_now
                    itl = rng.lognormal(np.log(0.03 * load), 0.1, 31) * scale_now
                    itl = [float(x) for x in itl]
                    latency = ttft + sum(itl)
                    requests.append(
                        {
                            "index": i,
                            "start": i * 0.25,
                            "success": True,
                            "ttft": ttft,
                            "latency": latency,
                            "itl": itl,
                            "prompt_tokens": 20,
                            "output_tokens": 32,
                            "tpot": (latency - ttft) / 31,
                        }
                    )
                duration = 10.0 * scale * float(rng.normal(1, 0.01))
                outcomes = [RequestOutcome.from_record(r) for r in requests]
                first = group == ("baseline" if rep % 2 else "dev")  # ABBA
                started = 1_795_000_000.0 + 100 * p_i + rep  # points run in order
                run_figures = {
                    "started_at": started, "ended_at": started + duration, "warmup": {},
                    "interrupted": False, "host_load": {}, "server": {}, "dataset": {},
                    "client": {},
                }  # fmt: skip
                context = {
                    "order": (p_i + (rep - 1) * len(points)) * 2 + (1 if first else 2),
                    "config": config or {},
                    "versions": {"engine": "0.32.0", "router": "0.1.17", "model": "m"},
                    "config_hash": "abcdef123456",
                    "group": group,
                    "point": point,
                    "repetition": rep,
                    "deployment": deployment,
                    "run_kind": run_kind,
                    "crossed": crossed,
                }
                # A closed loop (rate inf): throughput can move.
                spec = RunSpec(url="http://u", model="m", percentiles=[50, 99])
                summary = bench_summary.summarize(
                    spec, outcomes, duration, duration, run_figures, context
                )
                (rep_dir / layout.SUMMARY).write_text(json.dumps(summary))
                (rep_dir / layout.REQUESTS).write_text(
                    "".join(json.dumps(r) + "\n" for r in requests)
                )
    return run
