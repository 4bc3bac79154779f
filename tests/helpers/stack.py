"""Helpers for integration tests: a private config, work dir and ports on this machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
BOUNDARY = TOP / "tests/data/k8s_boundary"  # the stand-in cluster of the Kubernetes tests


@dataclass
class Stack:
    """A generated config in tmp, driving the real playbooks against this machine."""

    tmp: Path
    lines: list[str] = field(default_factory=list)
    defconfig: str = "vllm-quick-test"

    @property
    def config(self) -> Path:
        return self.tmp / ".config"

    def configure(self, *extra: str) -> None:
        """defconfig + the test's private settings + extra lines, then generate."""
        self._config(["defconfig", self.defconfig])
        with self.config.open("a") as out:
            out.write("\n".join([*self.lines, *extra]) + "\n")
        self._config(["generate"])

    def host_var(self, host: str, key: str, value: str) -> None:
        """Set a variable of one host in the generated inventory (until the next configure),
        as a user sets one in an inventory of their own."""
        path = self.tmp / "inventory/hosts.yml"
        inventory = yaml.safe_load(path.read_text())
        for group in inventory["all"]["children"].values():
            if host in group.get("hosts", {}):
                group["hosts"][host][key] = value
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))

    def _config(self, args: list[str]) -> None:
        subprocess.run(
            [
                sys.executable,
                str(TOP / "kconfig/scripts/servelab_config.py"),
                "--config",
                str(self.config),
                "--extra-vars",
                str(self.tmp / "extra_vars.yaml"),
                "--hosts",
                str(self.tmp / "inventory/hosts.yml"),
                *args,
            ],
            check=True,
            capture_output=True,
            text=True,
        )

    def playbook(self, name: str, *args: str, check: bool = True, env: dict | None = None) -> Run:
        proc = subprocess.run(
            self._playbook_argv(name, *args), cwd=TOP, env=self._env(env),
            capture_output=True, text=True,
        )  # fmt: skip
        run = Run(name, proc.returncode, proc.stdout + proc.stderr)
        if check and proc.returncode:
            raise AssertionError(f"{name} failed (rc {proc.returncode}):\n{run.output[-6000:]}")
        return run

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """The playbook in the background, in its own session (a terminal's Ctrl-C reaches
        its whole process group: os.killpg(proc.pid, SIGINT))."""
        return subprocess.Popen(
            self._playbook_argv(name, *args), cwd=TOP, env=self._env(None),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip

    def _playbook_argv(self, name: str, *args: str) -> list[str]:
        return [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(self.tmp / "inventory/hosts.yml"),
            "-e",
            f"@{self.tmp / 'extra_vars.yaml'}",
            str(TOP / "playbooks" / name),
            *args,
        ]

    def _env(self, env: dict | None) -> dict:
        return dict(
            os.environ,
            ANSIBLE_CONFIG=str(TOP / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            PATH=f"{VENV_BIN}:{os.environ['PATH']}",
            **(env or {}),
        )


@dataclass
class Run:
    name: str
    rc: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP counters per host (summed over plays)."""
        out: dict[str, dict[str, int]] = {}
        for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", self.output, re.M):
            totals = out.setdefault(host, {})
            for key, value in re.findall(r"(\w+)=(\d+)", counters):
                totals[key] = totals.get(key, 0) + int(value)
        return out

    def changed(self) -> int:
        return sum(h.get("changed", 0) for h in self.recap().values())
