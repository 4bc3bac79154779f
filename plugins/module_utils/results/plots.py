# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PNG plots of a run: latency CDFs, throughput per group, sweep curves."""

from __future__ import annotations

import io
import re
from pathlib import Path

from ..atomic import write_atomic
from .collect import RunResults
from .compare import latency_samples

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
except ImportError:  # the module reports it with missing_required_lib
    plt = np = None

COLORS = {"baseline": "#1f77b4", "dev": "#d62728"}
TITLES = {"ttft": "Time to first token", "itl": "Inter-token latency", "e2el": "End-to-end latency"}


def _save(fig, path: Path) -> Path:
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, png.getvalue())
    return path


def cdf(run: RunResults, point: str, name: str, out: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for group in run.groups():
        values = np.sort(latency_samples(run.select(group, point), name))
        if len(values):
            ax.step(
                values,
                np.arange(1, len(values) + 1) / len(values),
                where="post",
                label=f"{group} (n={len(values)})",
                color=COLORS.get(group),
            )
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    if all(min(line.get_xdata()) > 0 for line in ax.get_lines()):
        ax.set_xscale("log")  # latencies span orders of magnitude between median and tail
    ax.set(
        xlabel=f"{name.upper()} (ms, log scale)"
        if ax.get_xscale() == "log"
        else f"{name.upper()} (ms)",
        ylabel="fraction of requests",
        title=f"{TITLES[name]}: {point}",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out / f"cdf_{name}_{_slug(point)}.png")


def throughput(run: RunResults, point: str, out: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = run.groups()
    for i, group in enumerate(groups):
        values = [r.summary["output_throughput"] for r in run.select(group, point)]
        if values:
            ax.bar(i, np.mean(values), color=COLORS.get(group), alpha=0.6, label=group)
            ax.scatter([i] * len(values), values, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(groups)), groups)
    ax.set(
        ylabel="output tokens/s (bars: mean, dots: repetitions)",
        title=f"Output throughput: {point}",
    )
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / f"throughput_{_slug(point)}.png")


def point_value(point: str) -> tuple[str, float]:
    """('concurrency', 4.0) from 'concurrency-4'; infinite rates sort last."""
    knob, _, value = point.rpartition("-")
    try:
        return knob, float(value)
    except ValueError:
        return knob, float("nan")


def sweep(run: RunResults, out: Path) -> Path | None:
    """Throughput and p95 TTFT and ITL against the swept value, per group."""
    pts = [p for p in run.points() if not np.isnan(point_value(p)[1])]
    if len(pts) < 2:
        return None
    knob = point_value(pts[0])[0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for group in run.groups():
        xs, thr, ttft, itl = [], [], [], []
        for p in sorted(pts, key=lambda p: point_value(p)[1]):
            reps = run.select(group, p)
            if not reps:
                continue
            xs.append(point_value(p)[1])
            thr.append(np.mean([r.summary["output_throughput"] for r in reps]))
            ttft.append(np.percentile(latency_samples(reps, "ttft") or [np.nan], 95))
            itl.append(np.percentile(latency_samples(reps, "itl") or [np.nan], 95))
        for ax, ys in zip(axes, (thr, ttft, itl), strict=True):
            ax.plot(xs, ys, marker="o", label=group, color=COLORS.get(group))
    for ax, label in zip(axes, ("output tokens/s", "p95 TTFT (ms)", "p95 ITL (ms)"), strict=True):
        ax.set(xlabel=knob, ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Sweep over {knob}")
    return _save(fig, out / "sweep.png")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def all_plots(run: RunResults, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for point in run.points():
        for name in ("ttft", "itl", "e2el"):
            made.append(cdf(run, point, name, out))
        made.append(throughput(run, point, out))
    made.append(sweep(run, out))
    return [p for p in made if p is not None]
