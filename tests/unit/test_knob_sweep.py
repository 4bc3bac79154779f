"""A configuration sweep's rounds through Ansible: the bench role's knob_sweep.yml and
knob_round.yml with the real stopping rule (stop.yml, servelab.vllm.stop_rule), and a
stand-in for each block (knob_point.yml: no redeploy, no benchmark) that adds the block
to bench_done as block.yml does, its figures from the test's level for its value."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers.stack import TOP, VENV_BIN

STAND_IN_POINT = """\
---
- name: Stand in for one block of the sweep (what block.yml adds to bench_done)
  ansible.builtin.set_fact:
    bench_done: >-
      {{ bench_done + [{'group': servelab_group, 'host': inventory_hostname,
                        'point': 'max_num_seqs-' ~ bench_knob_block.value,
                        'rep': bench_knob_block.rep,
                        'summary': {'median_ttft_ms': level * noise,
                                    'median_tpot_ms': 0.4 * level * noise,
                                    'spec': {'request_rate': 2.0},
                                    'context': {'order': bench_knob_block.order}}}] }}
  vars:
    level: "{{ knob_levels[bench_knob_block.value | string] | float }}"
    noise: "{{ 1 + 0.01 * ((bench_knob_block.rep * 7 + bench_knob_block.order * 3) % 5 - 2) }}"
"""

PLAY = [{
    "name": "Sweep a configuration setting, one group at a time",
    "hosts": "baseline:dev", "serial": 1, "gather_facts": False,
    "tasks": [
        {"name": "Run the group's sweep", "ansible.builtin.include_role": {
            "name": "servelab.vllm.bench", "tasks_from": "knob_sweep"}},
        {"name": "Keep what the sweep ran", "ansible.builtin.copy": {
            "content": "{{ {'done': bench_done, 'stop': bench_stop} | to_json }}",
            "dest": "{{ knob_out }}/{{ inventory_hostname }}.json", "mode": "0644"}},
    ],
}]  # fmt: skip

SETTINGS = {
    "vllm_benchmark_sweep_knob_name": "vllm_max_num_seqs",
    "vllm_benchmark_sweep_knob_values_list": [100, 60, 20],
    "vllm_benchmark_repetitions": 8,
    "vllm_benchmark_min_repetitions": 4,
    "vllm_benchmark_sequential": True,
    "vllm_benchmark_max_minutes": 0,
    "vllm_results_confidence": 0.95,
    "vllm_results_margin_pct": 5,
    "vllm_results_primary_metrics_list": ["median_ttft_ms", "median_tpot_ms", "output_throughput"],
    "knob_levels": {"100": 100, "60": 150, "20": 200},  # 60 and 20: 50% and 100% slower
}


def overlay(tmp: Path, replaced: dict[str, str]) -> Path:
    """A collections path whose servelab.vllm is this checkout (symlinks) with the files
    `replaced` (path in the collection -> text) standing in. A link on the way to a
    replaced file becomes a folder of links first: nothing is written through a link
    into the checkout."""
    root = tmp / "collections"
    for rel, text in replaced.items():
        src, dst = TOP, root / "ansible_collections/servelab/vllm"
        for part in Path(rel).parts:
            if dst.is_symlink():
                dst.unlink()
            if not dst.is_dir():
                dst.mkdir(parents=True)
                for entry in src.iterdir():
                    if entry.name not in (".git", "collections"):
                        (dst / entry.name).symlink_to(entry)
            src, dst = src / part, dst / part
        if dst.is_symlink():
            dst.unlink()
        dst.write_text(text)
    return root


def sweep(tmp: Path, limit: str = "", plays=None, stand_ins=None, **settings) -> dict:
    """Run the sweep's plays (a sweep of each group's by default) on the stand-in hosts
    baseline-local and dev-local, the collection's files `stand_ins` replaced (by
    default knob_point.yml); what each host wrote (its blocks done, the rule's answer)."""
    local = {"ansible_connection": "local",
             "ansible_python_interpreter": "{{ ansible_playbook_python }}"}  # fmt: skip
    hosts = {
        g: {"hosts": {f"{g}-local": local}, "vars": {"servelab_group": g}}
        for g in ("baseline", "dev")
    }
    tmp.mkdir(exist_ok=True)
    (tmp / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": hosts}}))
    (tmp / "sweep.yml").write_text(yaml.safe_dump(plays or PLAY, sort_keys=False))
    (tmp / "vars.json").write_text(json.dumps({**SETTINGS, **settings, "knob_out": str(tmp)}))
    stand_ins = stand_ins or {"roles/bench/tasks/knob_point.yml": STAND_IN_POINT}
    collections = overlay(tmp, stand_ins)
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(tmp / "hosts.yml"),
            str(tmp / "sweep.yml"), "-e", f"@{tmp / 'vars.json'}"]  # fmt: skip
    proc = subprocess.run(
        argv + (["--limit", limit] if limit else []), cwd=TOP, capture_output=True, text=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(TOP / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_COLLECTIONS_PATH": str(collections)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return {p.stem: json.loads(p.read_text()) for p in tmp.glob("*-local.json")}


def test_a_sweep_of_one_group_stops_when_decided_and_at_its_time_budget(tmp_path):
    """Baseline alone (dev left out by --limit): each later value against the first is
    decided at the first look (4 rounds of a budget of 8), and the rounds after it never
    run; an undecided sweep stops after its first round when its time budget is spent."""
    run = sweep(tmp_path / "decided", limit="baseline")["baseline-local"]
    assert [b["rep"] for b in run["done"]] == [r for r in range(1, 5) for _ in range(3)]
    values = [int(b["point"].split("-")[1]) for b in run["done"][:6]]
    assert values == [100, 60, 20, 20, 60, 100]
    stop = run["stop"]
    assert stop["go_on"] is False
    assert stop["reason"] == "every primary metric is decided after 4 blocks a point"
    assert stop["verdicts"] == {
        f"max_num_seqs-{v} against max_num_seqs-100": {
            "median_ttft_ms": "WORSE", "median_tpot_ms": "WORSE"
        }
        for v in (60, 20)
    }  # fmt: skip
    same = {"100": 100, "60": 100, "20": 100}
    late = sweep(tmp_path / "late", limit="baseline", knob_levels=same,
                 vllm_benchmark_max_minutes=0.001)["baseline-local"]  # fmt: skip
    assert [b["rep"] for b in late["done"]] == [1, 1, 1]
    assert late["stop"]["go_on"] is False
    assert late["stop"]["reason"].startswith("the time budget of 0.001 min is spent")


def test_a_sweep_of_two_groups_runs_its_whole_budget(tmp_path):
    """Baseline's host, then dev's: each runs every round, decided or out of time (a rule
    asked in one host's turn would stop baseline before dev has run a block)."""
    runs = sweep(tmp_path, vllm_benchmark_repetitions=6, vllm_benchmark_max_minutes=0.001)
    assert sorted(runs) == ["baseline-local", "dev-local"]
    for host, run in runs.items():
        assert [b["rep"] for b in run["done"]] == [r for r in range(1, 7) for _ in range(3)]
        assert {b["group"] for b in run["done"]} == {host.split("-")[0]}
        assert run["stop"] == {
            "go_on": True,
            "reason": "the whole budget ran (a sweep of several hosts)",
        }


STAND_IN_DEPLOY = """\
---
- name: Stand in for deploying the value on dev's stack (what restack.yml leaves behind)
  ansible.builtin.set_fact:
    "{{ vllm_benchmark_sweep_knob_name }}": "{{ bench_knob_value }}"
    bench_part: >-
      {{ bench_part | combine({'url': 'http://dev/' ~ dev_levels[bench_knob_value | string]}) }}
    dev_deploys: "{{ dev_deploys | default([]) + [bench_knob_value] }}"
"""

# The benchmark module's stand-in: the block's level is the one of the stack it was
# pointed at (a stand-in part's URL ends in its level), and it notes what it measured.
STAND_IN_BENCHMARK = """\
#!/usr/bin/python
# WANT_JSON
import json, sys

args = json.load(open(sys.argv[1]))
level = float(args["url"].rpartition("/")[2])
rep, order = int(args["repetition"]), int(args["context"]["order"])
noise = 1 + 0.01 * ((rep * 7 + order * 3) % 5 - 2)
with open(args["out_dir"] + "/blocks.jsonl", "a") as f:
    f.write(json.dumps({"group": args["context"]["group"], "point": args["point"], "rep": rep,
                        "url": args["url"], "warmup": args.get("warmup_requests")}) + "\\n")
print(json.dumps({"changed": False, "summary": {
    "median_ttft_ms": level * noise, "median_tpot_ms": 0.4 * level * noise,
    "spec": {"request_rate": float(args["request_rate"])}, "context": {"order": order}}}))
"""

DEV_PLAYS = [
    {"name": "Stand in for part.yml on each group's host", "hosts": "baseline:dev",
     "gather_facts": False, "tasks": [{"ansible.builtin.set_fact": {"bench_part": {
         "host": "{{ inventory_hostname }}", "group": "{{ servelab_group }}",
         "python": "{{ ansible_playbook_python }}", "out_dir": "{{ knob_out }}",
         "url": "http://{{ servelab_group }}/100", "machine": "one", "pid_ns": "one",
         "stack_dir": "/nonexistent", "pids": [], "tokenizer_path": "", "metrics_urls": {},
         "processes": {}, "engines": [], "context": {"group": "{{ servelab_group }}"}}}}]},
    {"name": "Stand in for interleave.yml's preparation", "hosts": "localhost",
     "gather_facts": False, "tasks": [
         {"ansible.builtin.set_fact": {
             "bench_parts": "{{ groups['all'] | map('extract', hostvars, 'bench_part') | list }}",
             "bench_rate": 2.0, "bench_load": {"source": "configured"}}},
         {"ansible.builtin.set_fact": {
             "bench_blocks": "{{ vllm_benchmark_sweep_knob_values_list"
                             " | servelab.vllm.bench_dev_sweep_order(vllm_benchmark_repetitions,"
                             " vllm_benchmark_sweep_knob_name)"
                             " | servelab.vllm.bench_blocks_by_host(bench_parts) }}"}}]},
    {"name": "Sweep dev's setting beside baseline", "hosts": "dev", "serial": 1,
     "gather_facts": False, "tasks": [
         {"name": "Run dev's values", "ansible.builtin.include_role": {
             "name": "servelab.vllm.bench", "tasks_from": "dev_sweep"}},
         {"name": "Keep what the sweep ran", "ansible.builtin.copy": {
             "content": "{{ {'stops': bench_dev_stops, 'deploys': dev_deploys} | to_json }}",
             "dest": "{{ knob_out }}/{{ inventory_hostname }}.json", "mode": "0644"}}]},
]  # fmt: skip

DEV_STAND_INS = {
    "roles/bench/tasks/knob_deploy.yml": STAND_IN_DEPLOY,
    "plugins/modules/benchmark.py": STAND_IN_BENCHMARK,
}


def dev_sweep(tmp: Path, **settings) -> tuple[dict, list[dict]]:
    """The sweep of dev's setting through the real dev_sweep.yml, dev_value.yml, leg.yml,
    round.yml, block.yml and stop.yml; dev's deploys and answers, and the blocks measured."""
    base = {"vllm_benchmark_sweep": "knob", "vllm_benchmark_sweep_knob_dev": True,
            "vllm_benchmark_sweep_knob_values_list": [80, 40], "vllm_model_name": "m"}  # fmt: skip
    run = sweep(tmp, plays=DEV_PLAYS, stand_ins=DEV_STAND_INS, **{**base, **settings})
    lines = (tmp / "blocks.jsonl").read_text().splitlines()
    return run["dev-local"], [json.loads(line) for line in lines]


def test_a_sweep_of_dev_decides_each_value_beside_baseline_and_shares_its_time(tmp_path):
    """Dev's stack is deployed once a value; at each value both groups' blocks run ABBA,
    each against its own group's stack, until the real stopping rule decides it against
    baseline (the first look, 4 rounds of a budget of 8), then the next value; each
    value gets an equal share of the time the values before it left."""
    run, blocks = dev_sweep(tmp_path / "decided", dev_levels={"80": 150, "40": 200},
                            vllm_benchmark_max_minutes=30)  # fmt: skip
    assert run["deploys"] == [80, 40]
    abba = ["b", "d", "d", "b", "b", "d", "d", "b"]
    assert [(b["point"], b["rep"], b["group"][0], b["url"]) for b in blocks] == [
        (f"max_num_seqs-{v}", r, g, f"http://dev/{150 if v == 80 else 200}" if g == "d"
         else "http://baseline/100")
        for v in (80, 40) for r, g in zip([1, 1, 2, 2, 3, 3, 4, 4], abba, strict=True)
    ]  # fmt: skip
    # Both groups warm at a value's first round (warm-up left to the run's setting), not after.
    assert [b["warmup"] for b in blocks if b["rep"] > 1] == [0] * 12
    assert [b["warmup"] for b in blocks if b["rep"] == 1] == [None] * 4
    for value in (80, 40):
        stop = run["stops"][f"max_num_seqs-{value}"]
        assert stop["go_on"] is False
        assert stop["reason"] == "every primary metric is decided after 4 blocks a group"
        assert stop["verdicts"] == {f"max_num_seqs-{value}": {
            "median_ttft_ms": "WORSE", "median_tpot_ms": "WORSE"}}  # fmt: skip
    first, second = (run["stops"][f"max_num_seqs-{v}"] for v in (80, 40))
    assert first["budget_minutes"] == 15  # half of 30
    assert 0 < first["minutes"] < 15
    assert second["budget_minutes"] == pytest.approx(30 - first["minutes"])  # the rest
    late, blocks = dev_sweep(tmp_path / "late", dev_levels={"80": 100, "40": 100},
                             vllm_benchmark_max_minutes=0.002)  # fmt: skip
    assert [(b["point"], b["rep"]) for b in blocks] == [
        ("max_num_seqs-80", 1), ("max_num_seqs-80", 1),
        ("max_num_seqs-40", 1), ("max_num_seqs-40", 1),
    ]  # fmt: skip
    for stop in late["stops"].values():
        assert stop["reason"].startswith("the time budget of 0.001 min is spent")
