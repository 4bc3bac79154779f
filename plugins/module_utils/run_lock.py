# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run at a time on a controller: a lock file naming the ansible-playbook that holds it.

Two `make vllm` in two shells would deploy over each other and interleave their blocks
on the same cores. The lock records the pid and start time of the ansible-playbook
process that took it; it needs no release: once that process has ended, the lock is
stale and the next run takes it (a run killed with -9 never blocks the host).
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.servelab.vllm.plugins.module_utils import atomic, freeze, supervisor


class Held(Exception):
    """Another live run holds the lock."""


def playbook_pid(start: int | None = None) -> int:
    """The outermost ansible-playbook among the ancestors of start (this process): its
    forked workers carry the same command line, and end with each task."""
    pid, found = start or os.getpid(), 0
    while pid > 1:
        if "ansible-playbook" in supervisor.cmdline(pid):
            found = pid
        pid = freeze.parent(pid)
    return found


def _owner(pid: int) -> dict:
    return {
        "pid": pid,
        "started": supervisor.process_start_time(pid),
        "command": supervisor.cmdline(pid)[:300],
    }


def _live(record: dict) -> bool:
    """The recorded process still runs (the same one: its start time matches)."""
    pid = int(record.get("pid") or 0)
    if not supervisor.alive(pid):
        return False
    started, recorded = supervisor.process_start_time(pid), record.get("started")
    return recorded is None or started is None or abs(started - recorded) < 2


def acquire(path: str, owner_pid: int, what: str) -> tuple[bool, dict]:
    """Take the lock for owner_pid; (taken now, record). Raises Held with the holder."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = {**_owner(owner_pid), "what": what, "since": time.time()}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        held = supervisor.read_json(path)
        if int(held.get("pid") or 0) == owner_pid and _live(held):
            return False, held  # this run took it already (deploy, then benchmark)
        if _live(held):
            raise Held(describe(held)) from None
        atomic.write_json_atomic(path, record)  # stale: its run has ended
        return True, record
    with os.fdopen(fd, "w") as out:
        json.dump(record, out, indent=1, sort_keys=True)
    return True, record


def describe(record: dict) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(record.get("since") or 0))
    return (
        f"another servelab run holds this host: {record.get('what', '?')} by pid "
        f"{record.get('pid')} ({record.get('command') or '?'}), since {since}"
    )
