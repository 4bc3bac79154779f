"""The run history: the index, its filters, change points, imports and bad input."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ansible_collections.servelab.vllm.plugins.module_utils.results import history
from helpers.results_fixture import write_run


def nightly(root, n=10, step_at=None, step=1.0, engine_after=None, seed=0):
    """n nightly runs of one configuration; from run `step_at` on, baseline and dev are
    `step` times slower, and the engine version changes there."""
    ids = []
    for i in range(n):
        run_id = f"202612{i + 1:02d}T020000Z-abcdef123456"
        run = write_run(root, run_id=run_id, dev_scale=1.0, reps=4, seed=seed + i,
                        config={"vllm_enable_prefix_caching": True})  # fmt: skip
        later = step_at is not None and i >= step_at
        for path in run.rglob("summary.json"):
            doc = json.loads(path.read_text())
            if later:
                doc["context"]["versions"]["engine"] = engine_after or "0.33.0"
                for key in ("median_ttft_ms", "median_tpot_ms", "mean_ttft_ms"):
                    doc[key] *= step
            doc["context"]["host_facts"] = {"kernel": "6.1.0-40", "cpu": "EPYC"}
            doc["context"]["collection"] = "abc123"
            path.write_text(json.dumps(doc))
        ids.append(run_id)
    return ids


def test_the_index_holds_every_run_and_follows_the_directories(tmp_path):
    ids = nightly(tmp_path, n=3)
    db, problems = history.update(tmp_path)
    assert problems == []
    runs = history.runs(db, history.Filters())
    assert [r["run_id"] for r in runs] == ids
    tpot = history.group_series(db, ids, "baseline", "median_tpot_ms")
    value, low, high, se = tpot[0][1:]
    assert low < value < high
    assert 0 < se < math.log(high / low)
    assert history.identity_of(db, ids[0], "dev")["engine"] == "0.32.0"
    assert history.identity_of(db, ids[0], "dev")["kernel"] == "6.1.0-40"
    # Derived: a run removed is forgotten, the index deleted is rebuilt alike.
    shutil.rmtree(tmp_path / ids[1])
    db, _ = history.update(tmp_path)
    assert [r["run_id"] for r in history.runs(db, history.Filters())] == [ids[0], ids[2]]
    db.close()
    (tmp_path / history.DB_NAME).unlink()
    db, _ = history.update(tmp_path)
    assert len(history.runs(db, history.Filters())) == 2


def test_filters_by_config_setting_host_and_time(tmp_path):
    ids = nightly(tmp_path, n=4)
    db, _ = history.update(tmp_path)
    pick = lambda **kw: [r["run_id"] for r in history.runs(db, history.Filters(**kw))]  # noqa: E731
    assert pick(config_hash="abcdef123456") == ids
    assert pick(config_hash="000000000000") == []
    assert pick(since="20261203") == ids[2:]
    assert pick(until="20261202") == ids[:2]
    assert pick(host="dev-local") == ids and pick(host="dev") == []
    assert pick(setting="vllm_enable_prefix_caching=true") == ids
    assert pick(setting="vllm_enable_prefix_caching=false") == []


def test_a_planted_step_is_found_at_its_run_with_what_changed(tmp_path):
    """Ten nightly runs; from the seventh, TPOT is 30% slower and the engine moved to
    0.33.0: the change point names run 7 and the engine change; FAIL_ON_CHANGE holds
    for the history that ends at run 7's successor, not for the whole one."""
    ids = nightly(tmp_path, n=10, step_at=6, step=1.3)
    db, _ = history.update(tmp_path)
    series = history.group_series(db, ids, "dev", "median_tpot_ms")
    scan = history.changes([v for _, v, *_ in series])
    assert [c.index for c in scan.changes] == [6]
    assert scan.changes[0].size_pct == pytest.approx(30, abs=4)
    before, after = (history.identity_of(db, ids[i], "dev") for i in (5, 6))
    assert history.what_changed(before, after) == ["engine 0.32.0 -> 0.33.0"]
    assert scan.regression(len(series)) == ""  # the step is 4 runs old
    recent = history.changes([v for _, v, *_ in series[:8]])  # the step is 2 runs old
    assert "starts at run 7 of 8" in recent.regression(8)


def test_noise_an_outlier_and_a_newest_run_that_departs():
    rng = np.random.default_rng(3)
    flat = np.exp(rng.normal(0, 0.03, 20)).tolist()
    assert history.changes(flat).changes == []
    spiked = list(flat)
    spiked[7] *= 1.3
    scan = history.changes(spiked)
    assert scan.outliers == [7] and scan.changes == []
    worse = [*flat[:-1], flat[-1] * 1.25]  # the newest run 25% slower: a regression starts
    assert history.changes(worse).regression(20)
    departs = history.Scan([], [], newest_departs=4.2)
    assert "4.2 spreads worse" in departs.regression(20)
    better = [*flat[:-1], flat[-1] / 1.25]
    assert history.changes(better).regression(20) == ""  # an improvement fails nothing
    assert history.changes([1.0, 1.1]).changes == []  # too short to judge


def test_a_corrupt_or_foreign_directory_is_a_problem_never_fatal_never_written(tmp_path):
    ids = nightly(tmp_path, n=2)
    foreign = tmp_path / "20261130T000000Z-notours"
    (foreign / "x").mkdir(parents=True)
    (foreign / "x" / "notes.txt").write_text("hello")
    broken = write_run(tmp_path, run_id="20261129T000000Z-abcdef123456")
    for path in broken.rglob("summary.json"):
        path.write_text("{not json")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    db, problems = history.update(tmp_path)
    assert [r["run_id"] for r in history.runs(db, history.Filters())] == ids
    assert any(p.startswith("20261130T000000Z-notours: not a servelab run") for p in problems)
    assert any(p.startswith("20261129T000000Z-abcdef123456: not a servelab run") for p in problems)
    after = {
        p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != history.DB_NAME
    }
    assert after == before


def test_runs_quieter_than_their_own_blocks_do_not_make_a_drift_a_change():
    """Eight runs whose estimates happen to lie within 0.3% of each other, then a 2.5%
    drift: on their spread alone that is a change; each run's own standard error (3%, from
    its blocks) says the runs cannot tell it, so with that floor there is none. A 30% step
    is still found at its run."""
    quiet = [100.0, 100.3, 99.8, 100.1, 99.9, 100.2, 102.6, 102.4, 102.7, 102.5]
    assert history.changes(quiet).changes  # the spread alone: a "change" at run 7
    scan = history.changes(quiet, floor=history.noise_floor([0.03] * 9 + [None]))
    assert scan.changes == [] and scan.floored and scan.spread == pytest.approx(0.03)
    stepped = [100.0, 100.3, 99.8, 100.1, 99.9, 100.2, 130.1, 129.7, 130.4, 130.0]
    (c,) = history.changes(stepped, floor=0.03).changes
    assert c.index == 6 and c.size_pct == pytest.approx(30, abs=1)
    assert history.noise_floor([None, float("nan")]) == 0.0


def test_a_change_placed_a_run_from_its_cause_names_the_nearest_change_of_identity(tmp_path):
    """Runs 5 and 6 are 30% slower, but the engine changes only at run 6 (a change first
    seen in the newest runs, or blurred by a noisy run): the runs either side of the
    change differ in nothing, so the finding names the engine change one run later."""
    from ansible_collections.servelab.vllm.plugins.module_utils.results import trend

    ids = nightly(tmp_path, n=7, step_at=5, step=1.3)
    for path in (tmp_path / ids[4]).rglob("summary.json"):  # slower, same engine
        doc = json.loads(path.read_text())
        for key in ("median_ttft_ms", "median_tpot_ms", "mean_ttft_ms"):
            doc[key] *= 1.3
        path.write_text(json.dumps(doc))
    out = trend.history_report(tmp_path, history.Filters(), ["median_tpot_ms"], write=False)
    found = [x for x in out["findings"] if x.startswith("baseline median_tpot_ms")]
    assert len(found) == 1 and f"from run {ids[4]} on" in found[0], out["findings"]
    assert (
        f"nothing in the runs identity; the nearest change in it is at run {ids[5]} "
        "(1 run(s) later): engine 0.32.0 -> 0.33.0" in found[0]
    )


def test_effects_come_from_the_report_or_as_the_report_would_compute_them(tmp_path):
    run = write_run(tmp_path, dev_scale=1.5, reps=4)
    db, _ = history.update(tmp_path)
    (_, change, low, high, verdict, se), *_ = history.effect_series(
        db, [run.name], "median_tpot_ms"
    )
    assert verdict == "WORSE" and low < change < high
    assert 0 < se < math.log((100 + high) / (100 + low))  # the pairs' error, on the log scale
    assert change == pytest.approx(50, abs=5) and math.isfinite(high)


def test_the_module_shows_the_history_writes_its_page_and_imports_without_overwriting(tmp_path):
    """make vllm-history and vllm-history-import through Ansible: the table names the
    change and its cause; the page links every point to its run's report; an import
    copies new runs, recognises a duplicate and refuses an id with other blocks."""
    from helpers.modules import ansible_module

    here, there = tmp_path / "here", tmp_path / "there"
    ids = nightly(here, n=8, step_at=4, step=1.3)
    for rid in ids:  # the reports the page links to
        (here / rid / "report").mkdir(exist_ok=True)
        (here / rid / "report" / "report.html").write_text("<html></html>")
    done = ansible_module(
        "servelab.vllm.results",
        json.dumps({"results_dir": str(here), "action": "history",
                    "primary_metrics": ["median_ttft_ms", "median_tpot_ms"]}),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    out = json.loads(done.stdout.split("=>", 1)[1])
    assert out["table"][0] == "8 run(s)"
    assert any(
        re.match(r"dev median_tpot_ms: \+(2[6-9]|3[0-4])\.\d% from run ", x.strip())
        and f"from run {ids[4]} on" in x and "engine 0.32.0 -> 0.33.0" in x
        for x in out["table"]
    ), out["table"]  # fmt: skip
    marked = [x for x in out["table"] if "<- change:" in x]  # the table marks where it starts
    assert len(marked) == 1 and marked[0].startswith(ids[4]) and "dev median_tpot_ms +" in marked[0]
    page = (here / "history" / "index.html").read_text()
    assert page.count("<svg") == 2 and f"../{ids[0]}/report/report.html" in page
    row = re.search(
        rf"<tr><td><a href='[^']*'>{ids[4]}</a></td><td>([^<]*)</td><td><b>change:", page
    )
    assert row and "median_tpot_ms" in row[1]  # each linked row has its figures and its mark

    nightly(there, n=10, seed=50)  # ids 1-8 differ from here's, 9-10 are new
    shutil.copytree(here / ids[0], there / "20261230T000000Z-abcdef123456")
    got = ansible_module(
        "servelab.vllm.results",
        json.dumps({"results_dir": str(here), "action": "import", "import_dir": str(there)}),
    )
    out = json.loads(got.stdout.split("=>", 1)[1])
    assert got.returncode == 0 and out["changed"] is True
    assert out["table"][0].startswith("imported 3 run(s)")  # 9, 10 and the copy under a new id
    assert len(out["problems"]) == 8 and "with other blocks is here already" in out["problems"][0]
    again = ansible_module(
        "servelab.vllm.results",
        json.dumps({"results_dir": str(here), "action": "import", "import_dir": str(there)}),
    )
    out = json.loads(again.stdout.split("=>", 1)[1])
    assert out["changed"] is False and out["table"][1].count("2026") == 3  # duplicates now
    assert not list(here.glob(".import-*"))


def test_fail_on_change_fails_the_nightly_when_the_newest_runs_start_a_regression(tmp_path):
    """playbooks/history.yml as `make vllm-history FAIL_ON_CHANGE=1` runs it: a history
    whose last two runs are 30% slower fails, naming the change; without the flag, or
    with the step long past, it passes."""
    top = Path(__file__).resolve().parents[2]

    def play(results, *extra):
        return subprocess.run(
            [str(top / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local",
             "-e", f"ansible_python_interpreter={sys.executable}",
             str(top / "playbooks/history.yml"), "-e", f"vllm_results_dir={results}",
             "-e", '{"vllm_results_primary_metrics_list": ["median_tpot_ms"]}', *extra],
            capture_output=True, text=True,
            env={**os.environ, "ANSIBLE_CONFIG": str(top / "ansible.cfg")},
        )  # fmt: skip

    late, old = tmp_path / "late", tmp_path / "old"
    nightly(late, n=8, step_at=6, step=1.3)
    nightly(old, n=8, step_at=3, step=1.3)
    failed = play(late, "-e", "servelab_fail_on_change=1")
    assert failed.returncode != 0
    assert "the newest run starts a regression: baseline median_tpot_ms: a change of +3" in (
        failed.stdout
    ), failed.stdout[-3000:]
    assert play(late).returncode == 0
    assert play(old, "-e", "servelab_fail_on_change=1").returncode == 0
