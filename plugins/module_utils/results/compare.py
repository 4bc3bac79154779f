# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare dev with baseline, per sweep point, metric by metric."""

from __future__ import annotations

from dataclasses import dataclass

from . import stats
from .collect import RepResult, RunResults

# Latency metrics compare per-request samples pooled over hosts and repetitions; their
# intervals resample repetitions, then requests within each (stats.clustered_bootstrap_ci).
LATENCY = [(name, stat) for name in ("ttft", "tpot", "itl", "e2el") for stat in ("median", "p99")]
# Throughput metrics compare one value per repetition (and host), with Welch's t interval.
THROUGHPUT = [
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "request_goodput",
]


@dataclass
class Settings:
    confidence: float = 0.95
    threshold_pct: float = 2.0
    resamples: int = 2000
    seed: int = 0


def latency_samples(reps: list[RepResult], name: str) -> list[float]:
    """Milliseconds, from the successful requests of these repetitions."""
    out: list[float] = []
    for rep in reps:
        for r in rep.requests:
            if not r.get("success"):
                continue
            if name == "ttft":
                out.append(r["ttft"] * 1000)
            elif name == "e2el":
                out.append(r["latency"] * 1000)
            elif name == "itl":
                out.extend(x * 1000 for x in r.get("itl") or [])
            elif name == "tpot" and r.get("tpot") is not None:
                out.append(r["tpot"] * 1000)
    return out


def compare_point(base: list[RepResult], dev: list[RepResult], s: Settings) -> list[dict]:
    rows = []
    for name, stat in LATENCY:
        rows.append(
            stats.compare(
                f"{stat}_{name}_ms",
                [latency_samples([rep], name) for rep in base],
                [latency_samples([rep], name) for rep in dev],
                stat,
                lower_is_better=True,
                confidence=s.confidence,
                threshold_pct=s.threshold_pct,
                resamples=s.resamples,
                seed=s.seed,
                clustered=True,
            ).to_dict()
        )
    for metric in THROUGHPUT:
        b = [r.summary[metric] for r in base if metric in r.summary]
        d = [r.summary[metric] for r in dev if metric in r.summary]
        if not b and not d:
            continue
        rows.append(
            stats.compare(
                metric,
                b,
                d,
                "mean",
                lower_is_better=False,
                confidence=s.confidence,
                threshold_pct=s.threshold_pct,
                resamples=s.resamples,
                seed=s.seed,
                method="welch",
            ).to_dict()
        )
    return rows


def single_group_sweep(run: RunResults) -> bool:
    """A sweep of baseline alone: its points are compared with its first."""
    return run.groups() == ["baseline"] and len(run.points()) > 1


def compare_run(run: RunResults, s: Settings) -> dict:
    """{title: [comparison rows]}: dev against baseline at every point both groups ran; for
    a sweep of one group, every later point against the first."""
    out: dict = {}
    points = run.points()
    if single_group_sweep(run):
        first = run.select("baseline", points[0])
        for point in points[1:]:
            out[f"{point} against {points[0]}"] = compare_point(
                first, run.select("baseline", point), s
            )
        return out
    for point in points:
        base, dev = run.select("baseline", point), run.select("dev", point)
        if base and dev:
            out[point] = compare_point(base, dev, s)
        else:
            missing = "baseline" if not base else "dev"
            run.problems.append(f"point {point}: no {missing} results; not compared")
    return out


def group_table(run: RunResults) -> list[dict]:
    """One row per group, point and repetition with the key figures (summary.csv)."""
    keys = [
        "completed",
        "failed",
        "duration",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "p99_ttft_ms",
        "median_tpot_ms",
        "median_itl_ms",
        "p99_itl_ms",
        "median_e2el_ms",
        "p99_e2el_ms",
    ]
    rows = []
    for rep in run.reps:
        row = {"group": rep.group, "host": rep.host, "point": rep.point, "repetition": rep.rep}
        row.update({k: rep.summary.get(k) for k in keys})
        rows.append(row)
    return rows


def gate(comparisons: dict, metrics: list[str]) -> list[str]:
    """The comparisons on the gate metrics that are significantly worse."""
    return [
        f"{point}: {row['metric']} ({stats.fmt((row['relative'] or 0) * 100, 1)}%)"
        for point, rows in comparisons.items()
        for row in rows
        if row["metric"] in metrics and row["verdict"] == stats.WORSE
    ]
