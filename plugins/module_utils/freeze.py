# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Freeze a stack's processes (SIGSTOP) while the other group is measured, and thaw them.

On one machine the idle group's engines still poll, run their schedulers and keep their
caches warm; stopped, they take no CPU at all. SIGSTOP needs no cgroup setup, works the
same under our supervisor and under systemd, and costs nothing to undo. Each stack dir
gets a `frozen.json` naming what was stopped, written before the first SIGSTOP, so that a
benchmark killed mid-run leaves a record that `thaw_stack` (run by deploy, benchmark,
status and teardown) undoes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

from ansible_collections.servelab.vllm.plugins.module_utils import atomic

MARKER = "frozen.json"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def parent(pid: int) -> int:
    """The parent pid of a live process, or 0."""
    info = _stat(pid) if pid else None
    return info[1] if info else 0


def state(pid: int) -> str:
    """The kernel's state letter ('T' is stopped), or '' for no such process."""
    info = _stat(pid) if pid else None
    return info[0] if info else ""


def is_frozen(pid: int) -> bool:
    return state(pid) in ("T", "t")


def tree(root: int) -> list[int]:
    """root and all its descendants, parents before children."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _stat(int(name))
            if info:
                children.setdefault(info[1], []).append(int(name))
    out, todo = [], [root] if _stat(root) else []
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return out


def _signal(pids: list[int], sig: int) -> list[int]:
    done = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            done.append(pid)
        except ProcessLookupError:
            pass
    return done


def freeze_stack(stack_dir: str, roots: list[int]) -> list[int]:
    """SIGSTOP every process under roots; record them in stack_dir/frozen.json first."""
    pids = [pid for root in roots if root for pid in tree(root)]
    if not pids:
        return []
    previous = _read(stack_dir)
    record = {"pids": sorted(set(pids) | set(previous)), "since": time.time(), "by": os.getpid()}
    atomic.write_json_atomic(os.path.join(stack_dir, MARKER), record)
    # Parents first, so that none can start a new child while its children stop.
    return _signal(pids, signal.SIGSTOP)


def thaw_stack(stack_dir: str) -> list[int]:
    """SIGCONT what frozen.json names, then remove it; returns the pids continued."""
    pids = _read(stack_dir)
    continued = _signal(list(reversed(pids)), signal.SIGCONT)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(stack_dir, MARKER))
    return continued


def thaw_stale(stack_dir: str) -> list[int]:
    """thaw_stack, unless the process that froze the stack is still running."""
    if not os.path.exists(os.path.join(stack_dir, MARKER)):
        return []
    by = holder(stack_dir)
    if by and state(by) not in ("", "Z"):
        return []
    return thaw_stack(stack_dir)


def holder(stack_dir: str) -> int:
    """The pid that froze the stack (frozen.json's "by"), or 0."""
    try:
        with open(os.path.join(stack_dir, MARKER)) as handle:
            return int(json.load(handle).get("by", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def _read(stack_dir: str) -> list[int]:
    try:
        with open(os.path.join(stack_dir, MARKER)) as handle:
            return [int(p) for p in json.load(handle).get("pids", [])]
    except (OSError, ValueError, TypeError):
        return []
