# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare dev with baseline, per sweep point, metric by metric."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import layout
from . import stats
from .collect import RepResult, RunResults

# Every metric is compared on one value per block: latencies take the statistic over that
# block's requests, throughputs its summary's figure.
THROUGHPUT = list(layout.THROUGHPUT_METRICS)
DEFAULT_PRIMARY = ["median_ttft_ms", "median_tpot_ms", "output_throughput"]


@dataclass
class Settings:
    """How a run is judged: the family-wise level, the margin, the primaries, and the
    sequential plan (first look, budget) the run was measured under."""

    confidence: float = 0.95  # family-wise: primaries, looks and sweep points
    margin_pct: float = 5.0
    primary: list[str] = field(default_factory=lambda: list(DEFAULT_PRIMARY))
    min_pairs: int = 4  # the first look, in blocks a group per point
    max_pairs: int = 16  # the budget
    step: int = 2
    rho: float = 2.0
    # metric -> {"sd": sd of a pair's log ratio, "df": its degrees of freedom, "runs": [...]}
    calibration: dict = field(default_factory=dict)
    calibration_run: str = ""

    def plan(self, points: int = 1) -> stats.Plan:
        return stats.Plan(
            self.confidence, self.margin_pct, self.min_pairs, max(self.max_pairs, self.min_pairs),
            self.step, self.rho, points,
        )  # fmt: skip


def verdict_argument_spec() -> dict:
    """The options of the verdict that the results and stop_rule modules share."""
    return {
        "confidence": {"type": "float", "default": 0.95},
        "margin_pct": {"type": "float", "default": 5},
        "primary_metrics": {"type": "list", "elements": "str", "default": list(DEFAULT_PRIMARY)},
    }


def metric_names() -> list[str]:
    return list(layout.COMPARED)


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
    """One value per block, in run order: the summary's figure (the benchmark computed it
    from the same requests, and the stopping rule read it there), else from the requests."""
    out = []
    for rep in reps:
        value = rep.summary.value(metric)
        if value is not None:
            out.append(value)
            continue
        if metric in THROUGHPUT:
            continue
        stat, _, name = metric.removesuffix("_ms").partition("_")
        samples = latency_samples([rep], name)
        if samples:
            out.append(float(stats.statistic(stat)(stats.np.asarray(samples))))
    return out


def _by_rep(reps: list[RepResult]) -> dict[int, list[RepResult]]:
    out: dict[int, list[RepResult]] = {}
    for r in reps:
        out.setdefault(r.rep, []).append(r)
    return out


def rep_pairs(base: list[RepResult], dev: list[RepResult], metric: str) -> tuple[list, list]:
    """Baseline's and dev's value of each repetition, aligned (None where one is missing).
    A group with several hosts has one block a host in a repetition: their geometric
    mean is the group's value, so the pairing by repetition holds at any host count."""
    by = [_by_rep(base), _by_rep(dev)]
    out: tuple[list, list] = ([], [])
    for rep in sorted(by[0].keys() | by[1].keys()):
        for side, groups in zip(out, by, strict=True):
            values = [v for v in rep_values(groups.get(rep, []), metric) if v > 0]
            side.append(math.exp(sum(map(math.log, values)) / len(values)) if values else None)
    return out


def dev_second(base: list[RepResult], dev: list[RepResult]) -> list[bool] | None:
    """Per repetition, whether dev's block ran after baseline's (the ABBA position), from
    the blocks' `order`; None when an order is missing."""
    by = [_by_rep(base), _by_rep(dev)]
    out = []
    for rep in sorted(by[0].keys() | by[1].keys()):
        orders = [[r.summary.context.order for r in g.get(rep, [])] for g in by]
        if not all(orders) or None in orders[0] + orders[1]:
            return None
        out.append(min(orders[1]) > min(orders[0]))
    return out


def deployments(base: list[RepResult], dev: list[RepResult]) -> list[int] | None:
    """Per repetition, the deployment its blocks ran in (the engines restarted every k
    rounds: VLLM_BENCHMARK_REDEPLOY_EVERY); None for a run without replication."""
    by = [_by_rep(base), _by_rep(dev)]
    out = []
    for rep in sorted(by[0].keys() | by[1].keys()):
        seen = {r.summary.context.deployment for g in by for r in g.get(rep, [])}
        if None in seen or len(seen) != 1:
            return None
        out.append(int(seen.pop()))
    return out


def crossed(base: list[RepResult], dev: list[RepResult]) -> list[bool] | None:
    """Per repetition, whether its blocks ran after a crossover's swap (each group on the
    other's hosts); None for a run without a crossover (VLLM_BENCHMARK_CROSSOVER: its
    blocks' context.crossed is None). Before its swap a crossover's list is all False,
    and the estimate makes no claim."""
    if all(r.summary.context.crossed is None for r in base + dev):
        return None
    by = [_by_rep(base), _by_rep(dev)]
    return [
        any(r.summary.context.crossed for g in by for r in g.get(rep, []))
        for rep in sorted(by[0].keys() | by[1].keys())
    ]


def design(base: list[RepResult], dev: list[RepResult]) -> tuple:
    """What the estimate models beside the pairs: (dev_second, deployment, crossed)."""
    return dev_second(base, dev), deployments(base, dev), crossed(base, dev)


def throughput_moves(reps: list[RepResult]) -> bool:
    """Whether the load lets throughput move: a closed loop (no rate: the server sets the
    pace) or a saturated block. At a fixed pace below capacity, throughput follows the
    offered rate whatever the server does (a 10% slower TPOT moved it by 1.5%)."""
    return any(r.summary.request_rate is None or r.summary.saturated for r in reps)


def primaries(base: list[RepResult], dev: list[RepResult], s: Settings) -> list[str]:
    """The primary metrics at a point: the configured ones the load lets move."""
    moves = throughput_moves(base + dev)
    return [m for m in metric_names() if m in s.primary and (moves or m not in THROUGHPUT)]


def point_verdicts(
    base: list[RepResult], dev: list[RepResult], s: Settings, points: int = 1
) -> dict[str, stats.Verdict]:
    """The sequential verdict of each primary at one point (stats.sequential)."""
    series = {m: rep_pairs(base, dev, m) for m in primaries(base, dev, s)}
    series = {m: v for m, v in series.items() if any(x is not None for x in v[0] + v[1])}
    lower = {m: m not in THROUGHPUT for m in series}
    return stats.sequential(series, lower, s.plan(points), *design(base, dev))


def compare_point(
    base: list[RepResult], dev: list[RepResult], s: Settings, points: int = 1
) -> list[dict]:
    """Every metric's row at a point: the primaries with their verdict, then the
    secondaries with an interval and no word."""
    verdicts = point_verdicts(base, dev, s, points)
    shape = design(base, dev)
    plan = s.plan(points)
    rows = []
    for metric in list(verdicts) + [m for m in metric_names() if m not in verdicts]:
        b, d = rep_pairs(base, dev, metric)
        if not any(x is not None for x in b + d):
            continue
        row = stats.comparison(
            metric, b, d, metric not in THROUGHPUT, metric in verdicts, plan,
            verdicts.get(metric), *shape,
        )  # fmt: skip
        rows.append(row.to_dict())
    return rows


def go_on(run: RunResults, s: Settings, comparisons: int = 0) -> tuple[bool, str]:
    """The stopping rule the block loop asks after each round: whether to run another,
    and why (stats.sequential over the blocks so far, at every comparison the report
    will make: compared_points). A pair is a repetition both sides of a comparison ran;
    the rule counts the fewest any comparison has. `comparisons`: how many the run will
    make, when the blocks so far hold only some of them (a sweep of dev's setting asks
    about one value at a time): the family-wise level is shared among all of them."""
    pairs = compared_points(run)
    if not pairs:
        return True, "no pair of blocks yet"
    unit = "a point" if single_group_sweep(run) else "a group"
    done = min(len(_by_rep(a).keys() & _by_rep(b).keys()) for a, b in pairs.values())
    if done >= s.max_pairs:
        return False, f"the budget of {s.max_pairs} blocks {unit} is spent"
    # Only the planned looks may stop a run on its data: a look between them would spend
    # alpha the plan gave to the next one (a stop for time may come anywhere: the report
    # then takes one look where it stopped, which the data did not choose).
    if not s.plan(max(comparisons, len(pairs))).is_look(done):
        return True, f"{done} blocks {unit}, between looks"
    open_ = [
        title
        for title, verdicts in run_verdicts(run, s, comparisons).items()
        if not stats.decided(verdicts)
    ]
    if not open_:
        return False, f"every primary metric is decided after {done} blocks {unit}"
    return True, f"undecided at {', '.join(open_)} after {done} blocks {unit}"


def calibration_spread(run: RunResults) -> dict:
    """metric -> the spread of one pair's log ratio in an A/A run's first point (the
    position term removed where fitted), with its degrees of freedom. A run replicated
    across deployments also gives the spread between them: the sd of a deployment's
    true mean log ratio, sqrt(var(deployment means) - within var / pairs a deployment),
    and the pair spread is then the one within deployments."""
    out: dict = {}
    point = run.points()[0] if run.points() else None
    if point is None:
        return out
    base, dev = run.select("baseline", point), run.select("dev", point)
    order, deployed, swapped = design(base, dev)
    for metric in metric_names():
        b, d = rep_pairs(base, dev, metric)
        e = stats.estimate(b, d, order, None, swapped)
        if deployed is not None:
            e = stats.within_deployments(b, d, deployed) or e
        if e is None or not math.isfinite(e.sd):
            continue
        out[metric] = {"sd": e.sd, "df": e.df, "runs": [run.run_id]}
        between = stats.estimate(b, d, None, deployed) if deployed is not None else None
        if between is not None:
            excess = between.sd**2 - e.sd**2 * between.units / between.n
            out[metric].update(between_sd=math.sqrt(max(excess, 0.0)), deployments=between.units)
    return out


def pool_spreads(spreads: list[dict]) -> dict:
    """Several calibrations' spreads pooled per metric: sum(df * sd^2) / sum(df), their
    degrees of freedom added; the spread between deployments likewise, over the
    calibrations that were replicated (deployments - 1 df each)."""
    out: dict = {}
    for spread in spreads:
        for metric, c in spread.items():
            acc = out.setdefault(metric, {"ss": 0.0, "df": 0, "runs": [], "bss": 0.0, "bdf": 0})
            acc["ss"] += c["df"] * c["sd"] ** 2
            acc["df"] += c["df"]
            acc["runs"] += c["runs"]
            if "between_sd" in c:
                acc["bss"] += (c["deployments"] - 1) * c["between_sd"] ** 2
                acc["bdf"] += c["deployments"] - 1
    pooled = {}
    for m, a in out.items():
        if not a["df"]:
            continue
        pooled[m] = {"sd": math.sqrt(a["ss"] / a["df"]), "df": a["df"], "runs": a["runs"]}
        if a["bdf"]:
            pooled[m].update(between_sd=math.sqrt(a["bss"] / a["bdf"]), deployments=a["bdf"] + 1)
    return pooled


def group_hosts(run: RunResults) -> dict[str, list[str]]:
    """group -> the hosts its blocks ran on."""
    out: dict[str, set] = {}
    for r in run.reps:
        out.setdefault(r.group, set()).add(r.host)
    return {g: sorted(h) for g, h in out.items()}


def across_hosts(run: RunResults) -> bool:
    """Whether baseline and dev ran on different declared hosts: then every difference
    between the groups carries the hosts' difference too. (The local platform's two
    inventory hosts are this machine; a Kubernetes group's is the controller.)"""
    hosts = group_hosts(run)
    platforms = {r.summary.context.config.get("vllm_platform") for r in run.reps}
    return (
        platforms == {"declared_hosts"}
        and {"baseline", "dev"} <= hosts.keys()
        and not set(hosts["baseline"]) & set(hosts["dev"])
    )


def point_estimates(run: RunResults, confidence: float) -> dict:
    """metric -> the first point's paired estimate of log(dev / baseline) with its
    nominal two-sided interval (no word): in an A/A across hosts this is the host offset."""
    point = run.points()[0] if run.points() else None
    if point is None:
        return {}
    base, dev = run.select("baseline", point), run.select("dev", point)
    shape = design(base, dev)
    out = {}
    for metric in metric_names():
        b, d = rep_pairs(base, dev, metric)
        e, bounds = stats.interval(b, d, confidence, *shape)
        if e is not None and math.isfinite(e.se):
            out[metric] = {"mu": e.mu, "se": e.se, "df": e.df, "low": bounds[0],
                           "high": bounds[1], "pairs": e.n}  # fmt: skip
            if e.host is not None:  # a crossover: the hosts' offset, same settings
                t = stats.tq(1 - (1 - confidence) / 2, e.df)
                out[metric]["host"] = {"mu": e.host, "low": e.host - t * e.host_se,
                                       "high": e.host + t * e.host_se}  # fmt: skip
    return out


def net_of(effect: dict, offset: dict, confidence: float) -> tuple[float, float, float]:
    """An effect measured across hosts less the hosts' offset measured with the same
    settings (log scale): the difference, and its interval with Welch's degrees of
    freedom (the two runs' errors are independent)."""
    mu = effect["mu"] - offset["mu"]
    va, vb = effect["se"] ** 2, offset["se"] ** 2
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / max(effect["df"], 1) + vb**2 / max(offset["df"], 1)) if se else 1
    t = stats.tq(1 - (1 - confidence) / 2, max(df, 1))
    return mu, mu - t * se, mu + t * se


def single_group_sweep(run: RunResults) -> bool:
    """A sweep of baseline alone: its points are compared with its first."""
    return run.groups() == ["baseline"] and len(run.points()) > 1


def compared_points(run: RunResults) -> dict[str, tuple[list[RepResult], list[RepResult]]]:
    """title -> (the reference's blocks, the compared blocks): every comparison that the
    report makes and the stopping rule replays. Dev against baseline at each point both
    groups ran; for a sweep of one group, every later point against the first (in run
    order), titled "<point> against <first>"."""
    points = run.points()
    if single_group_sweep(run):
        first = run.select("baseline", points[0])
        return {f"{p} against {points[0]}": (first, run.select("baseline", p)) for p in points[1:]}
    return {
        p: (run.select("baseline", p), run.select("dev", p))
        for p in points
        if run.select("baseline", p) and run.select("dev", p)
    }


def run_verdicts(
    run: RunResults, s: Settings, comparisons: int = 0
) -> dict[str, dict[str, stats.Verdict]]:
    """title -> each primary's sequential verdict, at every comparison of compared_points,
    with the family-wise level shared among them, or among `comparisons` if more (what
    compare_run's rows carry)."""
    pairs = compared_points(run)
    n = max(comparisons, len(pairs))
    return {title: point_verdicts(a, b, s, n) for title, (a, b) in pairs.items()}


def compare_run(run: RunResults, s: Settings) -> dict:
    """{title: [comparison rows]}: dev against baseline at every point both groups ran; for
    a sweep of one group, every later point against the first. The points share the
    family-wise level (Bonferroni), so that the gate holds it across a sweep."""
    out: dict = {}
    pairs = compared_points(run)
    if single_group_sweep(run):
        return {title: compare_point(a, b, s, len(pairs)) for title, (a, b) in pairs.items()}
    for point in run.points():
        if point in pairs:
            run.problems += unpaired(run, point)
            out[point] = compare_point(*pairs[point], s, len(pairs))
        else:
            missing = "baseline" if not run.select("baseline", point) else "dev"
            run.problems.append(f"point {point}: no {missing} results; not compared")
    return out


def unpaired(run: RunResults, point: str) -> list[str]:
    """The blocks one group has at a point and the other lacks (a host lost mid-run, a
    block that failed): named, since their pairs are left out of the verdict."""
    reps = {g: {r.rep for r in run.select(g, point)} for g in ("baseline", "dev")}
    out = []
    for group, other in (("baseline", "dev"), ("dev", "baseline")):
        missing = sorted(reps[other] - reps[group])
        if missing:
            out.append(
                f"point {point}: {group} has no block for repetition(s) "
                f"{', '.join(map(str, missing))}, which {other} ran: those are not paired"
            )
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
        row.update({k: rep.summary.value(k) for k in keys})
        rows.append(row)
    return rows


def gate(comparisons: dict, metrics: list[str], undecided: bool = False) -> list[str]:
    """The gate metrics (the primaries when none are named) called WORSE, and with
    `undecided` also those left UNDECIDED: one-sided, family-wise over the points."""
    bad = {stats.WORSE, stats.UNDECIDED} if undecided else {stats.WORSE}
    return [
        f"{point}: {row['metric']} {row['verdict']} ({stats.fmt(row['change_pct'], 1)}%)"
        for point, rows in comparisons.items()
        for row in rows
        if row["primary"] and (not metrics or row["metric"] in metrics) and row["verdict"] in bad
    ]
