"""The MPS control daemon of a GPU host stops with the host's last stack, not before.

No GPU here: nvidia-cuda-mps-control is a recording stand-in that keeps its daemon's
state in a file under CUDA_MPS_PIPE_DIRECTORY; the real playbooks/teardown.yml runs."""

import os
import subprocess
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parents[2]
VENV_BIN = TOP / ".venv" / "bin"

STAND_IN = """#!/bin/sh
read -r command
echo "$command" >> "$CUDA_MPS_PIPE_DIRECTORY/../calls"
case "$command" in
  get_server_list) test -e "$CUDA_MPS_PIPE_DIRECTORY/daemon" ;;
  quit) rm "$CUDA_MPS_PIPE_DIRECTORY/daemon" ;;
  *) exit 2 ;;
esac
"""


def teardown(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, ANSIBLE_CONFIG=str(TOP / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
        PATH=f"{tmp / 'bin'}:{VENV_BIN}:{os.environ['PATH']}",
    )  # fmt: skip
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(tmp / "hosts.yml"),
         str(TOP / "playbooks/teardown.yml"), *args],
        cwd=TOP, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_mps_daemon_stops_with_the_last_stack_of_its_host(tmp_path):
    work = tmp_path / "work"
    (tmp_path / "bin").mkdir()
    stand_in = tmp_path / "bin" / "nvidia-cuda-mps-control"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    (work / "mps" / "pipe").mkdir(parents=True)
    (work / "mps" / "pipe" / "daemon").touch()  # the daemon runs
    for group in ("baseline", "dev"):
        (work / "stacks" / group).mkdir(parents=True)
    common = {
        "ansible_connection": "local", "ansible_python_interpreter": str(VENV_BIN / "python"),
        "vllm_work_dir": str(work), "vllm_kubernetes": False,
        "servelab_run_lock": str(tmp_path / "run.lock"),
    }  # fmt: skip
    inventory = {
        "all": {
            "vars": common,
            "children": {
                g: {"hosts": {f"{g}-local": {"servelab_group": g}}} for g in ("baseline", "dev")
            },
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    calls = work / "mps" / "calls"

    run = teardown(tmp_path, "--limit", "dev")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert not calls.exists()  # baseline's stack still uses the daemon
    assert (work / "mps" / "pipe" / "daemon").exists()

    run = teardown(tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    # One host at a time: the first stops the daemon, the second finds none.
    assert calls.read_text().split() == ["get_server_list", "quit", "get_server_list"]
    assert not (work / "mps" / "pipe" / "daemon").exists()

    run = teardown(tmp_path)  # nothing left: nothing changes
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert "changed=0" in run.stdout and "changed=1" not in run.stdout, run.stdout[-3000:]
