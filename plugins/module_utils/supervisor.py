# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Supervised background processes for hosts without systemd.

A service is a directory holding spec.json (argv, env, cwd, log). `supervise.py DIR`
(this file, copied to the node) runs the service in its own session, appends its output
to the log, restarts it when it fails and stops its whole process group on SIGTERM.
State on disk, read by the module and by status probes:
  supervisor.pid  pid of the supervisor          child.pid  pid of the running service
  state.json      started_at, restarts, last_exit, state (running, restarting, failed),
                  groups (every process group the service has had)

Every process of a service carries SERVELAB_SERVICE=<service dir> in its environment
(children inherit it), so that what outlives its parent, such as vLLM's EngineCore and
Worker after a `kill -9` of the API server, is still found and stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

SPEC = "spec.json"
SUPERVISOR_PID = "supervisor.pid"
CHILD_PID = "child.pid"
STATE = "state.json"
# Like systemd's StartLimitBurst/IntervalSec: give up after this many failures in a window.
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL = 300.0
STOP_TIMEOUT = 30.0
MARKER_ENV = "SERVELAB_SERVICE"


def write_json_atomic(path: str, data: dict, mode: int = 0o644) -> None:
    """atomic.write_json_atomic, repeated: this file also runs alone on the node as
    supervise.py, where the collection cannot be imported. Elsewhere use atomic's;
    tests/unit/test_results_contract.py holds the two to the same bytes and cleanup."""
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.tmp.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(json.dumps(data, indent=1, sort_keys=True, default=str).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: str) -> dict:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def read_pid(path: str) -> int | None:
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            # A zombie has exited; only its parent has not reaped it yet.
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def supervisor_pid(service_dir: str) -> int | None:
    """The pid of the live supervisor of service_dir, or None."""
    pid = read_pid(os.path.join(service_dir, SUPERVISOR_PID))
    if not alive(pid):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().split(b"\0")
    except OSError:
        return None
    # Guard against a recycled pid: the process must be the supervisor of this directory.
    if os.path.abspath(service_dir).encode() not in cmdline:
        return None
    return pid


def cmdline(pid: int) -> str:
    """A process's command line as one string ('' when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_start_time(pid: int) -> float | None:
    """Wall-clock start time of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


def start(service_dir: str, python: str, script: str) -> int:
    """Start the supervisor of service_dir detached from the caller; return its pid."""
    service_dir = os.path.abspath(service_dir)
    for name in (CHILD_PID, SUPERVISOR_PID, STATE):
        if os.path.exists(os.path.join(service_dir, name)):
            os.unlink(os.path.join(service_dir, name))
    with open(os.devnull, "rb") as devnull_in, open(os.devnull, "wb") as devnull_out:
        proc = subprocess.Popen(
            [python, script, service_dir],
            stdin=devnull_in,
            stdout=devnull_out,
            stderr=devnull_out,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if read_pid(os.path.join(service_dir, CHILD_PID)) or proc.poll() is not None:
            break
        time.sleep(0.05)
    return proc.pid


def stop(service_dir: str, timeout: float = STOP_TIMEOUT + 15) -> bool:
    """Stop the supervisor (and so the service), then every process the service ever
    started that is still alive; True if a supervisor was running."""
    service_dir = os.path.abspath(service_dir)
    pid = supervisor_pid(service_dir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    # Every group the service had, if a process of it still carries the service's mark
    # (an old group id may since name someone else's group), then all marked processes.
    ours = marked(service_dir)
    for group in read_json(os.path.join(service_dir, STATE)).get("groups", []):
        if any(_pgid(p) == group for p in ours):
            kill_group(group, 5)
    stop_pids(sorted(ours), 5)
    return pid is not None


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return 0


def kill_group(pgid: int | None, timeout: float) -> None:
    """SIGTERM a service's process group, then SIGKILL what is left after timeout.

    The service runs in a session of its own, so its group id is its first pid; the group
    outlives that process (os.getpgid of a reaped leader would fail)."""
    if not pgid:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(0.1)


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. Its exited leader stays a zombie until
    the supervisor reaps it, and a signal to a zombie succeeds: counting it kept every
    stop waiting out its whole timeout (30 s a service)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def marked(prefix: str) -> dict[int, str]:
    """Live processes whose SERVELAB_SERVICE is prefix or lies under it: pid -> service dir."""
    prefix = os.path.abspath(prefix)
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(MARKER_ENV.encode() + b"="):
                value = entry.split(b"=", 1)[1].decode(errors="replace")
                if (value == prefix or value.startswith(prefix + "/")) and alive(int(name)):
                    found[int(name)] = value
                break
    return found


def kill_marked(prefix: str, timeout: float) -> list[int]:
    """SIGTERM every process marked under prefix, SIGKILL what is left after timeout."""
    return stop_pids(sorted(marked(prefix)), timeout)


def stop_pids(pids: list[int], timeout: float) -> list[int]:
    """SIGTERM pids, SIGKILL those left after timeout; returns pids."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)  # a frozen process would not act on SIGTERM
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return pids


class Supervisor:
    """The loop that runs inside the detached supervisor process."""

    def __init__(self, service_dir: str) -> None:
        self.dir = os.path.abspath(service_dir)
        self.spec = read_json(os.path.join(self.dir, SPEC))
        self.child: subprocess.Popen | None = None
        self.stopping = False
        self.state = {"restarts": 0, "state": "starting", "last_exit": None, "groups": []}

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def on_term(self, _signum, _frame) -> None:
        self.stopping = True

    def save_state(self, **changes) -> None:
        self.state.update(changes)
        write_json_atomic(self.path(STATE), self.state)

    def launch(self) -> None:
        env = dict(os.environ)
        env.update(self.spec.get("env", {}))
        env[MARKER_ENV] = self.dir
        log = open(self.spec["log"], "ab", buffering=0)  # noqa: SIM115 (handed to the child)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        log.write(f"==== servelab: starting {self.spec['name']} at {stamp} ====\n".encode())
        self.child = subprocess.Popen(
            self.spec["argv"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.spec.get("cwd") or self.dir,
            start_new_session=True,
        )
        log.close()
        with open(self.path(CHILD_PID), "w") as out:
            out.write(str(self.child.pid))
        groups = [*self.state["groups"], self.child.pid][-20:]
        self.save_state(state="running", started_at=time.time(), pid=self.child.pid, groups=groups)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        with open(self.path(SUPERVISOR_PID), "w") as out:
            out.write(str(os.getpid()))
        failures: list[float] = []
        backoff = 1.0
        self.launch()
        while True:
            code = self.child.poll() if self.child else None
            if self.stopping:
                if self.child:
                    kill_group(self.child.pid, STOP_TIMEOUT)
                    self.child.wait()
                    kill_marked(self.dir, 5)
                self.save_state(state="stopped", last_exit=self.child.returncode)
                break
            if code is None:
                time.sleep(0.2)
                continue
            # The service exited on its own: stop what it left (its group, and anything
            # marked as this service's that left the group), then restart it, unless it
            # keeps failing.
            kill_group(self.child.pid, 5)
            kill_marked(self.dir, 5)
            now = time.time()
            failures = [t for t in failures if now - t < START_LIMIT_INTERVAL] + [now]
            if len(failures) >= START_LIMIT_BURST:
                self.save_state(state="failed", last_exit=code)
                break
            self.save_state(state="restarting", last_exit=code, restarts=self.state["restarts"] + 1)
            deadline = time.monotonic() + backoff
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.2)
            backoff = min(backoff * 2, 30.0)
            if not self.stopping:
                self.launch()
        for name in (SUPERVISOR_PID, CHILD_PID):
            if os.path.exists(self.path(name)):
                os.unlink(self.path(name))
        return 0


if __name__ == "__main__":
    sys.exit(Supervisor(sys.argv[1]).run())
