# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Points of a sweep and repetitions of each: where each run goes and what it changes."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from .runner import RunSpec, build_workload, run, write_atomic

SWEEPS = ("none", "concurrency", "rate")


def point_label(sweep: str, value: float | str) -> str:
    if sweep == "none":
        return "default"
    if isinstance(value, float) and math.isinf(value):
        value = "inf"
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{sweep}-{value}"


def points(spec: RunSpec, sweep: str, values: list) -> list[tuple[str, RunSpec]]:
    """One RunSpec per sweep point."""
    if sweep not in SWEEPS:
        raise ValueError(f"sweep {sweep!r}: expected one of {', '.join(SWEEPS)}")
    if sweep == "none":
        return [("default", spec)]
    if not values:
        raise ValueError(f"a {sweep} sweep needs at least one value")
    out = []
    for value in values:
        if sweep == "concurrency":
            point = dataclasses.replace(spec, max_concurrency=int(value))
        else:
            point = dataclasses.replace(spec, request_rate=float(value))
        out.append((point_label(sweep, value), point))
    return out


def run_plan(
    spec: RunSpec,
    out_dir: Path,
    sweep: str,
    values: list,
    repetitions: int,
    context: dict,
    point_name: str = "",
) -> dict:
    """Run every point `repetitions` times; write index.json; return it.

    `point_name` names a single point run by the caller (a configuration sweep redeploys
    between points): its runs are added to the points already in index.json.
    """
    index: dict = {"sweep": sweep, "repetitions": repetitions, "points": {}}
    planned = points(spec, sweep, values)
    if point_name:
        if sweep != "none":
            raise ValueError("a named point cannot also sweep concurrency or rate")
        planned = [(point_name, spec)]
        previous = out_dir / "index.json"
        if previous.is_file():
            index = json.loads(previous.read_text())
        index.update(sweep=context.get("sweep", "knob"), repetitions=repetitions)
    for _, point in planned:
        point.check()  # every point is valid before the first one runs
    workload = None
    for label, point in planned:
        runs = []
        for rep in range(1, repetitions + 1):
            run_dir = out_dir / label / f"rep-{rep}"
            ctx = {"sweep": sweep, **context, "point": label, "repetition": rep}
            # Sweeps change load, not prompts: the workload is read once for the plan.
            workload = workload or build_workload(point)
            summary = run(point, run_dir, context=ctx, workload=workload)
            runs.append(
                {
                    "dir": str(run_dir.relative_to(out_dir)),
                    "completed": summary["completed"],
                    "failed": summary["failed"],
                    "errors": summary["errors"],
                    "request_throughput": summary["request_throughput"],
                    "median_ttft_ms": summary["median_ttft_ms"],
                    "median_tpot_ms": summary["median_tpot_ms"],
                }
            )
        index["points"][label] = runs
        write_atomic(out_dir / "index.json", json.dumps(index, indent=1))
    return index
