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
        values = [r.summary.value("output_throughput") for r in run.select(group, point)]
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


VERDICT_COLORS = {
    "WORSE": "#d62728",
    "BETTER": "#2ca02c",
    "SAME": "#1f77b4",
    "UNDECIDED": "#7f7f7f",
}


def decision(comparisons: dict, out: Path) -> Path | None:
    """The forest plot: each primary's change (dev / baseline - 1) with the interval that
    decided it, against the +-margin band; the word beside it."""
    rows = [(point, r) for point, rs in comparisons.items() for r in rs if r["primary"]]
    rows = [(p, r) for p, r in rows if r["change_pct"] is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(rows)))
    margin = rows[0][1]["margin_pct"]
    ax.axvspan(-margin, margin, color="#1f77b4", alpha=0.12, label=f"+-{margin:g}% margin")
    ax.axvline(0, color="black", lw=0.8)
    for y, (_, r) in enumerate(reversed(rows)):
        color = VERDICT_COLORS.get(r["verdict"], "black")
        low, high = r["low_pct"], r["high_pct"]
        ax.errorbar(
            r["change_pct"], y, xerr=[[r["change_pct"] - low], [high - r["change_pct"]]],
            fmt="o", color=color, capsize=4,
        )  # fmt: skip
        ax.annotate(
            f"{r['verdict']} ({r['pairs']} blocks)", (high, y), xytext=(6, -4),
            textcoords="offset points", color=color,
        )  # fmt: skip
    labels = [f"{r['metric']}" + (f" [{p}]" if len(comparisons) > 1 else "") for p, r in rows]
    ax.set_yticks(range(len(rows)), list(reversed(labels)))
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set(xlabel="dev against baseline (%), with the interval at the level of its decision",
           title="What decided the verdict")  # fmt: skip
    ax.margins(x=0.25)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, out / "decision.png")


def run_order(run: RunResults, point: str, metrics: list[str], out: Path) -> Path | None:
    """Each block's value of each primary, in run order, per group: the drift, the ABBA
    order and a redone block show here."""
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for group in run.groups():
            reps = [r for r in run.select(group, point) if r.summary.context.order is not None]
            xs = [r.summary.context.order for r in reps]
            ys = [r.summary.value(metric) for r in reps]
            kept = [(x, y) for x, y in zip(xs, ys, strict=True) if isinstance(y, (int, float))]
            if kept:
                ax.plot(*zip(*kept, strict=True), marker="o", ls=":", label=group,
                        color=COLORS.get(group))  # fmt: skip
        ax.set(xlabel="block (run order)", title=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"Blocks in run order: {point}")
    return _save(fig, out / f"blocks_{_slug(point)}.png")


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
            thr.append(np.mean([r.summary.value("output_throughput") for r in reps]))
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


def decision_plots(run: RunResults, comparisons: dict, out: Path) -> list[Path]:
    """The forest plot, then the blocks in run order of each point compared."""
    out.mkdir(parents=True, exist_ok=True)
    made = [decision(comparisons, out)]
    for point, rows in comparisons.items():
        if point in run.points():
            made.append(run_order(run, point, [r["metric"] for r in rows if r["primary"]], out))
    return [p for p in made if p is not None]


def all_plots(run: RunResults, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for point in run.points():
        for name in ("ttft", "itl", "e2el"):
            made.append(cdf(run, point, name, out))
        made.append(throughput(run, point, out))
    made.append(sweep(run, out))
    return [p for p in made if p is not None]
