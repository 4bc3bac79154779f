# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""make vllm-history: the history's table, its change points, and its HTML page.

The page (<results_dir>/history/index.html) holds one SVG a primary metric, inline: each
group's estimate per run with its interval, dev's effect against baseline beneath, the
change points as dashed lines, and every point a link to its run's report.
"""

from __future__ import annotations

import html
import io
import json
import os
import shutil
from pathlib import Path

from .. import layout
from ..atomic import write_atomic
from . import history
from .collect import list_runs, load_run
from .compare import THROUGHPUT
from .plots import plt


def history_report(
    results_dir: Path, f: history.Filters, primary: list[str], write: bool = True
) -> dict:
    """The runs that pass the filters, each primary's series per group and dev's effect,
    their change points named with what changed, and whether the newest run starts a
    regression (what FAIL_ON_CHANGE fails on)."""
    db, problems = history.update(results_dir)
    try:
        runs = history.runs(db, f)
        ids = [r["run_id"] for r in runs]
        findings, regressions, figures = [], [], []
        marks: dict[str, list[str]] = {}  # run id -> the changes that start there
        for metric in primary:
            lower = metric not in THROUGHPUT
            panels = []
            for group in ("baseline", "dev"):
                series = history.group_series(db, ids, group, metric)
                scan = _scan(db, series, group, metric, lower, findings, regressions, marks)
                panels.append((group, series, scan))
            effect = [
                (rid, 1 + pct / 100, 1 + lo / 100 if lo is not None else None,
                 1 + hi / 100 if hi is not None else None, se)
                for rid, pct, lo, hi, _, se in history.effect_series(db, ids, metric)
            ]  # fmt: skip
            scan = _scan(db, effect, "dev/baseline", metric, lower, findings, regressions, marks)
            panels.append(("dev/baseline", effect, scan))
            if any(s for _, s, _ in panels):
                figures.append((metric, panels))
        lines = _table(db, runs, primary)
        table = [
            line + (f"  <- change: {', '.join(marks[r['run_id']])}" if r["run_id"] in marks else "")
            for r, line in zip(runs, lines, strict=True)
        ]
        out = {"runs": ids, "table": table, "findings": findings or ["no change point"],
               "regressions": regressions, "problems": problems}  # fmt: skip
        if write and runs:
            page = results_dir / layout.HISTORY_DIR / "index.html"
            page.parent.mkdir(exist_ok=True)
            write_atomic(
                page, _page(runs, figures, findings, lines, marks, problems, f, page.parent)
            )
            out["page"] = str(page)
        return out
    finally:
        db.close()


def _scan(db, series, label, metric, lower, findings, regressions, marks):
    """Change points of one series, described into findings (and regressions), each
    marked at the run where it starts."""
    if len(series) < 2 * history.MIN_SEGMENT:
        return None
    ids = [s[0] for s in series]
    # (run_id, value, low, high, standard error of its log): the runs' own error floors
    # the noise the scan assumes.
    scan = history.changes(
        [s[1] for s in series], lower, history.noise_floor([s[4] for s in series])
    )
    group = "dev" if label == "dev/baseline" else label
    for c in scan.changes:
        changed = history.what_changed(
            history.identity_of(db, ids[c.index - 1], group),
            history.identity_of(db, ids[c.index], group),
        )
        findings.append(
            f"{label} {metric}: {c.size_pct:+.1f}% from run {ids[c.index]} on; between it and "
            f"the run before: {'; '.join(changed) or _nearest(db, ids, c.index, group)}"
        )
        marks.setdefault(ids[c.index], []).append(f"{label} {metric} {c.size_pct:+.1f}%")
    for i in scan.outliers:
        findings.append(f"{label} {metric}: run {ids[i]} is an outlier (one run, not a change)")
    why = scan.regression(len(series), lower)
    if why:
        regressions.append(f"{label} {metric}: {why} (newest run {ids[-1]})")
    return scan


def _nearest(db, ids: list[str], at: int, group: str) -> str:
    """For a change whose runs either side differ in nothing: the nearest change of the
    identity within a segment's length (a segment needs MIN_SEGMENT runs, so a change made
    at the newest runs, or blurred by a noisy run, may be placed that far from its cause)."""
    near = sorted(
        (abs(j - at), j)
        for j in range(
            max(1, at - history.MIN_SEGMENT), min(len(ids), at + history.MIN_SEGMENT + 1)
        )
        if j != at
    )
    for _, j in near:
        changed = history.what_changed(
            history.identity_of(db, ids[j - 1], group), history.identity_of(db, ids[j], group)
        )
        if changed:
            where = f"{abs(j - at)} run(s) {'later' if j > at else 'earlier'}"
            return (
                f"nothing in the runs identity; the nearest change in it is at run {ids[j]} "
                f"({where}): {'; '.join(changed)}"
            )
    return "nothing in the runs identity"


def _table(db, runs: list[dict], primary: list[str]) -> list[str]:
    """One line a run: its id, dev's engine, each primary's groups and dev's effect."""
    lines = []
    for r in runs:
        rid = r["run_id"]
        est = {
            (g, m): v
            for g, m, v in db.execute(
                "SELECT grp, metric, value FROM estimates WHERE run_id = ? AND point = 'default'",
                (rid,),
            )
        }
        eff = {
            m: (pct, verdict)
            for m, pct, verdict in db.execute(
                "SELECT metric, change_pct, verdict FROM effects"
                " WHERE run_id = ? AND point = 'default'",
                (rid,),
            )
        }
        cells = []
        for m in primary:
            b, d = est.get(("baseline", m)), est.get(("dev", m))
            pct, verdict = eff.get(m, (None, ""))
            cells.append(
                f"{m} {_num(b)} / {_num(d)}"
                + (f" ({pct:+.1f}% {verdict})" if pct is not None else "")
            )
        engine = history.identity_of(db, rid, "dev").get("engine", "-")
        lines.append(f"{rid}  engine {engine}  " + "  ".join(cells))
    return lines


def _num(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _svg(metric: str, panels: list, runs: list[dict], where: Path) -> str:
    """One metric's figure as SVG text: the groups above, dev's effect below."""
    order = {r["run_id"]: i for i, r in enumerate(runs)}
    links = {r["run_id"]: os.path.relpath(r["report"], where) if r["report"] else "" for r in runs}
    fig, axes = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    try:
        for ax, wanted in ((axes[0], ("baseline", "dev")), (axes[1], ("dev/baseline",))):
            for label, series, scan in panels:
                if label not in wanted or not series:
                    continue
                x = [order[s[0]] for s in series]
                y = [s[1] for s in series]
                lo = [s[1] - s[2] if s[2] is not None else 0 for s in series]
                hi = [s[3] - s[1] if s[3] is not None else 0 for s in series]
                ax.errorbar(x, y, yerr=[lo, hi], fmt="none", alpha=0.4)
                dots = ax.scatter(x, y, label=label, zorder=3)
                dots.set_urls([links[s[0]] or None for s in series])
                for c in scan.changes if scan else []:
                    ax.axvline(x[c.index] - 0.5, linestyle="--", color=dots.get_facecolor()[0])
            ax.legend(loc="best", fontsize=8)
        axes[0].set_ylabel(metric)
        axes[1].set_ylabel("dev / baseline")
        axes[1].axhline(1.0, color="grey", linewidth=0.8)
        axes[1].set_xticks(range(len(runs)))
        axes[1].set_xticklabels([r["time"][:8] for r in runs], rotation=60, fontsize=7)
        fig.suptitle(f"{metric}: per run (dashed: change points; a point links to its report)")
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
    finally:
        plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _page(runs, figures, findings, lines, marks, problems, f: history.Filters, where: Path) -> str:
    def items(texts):
        return "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in texts) + "</ul>"

    def row(r: dict, line: str) -> str:
        run = (
            f"<a href='{html.escape(os.path.relpath(r['report'], where))}'>{r['run_id']}</a>"
            if r["report"]
            else r["run_id"]
        )
        cells = line.split("  ", 1)[1]
        change = ", ".join(marks.get(r["run_id"], []))
        mark = f"<b>change: {html.escape(change)}</b>" if change else ""
        return f"<tr><td>{run}</td><td>{html.escape(cells)}</td><td>{mark}</td></tr>"

    rows = "".join(row(r, line) for r, line in zip(runs, lines, strict=True))
    chosen = {k: v for k, v in f.__dict__.items() if v}
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>servelab history</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
        "td{padding:2px 8px;font-size:13px}</style></head><body>"
        f"<h1>servelab history</h1><p>{len(runs)} runs; "
        f"filters {html.escape(json.dumps(chosen))}</p>"
        f"<h2>Change points</h2>{items(findings or ['no change point'])}"
        + "".join(f"<h2>{html.escape(m)}</h2>{_svg(m, p, runs, where)}" for m, p in figures)
        + f"<h2>Runs</h2><table>{rows}</table>"
        + (f"<h2>Problems</h2>{items(problems)}" if problems else "")
        + "</body></html>\n"
    )


def import_runs(source: Path, results_dir: Path) -> dict:
    """Runs of another controller (a directory of run directories) copied in: a run
    already here with the same blocks is a duplicate; one with the same id and other
    blocks, or one that is not a servelab run, is a problem; nothing is overwritten."""
    out: dict = {"imported": [], "duplicates": [], "problems": []}
    if not source.is_dir():
        out["problems"].append(f"{source}: no such directory")
        return out
    results_dir.mkdir(parents=True, exist_ok=True)
    for entry in list_runs(source):
        run_id, run_dir = entry["run_id"], source / entry["run_id"]
        target = results_dir / run_id
        if target.exists():
            if history.fingerprint(target) == history.fingerprint(run_dir):
                out["duplicates"].append(run_id)
            else:
                out["problems"].append(
                    f"{run_id}: a run of this id with other blocks is here already; not imported"
                )
            continue
        if not load_run(run_dir).reps:
            out["problems"].append(f"{run_id}: not a servelab run with blocks; not imported")
            continue
        staging = results_dir / f".import-{run_id}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(run_dir, staging)
        staging.rename(target)  # whole or not at all
        out["imported"].append(run_id)
    return out
