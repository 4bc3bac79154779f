# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who keeps a service running: systemd where it runs, otherwise our supervisor.

Both backends keep spec.json in the service directory (argv, env, log, hash, and which
manager runs it), so status, logs, readiness and teardown work the same for both. With
systemd the unit's output is appended to the same service.log, the unit restarts the
service on failure with the supervisor's start limits, and its environment (secrets
included) lives in an owner-only EnvironmentFile, never in the unit file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from ansible_collections.servelab.vllm.plugins.module_utils import atomic, supervisor

SYSTEMD_RUNTIME_DIR = "/run/systemd/system"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
ENV_FILE = "service.env"


def systemd_running() -> bool:
    """systemd's own test (sd_booted): is it the init system of this host?"""
    return os.path.isdir(SYSTEMD_RUNTIME_DIR)


def choose(manager: str) -> str:
    """Resolve auto to systemd or process; refuse systemd where it does not run.

    auto takes systemd only as root: system units need it, and a user's own units
    would stop when the user logs out unless lingering is on.
    """
    if manager == "auto":
        return "systemd" if systemd_running() and os.geteuid() == 0 else "process"
    if manager == "systemd" and not systemd_running():
        raise ValueError(
            "service manager is systemd but systemd is not running on this host "
            f"({SYSTEMD_RUNTIME_DIR} is missing): choose auto or process "
            "(VLLM_SERVICE_MANAGER in make menuconfig)"
        )
    return manager


def unit_name(name: str) -> str:
    return "servelab-" + re.sub(r"[^A-Za-z0-9:_.-]", "-", name) + ".service"


def _quote_env(value: str) -> str:
    """Double-quoted, with backslash, quote and newline escaped (systemd's C escapes)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _quote_exec(arg: str) -> str:
    """One ExecStart word: quoted as above, % and $ doubled (systemd.service(5))."""
    return _quote_env(arg).replace("%", "%%").replace("$", "$$")


def render_env_file(env: dict[str, str]) -> str:
    return "".join(f"{key}={_quote_env(str(value))}\n" for key, value in sorted(env.items()))


def render_unit(name: str, argv: list[str], service_dir: str, log: str) -> str:
    """The unit for one service; its restart policy mirrors the supervisor's."""
    exec_start = " ".join(_quote_exec(a) for a in argv)
    return (
        "# Written by servelab (servelab.vllm.local_service); changes are overwritten.\n"
        "[Unit]\n"
        f"Description=servelab {name}\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        f"StartLimitIntervalSec={int(supervisor.START_LIMIT_INTERVAL)}\n"
        f"StartLimitBurst={supervisor.START_LIMIT_BURST}\n"
        "\n"
        "[Service]\n"
        "Type=exec\n"
        f"ExecStart={exec_start}\n"
        f"WorkingDirectory={service_dir}\n"
        f"EnvironmentFile={os.path.join(service_dir, ENV_FILE)}\n"
        f"StandardOutput=append:{log}\n"
        "StandardError=inherit\n"
        "Restart=on-failure\n"
        "RestartSec=2\n"
        "KillMode=control-group\n"
        f"TimeoutStopSec={int(supervisor.STOP_TIMEOUT)}\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def _write_atomic(path: str, text: str, mode: int) -> None:
    """Write text to path (atomic.write_atomic) unless it already holds it."""
    try:
        with open(path, encoding="utf-8") as handle:  # as write_atomic encodes it
            if handle.read() == text:
                os.chmod(path, mode)
                return
    except (OSError, ValueError):  # absent, unreadable or not UTF-8: rewrite it
        pass
    atomic.write_atomic(path, text, mode)


class ProcessManager:
    """Our own supervisor (supervisor.py), for hosts without systemd."""

    kind = "process"

    def __init__(self, service_dir: str) -> None:
        self.dir = service_dir

    def running(self) -> bool:
        return supervisor.supervisor_pid(self.dir) is not None

    def pid(self) -> int:
        pid = supervisor.read_pid(os.path.join(self.dir, supervisor.CHILD_PID)) or 0
        return pid if self.running() and supervisor.alive(pid) else 0

    def state(self) -> dict:
        """state (running, restarting, failed, stopped, absent), restarts, last_exit."""
        saved = supervisor.read_json(os.path.join(self.dir, supervisor.STATE))
        return {
            "state": saved.get("state", "absent"),
            "restarts": int(saved.get("restarts", 0)),
            "last_exit": saved.get("last_exit"),
        }

    def start(self, spec: dict, python: str, script_source: str) -> None:
        script = os.path.join(self.dir, "supervise.py")
        _write_atomic(script, script_source, 0o644)
        supervisor.start(self.dir, python, script)

    def stop(self) -> bool:
        return supervisor.stop(self.dir)


def supervisor_python() -> str:
    """The interpreter a supervisor runs on: the base Python under the deploying venv.
    supervise.py needs only the standard library, and a supervisor started with the venv
    of the checkout that deployed it would lose its interpreter with that checkout (seen
    with a deleted clone: its supervisors lived on over deleted files)."""
    base = getattr(sys, "_base_executable", "") or sys.executable
    return base if os.access(base, os.X_OK) else sys.executable


class SystemdManager:
    """A systemd unit per service, driven with systemctl."""

    kind = "systemd"

    def __init__(self, service_dir: str, unit: str, unit_dir: str = DEFAULT_UNIT_DIR) -> None:
        self.dir = service_dir
        self.unit = unit
        self.unit_path = os.path.join(unit_dir, unit)

    def _systemctl(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["systemctl", *args], capture_output=True, text=True, check=False, timeout=120
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"systemctl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout

    def show(self) -> dict[str, str]:
        out = self._systemctl(
            "show",
            self.unit,
            "--property=ActiveState,SubState,MainPID,NRestarts,ExecMainStatus",
            check=False,
        )
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def running(self) -> bool:
        return self.show().get("ActiveState") in ("active", "activating", "reloading")

    def pid(self) -> int:
        props = self.show()
        pid = int(props.get("MainPID") or 0)
        return pid if props.get("ActiveState") == "active" else 0

    def state(self) -> dict:
        props = self.show()
        active, sub = props.get("ActiveState", ""), props.get("SubState", "")
        if active == "active":
            state = "running"
        elif sub == "auto-restart" or active == "activating":
            state = "restarting"
        elif active == "failed":
            state = "failed"
        else:
            state = "stopped" if os.path.exists(self.unit_path) else "absent"
        return {
            "state": state,
            "restarts": int(props.get("NRestarts") or 0),
            "last_exit": props.get("ExecMainStatus"),
        }

    def start(self, spec: dict, python: str, script_source: str) -> None:
        del python, script_source  # systemd supervises; no script of ours runs
        env = {**spec["env"], supervisor.MARKER_ENV: os.path.abspath(self.dir)}
        _write_atomic(os.path.join(self.dir, ENV_FILE), render_env_file(env), 0o600)
        _write_atomic(
            self.unit_path, render_unit(spec["name"], spec["argv"], self.dir, spec["log"]), 0o644
        )
        self._systemctl("daemon-reload")
        self._systemctl("enable", self.unit)
        self._systemctl("reset-failed", self.unit, check=False)
        self._systemctl("restart", self.unit)
        deadline = time.monotonic() + 10
        while not self.pid() and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> bool:
        present = os.path.exists(self.unit_path)
        was_running = self.running()
        if present or was_running:
            self._systemctl("disable", "--now", self.unit, check=False)
        if present:
            os.unlink(self.unit_path)
            self._systemctl("daemon-reload")
        # KillMode=control-group stops the unit's cgroup; this finds what left it.
        supervisor.kill_marked(self.dir, 5)
        return was_running


def for_dir(service_dir: str, unit_dir: str = DEFAULT_UNIT_DIR):
    """The manager of an existing service directory, from its spec.json."""
    spec = supervisor.read_json(os.path.join(service_dir, supervisor.SPEC))
    if spec.get("manager") == "systemd":
        return SystemdManager(service_dir, spec["unit"], spec.get("unit_dir", unit_dir))
    return ProcessManager(service_dir)


def new(kind: str, service_dir: str, name: str, unit_dir: str = DEFAULT_UNIT_DIR):
    if kind == "systemd":
        return SystemdManager(service_dir, unit_name(name), unit_dir)
    return ProcessManager(service_dir)
