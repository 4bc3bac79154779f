# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The history of runs: every fetched run indexed, its series over time, change points.

The index is a SQLite file (the standard library's sqlite3: one file, no server, SQL for
the filters) at <results_dir>/.history.sqlite. It is derived: built from the run
directories, brought up to date from them at every use (a run whose blocks changed, a
fetch that added a group, is indexed again by its fingerprint), and rebuilt when deleted
or of another schema. Nothing here writes into a run directory.

A run contributes, per sweep point: each group's estimate of each compared metric (the
geometric mean over its blocks, with a nominal t interval of the mean log), dev's effect
against baseline (as its report's verdict gave it, or computed as the report would), and
its identity (each group's versions, hosts, kernel, CPU, GPU driver, the collection's
commit, the settings), which names what changed between two runs.

Change points (`changes`): ruptures' PELT with a least-squares cost over a series' logs,
every run a possible start (jump 1), two runs at least a segment, the penalty scaled by
the series' own noise: a robust spread of run-to-run differences, but never less than the
runs' own standard error (the median over the runs of their blocks' standard error): a run
cannot be more precise than its blocks, and a few quiet runs in a row would otherwise make
a drift of a percent or two a "change". A single run far from both neighbours is an
outlier, set aside and named, not a change. Measured on synthetic series by
benchmarks/history_changes.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sqlite3
import statistics
import traceback
from dataclasses import dataclass
from pathlib import Path

from .. import layout
from . import stats
from .collect import RunResults, list_runs, load_run
from .compare import Settings, compare_run, rep_values

try:
    import ruptures

    IMPORT_ERROR = ""
except ImportError:  # the module reports it with missing_required_lib
    ruptures = None
    IMPORT_ERROR = traceback.format_exc()

SCHEMA = 2  # 2: the standard errors (estimates.se, effects.se)
DB_NAME = ".history.sqlite"
MIN_SEGMENT = 2  # runs: a change needs two runs on each side to be told from an outlier
PENALTY = 4.0  # x noise variance x ln(n): PELT's penalty (benchmarks/history_changes.py)
OUTLIER_Z = 5.0  # a run this many spreads from both neighbours' level is an outlier
DEPART_Z = 3.0  # the newest run this many spreads worse than its segment: flagged
# Identity keys compared between two runs to say what changed at a change point.
IDENTITY = ("engine", "router", "model", "kernel", "cpu", "gpu_driver", "collection", "hosts")

CREATE = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs(run_id TEXT PRIMARY KEY, time TEXT, config_hash TEXT, kind TEXT,
                  fingerprint TEXT, report TEXT);
CREATE TABLE identity(run_id TEXT, grp TEXT, key TEXT, value TEXT);
CREATE TABLE estimates(run_id TEXT, point TEXT, grp TEXT, metric TEXT,
                       value REAL, low REAL, high REAL, blocks INTEGER, se REAL);
CREATE TABLE effects(run_id TEXT, point TEXT, metric TEXT, change_pct REAL, low_pct REAL,
                     high_pct REAL, verdict TEXT, pairs INTEGER, se REAL);
CREATE INDEX estimates_run ON estimates(run_id);
CREATE INDEX effects_run ON effects(run_id);
CREATE INDEX identity_run ON identity(run_id);
"""


def fingerprint(run_dir: Path) -> str:
    """What a run's blocks are: each summary's path and content, hashed. Two copies of a
    run (another controller's) have one fingerprint; a fetch that added blocks changes it."""
    h = hashlib.sha256()
    for path in sorted(run_dir.rglob(layout.SUMMARY)):
        if layout.REPORT in path.relative_to(run_dir).parts:
            continue
        h.update(str(path.relative_to(run_dir)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def connect(results_dir: Path) -> sqlite3.Connection:
    """The index, created (or rebuilt, when of another schema) as needed."""
    path = results_dir / DB_NAME
    db = sqlite3.connect(path)
    try:
        found = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.DatabaseError:
        found = None
    if found is None or found[0] != str(SCHEMA):
        db.close()
        path.unlink(missing_ok=True)
        db = sqlite3.connect(path)
        db.executescript(CREATE)
        db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
        db.commit()
    return db


def update(results_dir: Path) -> tuple[sqlite3.Connection, list[str]]:
    """Bring the index up to date with the run directories; the problems met (a corrupt
    or foreign directory is listed, never fatal, never written)."""
    db = connect(results_dir)
    problems: list[str] = []
    known = dict(db.execute("SELECT run_id, fingerprint FROM runs"))
    here = set()
    for entry in list_runs(results_dir):
        run_id, run_dir = entry["run_id"], results_dir / entry["run_id"]
        here.add(run_id)
        try:
            fp = fingerprint(run_dir)
        except OSError as err:
            problems.append(f"{run_id}: unreadable ({err}); not indexed")
            continue
        if known.get(run_id) == fp:
            continue
        run = load_run(run_dir)
        if not run.reps:
            why = "; ".join(run.problems[:2]) or "no blocks"
            problems.append(f"{run_id}: not a servelab run with blocks ({why}); not indexed")
            continue
        with db:
            _forget(db, run_id)
            _index(db, run, entry, fp, run_dir)
    with db:
        for run_id in set(known) - here:
            _forget(db, run_id)
    return db, problems


def _forget(db: sqlite3.Connection, run_id: str) -> None:
    for table in ("runs", "identity", "estimates", "effects"):
        db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))


def _index(db, run: RunResults, entry: dict, fp: str, run_dir: Path) -> None:
    kinds = {r.summary.context.run_kind for r in run.reps}
    kind = "calibration" if kinds == {"calibration"} else "ab"
    config_hash = next(iter({r.summary.context.config_hash for r in run.reps}), "")
    report = run_dir / layout.REPORT / layout.REPORT_HTML
    db.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
        (run.run_id, entry["time"], config_hash or entry["config_hash"], kind, fp,
         str(report) if report.is_file() else ""),
    )  # fmt: skip
    for group, values in identity(run).items():
        db.executemany(
            "INSERT INTO identity VALUES (?, ?, ?, ?)",
            [(run.run_id, group, k, v) for k, v in sorted(values.items())],
        )
    for point in run.points():
        for group in run.groups():
            reps = run.select(group, point)
            for metric in layout.COMPARED:
                est = group_estimate(rep_values(reps, metric))
                if est is not None:
                    db.execute(
                        "INSERT INTO estimates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (run.run_id, point, group, metric, *est),
                    )
    for point, rows in effects(run, run_dir).items():
        db.executemany(
            "INSERT INTO effects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run.run_id, point, r["metric"], r["change_pct"], r["low_pct"], r["high_pct"],
              r["verdict"], r["pairs"], pair_se(r)) for r in rows],
        )  # fmt: skip


def identity(run: RunResults) -> dict[str, dict[str, str]]:
    """Per group: what a run ran on and with, as text (a key absent from older runs is
    left out): versions, hosts, machine facts, the collection's commit, the settings."""
    out: dict[str, dict[str, str]] = {}
    for group in run.groups():
        reps = [r for r in run.reps if r.group == group]
        c = reps[0].summary.context
        facts = c.placement.get("facts") or {}
        host = c.host_facts
        values = {
            "engine": c.versions.get("engine"),
            "router": c.versions.get("router"),
            "model": c.versions.get("model"),
            "hosts": ",".join(sorted({r.host for r in reps})),
            "kernel": host.get("kernel"),
            "cpu": host.get("cpu") or facts.get("model"),
            "gpu_driver": host.get("gpu_driver"),
            "collection": c.collection,
        }
        values.update({f"setting:{k}": json.dumps(v) for k, v in sorted(c.config.items())})
        out[group] = {k: str(v) for k, v in values.items() if v not in (None, "", [])}
    return out


def group_estimate(values: list[float]) -> tuple | None:
    """(geometric mean, low, high, blocks, standard error of the mean log): a nominal 95%
    t interval of the mean log over the blocks (none for one block)."""
    logs = [math.log(v) for v in values if v and v > 0 and math.isfinite(v)]
    if not logs:
        return None
    n = len(logs)
    mean = sum(logs) / n
    if n < 2:
        return math.exp(mean), None, None, n, None
    se = statistics.stdev(logs) / math.sqrt(n)
    half = stats.tq(0.975, n - 1) * se
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half), n, se


def pair_se(row: dict) -> float | None:
    """The standard error of dev's mean log ratio over a comparison's pairs of blocks
    (stats.estimate, plain: without the report's ABBA position term); None below two
    pairs."""
    base, dev = row.get("baseline_reps") or [], row.get("dev_reps") or []
    if len(base) != len(dev):  # the comparison's blocks are its pairs, in order
        return None
    e = stats.estimate(base, dev)
    return e.se if e else None


def effects(run: RunResults, run_dir: Path) -> dict:
    """dev against baseline per point, as the run's report gave it (compare.json), or
    computed as the report would from the run's recorded settings."""
    path = run_dir / layout.REPORT / layout.COMPARE_JSON
    try:
        return json.loads(path.read_text())["comparisons"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if {"baseline", "dev"} - set(run.groups()):
        return {}
    from .report import run_plan  # the report module imports plots: only when needed

    config = next((r.summary.context.config for r in run.reps), {})
    s = Settings(
        float(config.get("vllm_results_confidence", 0.95)),
        float(config.get("vllm_results_margin_pct", 5)),
        list(config.get("vllm_results_primary_metrics_list") or Settings().primary),
    )
    return compare_run(run, run_plan(run, s))


@dataclass
class Filters:
    """Which runs a history shows: by config hash, a setting's value (name=value, as the
    runs recorded it), a host, and time (the run id's UTC stamp, a prefix compares)."""

    config_hash: str = ""
    setting: str = ""
    host: str = ""
    since: str = ""
    until: str = ""
    kind: str = "ab"

    def where(self) -> tuple[str, list]:
        sql, args = ["r.kind = ?"], [self.kind]
        if self.config_hash:
            sql.append("r.config_hash = ?")
            args.append(self.config_hash)
        if self.since:
            sql.append("r.time >= ?")
            args.append(self.since)
        if self.until:
            sql.append("substr(r.time, 1, ?) <= ?")
            args += [len(self.until), self.until]
        if self.host:
            sql.append(
                "EXISTS (SELECT 1 FROM identity i WHERE i.run_id = r.run_id AND i.key = 'hosts'"
                " AND (',' || i.value || ',') LIKE ?)"
            )
            args.append(f"%,{self.host},%")
        if self.setting:
            name, _, value = self.setting.partition("=")
            sql.append(
                "EXISTS (SELECT 1 FROM identity i WHERE i.run_id = r.run_id AND i.key = ?"
                " AND i.grp = 'baseline' AND (i.value = ? OR i.value = ?))"
            )
            args += [f"setting:{name}", value, json.dumps(value)]
        return " AND ".join(sql), args


def runs(db: sqlite3.Connection, f: Filters) -> list[dict]:
    where, args = f.where()
    rows = db.execute(
        f"SELECT run_id, time, config_hash, report FROM runs r WHERE {where} ORDER BY time, run_id",
        args,
    )
    return [
        dict(zip(("run_id", "time", "config_hash", "report"), row, strict=True)) for row in rows
    ]


def group_series(db, run_ids: list[str], group: str, metric: str, point: str = "default"):
    """[(run_id, value, low, high, se)] of one group's metric over the runs, in order."""
    found = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT run_id, value, low, high, se FROM estimates"
            " WHERE grp = ? AND metric = ? AND point = ?",
            (group, metric, point),
        )
    }
    return [(rid, *found[rid]) for rid in run_ids if rid in found]


def effect_series(db, run_ids: list[str], metric: str, point: str = "default"):
    """[(run_id, change_pct, low_pct, high_pct, verdict, se)] of dev against baseline."""
    found = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT run_id, change_pct, low_pct, high_pct, verdict, se FROM effects"
            " WHERE metric = ? AND point = ?",
            (metric, point),
        )
    }
    return [(rid, *found[rid]) for rid in run_ids if rid in found and found[rid][0] is not None]


def identity_of(db, run_id: str, group: str) -> dict[str, str]:
    return dict(
        db.execute("SELECT key, value FROM identity WHERE run_id = ? AND grp = ?", (run_id, group))
    )


def what_changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The identity keys (and settings) that differ between two runs, as 'key a -> b'."""
    keys = [k for k in IDENTITY if before.get(k) != after.get(k)]
    keys += sorted(
        k for k in before.keys() | after.keys()
        if k.startswith("setting:") and before.get(k) != after.get(k)
    )  # fmt: skip
    return [
        f"{k.removeprefix('setting:')} {before.get(k, '-')} -> {after.get(k, '-')}" for k in keys
    ]


@dataclass
class Change:
    """A change point: the first run of the new level and its size (trend.py names what
    the runs on either side differ in, from their identities)."""

    index: int
    size_pct: float  # the new level against the old: (exp(after - before) - 1) x 100
    before: float  # the levels (log) of the segments on either side
    after: float


@dataclass
class Scan:
    changes: list[Change]
    outliers: list[int]  # single runs far from both neighbours
    newest_departs: float | None = None  # z of the newest run against its segment, if flagged
    spread: float = 0.0  # the noise of one run (log) the scan used
    floored: bool = False  # that noise is the runs' own standard error, not their spread

    def regression(self, n: int, lower_is_better: bool = True) -> str:
        """Why the newest of n runs starts a regression (FAIL_ON_CHANGE), or "": a change
        for the worse that starts at one of the last two runs, or the newest run worse
        than the runs since the last change by more than DEPART_Z spreads."""
        for c in self.changes:
            worse = c.size_pct > 0 if lower_is_better else c.size_pct < 0
            if worse and c.index >= n - MIN_SEGMENT:
                return f"a change of {c.size_pct:+.1f}% starts at run {c.index + 1} of {n}"
        if self.newest_departs is not None:
            return (
                f"the newest run lies {abs(self.newest_departs):.1f} spreads worse than the "
                "runs since the last change"
            )
        return ""


def spread_of(x: list[float]) -> float:
    """A robust spread of one value: the median absolute run-to-run difference over
    0.6745 x sqrt(2) (what a level shift moves only once)."""
    d = [abs(b - a) for a, b in itertools.pairwise(x)]
    return statistics.median(d) / (0.6745 * math.sqrt(2)) if d else 0.0


def noise_floor(ses: list) -> float:
    """The runs' own standard error (log), the median over those that have one: 0 if none."""
    known = [se for se in ses if se is not None and math.isfinite(se)]
    return statistics.median(known) if known else 0.0


def changes(values: list[float], lower_is_better: bool = True, floor: float = 0.0) -> Scan:
    """Change points of a series of positive values (a metric per run, in run order); the
    noise of one run is their robust spread, or `floor` (noise_floor) where that is more."""
    x = [math.log(v) for v in values]
    n = len(x)
    spread = spread_of(x)
    sigma, floored = max(spread, floor), floor > spread
    if n < 2 * MIN_SEGMENT or sigma == 0:
        return Scan([], [], None, sigma, floored)
    # An outlier lies far from the runs on both sides (up to three each); the first and
    # the newest run have one side only: nothing can tell them from a new level.
    outliers = [
        i for i in range(1, n - 1)
        if abs(x[i] - statistics.median(x[max(0, i - 3):i])) > OUTLIER_Z * sigma
        and abs(x[i] - statistics.median(x[i + 1:i + 4])) > OUTLIER_Z * sigma
    ]  # fmt: skip
    kept = [i for i in range(n) if i not in outliers]
    y = stats.np.asarray([x[i] for i in kept]).reshape(-1, 1)
    ends = []
    if len(kept) >= 2 * MIN_SEGMENT:
        algo = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(y)
        ends = algo.predict(pen=PENALTY * sigma**2 * math.log(len(kept)))[:-1]
    out = []
    bounds = [0, *ends, len(kept)]
    for j, end in enumerate(ends):
        before = float(y[bounds[j] : end].mean())
        after = float(y[end : bounds[j + 2]].mean())
        out.append(Change(kept[end], math.expm1(after - before) * 100, before, after))
    segment = [float(v) for v in y[bounds[-2] : -1, 0]]  # the newest run's level before it
    departs = None
    if len(segment) >= MIN_SEGMENT:
        m = len(segment)
        z = (x[-1] - sum(segment) / m) / (sigma * math.sqrt(1 + 1 / m))
        worse = z if lower_is_better else -z
        departs = z if worse > DEPART_Z else None
    return Scan(out, outliers, departs, sigma, floored)
