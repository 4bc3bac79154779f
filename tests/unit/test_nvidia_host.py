"""The NVIDIA runtime becomes docker's default once: a second bringup restarts nothing.

nvidia-ctk, docker and the NVIDIA runtime's config are stand-ins here (no GPU host):
nvidia-ctk writes docker's settings and says "Wrote updated config" on every call, as
the real one does.
"""

import json
import os
import subprocess
from pathlib import Path

import yaml
from helpers.stack import TOP, VENV_BIN

FAKE_CTK = """#!/bin/sh
echo "$*" >> "$CTK_LOG"
for arg in "$@"; do case "$arg" in --config=*) config="${arg#--config=}" ;; esac; done
printf '{"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "%s"}}}' \\
  nvidia-container-runtime > "$config"
echo "INFO[0000] Wrote updated config to $config"
"""


def docker_runtime(tmp: Path) -> subprocess.CompletedProcess:
    play = tmp / "play.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "vars": {
            "nvidia_host_docker_config": str(tmp / "daemon.json"),
            "nvidia_host_runtime_config": str(tmp / "config.toml"),
        },
        "tasks": [{"ansible.builtin.include_role": {
            "name": "servelab.vllm.nvidia_host", "tasks_from": "docker_runtime"}}],
    }]))  # fmt: skip
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
         "-e", "ansible_python_interpreter={{ ansible_playbook_python }}"],
        cwd=TOP, capture_output=True, text=True,
        env=dict(os.environ, ANSIBLE_CONFIG=str(TOP / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                 PATH=f"{tmp}:{VENV_BIN}:{os.environ['PATH']}", CTK_LOG=str(tmp / "ctk.log")),
    )  # fmt: skip


def test_docker_is_configured_and_restarted_only_when_its_default_runtime_is_not_nvidia(
    tmp_path,
):
    """Tried on the old task (nvidia-ctk run every time, changed on its own word): the
    second run called nvidia-ctk again and notified the docker restart."""
    (tmp_path / "nvidia-ctk").write_text(FAKE_CTK)
    (tmp_path / "nvidia-ctk").chmod(0o755)
    (tmp_path / "config.toml").write_text("accept-nvidia-visible-devices-as-volume-mounts = true\n")
    (tmp_path / "ctk.log").touch()
    first = docker_runtime(tmp_path)  # no daemon.json: configure, then restart docker
    assert "--runtime=docker --set-as-default" in (tmp_path / "ctk.log").read_text()
    assert "RUNNING HANDLER [servelab.vllm.nvidia_host : Restart docker]" in first.stdout
    settings = json.loads((tmp_path / "daemon.json").read_text())
    assert settings["default-runtime"] == "nvidia"
    calls = (tmp_path / "ctk.log").read_text()
    again = docker_runtime(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in again.stdout and "Restart docker" not in again.stdout
    assert (tmp_path / "ctk.log").read_text() == calls  # nvidia-ctk not run again
