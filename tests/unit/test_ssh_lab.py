"""The SSH lab (scripts/ssh_lab.py, `make ssh-lab`): two real sshd hosts on this machine,
each in mount, PID and UTS namespaces of its own, reached by key with host-key checking
on; stopping it leaves nothing behind."""

import importlib.util
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers.stack import TOP, VENV_BIN

spec = importlib.util.spec_from_file_location("ssh_lab", TOP / "scripts/ssh_lab.py")
ssh_lab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ssh_lab)


def _free_port() -> int:
    """A port free on both hosts' addresses."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
            port = sock.getsockname()[1]
        with socket.socket() as other:
            if other.connect_ex(("127.0.0.3", port)) != 0:
                return port
    raise AssertionError("no free port")


@pytest.fixture
def lab(tmp_path):
    where = tmp_path / "lab"
    state = ssh_lab.start(where, 2, _free_port())
    yield where, state
    ssh_lab.stop(where)


def ssh(where, host: str, command: str, known_hosts: str = "") -> subprocess.CompletedProcess:
    options = ["-o", f"UserKnownHostsFile={known_hosts}"] if known_hosts else []
    return subprocess.run(
        ["ssh", "-F", str(where / "ssh_config"), *options, host, command],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_two_hosts_of_their_own_over_ssh_and_nothing_left_after(lab, tmp_path):
    where, state = lab
    pids = {e["pid"] for e in state["hosts"]}
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    seen = {}
    for host in ("baseline-host", "dev-host"):
        script = (
            f"hostname; cat /proc/sys/kernel/random/boot_id; ls /proc | grep -c '^[0-9]'; "
            f"touch /root/{host}; ls /root; ls {TOP} 2>/dev/null | wc -l; "
            "touch /usr/servelab-lab 2>&1; true"
        )
        done = ssh(where, host, script)
        assert done.returncode == 0, done.stderr
        seen[host] = done.stdout.split("\n")
    for host, lines in seen.items():
        assert lines[0] == host  # its own hostname
        assert lines[1] == boot_id  # one kernel: the machine is shared, and can be known
        assert int(lines[2]) < 20  # its own process space (this machine has hundreds)
        assert lines[3] == host  # its own home: only its own file there
        assert lines[4] == "0"  # the controller's checkout is out of sight
        assert "Read-only file system" in lines[5]  # the system's programs are shared
    assert not any((tmp_path / h).exists() for h in seen) and not os.path.exists("/root/dev-host")
    # Host-key checking stays on: a known_hosts without the host's key refuses it.
    empty = tmp_path / "empty_known_hosts"
    empty.touch()
    refused = ssh(where, "dev-host", "true", known_hosts=str(empty))
    assert refused.returncode != 0 and "Host key verification failed" in refused.stderr
    # Ansible reaches both through the lab's inventory.
    facts = subprocess.run(
        [str(VENV_BIN / "ansible"), "-i", str(where / "inventory.yml"), "all", "-m",
         "ansible.builtin.setup", "-a", "filter=ansible_hostname"],
        capture_output=True, text=True, timeout=120, cwd=TOP,
        env={**os.environ, "ANSIBLE_CONFIG": str(TOP / "ansible.cfg")},
    )  # fmt: skip
    assert facts.returncode == 0, facts.stdout + facts.stderr
    assert '"ansible_hostname": "baseline-host"' in facts.stdout
    assert '"ansible_hostname": "dev-host"' in facts.stdout
    # A second lab in the same directory is refused, naming it.
    with pytest.raises(ssh_lab.LabError, match="holds a lab already"):
        ssh_lab.start(where, 2, state["port"])

    assert ssh_lab.stop(where) == ["baseline-host", "dev-host"]
    assert not where.exists()
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")]
    sshd = subprocess.run(["pgrep", "-f", str(where)], capture_output=True, text=True)
    assert sshd.stdout == ""
    assert str(where) not in Path("/proc/self/mountinfo").read_text()


def test_a_stack_on_another_host_of_the_machine_is_frozen_through_that_host(lab, tmp_path):
    """The lab's hosts share a boot id but not a PID namespace: baseline's host cannot see
    dev's processes, so dev's stack is frozen through dev's own connection
    (servelab.vllm.stack_freeze, as block.yml does), thawed after, and a holder that loses
    its controller thaws by itself when its lease ends."""
    where, _ = lab
    start = ssh(where, "dev-host", "mkdir -p /root/stack; cd /root/stack; "
                "setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $!")  # fmt: skip
    pid = int(start.stdout.strip())
    seen = ssh(where, "baseline-host", f"test -e /proc/{pid}/stat && cat /proc/{pid}/comm")
    assert "sleep" not in seen.stdout  # not baseline's to see, let alone to stop
    ids = {h: ssh(where, h, "cat /proc/sys/kernel/random/boot_id; readlink /proc/self/ns/pid")
           .stdout.split() for h in ("baseline-host", "dev-host")}  # fmt: skip
    assert ids["baseline-host"][0] == ids["dev-host"][0]  # one machine
    assert ids["baseline-host"][1] != ids["dev-host"][1]  # two process spaces

    def freeze_task(state: str, lease: float = 600) -> dict:
        args = {"stack_dir": "/root/stack", "pids": [pid], "state": state, "lease": lease}
        return {"servelab.vllm.stack_freeze": args, "delegate_to": "dev-host"}

    def play(*tasks) -> subprocess.CompletedProcess:
        book = tmp_path / "freeze.yml"
        book.write_text(json.dumps([{"hosts": "baseline", "gather_facts": False,
                                     "tasks": list(tasks)}]))  # fmt: skip
        return subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(where / "inventory.yml"), str(book)],
            capture_output=True, text=True, timeout=120, cwd=TOP,
            env={**os.environ, "ANSIBLE_CONFIG": str(TOP / "ansible.cfg")},
        )  # fmt: skip

    def state() -> str:
        return ssh(where, "dev-host", f"ps -o stat= -p {pid}").stdout.strip()

    done = play(freeze_task("frozen"))
    assert done.returncode == 0, done.stdout[-2000:]
    assert state().startswith("T")
    # While its holder runs, a recovery of the stack leaves it frozen (not stale).
    recover = {"servelab.vllm.stack_recover": {"stack_dir": "/root/stack"},
               "delegate_to": "dev-host"}  # fmt: skip
    assert play(recover).returncode == 0 and state().startswith("T")
    done = play(freeze_task("thawed"))
    assert done.returncode == 0, done.stdout[-2000:]
    assert state().startswith("S")
    assert ssh(where, "dev-host", "ls /root/stack").stdout == ""  # no frozen.json left
    # A controller lost mid-block: the holder thaws when its lease ends.
    assert play(freeze_task("frozen", lease=2)).returncode == 0 and state().startswith("T")
    time.sleep(4)
    assert state().startswith("S")
