"""The results contract: one atomic writer, one layout, requests read back as records, and
one list of report sections rendered alike to markdown and HTML."""

import json
import os
import re

import pytest
from ansible_collections.servelab.vllm.plugins.module_utils import (
    atomic,
    layout,
    service_manager,
    supervisor,
)
from ansible_collections.servelab.vllm.plugins.module_utils.records import RequestOutcome
from ansible_collections.servelab.vllm.plugins.module_utils.results import collect, compare, report
from helpers.results_fixture import write_run


def test_write_atomic_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    atomic.write_atomic(path, "one é\n", mode=0o600)
    assert path.read_bytes() == "one é\n".encode() and path.stat().st_mode & 0o777 == 0o600
    atomic.write_atomic(path, b"\x00two")
    assert path.read_bytes() == b"\x00two"
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError):
        atomic.write_atomic(tmp_path / "dir", "a directory is not replaced by a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "f.txt"]  # no temporary left


def test_the_supervisors_standalone_copy_writes_what_atomic_writes(tmp_path):
    data = {"b": [1, 2], "a": {"z": None, "y": "é"}}
    atomic.write_json_atomic(tmp_path / "ours.json", data)
    supervisor.write_json_atomic(str(tmp_path / "copy.json"), data)
    assert (tmp_path / "ours.json").read_bytes() == (tmp_path / "copy.json").read_bytes()
    assert json.loads((tmp_path / "ours.json").read_text()) == data
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError):
        supervisor.write_json_atomic(str(tmp_path / "dir"), data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.json", "dir", "ours.json"]


def test_service_files_are_rewritten_only_when_their_content_changes(tmp_path):
    unit = tmp_path / "unit.service"
    path = str(unit)
    service_manager._write_atomic(path, "[Unit]\n", 0o600)
    before = os.stat(path).st_ino
    service_manager._write_atomic(path, "[Unit]\n", 0o644)
    assert os.stat(path).st_ino == before and os.stat(path).st_mode & 0o777 == 0o644
    service_manager._write_atomic(path, "[Service]\n", 0o644)
    assert os.stat(path).st_ino != before and unit.read_text() == "[Service]\n"


def test_layout_names_repetitions_and_finds_only_their_summaries(tmp_path):
    host = tmp_path / "baseline-local"
    for rep in (1, 2):
        layout.rep_dir(host / "default", rep).mkdir(parents=True)
        (layout.rep_dir(host / "default", rep) / layout.SUMMARY).write_text("{}")
    (host / "probe").mkdir()
    (host / "probe" / layout.SUMMARY).write_text("{}")  # the probe is no repetition
    found = layout.summaries(host)
    assert [layout.rep_number(p.parent) for p in found] == [1, 2]
    assert layout.rep_number(layout.rep_dir(host, 7)) == 7


def test_a_request_reads_back_as_the_outcome_written():
    outcome = RequestOutcome(
        3, start=0.5, success=True, ttft=0.1, latency=0.4, itl=[0.1, 0.2], output_tokens=3,
        send_lag=0.0002,
    )  # fmt: skip
    assert RequestOutcome.from_record(json.loads(json.dumps(outcome.to_record()))) == outcome
    old = RequestOutcome.from_record({"index": 1, "tpot": 9, "renamed_since": 1, "error": None})
    assert old == RequestOutcome(1)  # unknown keys ignored, missing or null ones defaulted
    for bad in ([1], {"success": True}, {"index": 1, "success": "yes"}, {"index": 1, "ttft": "x"}):
        with pytest.raises((TypeError, ValueError)):
            RequestOutcome.from_record(bad)


def test_bad_request_records_are_noted_and_the_rest_compared(tmp_path):
    run_dir = write_run(tmp_path)
    requests = layout.rep_dir(run_dir / "dev" / "dev-local" / "default", 1) / layout.REQUESTS
    lines = requests.read_text().splitlines()
    requests.write_text("\n".join(['{"index": 0, "success": "yes"}', "[]", *lines[2:]]) + "\n")
    run = collect.load_run(run_dir)
    assert [p.split(": ", 1)[1] for p in run.problems] == [
        "not a request record (success: 'yes' is not true or false); skipped",
        "not a request record (a request record is a JSON object, not list); skipped",
    ]
    rep = next(r for r in run.reps if r.group == "dev" and r.rep == 1)
    assert len(rep.requests) == len(lines) - 2
    assert all(isinstance(r, RequestOutcome) for r in rep.requests)


def test_markdown_and_html_hold_the_same_sections(tmp_path):
    run_dir = write_run(tmp_path, points=("concurrency-1", "concurrency-2"), reps=2, n=10)
    (run_dir / "dev" / "dev-other").mkdir()  # a problem, so that every section appears
    report.write_report(run_dir, compare.Settings(), ["median_ttft_ms"])
    out = run_dir / layout.REPORT
    md = re.findall(r"^## (.+)$", (out / layout.REPORT_MD).read_text(), re.M)
    html = re.findall(r"<h2>(.+?)</h2>", (out / layout.REPORT_HTML).read_text())
    assert md == html
    assert md == [
        "What differs: dev against baseline",
        "Verdict",
        "What decided it",
        "Warnings",
        "Groups",
        "Problems",
        "Comparison: concurrency-1",
        "Comparison: concurrency-2",
        "How the verdict works",
        "Sweep",
        "Repetitions in run order",
        "Plots",
    ]


def test_a_blocks_summary_has_one_declared_shape():
    """The benchmark writes a summary through summary.summarize; its context is nested and
    declared (an undeclared key is refused), nothing shadows a metric, the rate offered
    has one record, and the results read it back as records.BlockSummary."""
    from ansible_collections.servelab.vllm.plugins.module_utils.bench import summary
    from ansible_collections.servelab.vllm.plugins.module_utils.bench.spec import RunSpec
    from ansible_collections.servelab.vllm.plugins.module_utils.records import (
        RUN_FIGURES,
        BlockSummary,
    )

    outcomes = [RequestOutcome(i, i * 0.5, True, 0.1, 0.5, [0.1] * 4, 8, 5) for i in range(6)]
    spec = RunSpec(url="http://u", model="m", request_rate=2.0)
    figures = {k: None for k in RUN_FIGURES if k not in ("achieved_rate", "saturated",
                                                          "send_span_s")}  # fmt: skip
    context = {"order": 3, "group": "dev", "point": "default", "repetition": 2}
    written = summary.summarize(spec, outcomes, 3.0, 2.5, figures, context)
    assert written["schema_version"] == layout.SCHEMA_VERSION == 2
    assert written["context"]["order"] == 3 and "order" not in written
    assert written["spec"]["request_rate"] == 2.0 and "offered_rate" not in written
    read = BlockSummary.from_json(json.loads(json.dumps(written)))
    assert read.request_rate == 2.0 and read.context.order == 3 and read.context.group == "dev"
    assert read.value("completed") == 6 and read.value("median_ttft_ms") == pytest.approx(100)
    with pytest.raises(ValueError, match="completed not declared"):
        summary.summarize(spec, outcomes, 3.0, 2.5, figures, {**context, "completed": 0})
    with pytest.raises(ValueError, match="not declared"):
        summary.summarize(spec, outcomes, 3.0, 2.5, {**figures, "extra": 1}, context)
    with pytest.raises(KeyError, match="not a block's figure"):
        read.figure("order")
    closed = BlockSummary.from_json({"spec": {"request_rate": float("inf")}})
    assert closed.request_rate is None  # a closed loop offers no rate
