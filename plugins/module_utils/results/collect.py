# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a run's results from disk: groups, hosts, points, repetitions; problems noted."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import layout
from ..records import BlockSummary, RequestOutcome


@dataclass
class RepResult:
    group: str
    host: str
    point: str
    rep: int
    summary: BlockSummary
    requests: list[RequestOutcome]


@dataclass
class RunResults:
    run_id: str
    reps: list[RepResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def groups(self) -> list[str]:
        return sorted({r.group for r in self.reps}, key=lambda g: (g != "baseline", g))

    def points(self) -> list[str]:
        seen: list[str] = []
        for r in self.reps:
            if r.point not in seen:
                seen.append(r.point)
        return seen

    def select(self, group: str, point: str) -> list[RepResult]:
        return [r for r in self.reps if r.group == group and r.point == point]


def _read_requests(path: Path, problems: list[str]) -> list[RequestOutcome]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            problems.append(f"{path}:{n}: not JSON; the rest of the file is ignored")
            break
        try:
            out.append(RequestOutcome.from_record(record))
        except (TypeError, ValueError) as e:
            problems.append(f"{path}:{n}: not a request record ({e}); skipped")
    return out


def load_run(run_dir: Path) -> RunResults:
    """Every complete repetition under run_dir; each missing or broken piece is noted."""
    run = RunResults(run_dir.name)
    if not run_dir.is_dir():
        run.problems.append(f"{run_dir}: no such run")
        return run
    for group_dir in sorted(_group_dirs(run_dir)):
        hosts = [p for p in group_dir.iterdir() if p.is_dir()]
        if not hosts:
            run.problems.append(f"{group_dir}: no host results")
        for host_dir in sorted(hosts):
            summaries = layout.summaries(host_dir)
            if not summaries:
                run.problems.append(f"{host_dir}: no {layout.SUMMARY} (missing or partial results)")
            for summary_path in summaries:
                rep_dir = summary_path.parent
                where = f"{group_dir.name}/{host_dir.name}/{rep_dir.parent.name}/{rep_dir.name}"
                try:
                    rep = layout.rep_number(rep_dir)
                except ValueError:
                    run.problems.append(f"{where}: not a repetition's directory; skipped")
                    continue
                try:
                    summary = json.loads(summary_path.read_text())
                except ValueError:
                    run.problems.append(f"{where}: {layout.SUMMARY} is corrupt; skipped")
                    continue
                if not isinstance(summary, dict):
                    run.problems.append(f"{where}: {layout.SUMMARY} is not an object; skipped")
                    continue
                if summary.get("schema_version") != layout.SCHEMA_VERSION:
                    run.problems.append(
                        f"{where}: schema_version {summary.get('schema_version')!r}, expected "
                        f"{layout.SCHEMA_VERSION} (written by another servelab); skipped"
                    )
                    continue
                try:
                    summary = BlockSummary.from_json(summary)
                except (TypeError, ValueError) as err:
                    run.problems.append(f"{where}: {layout.SUMMARY}: {err}; skipped")
                    continue
                requests_path = rep_dir / layout.REQUESTS
                if requests_path.is_file():
                    requests = _read_requests(requests_path, run.problems)
                else:
                    run.problems.append(
                        f"{where}: {layout.REQUESTS} missing; latencies not compared"
                    )
                    requests = []
                run.reps.append(
                    RepResult(
                        group_dir.name, host_dir.name, rep_dir.parent.name, rep, summary, requests
                    )
                )
    # Points in the order they ran (a sweep's order), not the directories' names.
    run.reps.sort(key=lambda r: r.summary.started_at)  # stable: old runs keep theirs
    if run.reps and "baseline" not in run.groups():
        run.problems.append("no baseline results: nothing to compare against")
    return run


def _group_dirs(run_dir: Path) -> list[Path]:
    """A run's group directories: everything in it but the report."""
    return [p for p in run_dir.iterdir() if p.is_dir() and p.name != layout.REPORT]


def list_runs(results_dir: Path) -> list[dict]:
    """Runs with their time, config hash and groups, oldest first."""
    out = []
    if not results_dir.is_dir():
        return out
    for run_dir in sorted(
        p for p in results_dir.iterdir()
        if p.is_dir() and p.name[0] != "." and p.name != layout.HISTORY_DIR
    ):  # fmt: skip
        stamp, _, config_hash = run_dir.name.partition("-")
        groups = sorted(p.name for p in _group_dirs(run_dir))
        out.append(
            {
                "run_id": run_dir.name,
                "time": stamp,
                "config_hash": config_hash,
                "groups": groups,
                "report": (run_dir / layout.REPORT / layout.REPORT_MD).is_file(),
            }
        )
    return out


def run_lines(runs: list[dict], node_runs: dict[str, list[str]]) -> list[str]:
    """One line a run, oldest first: those here (with or without a report), then those
    that are only on nodes, with the nodes that hold them (make vllm-results fetches)."""
    here = {r["run_id"] for r in runs}
    lines = [
        f"{r['run_id']}  time {r['time']}  config {r['config_hash']}  groups "
        f"{','.join(r['groups'])}{'  (report)' if r['report'] else ''}"
        for r in runs
    ]
    remote: dict[str, list[str]] = {}
    for node, ids in sorted(node_runs.items()):
        for run_id in ids or []:
            if run_id not in here:
                remote.setdefault(run_id, []).append(node)
    for run_id in sorted(remote):
        stamp, _, config_hash = run_id.partition("-")
        lines.append(
            f"{run_id}  time {stamp}  config {config_hash}  not fetched: on "
            f"{', '.join(remote[run_id])}"
        )
    return lines
