# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report of a run: report.md, self-contained report.html, summary.csv, compare.json.

One list of sections, rendered to both formats, in the order a reader needs them: what
differs between dev and baseline, the verdict with its minimum detectable effect, the
warnings, then the tables and plots.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import statistics
from pathlib import Path

from . import plots, stats
from .collect import RunResults, list_runs, load_run
from .compare import (
    PAIRED_MIN_REPS,
    Settings,
    calibration_spread,
    compare_run,
    gate,
    group_table,
    latency_samples,
    single_group_sweep,
)

# Settings that differ between the groups by construction, not by the user's choice.
PER_GROUP_BY_CONSTRUCTION = {
    "servelab_group",
    "vllm_engine_base_port",
    "vllm_router_port",
    "vllm_router_metrics_port",
}
UNSTABLE_CV = 0.10  # a primary metric varying more than this between repetitions
OTHER_LOAD = 0.10  # share of the machine's CPU taken by others during a block


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_kind(run: RunResults) -> str:
    kinds = {r.summary.get("run_kind", "ab") for r in run.reps}
    return "calibration" if kinds == {"calibration"} else "ab"


def config_diff(run: RunResults) -> list[list[str]]:
    """[setting, baseline, dev] for every setting the groups' summaries disagree on."""
    configs = {}
    for group in ("baseline", "dev"):
        reps = [r for r in run.reps if r.group == group]
        if reps:
            configs[group] = reps[0].summary.get("config") or {}
    if len(configs) < 2:
        return []
    base, dev = configs["baseline"], configs["dev"]
    keys = sorted(k for k in base.keys() | dev.keys() if k not in PER_GROUP_BY_CONSTRUCTION)
    return [
        [k, json.dumps(base.get(k)), json.dumps(dev.get(k))]
        for k in keys
        if base.get(k) != dev.get(k)
    ]


def find_calibration(run: RunResults, results_dir: Path | None) -> tuple[str, dict]:
    """The newest calibration (A/A) run of the same configuration, and its spread."""
    hashes = {r.summary.get("config_hash") for r in run.reps}
    if results_dir is None or len(hashes) != 1 or run_kind(run) == "calibration":
        return "", {}
    (config_hash,) = hashes
    for entry in reversed(list_runs(results_dir)):
        if entry["run_id"].endswith(f"{config_hash}-calibration"):
            spread = calibration_spread(load_run(results_dir / entry["run_id"]))
            if spread:
                return entry["run_id"], spread
    return "", {}


def verdict_lines(comparisons: dict, s: Settings) -> list[str]:
    """The answer first: which primary metrics changed, by how much, and what could not
    have been seen."""
    lines = []
    for point, rows in comparisons.items():
        primary = [r for r in rows if r["primary"]]
        changed = [r for r in primary if r["verdict"] in (stats.BETTER, stats.WORSE)]
        unknown = [r for r in primary if r["verdict"] == stats.UNKNOWN]
        head = f"{point}: " if len(comparisons) > 1 else ""
        for r in changed:
            lines.append(
                f"{head}{r['metric']} is {r['verdict'].upper()} in dev: "
                f"{stats.fmt(r['baseline'])} -> {stats.fmt(r['dev'])} "
                f"({stats.fmt((r['relative'] or 0) * 100, 1)}%, {r['level']:.1%} interval of "
                f"dev - baseline [{stats.fmt(r['ci_low'])}, {stats.fmt(r['ci_high'])}])"
            )
        quiet = [r for r in primary if r["verdict"] == stats.SAME]
        if quiet:
            mdes = ", ".join(
                f"{r['metric']} {stats.fmt(r['mde_pct'], 1)}%" for r in quiet if r["mde_pct"]
            )
            lines.append(
                f"{head}no significant change in {', '.join(r['metric'] for r in quiet)}"
                + (f"; changes this run would find 80% of the time: {mdes}" if mdes else "")
            )
        if unknown:
            lines.append(
                f"{head}not tested (fewer than 2 repetitions a side): "
                + ", ".join(r["metric"] for r in unknown)
            )
    family = (
        f"{s.confidence:.1%} family-wise over the {len(s.primary)} primary metrics of a point "
        f"({', '.join(s.primary)}), each at {1 - (1 - s.confidence) / len(s.primary):.2%}; "
        f"a change must also reach {s.threshold_pct:g}%"
    )
    methods = {r["method"] for rows in comparisons.values() for r in rows if r["primary"]}
    how = (
        "paired t on the differences of repetition r (neighbours in the ABBA order)"
        if methods == {"paired"}
        else "Welch's t on one value per repetition"
        if methods <= {"welch"}
        else "paired t where the repetitions pair up, else Welch's t"
    )
    return [*lines, f"(method: {how}, {family})"]


def warnings(run: RunResults, comparisons: dict, s: Settings) -> list[str]:
    """What makes this run's figures less trustworthy than they look."""
    out = []
    for point, rows in comparisons.items():
        for r in rows:
            if not r["primary"]:
                continue
            for group, values in (("baseline", r["baseline_reps"]), ("dev", r["dev_reps"])):
                if len(values) > 1 and statistics.fmean(values):
                    cv = statistics.stdev(values) / abs(statistics.fmean(values))
                    if cv > UNSTABLE_CV:
                        out.append(
                            f"{point}: {group}'s {r['metric']} varies {cv:.0%} between "
                            f"repetitions (above {UNSTABLE_CV:.0%}): the machine was not steady"
                        )
    for rep in run.reps:
        where = f"{rep.group}/{rep.host} {rep.point} rep {rep.rep}"
        sm = rep.summary
        if sm.get("interrupted"):
            out.append(f"{where}: interrupted; its figures cover the requests done before")
        if sm.get("saturated"):
            out.append(
                f"{where}: saturated, achieved {stats.fmt(sm.get('achieved_rate'))} of "
                f"{stats.fmt(sm.get('offered_rate'))} req/s offered: the figures measure queueing"
            )
        host = sm.get("host_load") or {}
        if host.get("other_cpu_share", 0) > OTHER_LOAD or host.get("steal_share", 0) > OTHER_LOAD:
            out.append(
                f"{where}: other load on the host: {host.get('other_cpu_share', 0):.0%} of its "
                f"CPU went to processes outside the stack and the client, "
                f"{host.get('steal_share', 0):.0%} to the hypervisor (steal)"
            )
        warm = sm.get("warmup") or {}
        if warm.get("warmup_requests") and not warm.get("warmup_steady"):
            out.append(f"{where}: warm-up reached its cap ({warm['warmup_requests']} requests) "
                       "before the engine was steady")  # fmt: skip
        if sm.get("failed"):
            out.append(f"{where}: {sm['failed']} request(s) failed ({sm.get('errors')})")
    return out


def rep_rows(run: RunResults) -> list[list[str]]:
    """Every block in the order it ran, with its load and key figures."""
    rows = []
    for rep in sorted(run.reps, key=lambda r: r.summary.get("started_at") or 0):
        sm = rep.summary
        warm = sm.get("warmup") or {}
        rows.append(
            [
                str(sm.get("order", "-")),
                rep.group,
                rep.point,
                str(rep.rep),
                stats.fmt(sm.get("offered_rate")),
                stats.fmt(sm.get("achieved_rate")),
                f"{sm.get('completed')}/{sm.get('failed')}",
                stats.fmt(sm.get("median_ttft_ms")),
                stats.fmt(sm.get("median_tpot_ms")),
                stats.fmt(sm.get("output_throughput")),
                f"{warm.get('warmup_requests', '-')} in "
                f"{stats.fmt(warm.get('warmup_seconds'), 0)} s",
            ]
        )
    return rows


REP_HEADER = [
    "order", "group", "point", "rep", "offered req/s", "achieved req/s", "ok/failed",
    "median TTFT ms", "median TPOT ms", "output tok/s", "warm-up",
]  # fmt: skip
COMPARISON_HEADER = [
    "metric", "baseline", "dev", "delta %", "interval of dev - baseline", "level",
    "verdict", "MDE %", "reps for 5%", "repetitions (base / dev)",
]  # fmt: skip


def _comparison_rows(rows: list[dict]) -> list[list[str]]:
    return [
        [
            r["metric"] + ("" if r["primary"] else " (secondary)"),
            stats.fmt(r["baseline"]),
            stats.fmt(r["dev"]),
            stats.fmt(None if r["relative"] is None else r["relative"] * 100, 1),
            f"[{stats.fmt(r['ci_low'])}, {stats.fmt(r['ci_high'])}]",
            f"{r['level']:.1%}",
            r["verdict"],
            stats.fmt(r["mde_pct"], 1) + (" (cal.)" if r["mde_source"].startswith("cal") else ""),
            str(r["reps_for_5pct"] or ">200"),
            f"{r['n_baseline']} / {r['n_dev']}" + (" paired" if r["method"] == "paired" else ""),
        ]
        for r in rows
    ]


def comparison_lines(comparisons: dict) -> list[str]:
    """The comparison as aligned text, for the terminal."""
    lines = []
    header = ("metric", "baseline", "dev", "delta %", "interval", "verdict", "MDE %")
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
            thr = sum(r.summary["output_throughput"] for r in reps) / len(reps)
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
        s = reps[0].summary
        v = s.get("versions", {})
        placement = s.get("placement") or {}
        where = (
            f"; dtype {placement.get('dtype')} ({placement.get('dtype_reason')}), engine CPUs "
            f"{placement.get('engine_cpus')}, frontend CPUs {placement.get('frontend_cpus')}"
            if placement
            else ""
        )
        out.append(
            f"{group}: hosts {', '.join(sorted({r.host for r in reps}))}, engine "
            f"{v.get('engine')}, router {v.get('router')}, model {v.get('model')}, "
            f"{len(reps)} block(s){where}"
        )
    return out


def sections(run, comparisons, images, s: Settings, calibration_run: str) -> list[tuple]:
    """(title, kind, content) with kind text | list | table | images."""
    out: list[tuple] = []
    diff = config_diff(run)
    if run_kind(run) == "calibration":
        out.append(("What this run is", "text",
                    "A calibration (A/A): dev ran with baseline's configuration. Any verdict "
                    "below is a false alarm; the spread between repetitions sets the minimum "
                    "detectable effect (MDE) of later runs of this configuration."))  # fmt: skip
    elif diff:
        out.append(
            ("What differs: dev against baseline", "table", (["setting", "baseline", "dev"], diff))
        )
    elif run.groups() == ["baseline", "dev"]:
        out.append(
            (
                "What differs: dev against baseline",
                "text",
                "nothing: the groups share one configuration",
            )
        )
    out.append(("Verdict", "list", verdict_lines(comparisons, s)))
    mde_from = (
        f"MDE from calibration run {calibration_run}"
        if calibration_run
        else "MDE from this run's own repetitions (run `make vllm-calibrate` for a calibrated one)"
    )
    out.append(("Warnings", "list", warnings(run, comparisons, s) or ["none"]))
    out.append(("Groups", "list", _context(run)))
    if single_group_sweep(run):
        out.append(("Note", "text", ONE_GROUP_NOTE))
    if run.problems:
        out.append(("Problems", "list", run.problems))
    for point, rows in comparisons.items():
        out.append((f"Comparison: {point}", "table", (COMPARISON_HEADER, _comparison_rows(rows))))
    out.append(("How the comparison works", "text",
                "Each metric is one value per repetition (latencies: the statistic over that "
                "repetition's requests). With at least "
                f"{PAIRED_MIN_REPS} repetitions a side, one block each, repetition r of "
                "baseline and of dev ran next to each other (ABBA), so the interval is a "
                "paired t interval on their differences: a drift of the machine over a few "
                "blocks cancels in them. With fewer, Welch's t interval of the difference "
                "of means. Primary metrics share the family-wise level (Bonferroni); others are "
                f"secondary, at the nominal level. MDE: the change found 80% of the time at "
                f"the metric's level; {mde_from}."))  # fmt: skip
    if len(run.points()) > 1:
        out.append(("Sweep", "table", (
            ["point", "group", "output tok/s (mean)", "p95 TTFT ms", "p95 ITL ms"], sweep_rows(run)
        )))  # fmt: skip
    out.append(("Repetitions in run order", "table", (REP_HEADER, rep_rows(run))))
    out.append(("Plots", "images", images))
    return out


def markdown(run_id: str, secs: list[tuple]) -> str:
    lines = [f"# servelab report: {run_id}", ""]
    for title, kind, content in secs:
        lines += [f"## {title}", ""]
        if kind == "text":
            lines += [content, ""]
        elif kind == "list":
            lines += [f"- {x}" for x in content] + [""]
        elif kind == "table":
            header, rows = content
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        elif kind == "images":
            lines += [f"![{p.stem}]({p.name})" for p in content] + [""]
    return "\n".join(lines)


def to_html(run_id: str, secs: list[tuple]) -> str:
    """One file that opens from disk: images inline as data URIs, no external resources."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>servelab report {e(run_id)}</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1200px}",
        "table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}",
        "td:first-child,th:first-child{text-align:left}",
        ".better{background:#dfd}.worse{background:#fdd}img{max-width:100%}",
        "</style></head><body>",
        f"<h1>servelab report: {e(run_id)}</h1>",
    ]
    for title, kind, content in secs:
        parts.append(f"<h2>{e(title)}</h2>")
        if kind == "text":
            parts.append(f"<p>{e(content)}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in content) + "</ul>")
        elif kind == "table":
            header, rows = content
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
            for row in rows:
                css = next((v for v in ("better", "worse") if v in row), "")
                parts.append(
                    f"<tr class='{css}'>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                )
            parts.append("</table>")
        elif kind == "images":
            for path in content:
                data = base64.b64encode(path.read_bytes()).decode()
                parts.append(
                    f"<figure><img alt='{e(path.stem)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{e(path.stem)}</figcaption></figure>"
                )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(
    run_dir: Path, settings: Settings, gate_metrics: list[str], results_dir: Path | None = None
) -> dict:
    """Compare, plot and write run_dir/report/; return what the caller prints and checks."""
    run = load_run(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    cal_run, spread = find_calibration(run, results_dir)
    if cal_run:
        settings.calibration, settings.calibration_run = spread, cal_run
    comparisons = compare_run(run, settings)
    images = plots.all_plots(run, out) if run.reps else []
    regressions = gate(comparisons, gate_metrics)
    secs = sections(run, comparisons, images, settings, cal_run)
    verdict = next(c for t, _, c in secs if t == "Verdict")
    compare_doc = {
        "run_id": run.run_id,
        "run_kind": run_kind(run),
        "settings": settings.__dict__,
        "config_diff": config_diff(run),
        "verdict": verdict,
        "warnings": next(c for t, _, c in secs if t == "Warnings"),
        "problems": run.problems,
        "comparisons": comparisons,
        "gate": {"metrics": gate_metrics, "regressions": regressions},
    }
    if run_kind(run) == "calibration":
        compare_doc["calibration"] = calibration_spread(run)
    _write(out / "compare.json", json.dumps(compare_doc, indent=1, default=str))
    rows = group_table(run)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _write(out / "summary.csv", buf.getvalue())
    _write(out / "report.md", markdown(run.run_id, secs))
    _write(out / "report.html", to_html(run.run_id, secs))
    diff = compare_doc["config_diff"]
    return {
        "report_dir": str(out),
        "comparisons": comparisons,
        "problems": run.problems,
        "regressions": regressions,
        "table": (
            ["dev differs from baseline in: " + "; ".join(f"{k} {b} -> {d}" for k, b, d in diff)]
            if diff
            else []
        )
        + ["verdict:"]
        + [f"  {x}" for x in verdict]
        + comparison_lines(comparisons),
    }
