# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare dev with baseline, per sweep point, metric by metric."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import stats
from .collect import RepResult, RunResults

# Every metric is compared on one value per repetition (and host): latencies take the
# statistic over that repetition's requests, throughputs its summary's figure.
LATENCY = [(name, stat) for name in ("ttft", "tpot", "itl", "e2el") for stat in ("median", "p99")]
THROUGHPUT = [
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "request_goodput",
]
DEFAULT_PRIMARY = ["median_ttft_ms", "median_tpot_ms", "output_throughput"]
# From this many repetitions a side, compare differences of repetition r (paired t):
# measured on the embedded default, pairing cut the MDE of median TTFT from 11.1% to 2.5%
# at 8 repetitions of a drifting run, while at 5 its n - 1 degrees of freedom made the
# MDE wider than Welch's for median TTFT in 2 of 3 runs and for median TPOT in 1 of 3
# (docs/results.md). Fixed in advance, never chosen by which interval is narrower.
PAIRED_MIN_REPS = 6


@dataclass
class Settings:
    confidence: float = 0.95  # family-wise over the primary metrics of one point
    threshold_pct: float = 2.0
    primary: list[str] = field(default_factory=lambda: list(DEFAULT_PRIMARY))
    # metric -> relative run-to-run spread (cv) from a calibration run, and its name
    calibration: dict = field(default_factory=dict)
    calibration_run: str = ""

    def alpha(self, metric: str) -> float:
        """The level a metric is tested at: the family-wise level split among the primary
        metrics (Bonferroni), the nominal level for the others."""
        alpha = 1 - self.confidence
        return alpha / max(len(self.primary), 1) if metric in self.primary else alpha


def latency_samples(reps: list[RepResult], name: str) -> list[float]:
    """Milliseconds, from the successful requests of these repetitions."""
    out: list[float] = []
    for rep in reps:
        for r in rep.requests:
            if not r.success:
                continue
            if name == "ttft":
                out.append(r.ttft * 1000)
            elif name == "e2el":
                out.append(r.latency * 1000)
            elif name == "itl":
                out.extend(x * 1000 for x in r.itl)
            elif name == "tpot" and (tpot := r.tpot) is not None:
                out.append(tpot * 1000)
    return out


def rep_values(reps: list[RepResult], metric: str) -> list[float]:
    """One value per repetition, in run order."""
    out = []
    for rep in reps:
        if metric in THROUGHPUT:
            if metric in rep.summary:
                out.append(float(rep.summary[metric]))
            continue
        stat, _, name = metric.removesuffix("_ms").partition("_")
        samples = latency_samples([rep], name)
        if samples:
            out.append(float(stats.statistic(stat)(stats.np.asarray(samples))))
    return out


def rep_pairs(base: list[RepResult], dev: list[RepResult], metric: str) -> tuple[list, list] | None:
    """Baseline's and dev's value of each repetition, aligned by repetition (None where one
    is missing), or None when a group ran more than one block per repetition (several
    hosts): only one block a side per repetition makes a pair of neighbours in time."""
    if len({r.rep for r in base}) != len(base) or len({r.rep for r in dev}) != len(dev):
        return None
    by_rep = [{r.rep: r for r in reps} for reps in (base, dev)]
    out: tuple[list, list] = ([], [])
    for rep in sorted(by_rep[0].keys() | by_rep[1].keys()):
        for side, reps in zip(out, by_rep, strict=True):
            values = rep_values([reps[rep]], metric) if rep in reps else []
            side.append(values[0] if values else None)
    return out


def metric_names() -> list[str]:
    return [f"{stat}_{name}_ms" for name, stat in LATENCY] + THROUGHPUT


def compare_point(base: list[RepResult], dev: list[RepResult], s: Settings) -> list[dict]:
    rows = []
    primaries = [m for m in metric_names() if m in s.primary]
    ordered = primaries + [m for m in metric_names() if m not in s.primary]
    for metric in ordered:
        pairs = rep_pairs(base, dev, metric)
        if pairs and len(pairs[0]) < PAIRED_MIN_REPS:
            pairs = None
        b, d = pairs or (rep_values(base, metric), rep_values(dev, metric))
        if metric in THROUGHPUT and not any(x is not None for x in b + d):
            continue
        cal = s.calibration.get(metric)
        if isinstance(cal, dict):  # {"welch": cv of a value, "paired": cv of a difference}
            cal = cal.get("paired" if pairs else "welch")
        rows.append(
            stats.compare(
                metric,
                b,
                d,
                lower_is_better=metric not in THROUGHPUT,
                alpha=s.alpha(metric),
                threshold_pct=s.threshold_pct,
                primary=metric in s.primary,
                spread_cv=cal,
                spread_source=f"calibration {s.calibration_run}" if cal is not None else "",
                pair=pairs is not None,
            ).to_dict()
        )
    return rows


def calibration_spread(run: RunResults) -> dict:
    """metric -> relative run-to-run spread of an A/A run's default point: of one
    repetition's value (welch: pooled sd / mean) and of one pair's difference (paired)."""
    out: dict = {}
    point = run.points()[0] if run.points() else None
    if point is None:
        return out
    base, dev = run.select("baseline", point), run.select("dev", point)
    for metric in metric_names():
        b, d = rep_values(base, metric), rep_values(dev, metric)
        values = b + d
        if len(values) <= 2 or not sum(values):
            continue
        mean = sum(values) / len(values)
        out[metric] = {"welch": stats.pooled_sd(b, d) / mean}
        pairs = rep_pairs(base, dev, metric)
        if pairs:
            kept_b, kept_d = stats.complete_pairs(*pairs)
            if len(kept_b) > 1:
                out[metric]["paired"] = stats.diff_sd(kept_b, kept_d) / mean
    return out


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
    """The comparisons on the gate metrics that are significantly worse (at the level each
    was tested at: the gate uses the report's family-wise rule)."""
    return [
        f"{point}: {row['metric']} ({stats.fmt((row['relative'] or 0) * 100, 1)}%)"
        for point, rows in comparisons.items()
        for row in rows
        if row["metric"] in metrics and row["verdict"] == stats.WORSE
    ]
