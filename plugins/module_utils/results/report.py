# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report of a run: report.md, self-contained report.html, summary.csv, compare.json."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from pathlib import Path

from . import plots, stats
from .collect import RunResults, load_run
from .compare import (
    Settings,
    compare_run,
    gate,
    group_table,
    latency_samples,
    single_group_sweep,
)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def comparison_lines(comparisons: dict, confidence: float) -> list[str]:
    """The comparison as aligned text, for the terminal."""
    lines = []
    header = ("metric", "baseline", "dev", "delta %", f"{confidence:.0%} CI of dev-base", "verdict")
    for point, rows in comparisons.items():
        table = [header] + [tuple(row[:-1]) for row in _comparison_rows(rows)]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines.append(f"point {point}:")
        lines += [
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in table
        ]
    return lines


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def _context(run: RunResults) -> dict:
    out = {}
    for group in run.groups():
        reps = [r for r in run.reps if r.group == group]
        if reps:
            s = reps[0].summary
            out[group] = {
                "versions": s.get("versions", {}),
                "config_hash": s.get("config_hash"),
                "hosts": sorted({r.host for r in reps}),
                "repetitions": max(r.rep for r in reps),
            }
    return out


def write_report(run_dir: Path, settings: Settings, gate_metrics: list[str]) -> dict:
    """Compare, plot and write run_dir/report/; return what the caller prints and checks."""
    run = load_run(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    comparisons = compare_run(run, settings)
    images = plots.all_plots(run, out) if run.reps else []
    context = _context(run)
    regressions = gate(comparisons, gate_metrics)
    compare_doc = {
        "run_id": run.run_id,
        "settings": settings.__dict__,
        "groups": context,
        "problems": run.problems,
        "comparisons": comparisons,
        "gate": {"metrics": gate_metrics, "regressions": regressions},
    }
    _write(out / "compare.json", json.dumps(compare_doc, indent=1, default=str))
    rows = group_table(run)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _write(out / "summary.csv", buf.getvalue())
    _write(out / "report.md", markdown(run, comparisons, context, images, settings))
    _write(out / "report.html", to_html(run, comparisons, context, images, settings))
    return {
        "report_dir": str(out),
        "comparisons": comparisons,
        "problems": run.problems,
        "regressions": regressions,
        "table": comparison_lines(comparisons, settings.confidence),
    }


def _comparison_rows(rows: list[dict]) -> list[list[str]]:
    return [
        [
            r["metric"],
            stats.fmt(r["baseline"]),
            stats.fmt(r["dev"]),
            stats.fmt(None if r["relative"] is None else r["relative"] * 100, 1),
            f"[{stats.fmt(r['ci_low'])}, {stats.fmt(r['ci_high'])}]",
            r["verdict"],
            f"{r['n_baseline']} / {r['n_dev']}",
        ]
        for r in rows
    ]


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


COMPARISON_HEADER = [
    "metric",
    "baseline",
    "dev",
    "delta %",
    "CI of dev - baseline",
    "verdict",
    "samples (base / dev)",
]


ONE_GROUP_NOTE = (
    "A sweep of one group: the first point plays baseline and each later point plays dev."
)


def markdown(run, comparisons, context, images, s: Settings) -> str:
    lines = [f"# servelab report: {run.run_id}", ""]
    for group, ctx in context.items():
        v = ctx["versions"]
        lines.append(
            f"- **{group}**: hosts {', '.join(ctx['hosts'])}, engine {v.get('engine')}, "
            f"router {v.get('router')}, model {v.get('model')}, "
            f"{ctx['repetitions']} repetition(s)"
        )
    lines += [
        "",
        f"Verdicts: dev against baseline, {s.confidence:.0%} bootstrap interval "
        f"({s.resamples} resamples) of the difference; a change counts when the interval "
        f"excludes 0 and reaches {s.threshold_pct:g}%. Lower is better for latencies, "
        "higher for throughputs. Latencies compare per-request samples, with intervals that "
        "resample repetitions and then requests within each, so run-to-run variation counts; "
        "throughputs compare the means of repetitions with Welch's t interval.",
        "",
    ]
    if single_group_sweep(run):
        lines += [ONE_GROUP_NOTE, ""]
    if run.problems:
        lines += ["## Problems", ""] + [f"- {p}" for p in run.problems] + [""]
    for point, rows in comparisons.items():
        lines += [f"## Comparison: {point}", ""]
        lines += [*_md_table(COMPARISON_HEADER, _comparison_rows(rows)), ""]
    if len(run.points()) > 1:
        lines += [
            "## Sweep",
            "",
            *_md_table(
                ["point", "group", "output tok/s (mean)", "p95 TTFT ms", "p95 ITL ms"],
                sweep_rows(run),
            ),
            "",
        ]
    lines += ["## Runs", ""]
    keys = [
        "group",
        "point",
        "repetition",
        "completed",
        "failed",
        "request_throughput",
        "output_throughput",
        "median_ttft_ms",
        "median_tpot_ms",
        "p99_itl_ms",
    ]
    table = [
        [str(row[k]) if not isinstance(row[k], float) else f"{row[k]:.2f}" for k in keys]
        for row in group_table(run)
    ]
    lines += [*_md_table(keys, table), "", "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in images]
    return "\n".join(lines) + "\n"


def to_html(run, comparisons, context, images, s: Settings) -> str:
    """One file that opens from disk: images inline as data URIs, no external resources."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>servelab report {e(run.run_id)}</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1100px}",
        "table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}",
        "td:first-child,th:first-child{text-align:left}",
        ".better{background:#dfd}.worse{background:#fdd}img{max-width:100%}",
        "</style></head><body>",
        f"<h1>servelab report: {e(run.run_id)}</h1><ul>",
    ]
    for group, ctx in context.items():
        v = ctx["versions"]
        parts.append(
            f"<li><b>{e(group)}</b>: engine {e(str(v.get('engine')))}, router "
            f"{e(str(v.get('router')))}, model {e(str(v.get('model')))}, "
            f"{ctx['repetitions']} repetition(s)</li>"
        )
    parts.append(
        f"</ul><p>{s.confidence:.0%} bootstrap interval of dev - baseline (latencies: "
        f"repetitions, then requests, resampled; throughputs: Welch's t interval); "
        f"threshold {s.threshold_pct:g}%.</p>"
    )
    if single_group_sweep(run):
        parts.append(f"<p>{e(ONE_GROUP_NOTE)}</p>")
    if run.problems:
        parts.append(
            "<h2>Problems</h2><ul>" + "".join(f"<li>{e(p)}</li>" for p in run.problems) + "</ul>"
        )
    for point, rows in comparisons.items():
        parts.append(
            f"<h2>Comparison: {e(point)}</h2><table><tr>"
            + "".join(f"<th>{e(h)}</th>" for h in COMPARISON_HEADER)
            + "</tr>"
        )
        for row, r in zip(_comparison_rows(rows), rows, strict=True):
            css = {"better": "better", "worse": "worse"}.get(r["verdict"], "")
            parts.append(f"<tr class='{css}'>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Plots</h2>")
    for path in images:
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(
            f"<figure><img alt='{e(path.stem)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(path.stem)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
