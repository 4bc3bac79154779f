# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Baseline vs dev on one value per repetition: a paired t interval over the repetitions'
differences (Welch's t when the repetitions cannot be paired), a family-wise level over the
primary metrics (Bonferroni), and the minimum detectable effect (MDE).

Why paired: the blocks run ABBA, so repetition r of baseline and of dev are neighbours in
time. A drift of the machine that spans a few blocks moves both alike: it cancels in
their difference but counts twice in Welch's spread. On the embedded default one run's
blocks moved between 82 and 101 ms median TPOT; Welch's MDE was 11.4%, paired 5.3%.

Why one value per repetition: requests of one repetition share its conditions (the
engine's state, the machine's other load), so the repetition is the unit that varies
from run to run. Resampling requests, or even repetitions then requests, with three
repetitions a side understates that spread (benchmarks/false_alarm.py measures it); a t
interval on the repetitions' values holds its nominal rate with as few as two a side.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import asdict, dataclass, field

try:
    import numpy as np
    from scipy import stats as scipy_stats

    IMPORT_ERROR = ""
except ImportError:  # the module reports it with missing_required_lib
    np = scipy_stats = None
    IMPORT_ERROR = traceback.format_exc()

BETTER, WORSE, SAME, UNKNOWN = "better", "worse", "no significant change", "insufficient data"
POWER = 0.8  # the MDE is the change found 80% of the time


@dataclass
class Comparison:
    metric: str
    baseline: float  # mean over the repetitions of the per-repetition value
    dev: float
    delta: float  # dev - baseline
    relative: float | None  # delta / baseline
    ci_low: float | None  # of dev - baseline, at `level`
    ci_high: float | None
    p_value: float | None
    verdict: str
    lower_is_better: bool
    n_baseline: int  # repetitions (times hosts)
    n_dev: int
    primary: bool = True
    level: float = 0.95  # confidence of this interval (family-wise level / primaries)
    mde_pct: float | None = None  # smallest relative change this comparison would find
    mde_source: str = ""  # "calibration <run>" or "this run"
    reps_for_5pct: int | None = None  # repetitions a side that would find a 5% change
    baseline_reps: list = field(default_factory=list)  # per-repetition values, run order
    dev_reps: list = field(default_factory=list)
    method: str = "welch"  # "paired": differences of repetition r; "welch": two samples

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


def welch(base: list, dev: list, confidence: float) -> tuple[float, float, float]:
    """Welch's t interval of mean(dev) - mean(base), and the two-sided p value."""
    b, d = np.asarray(base, dtype=float), np.asarray(dev, dtype=float)
    delta = float(d.mean() - b.mean())
    if b.var() == 0 and d.var() == 0:  # identical repetitions: no spread to test against
        return delta, delta, 1.0 if delta == 0 else 0.0
    res = scipy_stats.ttest_ind(d, b, equal_var=False)
    ci = res.confidence_interval(confidence)
    return float(ci.low), float(ci.high), float(res.pvalue)


def paired(base: list, dev: list, confidence: float) -> tuple[float, float, float]:
    """t interval of the mean of dev[i] - base[i], and the two-sided p value."""
    diff = np.asarray(dev, dtype=float) - np.asarray(base, dtype=float)
    if diff.var() == 0:  # identical differences: no spread to test against
        delta = float(diff.mean())
        return delta, delta, 1.0 if delta == 0 else 0.0
    res = scipy_stats.ttest_rel(dev, base)
    ci = res.confidence_interval(confidence)
    return float(ci.low), float(ci.high), float(res.pvalue)


def diff_sd(base: list, dev: list) -> float:
    """Run-to-run standard deviation of one repetition's dev - baseline difference."""
    diff = np.asarray(dev, dtype=float) - np.asarray(base, dtype=float)
    return float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")


def pooled_sd(base: list, dev: list) -> float:
    """Run-to-run standard deviation of one repetition's value, both groups pooled."""
    b, d = np.asarray(base, dtype=float), np.asarray(dev, dtype=float)
    dof = max(len(b) - 1, 0) + max(len(d) - 1, 0)
    if dof == 0:
        return float("nan")
    ss = (((b - b.mean()) ** 2).sum() if len(b) else 0.0) + (
        ((d - d.mean()) ** 2).sum() if len(d) else 0.0
    )
    return math.sqrt(ss / dof)


def mde(
    sd: float, n_base: int, n_dev: int, alpha: float, power: float = POWER, method: str = "welch"
) -> float:
    """Smallest true difference that a two-sided test at alpha finds with this power (t
    approximation). welch: sd of one repetition's value, n_base + n_dev - 2 dof; paired:
    sd of one pair's difference, n - 1 dof for n pairs."""
    if method == "paired":
        n = min(n_base, n_dev)
        dof, scale = n - 1, math.sqrt(1 / n) if n else float("nan")
    else:
        dof = n_base + n_dev - 2
        scale = math.sqrt(1 / n_base + 1 / n_dev) if n_base and n_dev else 0.0
    if dof < 1 or not math.isfinite(sd):
        return float("nan")
    t = scipy_stats.t
    return (t.ppf(1 - alpha / 2, dof) + t.ppf(power, dof)) * sd * scale


def reps_needed(
    cv: float, change: float, alpha: float, power: float = POWER, cap: int = 200,
    method: str = "welch",
):  # fmt: skip
    """Repetitions a side for an MDE at or below `change` (relative), given the relative
    run-to-run spread cv (of a value, or of a pair's difference); None beyond cap."""
    if not math.isfinite(cv):
        return None
    for n in range(2, cap + 1):
        if mde(cv, n, n, alpha, power, method) <= change:
            return n
    return None


def _ok(x) -> bool:
    return x is not None and math.isfinite(x)


def complete_pairs(base: list, dev: list) -> tuple[list[float], list[float]]:
    """The repetitions that have a finite value on both sides, still aligned."""
    kept = [(float(x), float(y)) for x, y in zip(base, dev, strict=True) if _ok(x) and _ok(y)]
    return [x for x, _ in kept], [y for _, y in kept]


def compare(
    metric: str,
    base: list,
    dev: list,
    lower_is_better: bool,
    alpha: float = 0.05,
    threshold_pct: float = 0.0,
    primary: bool = True,
    spread_cv: float | None = None,
    spread_source: str = "this run",
    pair: bool = False,
) -> Comparison:
    """Compare one metric given one value per repetition and side, tested at `alpha`
    (the caller divides the family-wise level among the primary metrics).

    pair: base[i] and dev[i] are the same repetition (None where one is missing); the
    interval is then on their differences. better/worse needs the interval to exclude 0
    and the change to reach threshold_pct. spread_cv: the relative run-to-run spread from
    a calibration (of a pair's difference when paired), for the MDE; without it the MDE
    comes from this run's own repetitions."""
    if pair and len(base) == len(dev):
        b, d = complete_pairs(base, dev)
        pair = len(b) >= 2
    else:
        pair = False
    if not pair:
        b = [float(x) for x in base if _ok(x)]
        d = [float(x) for x in dev if _ok(x)]
    method = "paired" if pair else "welch"
    level = 1 - alpha
    if not b or not d:
        nan = float("nan")
        return Comparison(
            metric, nan, nan, nan, None, None, None, None, UNKNOWN, lower_is_better,
            len(b), len(d), primary, level, baseline_reps=b, dev_reps=d,
        )  # fmt: skip
    vb, vd = sum(b) / len(b), sum(d) / len(d)
    delta = vd - vb
    relative = delta / vb if vb else None
    cv = spread_cv
    if cv is None:
        sd = diff_sd(b, d) if pair else pooled_sd(b, d)
        cv, spread_source = (sd / abs(vb) if vb else float("nan")), "this run"
    mde_rel = mde(cv, len(b), len(d), alpha, method=method) if len(b) + len(d) > 2 else float("nan")
    needed = reps_needed(cv, 0.05, alpha, method=method)
    row = Comparison(
        metric, vb, vd, delta, relative, None, None, None, UNKNOWN, lower_is_better,
        len(b), len(d), primary, level,
        mde_pct=None if math.isnan(mde_rel) else mde_rel * 100,
        mde_source=spread_source, reps_for_5pct=needed, baseline_reps=b, dev_reps=d,
        method=method,
    )  # fmt: skip
    if len(b) < 2 or len(d) < 2:
        return row
    row.ci_low, row.ci_high, row.p_value = (paired if pair else welch)(b, d, level)
    significant = row.ci_low > 0 or row.ci_high < 0
    big_enough = relative is None or abs(relative) * 100 >= threshold_pct
    if not (significant and big_enough):
        row.verdict = SAME
    else:
        improved = delta < 0 if lower_is_better else delta > 0
        row.verdict = BETTER if improved else WORSE
    return row


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"
