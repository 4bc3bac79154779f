# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report of a run: report.md, self-contained report.html, summary.csv, compare.json.

One list of sections (SECTIONS), each built once as a format-neutral Section (title,
paragraphs, a list, tables, images) that render.py draws as markdown and as HTML, in the
order a reader needs them: what differs between dev and baseline, the verdict with its
minimum detectable effect, the warnings, then the tables and plots.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .. import layout
from ..atomic import write_atomic
from ..records import CPU_PCT, OTHER_LOAD, SEND_LAG_P99_MS, describe_mps
from . import plots, stats
from .collect import RunResults, list_runs, load_run
from .compare import (
    THROUGHPUT,
    Settings,
    across_hosts,
    calibration_spread,
    compare_run,
    compared_points,
    gate,
    go_on,
    group_hosts,
    group_table,
    latency_samples,
    net_of,
    point_estimates,
    pool_spreads,
    single_group_sweep,
)
from .render import Section, Table, markdown, to_html

UNSTABLE_CV = 0.10  # a primary metric varying more than this between repetitions
KV_CACHE_TOLERANCE = 0.05  # engines whose KV caches differ more than this are not equal
CACHED_SURPLUS = 0.2  # prompt tokens served from the prefix cache beyond what the workload shares


def run_kind(run: RunResults) -> str:
    kinds = {r.summary.context.run_kind for r in run.reps}
    return "calibration" if kinds == {"calibration"} else "ab"


def config_diff(run: RunResults) -> list[list[str]]:
    """[setting, baseline, dev] for every setting the groups' summaries disagree on. A
    setting that took several values over a group's blocks (a sweep of dev's setting)
    shows each, in run order, joined by " / "."""
    values: dict[str, dict[str, list]] = {}
    for group in ("baseline", "dev"):
        reps = sorted(
            (r for r in run.reps if r.group == group), key=lambda r: r.summary.context.order or 0
        )
        for rep in reps:
            for key, value in rep.summary.context.config.items():
                seen = values.setdefault(group, {}).setdefault(key, [])
                if value not in seen:
                    seen.append(value)
    if len(values) < 2:
        return []
    base, dev = values["baseline"], values["dev"]
    keys = sorted(k for k in base.keys() | dev.keys() if k not in layout.PER_GROUP_BY_CONSTRUCTION)
    return [
        [
            k,
            " / ".join(map(json.dumps, base.get(k, [None]))),
            " / ".join(map(json.dumps, dev.get(k, [None]))),
        ]
        for k in keys
        if base.get(k, [None]) != dev.get(k, [None])
    ]


def run_plan(run: RunResults, s: Settings) -> Settings:
    """The settings with the sequential plan the run was measured under (its first look
    and budget, from its recorded config); a run without them is judged as one look at
    the repetitions it has."""
    config = next((r.summary.context.config for r in run.reps), {})
    budget = config.get("vllm_benchmark_repetitions")
    first = config.get("vllm_benchmark_min_repetitions")
    if not config.get("vllm_benchmark_sequential", True) and budget:
        first = budget
    if not (isinstance(budget, int) and isinstance(first, int) and 2 <= first <= budget):
        reps = max((r.rep for r in run.reps), default=2)
        budget = first = max(reps, 2)
    s.min_pairs, s.max_pairs = first, budget
    return s


def identity(rep) -> tuple:
    """What a calibration must share with a run to speak for its noise: the configuration,
    the engine's version and the machine (CPU model, core count)."""
    context = rep.summary.context
    facts = context.placement.get("facts") or {}
    return (
        context.config_hash,
        context.versions.get("engine"),
        facts.get("model"),
        len(facts.get("cpus") or []),
    )


def find_calibration(run: RunResults, results_dir: Path | None) -> tuple[str, dict]:
    """The calibration (A/A) runs of the same configuration, engine version and machine,
    their spreads pooled (their degrees of freedom added); older ones expire when any of
    those changed."""
    ids = {identity(r) for r in run.reps}
    if results_dir is None or len(ids) != 1 or run_kind(run) == "calibration":
        return "", {}
    ((config_hash, *_),) = ids
    spreads, names = [], []
    for entry in list_runs(results_dir):
        if not entry["run_id"].endswith(f"{config_hash}-calibration"):
            continue
        cal = load_run(results_dir / entry["run_id"])
        if cal.reps and {identity(r) for r in cal.reps} == ids:
            spread = calibration_spread(cal)
            if spread:
                spreads.append(spread)
                names.append(entry["run_id"])
    if not spreads:
        return "", {}
    return ", ".join(names), pool_spreads(spreads)


def find_host_offset(run: RunResults, results_dir: Path | None, confidence: float):
    """The newest calibration (A/A) of this configuration on the same hosts, group by
    group, and its estimates: with the same settings, how dev's hosts differ from
    baseline's. None for a run on one host, or where no calibration measured them."""
    if results_dir is None or run_kind(run) == "calibration" or not across_hosts(run):
        return None
    hosts = group_hosts(run)
    config_hash = next(iter({r.summary.context.config_hash for r in run.reps}))
    for entry in reversed(list_runs(results_dir)):
        if entry["run_id"].endswith(f"{config_hash}-calibration"):
            cal = load_run(results_dir / entry["run_id"])
            if cal.reps and group_hosts(cal) == hosts:
                return entry["run_id"], point_estimates(cal, confidence)
    return None


def _offset_words(metric: str, mu: float, low: float, high: float) -> str:
    slower = (mu > 0) == (metric not in THROUGHPUT)
    return (
        f"{abs(stats._pct(mu)):.1f}% {'slower' if slower else 'faster'} on {metric} "
        f"[{stats._pct(low):+.1f}%, {stats._pct(high):+.1f}%]"
    )


def host_lines(run: RunResults, comparisons: dict, s: Settings, results_dir: Path | None):
    """Groups on different hosts: in a calibration, the hosts' offset it measured; in an
    A/B, the offset that bounds what the run can claim (from the newest calibration on
    the same hosts), the effect net of it, or a warning that no calibration measured it."""
    primary = [r["metric"] for rows in comparisons.values() for r in rows if r["primary"]]
    if any(r.summary.context.crossed is not None for r in run.reps):
        return crossover_lines(run, primary, s), []
    if not across_hosts(run):
        return [], []
    hosts = group_hosts(run)
    base, dev = ", ".join(hosts["baseline"]), ", ".join(hosts["dev"])
    where = f"dev's host ({dev}) against baseline's ({base})"
    if run_kind(run) == "calibration":
        est = point_estimates(run, s.confidence)
        return [
            f"host offset, {where}, with the same settings: "
            + _offset_words(m, e["mu"], e["low"], e["high"]) + f" ({s.confidence:.0%} interval, "
            f"{e['pairs']} blocks a group): later A/B runs on these hosts report it"
            for m, e in est.items() if m in primary
        ], []  # fmt: skip
    found = find_host_offset(run, results_dir, s.confidence)
    if found is None:
        return [], [
            f"baseline and dev ran on different hosts ({where}): every change above carries "
            "the hosts' own difference, which no calibration of this configuration on these "
            "hosts has measured: `make vllm-calibrate` measures it (docs/declared-hosts.md)"
        ]
    cal_id, offsets = found
    effects = point_estimates(run, s.confidence)
    lines = []
    for m in primary:
        if m not in offsets or m not in effects:
            continue
        o = offsets[m]
        mu, low, high = net_of(effects[m], o, s.confidence)
        lines.append(
            f"host offset: with the same settings, {where} was "
            + _offset_words(m, o["mu"], o["low"], o["high"])
            + f" (calibration {cal_id}): a change inside that interval cannot be told from "
            f"the hosts; net of it, dev's change is {stats._pct(mu):+.1f}% "
            f"[{stats._pct(low):+.1f}%, {stats._pct(high):+.1f}%] ({s.confidence:.0%}, nominal)"
        )
    return lines, []


def crossover_lines(run: RunResults, primary: list[str], s: Settings) -> list[str]:
    """A crossover: where each group ran before and after the swap, and the hosts' offset
    that the host term took out of the verdict (with the same settings)."""
    swapped = [r for r in run.reps if r.summary.context.crossed]
    if not swapped:
        return ["crossover: the run stopped before the groups swapped hosts: no claim"]
    before = {r.group: r.host for r in run.reps if not r.summary.context.crossed}
    after = {r.group: r.host for r in swapped}
    legs = "; ".join(
        f"{g} on {before.get(g, '-')} then {after.get(g, '-')}" for g in ("baseline", "dev")
    )
    first = min(r.rep for r in swapped)
    lines = [
        f"crossover: {legs} (swapped before repetition {first}); each verdict above is the "
        "settings' effect, the hosts' offset taken out by a host term"
    ]
    for m, e in point_estimates(run, s.confidence).items():
        if "host" in e and m in primary:
            h = e["host"]
            lines.append(
                f"host offset, measured by the crossover: dev's first host ({before.get('dev')}) "
                f"against baseline's ({before.get('baseline')}), with the same settings: "
                + _offset_words(m, h["mu"], h["low"], h["high"])
                + f" ({s.confidence:.0%} interval)"
            )
    return lines


def stopped(run: RunResults, s: Settings) -> str:
    """How many blocks ran and why they stopped, from the stopping rule replayed."""
    pairs = compared_points(run)
    if not pairs:
        return ""
    done = min(len({r.rep for r in side}) for pair in pairs.values() for side in pair)
    unit = "a point" if single_group_sweep(run) else "a group"
    go, why = go_on(run, s)
    if go:
        why = (
            f"stopped after {done} blocks {unit} of a budget of {s.max_pairs}, undecided: "
            "the time budget (VLLM_BENCHMARK_MAX_MINUTES) ran out, the sequential verdict "
            "was off, or the run was cut short"
        )
    return why


def forecast(results_dir: Path, config_hash: str, s: Settings) -> str:
    """Before a run: what it can decide, from the calibrations of its configuration (the
    newest one's engine and machine, pooled): the blocks a group an A/A needs to be SAME
    at the margin, and the minutes that takes at the calibration's pace."""
    cals = [
        load_run(results_dir / e["run_id"])
        for e in list_runs(results_dir)
        if e["run_id"].endswith(f"{config_hash}-calibration")
    ]
    cals = [c for c in cals if c.reps]
    if not cals:
        return (
            f"no calibration of this configuration ({config_hash}) under {results_dir}: "
            "`make vllm-calibrate` measures how many blocks deciding "
            f"+-{s.margin_pct:g}% takes on this machine"
        )
    newest = {identity(r) for r in cals[-1].reps}
    cals = [c for c in cals if {identity(r) for r in c.reps} == newest]
    spread = pool_spreads([calibration_spread(c) for c in cals])
    primary = {m: c for m, c in spread.items() if m in s.primary}
    if not primary:
        return "the calibrations of this configuration compared no primary metric"
    needs = [stats.pairs_for_same(c["sd"], s.plan()) for c in primary.values()]
    blocks = max((n for n in needs if isinstance(n, int)), default=None)
    starts = sorted(r.summary.started_at for r in cals[-1].reps)
    pace = (starts[-1] - starts[0]) / (len(starts) - 1) if len(starts) > 1 and starts[0] else 0
    noise = ", ".join(f"{m} {c['sd'] * 100:.1f}%" for m, c in primary.items())
    if blocks is None or any(not isinstance(n, int) for n in needs):
        when = f"more than {stats.MORE_CAP} blocks a group: widen the margin"
    else:
        when = f"about {blocks} blocks a group" + (
            f", about {blocks * 2 * pace / 60:.0f} min" if pace else ""
        )
    budget = "" if blocks is None or blocks <= s.max_pairs else (
        f" (the budget is {s.max_pairs}: expect UNDECIDED where nothing changed)"
    )  # fmt: skip
    return (
        f"deciding +-{s.margin_pct:g}% on this machine takes {when}{budget}; a pair of "
        f"blocks varies by {noise} (calibration {', '.join(c.run_id for c in cals)})"
    )


def headline(comparisons: dict, margin_pct: float) -> str:
    """The answer in words, first line of the report and of the printed summary."""
    parts = []
    for point, rows in comparisons.items():
        words: dict[str, list[str]] = {}
        for r in rows:
            if r["primary"]:
                words.setdefault(r["verdict"], []).append(r["metric"])
        head = f"{point}: " if len(comparisons) > 1 else ""
        parts.append(head + "; ".join(f"{w} {', '.join(ms)}" for w, ms in words.items()))
    if not parts:
        return "no primary metric could be compared"
    return " | ".join(parts) + f" (margin +-{margin_pct:g}%)"


def verdict_lines(comparisons: dict, s: Settings, stopped: str = "") -> list[str]:
    """The answer first: each primary's word, its change and interval, and for an
    undecided one what would decide it."""
    lines = [headline(comparisons, s.margin_pct)]
    for point, rows in comparisons.items():
        head = f"{point}: " if len(comparisons) > 1 else ""
        for r in (r for r in rows if r["primary"]):
            if r["change_pct"] is None:
                lines.append(f"{head}{r['metric']} UNDECIDED: fewer than 2 pairs of blocks")
                continue
            line = (
                f"{head}{r['metric']} {r['verdict']}: {stats.fmt(r['baseline'])} -> "
                f"{stats.fmt(r['dev'])} ({r['change_pct']:+.1f}%, {r['level']:.2%} interval "
                f"[{r['low_pct']:+.1f}%, {r['high_pct']:+.1f}%], {r['pairs']} blocks a group)"
            )
            if r["verdict"] == stats.UNDECIDED:
                more = r["more_pairs"]
                line += (
                    f"; about {more} more blocks a group would likely decide it"
                    if more is not None
                    else f"; more than {stats.MORE_CAP} blocks a group: widen the margin "
                    "or quiet the machine"
                )
            lines.append(line)
    if stopped:
        lines.append(f"blocks: {stopped}")
    lines.append(
        f"(margin +-{s.margin_pct:g}%; paired log ratios of dev and baseline block by block; "
        f"{s.confidence:.0%} family-wise over the primaries (Holm), the looks (alpha "
        f"spending from {s.min_pairs} to {s.max_pairs} blocks a group) and the points; "
        "docs/results.md)"
    )
    return lines


def warnings(run: RunResults, comparisons: dict, s: Settings) -> list[str]:
    """What makes this run's figures less trustworthy than they look."""
    out = []
    for point, rows in comparisons.items():
        for r in rows:
            if not r["primary"]:
                continue
            for group, reps in (("baseline", r["baseline_reps"]), ("dev", r["dev_reps"])):
                values = [v for v in reps if v is not None]
                if len(values) > 1 and statistics.fmean(values):
                    cv = statistics.stdev(values) / abs(statistics.fmean(values))
                    if cv > UNSTABLE_CV:
                        out.append(
                            f"{point}: {group}'s {r['metric']} varies {cv:.0%} between "
                            f"repetitions (above {UNSTABLE_CV:.0%}): the machine was not steady"
                        )
    tokens = {g: sum(c["tokens"] or 0 for c in kv_caches(run, g)) for g in run.groups()}
    if len(tokens) == 2 and all(tokens.values()):
        base, dev = tokens.get("baseline", 0), tokens.get("dev", 0)
        if base and abs(dev / base - 1) > KV_CACHE_TOLERANCE:
            out.append(
                f"the groups' engines hold KV caches of different sizes: baseline {base} tokens, "
                f"dev {dev} ({dev / base - 1:+.0%}): unless dev's change is the cache, the "
                "engines are not equal (engines that share a GPU and profile its memory at "
                "once end with different caches)"
            )
    for rep in run.reps:
        where = f"{rep.group}/{rep.host} {rep.point} rep {rep.rep}"
        sm = rep.summary
        for attempt in sm.context.rejected:
            out.append(
                f"{where}: run again: attempt {attempt['attempt']} had {attempt['why']}; it is "
                f"kept under {attempt['dir']} and left out of the comparison"
            )
        if sm.figure("interrupted"):
            out.append(f"{where}: interrupted; its figures cover the requests done before")
        if sm.saturated:
            out.append(
                f"{where}: saturated, achieved {stats.fmt(sm.figure('achieved_rate'))} of "
                f"{stats.fmt(sm.request_rate)} req/s offered: the figures measure queueing"
            )
        client = sm.figure("client", {})
        if client.get("bound"):
            why = client.get("why") or (
                f"p99 send lag {client.get('send_lag_p99_ms') or 0:.2f} ms (limit "
                f"{SEND_LAG_P99_MS:g} ms), CPU {client.get('cpu_pct_max') or 0:.0f}% of a "
                f"core (limit {CPU_PCT:g}%)"
            )
            out.append(
                f"{where}: client-bound: {why}: the load generator, not only the server, "
                "shaped these figures"
            )
        host = sm.figure("host_load", {})
        if host.get("other_cpu_share", 0) > OTHER_LOAD or host.get("steal_share", 0) > OTHER_LOAD:
            out.append(
                f"{where}: other load on the host: {host.get('other_cpu_share', 0):.0%} of its "
                f"CPU went to processes outside the stack and the client, "
                f"{host.get('steal_share', 0):.0%} to the hypervisor (steal)"
            )
        warm = sm.figure("warmup", {})
        if warm.get("warmup_requests") and not warm.get("warmup_steady"):
            out.append(f"{where}: warm-up reached its cap ({warm['warmup_requests']} requests) "
                       "before the engine was steady")  # fmt: skip
        if sm.value("failed"):
            out.append(f"{where}: {sm.count('failed')} request(s) failed ({sm.errors})")
        cached = cached_share(sm)
        if cached and cached[0] > cached[1] + CACHED_SURPLUS:
            out.append(
                f"{where}: {cached[0]:.0%} of the prompt tokens were served from the prefix "
                f"cache, where the workload shares {cached[1]:.0%} by design: prompts the "
                "engines had served before made it faster, it measured a cached prefill "
                "(docs/benchmark.md, the seed of a block)"
            )
    return out


def cached_share(sm) -> tuple[float, float] | None:
    """(the share of a block's prompt tokens its engines served from the prefix cache,
    the share its workload repeats by design: a random workload's common prefix), or None
    where the engines counted none or the workload repeats itself (multi_turn, and the
    fixed payloads short and long, one prompt by definition)."""
    spec = sm.data.get("spec") or {}
    if spec.get("dataset") not in ("random", "sharegpt"):
        return None
    engines = [v for v in sm.figure("server", {}).values() if isinstance(v, dict)]
    queries = sum(e.get("prefix_cache_queries") or 0 for e in engines)
    if not queries:
        return None
    hits = sum(e.get("prefix_cache_hits") or 0 for e in engines)
    prefix, length = spec.get("prefix_len") or 0, spec.get("input_len") or 0
    shared = prefix / (prefix + length) if spec["dataset"] == "random" and prefix else 0.0
    return hits / queries, shared


def rep_rows(run: RunResults) -> list[list[str]]:
    """Every block in the order it ran, with its load and key figures."""
    rows = []
    for rep in sorted(run.reps, key=lambda r: r.summary.started_at):
        sm = rep.summary
        warm = sm.figure("warmup", {})
        rows.append(
            [
                str("-" if sm.context.order is None else sm.context.order)
                + (f" (run {len(sm.context.rejected) + 1}x)" if sm.context.rejected else ""),
                rep.group,
                rep.point,
                str(rep.rep),
                stats.fmt(sm.request_rate),
                stats.fmt(sm.figure("achieved_rate")),
                f"{sm.count('completed')}/{sm.count('failed')}",
                stats.fmt(sm.value("median_ttft_ms")),
                stats.fmt(sm.value("median_tpot_ms")),
                stats.fmt(sm.value("output_throughput")),
                f"{warm.get('warmup_requests', '-')} in "
                f"{stats.fmt(warm.get('warmup_seconds'), 0)} s",
                _client_cell(sm.figure("client", {})),
            ]
        )
    return rows


def _client_cell(client: dict) -> str:
    """The load generator's self-check of one block: its worst worker's p99 send lag and
    CPU, the number of workers, and whether it was the bottleneck."""
    if not client:
        return "-"
    workers = len(client.get("workers") or []) or 1
    if client.get("busy_poll"):  # a core each by design: the share of it spent on work
        load = f"busy {client.get('loop_busy_pct_max') or 0:.0f}%"
    else:
        load = f"{client.get('cpu_pct_max') or 0:.0f}%"
    return (
        f"{client.get('send_lag_p99_ms') or 0:.2f} ms, {load} x{workers}"
        + (" poll" if client.get("busy_poll") else "")
        + (" BOUND" if client.get("bound") else "")
    )


REP_HEADER = [
    "order", "group", "point", "rep", "offered req/s", "achieved req/s", "ok/failed",
    "median TTFT ms", "median TPOT ms", "output tok/s", "warm-up",
    "client: p99 send lag, CPU, workers",
]  # fmt: skip
COMPARISON_HEADER = [
    "metric", "baseline", "dev", "change %", "interval %", "level", "verdict",
    "blocks a group", "MDE %", "more blocks to decide",
]  # fmt: skip


def _comparison_rows(rows: list[dict]) -> list[list[str]]:
    def pct(x):
        return "-" if x is None else f"{x:+.1f}"

    return [
        [
            r["metric"] + ("" if r["primary"] else " (secondary)"),
            stats.fmt(r["baseline"]),
            stats.fmt(r["dev"]),
            pct(r["change_pct"]),
            f"[{pct(r['low_pct'])}, {pct(r['high_pct'])}]",
            f"{r['level']:.2%}" if r["level"] else "-",
            r["verdict"],
            str(r["pairs"]),
            stats.fmt(r["mde_pct"], 1),
            "-"
            if r["verdict"] != stats.UNDECIDED
            else str(r["more_pairs"] or f">{stats.MORE_CAP}"),
        ]
        for r in rows
    ]


def comparison_lines(comparisons: dict) -> list[str]:
    """The comparison as aligned text, for the terminal."""
    lines = []
    header = ("metric", "baseline", "dev", "change %", "interval %", "verdict", "blocks")
    for point, rows in comparisons.items():
        table = [header] + [
            (r[0], r[1], r[2], r[3], r[4], r[6], r[7]) for r in _comparison_rows(rows)
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines.append(f"point {point}:")
        lines += [
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in table
        ]
    return lines


def sweep_rows(run: RunResults) -> list[list[str]]:
    """Throughput and p95 latencies per point and group: the sweep's table."""
    rows = []
    for point in run.points():
        for group in run.groups():
            reps = run.select(group, point)
            if not reps:
                continue
            thr = sum(r.summary.value("output_throughput") or 0 for r in reps) / len(reps)
            ttft = stats.np.percentile(latency_samples(reps, "ttft") or [float("nan")], 95)
            itl = stats.np.percentile(latency_samples(reps, "itl") or [float("nan")], 95)
            rows.append(
                [point, group, stats.fmt(thr), stats.fmt(float(ttft)), stats.fmt(float(itl))]
            )
    return rows


ONE_GROUP_NOTE = (
    "A sweep of one group: the first point plays baseline and each later point plays dev."
)


def _context(run: RunResults) -> list[str]:
    out = []
    for group in run.groups():
        reps = [r for r in run.reps if r.group == group]
        context = reps[0].summary.context
        v = context.versions
        placement = context.placement
        where = (
            f"; dtype {placement.get('dtype')} ({placement.get('dtype_reason')}), engine CPUs "
            f"{placement.get('engine_cpus')}, frontend CPUs {placement.get('frontend_cpus')}"
            if placement
            else ""
        )
        mps = describe_mps([r.summary.context.mps for r in reps])
        kv = kv_caches(run, group)
        cache = (
            "; KV cache " + ", ".join(
                f"{c['tokens']} tokens ({c['blocks']} blocks of {c['block_size']})" for c in kv
            )
            if kv else ""
        )  # fmt: skip
        out.append(
            f"{group}: hosts {', '.join(sorted({r.host for r in reps}))}, engine "
            f"{v.get('engine')}, router {v.get('router')}, model {v.get('model')}, "
            f"{len(reps)} block(s){where}{cache}{'; ' + mps if mps else ''}"
        )
    return out


def kv_caches(run: RunResults, group: str) -> list[dict]:
    """The KV cache capacity of each of the group's engines (their /metrics, first block
    of each host), where the engines say it."""
    out, seen = [], set()
    for rep in run.reps:
        if rep.group != group or rep.host in seen:
            continue
        seen.add(rep.host)
        for name, figures in sorted(rep.summary.figure("server", {}).items()):
            if not name.startswith("router") and (figures or {}).get("kv_cache"):
                out.append(figures["kv_cache"])
    return out


@dataclass
class Facts:
    """What the sections are made of: one run, compared once."""

    run: RunResults
    comparisons: dict
    settings: Settings
    calibration_run: str = ""
    images: list[Path] = field(default_factory=list)
    decision_images: list[Path] = field(default_factory=list)
    verdict: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# Each builder returns the sections it adds: none where it does not apply, one a point for
# the comparisons.


def differs_section(f: Facts) -> list[Section]:
    title = "What differs: dev against baseline"
    diff = config_diff(f.run)
    if run_kind(f.run) == "calibration":
        if across_hosts(f.run):
            return [Section("What this run is", paragraphs=[
                "A calibration (A/A) across hosts: dev ran with baseline's configuration on "
                "its own host. A change below is the hosts' own difference (the host "
                "offset), which later A/B runs on these hosts report beside their verdict; "
                "the spread between repetitions sets their minimum detectable effect (MDE)."
            ])]  # fmt: skip
        return [Section("What this run is", paragraphs=[
            "A calibration (A/A): dev ran with baseline's configuration. Any verdict "
            "below is a false alarm; the spread between repetitions sets the minimum "
            "detectable effect (MDE) of later runs of this configuration."
        ])]  # fmt: skip
    if diff:
        return [Section(title, tables=[Table(["setting", "baseline", "dev"], diff)])]
    if f.run.groups() == ["baseline", "dev"]:
        return [Section(title, paragraphs=["nothing: the groups share one configuration"])]
    return []


def verdict_section(f: Facts) -> list[Section]:
    return [Section("Verdict", items=f.verdict)]


def decision_section(f: Facts) -> list[Section]:
    """The forest plot (each primary's interval against the margin band) and each
    block's value in run order: what decided the words, and the drift and ABBA beside."""
    if not f.decision_images:
        return []
    return [Section("What decided it", images=f.decision_images)]


def warnings_section(f: Facts) -> list[Section]:
    return [Section("Warnings", items=f.warnings or ["none"])]


def groups_section(f: Facts) -> list[Section]:
    """Per group: its hosts, versions, blocks, dtype and core sets."""
    return [Section("Groups", items=_context(f.run))]


def note_section(f: Facts) -> list[Section]:
    return [Section("Note", paragraphs=[ONE_GROUP_NOTE])] if single_group_sweep(f.run) else []


def problems_section(f: Facts) -> list[Section]:
    return [Section("Problems", items=f.run.problems)] if f.run.problems else []


def comparison_sections(f: Facts) -> list[Section]:
    return [
        Section(f"Comparison: {point}", tables=[Table(COMPARISON_HEADER, _comparison_rows(rows))])
        for point, rows in f.comparisons.items()
    ]


def method_section(f: Facts) -> list[Section]:
    s = f.settings
    noise = (
        f" Calibration {f.calibration_run} (A/A runs of this configuration, engine and "
        "machine, pooled) puts the spread of one pair's log ratio at "
        + ", ".join(
            f"{m} {c['sd'] * 100:.1f}% ({c['df']} df): +-{s.margin_pct:g}% takes about "
            f"{stats.pairs_for_same(c['sd'], s.plan())} blocks a group"
            + (f", and {c['between_sd'] * 100:.1f}% between deployments (engines "
               "restarted; VLLM_BENCHMARK_REDEPLOY_EVERY)" if "between_sd" in c else "")
            for m, c in s.calibration.items() if m in s.primary
        ) + "."
        if f.calibration_run and s.calibration
        else " Run `make vllm-calibrate` (an A/A) to learn the noise of this machine before "
        "a run: the report then says how many blocks deciding the margin takes."
    )  # fmt: skip
    return [Section("How the verdict works", paragraphs=[
        "Each metric is one value a block (latencies: the statistic over the block's "
        "requests). Block r of baseline and of dev ran next to each other (ABBA), so "
        "each repetition gives a pair, and the interval is a paired t interval of the "
        "mean log ratio dev / baseline: a drift of the machine over a few blocks cancels "
        "in it, and it reads as a relative change. From "
        f"{stats.POSITION_MIN_PAIRS} pairs the model has an ABBA position term (whether dev "
        "ran second), so that a cost of running second is neither noise nor effect. "
        f"WORSE or BETTER: the interval lies wholly beyond +-{s.margin_pct:g}% "
        "(VLLM_RESULTS_MARGIN_PCT); SAME: wholly inside it; UNDECIDED: neither. Each "
        "claim is a one-sided test at its level (the interval shown is 1 - 2 x level); "
        f"Holm's step-down shares each look's alpha among the undecided primaries. Looks: "
        f"after {s.min_pairs} blocks a group and every {s.step} after, to {s.max_pairs}; "
        f"look k spends alpha x (k / budget)^2 of {1 - s.confidence:.0%} "
        "(alpha spending, union bound), so the chance of any false word stays at most "
        f"{1 - s.confidence:.0%} however often the run was looked at. Throughput is "
        "primary only where the load lets it move (closed loop or saturated). Secondary "
        f"metrics: a {s.confidence:.0%} interval, no word. MDE: the smallest worsening "
        "this rule calls WORSE 80% of the time at this many blocks (noncentral t). A run "
        "that restarted the engines every k rounds (VLLM_BENCHMARK_REDEPLOY_EVERY) has "
        "the deployment as its unit: the t test runs over the deployments' mean log "
        "ratios (D - 1 df), and makes no claim before two."
        + noise
    ])]  # fmt: skip


def sweep_section(f: Facts) -> list[Section]:
    if len(f.run.points()) < 2:
        return []
    header = ["point", "group", "output tok/s (mean)", "p95 TTFT ms", "p95 ITL ms"]
    return [Section("Sweep", tables=[Table(header, sweep_rows(f.run))])]


def repetitions_section(f: Facts) -> list[Section]:
    return [Section("Repetitions in run order", tables=[Table(REP_HEADER, rep_rows(f.run))])]


def plots_section(f: Facts) -> list[Section]:
    return [Section("Plots", images=f.images)]


# The report, in the order a reader needs it: what differs, the answer, what to distrust,
# then the evidence. Both formats render exactly this list.
SECTIONS = (
    differs_section,
    verdict_section,
    decision_section,
    warnings_section,
    groups_section,
    note_section,
    problems_section,
    comparison_sections,
    method_section,
    sweep_section,
    repetitions_section,
    plots_section,
)


def sections(f: Facts) -> list[Section]:
    return [section for build in SECTIONS for section in build(f)]


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def write_report(
    run_dir: Path,
    settings: Settings,
    gate_metrics: list[str],
    results_dir: Path | None = None,
    write: bool = True,
    undecided: bool = False,
    unreachable: list[str] | None = None,
) -> dict:
    """Compare, plot and write run_dir/report/; return what the caller prints and checks.
    With write=False (make vllm-compare), compare only: no plot, no file."""
    run = load_run(run_dir)
    run.problems[:0] = [
        f"{host} could not be reached: the blocks it holds are not in this report; "
        f"`make vllm-results RUN={run.run_id}` fetches them once it answers"
        for host in unreachable or []
    ]
    out = run_dir / layout.REPORT
    if write:
        out.mkdir(parents=True, exist_ok=True)
    settings = run_plan(run, settings)
    cal_run, spread = find_calibration(run, results_dir)
    if cal_run:
        settings.calibration, settings.calibration_run = spread, cal_run
    compared = compare_run(run, settings)
    offset_lines, offset_warnings = host_lines(run, compared, settings, results_dir)
    write_plots = bool(run.reps and write)
    f = Facts(
        run,
        compared,
        settings,
        cal_run,
        images=plots.all_plots(run, out) if write_plots else [],
        decision_images=plots.decision_plots(run, compared, out) if write_plots else [],
        verdict=verdict_lines(compared, settings, stopped(run, settings)) + offset_lines,
        warnings=warnings(run, compared, settings) + offset_warnings,
    )
    regressions = gate(compared, gate_metrics, undecided)
    secs = sections(f)  # after the comparison: it notes points it could not compare
    diff = config_diff(run)
    compare_doc = {
        "run_id": run.run_id,
        "run_kind": run_kind(run),
        "settings": settings.__dict__,
        "config_diff": diff,
        "verdict": f.verdict,
        "warnings": f.warnings or ["none"],  # as the report lists them
        "problems": run.problems,
        "comparisons": compared,
        "gate": {"metrics": gate_metrics, "regressions": regressions},
    }
    if run_kind(run) == "calibration":
        compare_doc["calibration"] = calibration_spread(run)
        if across_hosts(run):
            compare_doc["host_offset"] = {
                "hosts": group_hosts(run),
                "metrics": point_estimates(run, settings.confidence),
            }
    if write:
        # Not write_json_atomic: its sorted keys would put the points out of run order.
        write_atomic(out / layout.COMPARE_JSON, json.dumps(compare_doc, indent=1, default=str))
        write_atomic(out / layout.SUMMARY_CSV, _csv(group_table(run)))
        write_atomic(out / layout.REPORT_MD, markdown(run.run_id, secs))
        write_atomic(out / layout.REPORT_HTML, to_html(run.run_id, secs))
    return {
        **({"report_dir": str(out)} if write else {}),
        "comparisons": compared,
        "problems": run.problems,
        "regressions": regressions,
        "table": (
            ["dev differs from baseline in: " + "; ".join(f"{k} {b} -> {d}" for k, b, d in diff)]
            if diff
            else []
        )
        + ["verdict:"]
        + [f"  {x}" for x in f.verdict]
        + comparison_lines(compared),
    }
