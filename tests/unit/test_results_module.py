"""The results module through Ansible: report, list and the regression gate."""

import subprocess
from pathlib import Path

from helpers.modules import ansible_module
from helpers.results_fixture import write_run

TOP = Path(__file__).resolve().parents[2]


def ansible(*args: str) -> subprocess.CompletedProcess:
    return ansible_module("servelab.vllm.results", " ".join(args))


def test_gate_fails_on_a_regression_and_passes_without_one(tmp_path):
    write_run(tmp_path, run_id="20261122T000000Z-aaaaaaaaaaaa")
    gate = ["fail_on_regression=true", "gate_metrics=median_ttft_ms"]
    worse = ansible(f"results_dir={tmp_path}", *gate)
    assert worse.returncode != 0
    assert "the gate fails: default: median_ttft_ms WORSE" in worse.stdout
    assert (tmp_path / "20261122T000000Z-aaaaaaaaaaaa/report/report.html").is_file()
    write_run(tmp_path, run_id="20261123T000000Z-bbbbbbbbbbbb", dev_scale=0.7, seed=3)
    better = ansible(f"results_dir={tmp_path}", *gate)  # the latest run: dev is faster
    assert better.returncode == 0, better.stdout
    assert "20261123T000000Z-bbbbbbbbbbbb" in better.stdout
    # A gate metric that gets no word is refused, naming the setting.
    secondary = ansible(f"results_dir={tmp_path}", "fail_on_regression=true",
                        "gate_metrics=request_throughput")  # fmt: skip
    assert secondary.returncode != 0
    assert "VLLM_RESULTS_GATE_METRICS_LIST has request_throughput, not primary" in secondary.stdout


def test_list_and_unknown_run(tmp_path):
    write_run(tmp_path, run_id="20261122T000000Z-aaaaaaaaaaaa")
    listing = ansible(f"results_dir={tmp_path}", "action=list")
    assert listing.returncode == 0 and "config aaaaaaaaaaaa  groups baseline,dev" in listing.stdout
    missing = ansible(f"results_dir={tmp_path}", "run_id=nope")
    assert missing.returncode != 0 and "no run 'nope'" in missing.stdout


def test_compare_prints_and_gates_without_writing(tmp_path):
    """make vllm-compare: the comparison and the gate, on the fetched run; no report."""
    write_run(tmp_path, run_id="20261122T000000Z-aaaaaaaaaaaa")
    worse = ansible(
        f"results_dir={tmp_path}", "action=compare", "fail_on_regression=true",
        "gate_metrics=median_ttft_ms",
    )  # fmt: skip
    assert worse.returncode != 0
    assert "the gate fails: default: median_ttft_ms WORSE" in worse.stdout
    assert not (tmp_path / "20261122T000000Z-aaaaaaaaaaaa/report").exists()
    missing = ansible(f"results_dir={tmp_path}", "action=compare", "run_id=20990101T000000Z-x")
    assert missing.returncode != 0
    assert "`make vllm-results` fetches a run from the nodes" in missing.stdout


def test_list_names_the_runs_only_on_nodes(tmp_path):
    write_run(tmp_path, run_id="20261122T000000Z-aaaaaaaaaaaa")
    nodes = (
        '{"node_runs": {"gpu-a": ["20261122T000000Z-aaaaaaaaaaaa", "20261123T000000Z-bbbb"],'
        ' "gpu-b": ["20261123T000000Z-bbbb"]}}'
    )
    listing = ansible(f"results_dir={tmp_path}", "action=list")
    assert "not fetched" not in listing.stdout
    listing = ansible_module(
        "servelab.vllm.results", f'{{"results_dir": "{tmp_path}", "action": "list", '
        + nodes[1:]
    )  # fmt: skip
    assert listing.returncode == 0, listing.stdout
    assert "20261122T000000Z-aaaaaaaaaaaa  time" in listing.stdout
    assert (
        "20261123T000000Z-bbbb  time 20261123T000000Z  config bbbb  not fetched: on gpu-a, gpu-b"
        in listing.stdout
    )


def stop_rule(blocks: list, **params) -> dict:
    import json

    args = json.dumps({"blocks": blocks, "repetitions": 8, "min_repetitions": 4, **params})
    proc = ansible_module("servelab.vllm.stop_rule", args)
    assert proc.returncode == 0, proc.stdout
    return json.loads(proc.stdout.split("=>", 1)[1])


def test_the_stop_rule_stops_when_decided_when_out_of_time_and_never_when_told_not_to():
    """The block loop's question after each round, through Ansible: four pairs of a 50%
    slower dev decide every primary; an undecided run goes on until its time budget; with
    the sequential verdict off the whole budget runs."""
    blocks = []
    for rep in range(1, 5):
        for slot, group in enumerate(("baseline", "dev") if rep % 2 else ("dev", "baseline")):
            scale = 1.5 if group == "dev" else 1.0
            noise = 1 + 0.01 * ((rep * 7 + slot * 3) % 5 - 2)
            summary = {"median_ttft_ms": 100 * scale * noise, "median_tpot_ms": 40 * scale * noise,
                       "spec": {"request_rate": 2.0},
                       "context": {"order": 2 * (rep - 1) + slot + 1}}  # fmt: skip
            blocks.append({"group": group, "host": f"{group}-h", "point": "default", "rep": rep,
                           "summary": summary})  # fmt: skip
    decided = stop_rule(blocks)
    assert decided["go_on"] is False
    assert decided["reason"] == "every primary metric is decided after 4 blocks a group"
    assert decided["verdicts"] == {
        "default": {"median_ttft_ms": "WORSE", "median_tpot_ms": "WORSE"}
    }
    assert stop_rule(blocks, sequential=False)["go_on"] is True
    same = [{**b, "summary": {**b["summary"], "median_ttft_ms": 100.0 + b["rep"]}} for b in blocks]
    assert stop_rule(same[:4])["go_on"] is True  # two pairs: before the first look
    late = stop_rule(same[:4], started=1.0, max_minutes=1)  # started in 1970
    assert late["go_on"] is False and late["reason"].startswith("the time budget of 1 min")
    # A crossover's first leg (its blocks' context.crossed false, as the benchmark module
    # returns it): the same 50% is not decided, since host and setting are one number.
    leg = [
        {**b, "summary": {**b["summary"], "context": {**b["summary"]["context"], "crossed": False}}}
        for b in blocks
    ]
    before = stop_rule(leg)
    assert before["go_on"] is True
    assert before["verdicts"] == {
        "default": {"median_ttft_ms": "UNDECIDED", "median_tpot_ms": "UNDECIDED"}
    }


def test_the_forecast_speaks_of_the_runs_own_budget(tmp_path):
    """Before a run: the blocks deciding the margin takes, set against the run's budget
    (VLLM_BENCHMARK_REPETITIONS), not the default plan's 16."""
    write_run(tmp_path, run_id="20261122T000000Z-abcdef123456-calibration", dev_scale=1.0,
              reps=6, run_kind="calibration")  # fmt: skip
    args = [f"results_dir={tmp_path}", "action=forecast", "config_hash=abcdef123456",
            "margin_pct=1"]  # fmt: skip
    eight = ansible(*args, "repetitions=8", "min_repetitions=4")
    assert eight.returncode == 0, eight.stdout
    assert "(the budget is 8: expect UNDECIDED where nothing changed)" in eight.stdout
    assert "(the budget is 16" in ansible(*args).stdout
