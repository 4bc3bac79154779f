# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verdict: dev against baseline, per primary metric, in one of four words.

WORSE / BETTER  the change is shown to lie beyond the margin (the whole interval of the
                ratio dev / baseline lies past +margin, or past -margin);
SAME            the change is shown to lie inside +-margin (the whole interval inside);
UNDECIDED       neither yet, with how many more blocks would likely decide it.

How (docs/results.md, "The verdict"):
- One value per block (a repetition of one group), compared on the log scale, so that
  the interval is one of the ratio and reads as a relative change. Block r of baseline and
  of dev ran next to each other (ABBA), so each repetition gives one pair and the test is
  a paired t on the pairs' log ratios, at every n: a drift of the machine over a few
  blocks cancels in a pair.
- From POSITION_MIN_PAIRS pairs on, the model also has a position term (+1 where dev ran
  second in its pair, -1 where first), so that a block that runs faster or slower for
  being second (a cache, a thaw) is not counted as noise or as an effect.
- With replication across deployments (the engines restarted every k rounds), the pairs
  of one deployment share its state (a compiled graph, a cache layout, a placement), so
  they are not independent: the unit becomes the deployment, its mean log ratio one
  value, and the t test runs over deployments (D - 1 df). ABBA rounds come in twos in a
  deployment, so the position term cancels in its mean. No claim before two.
- The margin is symmetric on the log scale: +-5% means a ratio in [1/1.05, 1.05].
- Each claim (WORSE, BETTER, SAME) is a one-sided test at level a: the (1 - 2a) interval
  of the ratio lies past the margin (WORSE, BETTER), or inside it (SAME: two one-sided
  tests, TOST). Holm's step-down shares a look's level among the undecided primaries.
- Sequential looks: a run is looked at after `min_pairs` pairs and every `step` pairs
  after, up to `max_pairs` (the budget). Look k may spend a_k = A(t_k) - A(t_k-1) of the
  family-wise alpha, with A(t) = alpha * t**rho and t = pairs / max_pairs (a Kim-DeMets
  power-family spending function). The union bound over looks keeps the chance of any
  false claim at or below alpha however the looks correlate, with no boundary tables.
  A decided metric keeps its word; the run stops when every primary has one.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import asdict, dataclass, field

try:
    import numpy as np
    from scipy import optimize, special
    from scipy import stats as scipy_stats

    IMPORT_ERROR = ""
except ImportError:  # the module reports it with missing_required_lib
    np = optimize = special = scipy_stats = None
    IMPORT_ERROR = traceback.format_exc()

WORSE, BETTER, SAME, UNDECIDED = "WORSE", "BETTER", "SAME", "UNDECIDED"
SECONDARY = "-"  # secondaries show an interval, never a word
POWER = 0.8  # the MDE is the change called WORSE 80% of the time
POSITION_MIN_PAIRS = 6  # from here the model has a position term (n - 2 df)
MORE_CAP = 1000  # "more than this many pairs" beyond it


@dataclass(frozen=True)
class Plan:
    """The sequential design of one run: its looks and the alpha each may spend."""

    confidence: float = 0.95  # 1 - alpha: family-wise over primaries, looks and points
    margin_pct: float = 5.0
    min_pairs: int = 4  # the first look
    max_pairs: int = 16  # the budget, in blocks a group per point
    step: int = 2  # pairs between looks: one ABBA round
    rho: float = 2.0  # shape of the spending function alpha * t**rho
    points: int = 1  # sweep points sharing alpha (Bonferroni)

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence {self.confidence}: expected 0 < x < 1")
        if not 0 < self.margin_pct < 100:
            raise ValueError(f"margin {self.margin_pct}%: expected 0 < x < 100")
        if not 2 <= self.min_pairs <= self.max_pairs:
            raise ValueError(
                f"repetitions: first look at {self.min_pairs}, budget {self.max_pairs}: "
                "expected 2 <= first look <= budget"
            )

    @property
    def alpha(self) -> float:
        return (1 - self.confidence) / max(self.points, 1)

    @property
    def log_margin(self) -> float:
        return math.log1p(self.margin_pct / 100)

    def spent(self, pairs: int) -> float:
        return self.alpha * min(1.0, pairs / self.max_pairs) ** self.rho

    def is_look(self, pairs: int) -> bool:
        return pairs == self.max_pairs or (
            pairs >= self.min_pairs and (pairs - self.min_pairs) % self.step == 0
        )

    def looks(self, pairs: int) -> list[int]:
        """The looks a run of `pairs` pairs took: the scheduled ones, and `pairs` itself
        when it stopped between two (a time budget, an interrupted run)."""
        out = [n for n in range(self.min_pairs, min(pairs, self.max_pairs) + 1) if self.is_look(n)]
        if pairs >= 2 and (not out or out[-1] != min(pairs, self.max_pairs)):
            out.append(min(pairs, self.max_pairs))
        return out


@dataclass
class Estimate:
    """The log ratio dev / baseline over n pairs: its mean effect, standard error, df."""

    n: int
    mu: float  # mean log ratio (the position term's average removed)
    se: float
    df: int
    sd: float  # of one pair's log ratio, the position term removed
    position: float | None = None  # log ratio of "dev second" over "dev first", halved
    units: int = 0  # independent units: n pairs, or the deployments they ran in
    # A crossover (the groups swapped hosts): log(dev's host / baseline's host) with the
    # same settings, and its standard error; mu is then net of it.
    host: float | None = None
    host_se: float | None = None

    def __post_init__(self) -> None:
        self.units = self.units or self.n

    def interval(self, a: float) -> tuple[float, float]:
        """The (1 - 2a) interval of mu: each end a one-sided bound at level a."""
        if self.se == 0:
            return self.mu, self.mu
        t = tq(1 - a, self.df)
        return self.mu - t * self.se, self.mu + t * self.se


def log_pairs(base: list, dev: list) -> tuple[list[float], list[float], list[int]]:
    """Logs of the pairs whose values are both finite and positive, and their indices."""
    xs, ys, kept = [], [], []
    for i, (b, d) in enumerate(zip(base, dev, strict=True)):
        if _pos(b) and _pos(d):
            xs.append(math.log(b))
            ys.append(math.log(d))
            kept.append(i)
    return xs, ys, kept


def estimate(
    base: list,
    dev: list,
    dev_second: list[bool] | None = None,
    deployment: list[int] | None = None,
    crossed: list[bool] | None = None,
) -> Estimate | None:
    """Paired estimate of log(dev / baseline); None below two usable pairs, or, where the
    pairs ran in several deployments (`deployment`, one index a pair), below two
    deployments: then `sd` is that of a deployment's mean log ratio.

    `crossed` (a crossover: True where the groups had swapped hosts) adds a host term,
    +1 before the swap and -1 after: the intercept is then the settings' effect, the
    mean of the two legs' means, and the term the hosts' offset. None until both legs
    have a pair: before the swap, host and settings cannot be told apart."""
    xs, ys, kept = log_pairs(base, dev)
    n = len(kept)
    if n < 2:
        return None
    d = np.asarray(ys) - np.asarray(xs)
    h = None
    if crossed is not None:
        h = np.asarray([-1.0 if crossed[i] else 1.0 for i in kept])
        if min((h > 0).sum(), (h < 0).sum()) < 1:
            return None
    if deployment is not None:
        groups = _by_deployment(d, kept, deployment)
        means = np.asarray([float(g.mean()) for g in groups])
        units = len(means)
        if h is not None:  # a deployment runs on one side of the swap
            legs = _by_deployment(h, kept, deployment)
            return _fit(means, [None, np.asarray([float(g[0]) for g in legs])], n, units)
        if units < 2:
            return None
        sd = float(np.std(means, ddof=1))
        return Estimate(n, float(np.mean(means)), sd / math.sqrt(units), units - 1, sd, None, units)
    s = None
    if dev_second is not None and n >= POSITION_MIN_PAIRS:
        s = np.asarray([1.0 if dev_second[i] else -1.0 for i in kept])
        if min((s > 0).sum(), (s < 0).sum()) < 2:  # one order only: nothing to separate
            s = None
    if s is None and h is None:
        sd = float(d.std(ddof=1))
        return Estimate(n, float(d.mean()), sd / math.sqrt(n), n - 1, sd)
    return _fit(d, [s, h], n, n)


def _fit(d, terms: list, n: int, units: int) -> Estimate | None:
    """Least squares of d on an intercept and the terms given ([position, host], None
    where absent; a position term that the host term leaves no room for is dropped):
    the intercept is the effect. None without a degree of freedom left."""
    position, host = terms
    both = position is not None and host is not None
    if both and np.linalg.matrix_rank(np.column_stack([np.ones(len(d)), position, host])) < 3:
        position = None
    cols = [np.ones(len(d))] + [t for t in (position, host) if t is not None]
    x = np.column_stack(cols)
    df = len(d) - x.shape[1]
    if df < 1:
        return None
    coef, *_ = np.linalg.lstsq(x, d, rcond=None)
    resid = d - x @ coef
    sd = float(math.sqrt((resid**2).sum() / df))
    cov = np.linalg.inv(x.T @ x)
    e = Estimate(n, float(coef[0]), sd * math.sqrt(cov[0, 0]), df, sd, None, units)
    if position is not None:
        e.position = float(coef[1])
    if host is not None:
        e.host, e.host_se = float(coef[-1]), sd * math.sqrt(cov[-1, -1])
    return e


def _by_deployment(d, kept: list[int], deployment: list[int]) -> list:
    """The log ratios `d` (of the pairs `kept`) split by deployment, in its order."""
    index = [deployment[i] for i in kept]
    return [d[[j for j, k in enumerate(index) if k == dep]] for dep in sorted(set(index))]


def within_deployments(base: list, dev: list, deployment: list[int]) -> Estimate | None:
    """The spread of one pair's log ratio around its deployment's mean (n - D df): what
    a calibration's pair spread is when its run was replicated across deployments."""
    xs, ys, kept = log_pairs(base, dev)
    d = np.asarray(ys) - np.asarray(xs)
    groups = _by_deployment(d, kept, deployment)
    df = len(kept) - len(groups)
    if df < 1:
        return None
    ss = sum(float(((g - g.mean()) ** 2).sum()) for g in groups)
    sd = math.sqrt(ss / df)
    return Estimate(len(kept), float(d.mean()), sd / math.sqrt(len(kept)), df, sd)


def p_values(e: Estimate, log_margin: float, lower_is_better: bool) -> dict[str, float]:
    """One-sided p value of each claim: WORSE, BETTER (beyond the margin), SAME (inside)."""
    up = _sf(_t(e.mu - log_margin, e.se), e.df)  # the ratio above 1 + margin
    down = _sf(_t(-log_margin - e.mu, e.se), e.df)  # below 1 / (1 + margin)
    above_low = _sf(_t(e.mu + log_margin, e.se), e.df)  # TOST: above the lower end ...
    below_high = _sf(_t(log_margin - e.mu, e.se), e.df)  # ... and below the upper end
    worse, better = (up, down) if lower_is_better else (down, up)
    return {WORSE: worse, BETTER: better, SAME: max(above_low, below_high)}


def _t(distance: float, se: float) -> float:
    if se:
        return distance / se
    return math.copysign(math.inf, distance) if distance else 0.0


def _sf(t: float, df: int) -> float:
    return float(special.stdtr(df, -t)) if math.isfinite(t) else (0.0 if t > 0 else 1.0)


def tq(q: float, df: int) -> float:
    """Student's t quantile (scipy.special: the distribution object is 20x slower)."""
    return float(special.stdtrit(df, q))


def holm(p: dict[str, float], level: float) -> list[str]:
    """The names whose p value Holm's step-down rejects at family-wise `level`."""
    out = []
    for i, (name, value) in enumerate(sorted(p.items(), key=lambda kv: kv[1])):
        if value > level / (len(p) - i):
            break
        out.append(name)
    return out


@dataclass
class Verdict:
    """One primary metric's word and what decided it."""

    verdict: str = UNDECIDED
    pairs: int = 0  # at the look that decided it, or the last look
    level: float = 0.0  # one-sided level of the claim (the interval is 1 - 2 * level)
    p_value: float | None = None  # of the claim made (or the nearest one, undecided)
    estimate: Estimate | None = None


def sequential(
    series: dict[str, tuple[list, list]],
    lower_is_better: dict[str, bool],
    plan: Plan,
    dev_second: list[bool] | None = None,
    deployment: list[int] | None = None,
    crossed: list[bool] | None = None,
) -> dict[str, Verdict]:
    """Replay the looks over the primaries' paired values (run order of the pairs) and
    return each primary's verdict. The same function decides whether a run goes on.
    A look with nothing to test (a crossover before its swap, one deployment) spends no
    alpha: the next look may spend it, and the union bound still holds."""
    n_pairs = max((len(b) for b, _ in series.values()), default=0)
    out = {m: Verdict() for m in series}
    spent = 0.0
    for look in plan.looks(n_pairs):
        level = plan.spent(look) - spent
        est, claims = {}, {}
        for m, (b, d) in series.items():
            if out[m].verdict != UNDECIDED:
                continue
            e = estimate(
                b[:look], d[:look], dev_second[:look] if dev_second else None,
                deployment[:look] if deployment else None, crossed[:look] if crossed else None,
            )  # fmt: skip
            if e is not None:
                ps = p_values(e, plan.log_margin, lower_is_better[m])
                claim = min(ps, key=ps.get)
                est[m], claims[m] = e, (claim, ps[claim])
        if not claims:
            continue
        spent = plan.spent(look)
        rejected = holm({m: p for m, (_, p) in claims.items()}, level)
        for rank, m in enumerate(rejected):
            claim, p = claims[m]
            out[m] = Verdict(claim, look, level / (len(claims) - rank), p, est[m])
        rest = level / max(len(claims) - len(rejected), 1)  # the next Holm step's level
        for m in claims.keys() - set(rejected):
            out[m] = Verdict(UNDECIDED, look, rest, claims[m][1], est[m])
    return out


def decided(verdicts: dict[str, Verdict]) -> bool:
    return bool(verdicts) and all(v.verdict != UNDECIDED for v in verdicts.values())


def pairs_needed(e: Estimate, log_margin: float, level: float, cap: int = MORE_CAP) -> int | None:
    """Pairs (in all) at which a run like this one would likely (80%) decide: the estimate
    taken as the truth, its distance from the margin to be cleared by the interval.
    Counted in units (pairs, or deployments of n / units pairs each)."""
    gap = abs(abs(e.mu) - log_margin)
    if not math.isfinite(e.sd) or e.sd == 0:
        return e.n
    p = e.units - e.df  # parameters of the model
    per_unit = e.n / e.units
    for u in range(max(e.units, p + 2), cap + 1):
        if (tq(1 - level, u - p) + tq(POWER, u - p)) * e.sd / math.sqrt(u) <= gap:
            return math.ceil(u * per_unit)
    return None


def pairs_for_same(sd: float, plan: Plan) -> int | str:
    """Blocks a group at which an A/A with this spread of a pair's log ratio is called SAME
    80% of the time, at the level the budget's last look gives one primary of three."""
    level = (plan.spent(plan.max_pairs) - plan.spent(plan.max_pairs - plan.step)) / 3
    for n in range(2, MORE_CAP + 1):
        if (tq(1 - level, n - 1) + tq(0.9, n - 1)) * sd / math.sqrt(n) <= plan.log_margin:
            return n
    return f"more than {MORE_CAP}"


def mde(e: Estimate, log_margin: float, level: float) -> float:
    """The smallest true change (log) called WORSE 80% of the time by this rule (the
    margin, the level, this many pairs and df): the noncentral t's power solved."""
    if not e.se or not math.isfinite(e.se):
        return float("nan")
    crit = tq(1 - level, e.df)

    def power_gap(ncp: float) -> float:
        return float(scipy_stats.nct.sf(crit, e.df, ncp)) - POWER

    ncp = optimize.brentq(power_gap, 0.0, crit + 50)
    return log_margin + ncp * e.se


def interval(
    base: list, dev: list, confidence: float, dev_second=None, deployment=None, crossed=None
):
    """A secondary's (or any) two-sided interval of the ratio, with its estimate."""
    e = estimate(base, dev, dev_second, deployment, crossed)
    if e is None:
        return None, None
    return e, e.interval((1 - confidence) / 2)


@dataclass
class Comparison:
    """One metric at one point: the groups' values, the ratio and its interval, the word."""

    metric: str
    primary: bool
    lower_is_better: bool
    baseline: float | None  # geometric mean over the blocks
    dev: float | None
    change_pct: float | None  # (ratio - 1) * 100
    low_pct: float | None  # the interval of the change, at `level`
    high_pct: float | None
    level: float  # two-sided confidence of that interval
    verdict: str
    pairs: int = 0  # used (at the deciding look for a decided primary)
    margin_pct: float = 0.0
    p_value: float | None = None
    mde_pct: float | None = None  # smallest worsening this rule finds 80% of the time
    more_pairs: int | None = None  # undecided: about this many more blocks a group
    position_pct: float | None = None  # the ABBA position term, where fitted
    host_pct: float | None = None  # a crossover's host offset, where fitted
    method: str = "paired log ratio"
    baseline_reps: list = field(default_factory=list)  # one value a block, run order
    dev_reps: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _pct(log_value: float | None) -> float | None:
    return (
        None if log_value is None or not math.isfinite(log_value) else math.expm1(log_value) * 100
    )


def _gmean(values: list) -> float | None:
    kept = [math.log(v) for v in values if _pos(v)]
    return math.exp(sum(kept) / len(kept)) if kept else None


def comparison(
    metric: str,
    base: list,
    dev: list,
    lower_is_better: bool,
    primary: bool,
    plan: Plan,
    verdict: Verdict | None = None,
    dev_second: list[bool] | None = None,
    deployment: list[int] | None = None,
    crossed: list[bool] | None = None,
) -> Comparison:
    """The row of one metric: a primary's from its sequential verdict, a secondary's with
    a nominal (confidence) interval and no word."""
    row = Comparison(
        metric, primary, lower_is_better, _gmean(base), _gmean(dev), None, None, None,
        plan.confidence, SECONDARY, margin_pct=plan.margin_pct,
        baseline_reps=list(base), dev_reps=list(dev),
    )  # fmt: skip
    if primary:
        v = verdict or Verdict()
        row.verdict, row.p_value, e = v.verdict, v.p_value, v.estimate
        if e is not None:
            row.level = 1 - 2 * v.level
            low, high = e.interval(v.level)
            row.pairs = e.n
            row.mde_pct = _pct(mde(e, plan.log_margin, v.level))
            if v.verdict == UNDECIDED:
                need = pairs_needed(e, plan.log_margin, v.level)
                row.more_pairs = None if need is None else max(need - e.n, plan.step)
        else:
            row.level = 0.0
    else:
        e, (low, high) = (None, (None, None))
        got = interval(base, dev, plan.confidence, dev_second, deployment, crossed)
        if got[0] is not None:
            e, (low, high) = got
            row.pairs = e.n
    if e is not None:
        row.change_pct, row.low_pct, row.high_pct = _pct(e.mu), _pct(low), _pct(high)
        row.position_pct, row.host_pct = _pct(e.position), _pct(e.host)
        if e.position is not None:
            row.method = "paired log ratio + ABBA position"
        if e.units != e.n:
            row.method = f"paired log ratio, {e.units} deployments as units"
        if e.host is not None:
            row.method += " + host (crossover)"
    return row


def _pos(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x) and x > 0


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


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"
