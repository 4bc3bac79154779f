# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Baseline vs dev: relative delta, bootstrap confidence interval, direction-aware verdict."""

from __future__ import annotations

import math
import traceback
from dataclasses import asdict, dataclass

try:
    import numpy as np
    from scipy import stats as scipy_stats

    IMPORT_ERROR = ""
except ImportError:  # the module reports it with missing_required_lib
    np = scipy_stats = None
    IMPORT_ERROR = traceback.format_exc()

BETTER, WORSE, SAME, UNKNOWN = "better", "worse", "no significant change", "insufficient data"


@dataclass
class Comparison:
    metric: str
    baseline: float
    dev: float
    delta: float  # dev - baseline
    relative: float | None  # delta / baseline
    ci_low: float | None  # of dev - baseline
    ci_high: float | None
    verdict: str
    lower_is_better: bool
    n_baseline: int
    n_dev: int

    def to_dict(self) -> dict:
        return asdict(self)


def statistic(name: str):
    """The function a metric name asks for: median, mean or a percentile, along axis -1."""
    if name == "median":
        return lambda a: np.median(a, axis=-1)
    if name == "mean":
        return lambda a: np.mean(a, axis=-1)
    if name.startswith("p"):
        q = float(name[1:].replace("_", "."))
        return lambda a: np.percentile(a, q, axis=-1)
    raise ValueError(f"unknown statistic {name!r}")


def bootstrap_ci(
    base: np.ndarray, dev: np.ndarray, stat, confidence: float, resamples: int, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of stat(dev) - stat(base), resampling each group."""
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    # Batches keep memory bounded for large sample counts.
    batch = max(1, int(4_000_000 // max(len(base), len(dev))))
    for start in range(0, resamples, batch):
        k = min(batch, resamples - start)
        b = base[rng.integers(0, len(base), (k, len(base)))]
        d = dev[rng.integers(0, len(dev), (k, len(dev)))]
        diffs[start : start + k] = stat(d) - stat(b)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return float(low), float(high)


def clustered_bootstrap_ci(
    base: list, dev: list, stat, confidence: float, resamples: int, seed: int = 0
) -> tuple[float, float]:
    """Two-level percentile bootstrap of stat(dev) - stat(base) for samples that come in
    clusters (the requests of one repetition): each resample draws the clusters with
    replacement, then the samples within each drawn cluster, so that run-to-run variation
    widens the interval as it should. One cluster per side is the plain bootstrap."""
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)

    def draw(clusters: list) -> np.ndarray:
        picks = rng.integers(0, len(clusters), len(clusters))
        return np.concatenate(
            [clusters[i][rng.integers(0, len(clusters[i]), len(clusters[i]))] for i in picks]
        )

    for i in range(resamples):
        diffs[i] = stat(draw(dev)) - stat(draw(base))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return float(low), float(high)


def welch_ci(base: np.ndarray, dev: np.ndarray, confidence: float) -> tuple[float, float]:
    """Welch's t interval of mean(dev) - mean(base): for a few values per side (one per
    repetition), where a bootstrap of three values would understate the spread."""
    delta = float(np.mean(dev) - np.mean(base))
    if np.var(base) == 0 and np.var(dev) == 0:
        return delta, delta
    ci = scipy_stats.ttest_ind(dev, base, equal_var=False).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def compare(
    metric: str,
    base: list,
    dev: list,
    stat_name: str,
    lower_is_better: bool,
    confidence: float = 0.95,
    threshold_pct: float = 0.0,
    resamples: int = 2000,
    seed: int = 0,
    clustered: bool = False,
    method: str = "bootstrap",
) -> Comparison:
    """Compare one metric; better/worse needs the interval to exclude 0 and the change to
    reach threshold_pct. clustered: base and dev are lists of sample lists (one per
    repetition), compared on their pooled samples with a two-level bootstrap. method
    "welch": the interval of a difference of means is Welch's t interval."""
    if clustered:
        base_clusters = [np.asarray(c, dtype=float) for c in base if len(c)]
        dev_clusters = [np.asarray(c, dtype=float) for c in dev if len(c)]
        b = np.concatenate(base_clusters) if base_clusters else np.empty(0)
        d = np.concatenate(dev_clusters) if dev_clusters else np.empty(0)
    else:
        b = np.asarray(base, dtype=float)
        d = np.asarray(dev, dtype=float)
    if len(b) == 0 or len(d) == 0:
        nan = float("nan")
        return Comparison(
            metric, nan, nan, nan, None, None, None, UNKNOWN, lower_is_better, len(b), len(d)
        )
    stat = statistic(stat_name)
    vb, vd = float(stat(b)), float(stat(d))
    delta = vd - vb
    relative = delta / vb if vb else None
    if len(b) < 2 or len(d) < 2:
        return Comparison(
            metric, vb, vd, delta, relative, None, None, UNKNOWN, lower_is_better, len(b), len(d)
        )
    if method == "welch":
        low, high = welch_ci(b, d, confidence)
    elif clustered:
        low, high = clustered_bootstrap_ci(
            base_clusters, dev_clusters, stat, confidence, resamples, seed
        )
    else:
        low, high = bootstrap_ci(b, d, stat, confidence, resamples, seed)
    significant = low > 0 or high < 0
    big_enough = relative is None or abs(relative) * 100 >= threshold_pct
    if not (significant and big_enough):
        verdict = SAME
    else:
        improved = delta < 0 if lower_is_better else delta > 0
        verdict = BETTER if improved else WORSE
    return Comparison(
        metric, vb, vd, delta, relative, low, high, verdict, lower_is_better, len(b), len(d)
    )


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"
