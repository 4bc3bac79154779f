"""Service managers: systemd units (verified by systemd-analyze) and our supervisor.

systemd cannot run as init on these machines (no PID 1 of ours), so the calls to
systemctl are checked against a recording stand-in; the unit files themselves are
checked by the real `systemd-analyze verify`.
"""

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ansible_collections.servelab.vllm.plugins.module_utils import service_manager, supervisor
from helpers.modules import ansible_module, free_port, local_service, wait_until

ODD_ARGS = ["--prompt", 'say "hi" 100% of $HOME', "--path", "/a b/c\\d"]


def test_unit_file_passes_systemd_analyze_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing: make test-deps installs Debian's systemd")
    sdir = tmp_path / "engine-0"
    sdir.mkdir()
    (sdir / service_manager.ENV_FILE).write_text(service_manager.render_env_file({"A": "1"}))
    unit = service_manager.unit_name("baseline-engine-0")
    assert unit == "servelab-baseline-engine-0.service"
    text = service_manager.render_unit(
        "baseline-engine-0", [sys.executable, *ODD_ARGS], str(sdir), str(sdir / "service.log")
    )
    (tmp_path / unit).write_text(text)
    check = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / unit)],
        capture_output=True,
        text=True,
    )
    # Complaints about this machine's own units (no systemd here) are not ours.
    ours = [line for line in check.stderr.splitlines() if unit in line]
    assert check.returncode == 0 and not ours, check.stderr
    assert "Restart=on-failure" in text and "StartLimitBurst=5" in text
    assert '"say \\"hi\\" 100%% of $$HOME"' in text  # quotes, % and $ escaped
    assert f"StandardOutput=append:{sdir}/service.log" in text


def test_a_broken_unit_is_caught_by_the_same_check(tmp_path):
    unit = tmp_path / "servelab-broken.service"
    unit.write_text("[Service]\nExecStart=relative/path --x\nRestart=sometimes\n")
    check = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    assert check.returncode != 0 or "servelab-broken.service" in check.stderr


def test_env_file_is_owner_only_and_escaped(tmp_path):
    text = service_manager.render_env_file({"VLLM_API_KEY": 's3"cr\\t', "B": "x y"})
    assert text == 'B="x y"\nVLLM_API_KEY="s3\\"cr\\\\t"\n'


FAKE_SYSTEMCTL = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    path = os.environ["FAKE_SYSTEMD_STATE"]
    state = json.load(open(path)) if os.path.exists(path) else {{"calls": [], "units": {{}}}}
    args = sys.argv[1:]
    state["calls"].append(args)
    unit = args[1] if len(args) > 1 else ""
    u = state["units"].setdefault(unit, {{"active": "inactive", "pid": 0, "restarts": 0}})
    if args[0] == "restart":
        u.update(active="active", pid=4242)
    elif args[:2] == ["disable", "--now"]:
        unit = args[2]
        state["units"][unit] = {{"active": "inactive", "pid": 0, "restarts": 0}}
    elif args[0] == "show":
        print(f"ActiveState={{u['active']}}\\nSubState=running\\nMainPID={{u['pid']}}")
        print(f"NRestarts={{u['restarts']}}\\nExecMainStatus=0")
    json.dump(state, open(path, "w"))
    """
)


@pytest.fixture
def fake_systemctl(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    state = tmp_path / "systemd.json"
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMD_STATE", str(state))
    return lambda: json.loads(state.read_text())


def test_systemd_manager_installs_enables_restarts_and_removes(tmp_path, fake_systemctl):
    sdir, units = tmp_path / "svc", tmp_path / "units"
    sdir.mkdir()
    units.mkdir()
    manager = service_manager.new("systemd", str(sdir), "dev-router", str(units))
    spec = {
        "name": "dev-router",
        "argv": ["/opt/router/bin/vllm-router", "--port", "9000"],
        "env": {"VLLM_API_KEY": "secret"},
        "log": str(sdir / "service.log"),
    }
    manager.start(spec, sys.executable, "")
    unit = units / "servelab-dev-router.service"
    assert unit.is_file()
    assert "secret" not in unit.read_text()
    env_file = sdir / service_manager.ENV_FILE
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    calls = fake_systemctl()["calls"]
    assert [c[0] for c in calls[:4]] == ["daemon-reload", "enable", "reset-failed", "restart"]
    assert manager.pid() == 4242 and manager.state()["state"] == "running"
    # for_dir finds the unit again from spec.json, as status and teardown do.
    (sdir / "spec.json").write_text(
        json.dumps({**spec, "manager": "systemd", "unit": manager.unit, "unit_dir": str(units)})
    )
    again = service_manager.for_dir(str(sdir))
    assert again.kind == "systemd" and again.running()
    assert again.stop() is True
    assert not unit.exists()
    assert ["disable", "--now", "servelab-dev-router.service"] in fake_systemctl()["calls"]
    assert again.state()["state"] == "absent"


def test_local_service_module_runs_keeps_and_stops_a_process(tmp_path):
    port = free_port()
    sdir = tmp_path / "web"
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    args = {"name": "web", "service_dir": str(sdir), "port": port, "argv": argv}
    first = local_service(**args, manager="process")
    assert '"action": "started"' in first.stdout, first.stdout
    assert json.loads((sdir / "spec.json").read_text())["manager"] == "process"
    pid = (sdir / "child.pid").read_text()
    # The supervisor runs on the base Python, not on the deploying checkout's venv: a
    # deleted checkout must not take its supervisors' interpreter with it.
    supervisor_pid = (sdir / "supervisor.pid").read_text().strip()
    interpreter = Path(f"/proc/{supervisor_pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    assert interpreter == sys._base_executable
    assert sys.prefix == sys.base_prefix or not interpreter.startswith(sys.prefix + "/")
    second = local_service(**args, manager="auto")  # auto is process on this host
    assert '"changed": false' in second.stdout, second.stdout
    assert (sdir / "child.pid").read_text() == pid
    taken = local_service(**{**args, "name": "other", "service_dir": str(tmp_path / "other")})
    assert f"port {port} on 127.0.0.1 is already in use" in taken.stdout
    # Restarted without a command line: the recorded one again, as a new process (the
    # bench's replication across deployments restarts engines this way).
    again = local_service(name="web", service_dir=str(sdir), state="restarted")
    assert '"action": "restarted"' in again.stdout, again.stdout
    new_pid = (sdir / "child.pid").read_text()
    assert new_pid != pid and f'"pid": {int(new_pid)}' in again.stdout, again.stdout
    wait_until(lambda: _answers(port), timeout=30)
    nothing = local_service(name="none", service_dir=str(tmp_path / "none"), state="restarted")
    assert "records no command line to restart" in nothing.stdout, nothing.stdout
    stopped = local_service(name="web", service_dir=str(sdir), state="stopped")
    assert '"action": "stopped"' in stopped.stdout, stopped.stdout
    assert not (sdir / "supervisor.pid").exists()


@pytest.mark.skipif(service_manager.systemd_running(), reason="systemd runs on this host")
def test_systemd_where_it_does_not_run_is_a_clear_error(tmp_path):
    run = local_service(
        name="x", service_dir=str(tmp_path / "x"), manager="systemd", argv=["/bin/true"]
    )
    assert run.returncode != 0
    assert "systemd is not running on this host" in run.stdout
    assert "VLLM_SERVICE_MANAGER" in run.stdout
    assert not Path(tmp_path / "x" / "spec.json").exists()


# A service shaped like vLLM's API server: its main process starts a child in its own
# process group (EngineCore) and one that leaves the group (setsid), then serves.
SPAWNER = textwrap.dedent(
    """\
    import subprocess, sys, time
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    kids = [subprocess.Popen(sleep).pid, subprocess.Popen(sleep, start_new_session=True).pid]
    with open(sys.argv[1], "a") as out:
        out.write(" ".join(map(str, kids)) + "\\n")
    time.sleep(600)
    """
)


def _start_spawner(sdir: Path) -> tuple[service_manager.ProcessManager, Path]:
    import inspect

    from ansible_collections.servelab.vllm.plugins.module_utils import supervisor

    sdir.mkdir(parents=True)
    (sdir / "spawner.py").write_text(SPAWNER)
    kids = sdir / "kids"
    spec = {
        "name": "spawner",
        "argv": [sys.executable, str(sdir / "spawner.py"), str(kids)],
        "env": {},
        "log": str(sdir / "service.log"),
    }
    (sdir / "spec.json").write_text(json.dumps(spec))
    manager = service_manager.new("process", str(sdir), "spawner")
    manager.start(spec, sys.executable, inspect.getsource(supervisor))
    wait_until(lambda: kids.exists() and kids.read_text().count("\n") >= 1)
    return manager, kids


def _alive(pid: int) -> bool:
    from ansible_collections.servelab.vllm.plugins.module_utils import supervisor

    return supervisor.alive(pid)


def test_a_killed_service_leaves_no_process_behind(tmp_path):
    """kill -9 of the main process only: the supervisor stops its children (in the group
    and out of it) before it restarts the service; stopping stops everything."""
    from ansible_collections.servelab.vllm.plugins.module_utils import stack_status

    stack = tmp_path / "stacks" / "dev"
    manager, kids = _start_spawner(stack / "engine-0")
    try:
        main = manager.pid()
        first = [int(p) for p in kids.read_text().split()]
        assert all(_alive(p) for p in first)
        assert stack_status.orphans(str(stack)) == []  # all owned by the running service
        os.kill(main, 9)
        wait_until(lambda: kids.read_text().count("\n") >= 2)  # restarted
        wait_until(lambda: not any(_alive(p) for p in first))
        assert manager.pid() not in (0, main)
        assert json.loads((stack / "engine-0" / "state.json").read_text())["restarts"] == 1
        second = [int(p) for p in kids.read_text().splitlines()[1].split()]
        assert all(_alive(p) for p in second)
    finally:
        assert manager.stop() is True
    assert not any(_alive(p) for p in second)
    assert stack_status.orphans(str(stack)) == []


def test_status_reports_and_teardown_stops_orphans_of_a_stack(tmp_path):
    """A marked process whose service is gone (its supervisor killed with -9, the stack
    directory removed) is reported as an orphan, and stopped on request."""
    from ansible_collections.servelab.vllm.plugins.module_utils import stack_status, supervisor

    stack = tmp_path / "stacks" / "dev"
    manager, kids = _start_spawner(stack / "engine-0")
    left = [manager.pid(), *(int(p) for p in kids.read_text().split())]
    os.kill(supervisor.supervisor_pid(str(stack / "engine-0")), 9)
    try:
        shutil.rmtree(stack)
        found = stack_status.orphans(str(stack))
        assert sorted(o["pid"] for o in found) == sorted(left)
        assert {o["service"] for o in found} == {"engine-0"}
        assert "orphan: pid" in stack_status.format_orphans(found)[0]
        # Other stacks' processes are not this stack's orphans.
        assert stack_status.orphans(str(tmp_path / "stacks" / "baseline")) == []
        run = ansible_module(
            "servelab.vllm.stack_recover",
            json.dumps({"stack_dir": str(stack), "stop_orphans": True}),
        )
        assert '"changed": true' in run.stdout, run.stdout
        assert sorted(
            o["pid"] for o in json.loads(run.stdout.split("=>", 1)[1])["stopped"]
        ) == sorted(left)
        wait_until(lambda: not any(_alive(p) for p in left))
    finally:
        supervisor.stop_pids(left, 1)


def test_an_exited_group_leader_not_yet_reaped_ends_its_group():
    """The supervisor reaps its child only after the stop: a zombie leader is not a live
    group (counting it made every stop wait out its 30 s timeout)."""
    live = subprocess.Popen(["sleep", "100"], start_new_session=True)
    done = subprocess.Popen(["sleep", "100"], start_new_session=True)
    try:
        assert supervisor.group_alive(live.pid) and supervisor.group_alive(done.pid)
        os.kill(done.pid, signal.SIGTERM)
        proc_stat = Path(f"/proc/{done.pid}/stat")
        deadline = time.monotonic() + 10
        while proc_stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # not reaped: a zombie
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not supervisor.group_alive(done.pid)
        assert supervisor.group_alive(live.pid)
        supervisor.kill_group(done.pid, 5)  # returns at once, nothing to kill
    finally:
        live.kill()
        live.wait()
        done.wait()


def test_a_service_that_keeps_failing_is_given_up_and_reported_down(tmp_path):
    """Like systemd's start limit: 5 failures in 300 s and the supervisor stops trying;
    status says down with the last exit status (backoff 1+2+4+8 s: about 15 s)."""
    import inspect

    from ansible_collections.servelab.vllm.plugins.module_utils import service_spec, stack_status

    sdir = tmp_path / "stacks" / "dev" / "engine-0"
    sdir.mkdir(parents=True)
    spec = {
        "name": "failing", "argv": ["sh", "-c", "echo cannot start; exit 3"], "env": {},
        "log": str(sdir / "service.log"),
        service_spec.MANIFEST_KEY: service_spec.Manifest(kind="other").to_json(),
    }  # fmt: skip
    (sdir / "spec.json").write_text(json.dumps(spec))
    manager = service_manager.new("process", str(sdir), "failing")
    manager.start(spec, sys.executable, inspect.getsource(supervisor))
    wait_until(lambda: manager.state()["state"] == "failed", timeout=60)
    assert manager.state() == {"state": "failed", "restarts": supervisor.START_LIMIT_BURST - 1,
                               "last_exit": 3}  # fmt: skip
    wait_until(lambda: not manager.running())  # the supervisor itself has ended
    assert (sdir / "service.log").read_text().count("cannot start") == supervisor.START_LIMIT_BURST
    [row] = stack_status.stack_status(str(sdir.parent))
    assert row["state"] == "down" and row["pid"] == 0, row
    assert "last exit 3" in row["detail"], row


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
