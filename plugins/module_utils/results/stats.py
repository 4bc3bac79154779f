# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Baseline vs dev: relative delta, bootstrap confidence interval, direction-aware verdict."""

from __future__ import annotations

import math
import traceback
from dataclasses import asdict, dataclass

try:
    import numpy as np

    IMPORT_ERROR = ""
except ImportError:  # the module reports it with missing_required_lib
    np = None
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


def compare(
    metric: str,
    base: list[float],
    dev: list[float],
    stat_name: str,
    lower_is_better: bool,
    confidence: float = 0.95,
    threshold_pct: float = 0.0,
    resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare one metric; better/worse needs the interval to exclude 0 and the change to
    reach threshold_pct."""
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
