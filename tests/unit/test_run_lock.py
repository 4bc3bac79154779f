"""One run at a time: a second playbook fails at once, naming the run that holds the host."""

import json
import os
import subprocess
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
VENV_BIN = TOP / ".venv" / "bin"

HOLDER = """\
- name: One run at a time
  ansible.builtin.import_playbook: {top}/playbooks/run_lock.yml
  vars:
    servelab_run_what: deploy
- name: Hold the host a while
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Work
      ansible.builtin.command: sleep 25
      changed_when: false
"""


def playbook(path: Path, lock: Path, what: str = "benchmark", wait: bool = True):
    env = dict(os.environ, ANSIBLE_CONFIG=str(TOP / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    # An empty inventory: the implicit localhost runs modules with the playbook's Python.
    inventory = lock.parent / "empty.ini"
    inventory.write_text("")
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(path),
            "-e", f"servelab_run_lock={lock}", "-e", f"servelab_run_what={what}"]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=TOP, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def test_a_second_run_is_refused_while_the_first_holds_the_host(tmp_path):
    lock = tmp_path / "run.lock"
    holder = tmp_path / "holder.yml"
    holder.write_text(HOLDER.format(top=TOP))
    first = playbook(holder, lock, what="deploy", wait=False)
    try:
        deadline = time.monotonic() + 60
        while not lock.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        record = json.loads(lock.read_text())
        assert record["what"] == "deploy" and "ansible-playbook" in record["command"]
        assert record["pid"] == first.pid  # the playbook itself, not a forked worker
        rc, out = playbook(TOP / "playbooks/run_lock.yml", lock)
        assert rc != 0
        assert "another servelab run holds this host: deploy by pid" in out, out
        assert str(first.pid) in out
    finally:
        first.communicate(timeout=120)
    assert first.returncode == 0
    # Its playbook has ended: the lock is stale and the next run takes it.
    rc, out = playbook(TOP / "playbooks/run_lock.yml", lock)
    assert rc == 0, out
    assert json.loads(lock.read_text())["what"] == "benchmark"
