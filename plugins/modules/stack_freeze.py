#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Freeze a stack on its own host while a block runs on another host of the same machine."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_freeze
short_description: Freeze (SIGSTOP) a group's stack for a block of another host, or thaw it
description:
  - Two hosts that share a machine (the same boot id, or the same C(servelab_machine))
    are measured one at a time. When the hosts see each other's processes (one PID
    namespace, as the local platform's groups) the benchmark module freezes the idle
    stack itself. When they do not (containers, namespaces or VMs on one machine), the
    controller freezes the idle stack through that stack's own host with this module.
  - O(state=frozen) starts a holder process on the host that stops the stack's process
    trees (the roots in O(pids)) and records them in the stack's C(frozen.json), naming
    itself as the freezer. It thaws them by itself when O(lease) runs out, so a
    controller lost mid-block leaves no group frozen for longer. M(servelab.vllm.stack_recover)
    with C(thaw=stale) continues them once the holder is gone.
  - O(state=thawed) continues what C(frozen.json) names, removes it and ends the holder.
version_added: "0.7.0"
author: servelab developers (@servelab)
options:
  stack_dir:
    description: Directory of the group's stack on this host.
    type: path
    required: true
  pids:
    description: The stack's main processes; each one's whole tree is stopped.
    type: list
    elements: int
    default: []
  state:
    description: Whether the stack is to be frozen or running.
    type: str
    choices: [frozen, thawed]
    default: frozen
  lease:
    description: Seconds after which the holder thaws the stack by itself.
    type: float
    default: 3600
"""

EXAMPLES = r"""
- name: Freeze dev's stack on dev's host while baseline's block runs
  servelab.vllm.stack_freeze:
    stack_dir: /root/.local/share/servelab/stacks/dev
    pids: [4242, 4250]
    lease: 1800
  delegate_to: dev-host
"""

RETURN = r"""
frozen:
  description: The pids stopped (O(state=frozen)).
  returned: always
  type: list
  elements: int
thawed:
  description: The pids continued (O(state=thawed)).
  returned: always
  type: list
  elements: int
holder:
  description: The pid of the holder process (O(state=frozen)).
  returned: always
  type: int
"""

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils import freeze  # noqa: E402


def _hold(stack_dir: str, roots: list[int], lease: float, report: int) -> None:
    """The holder: freeze, tell the module what was stopped, wait for the thaw or the
    lease's end, thaw. Never returns."""
    thawing = []
    signal.signal(signal.SIGTERM, lambda *_: thawing.append(True))
    stopped = freeze.freeze_stack(stack_dir, roots)
    os.write(report, json.dumps(stopped).encode())
    os.close(report)
    end = time.monotonic() + lease
    while (
        not thawing
        and time.monotonic() < end
        and os.path.exists(os.path.join(stack_dir, freeze.MARKER))
    ):
        time.sleep(0.2)
    freeze.thaw_stack(stack_dir)
    os._exit(0)


def hold(stack_dir: str, roots: list[int], lease: float) -> tuple[int, list[int]]:
    """Start the holder, detached from the module (its own session); (its pid, the pids
    it stopped)."""
    read, write = os.pipe()
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork():
            os._exit(0)
        os.close(read)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _hold(stack_dir, roots, lease, write)
    os.close(write)
    os.waitpid(first, 0)
    with os.fdopen(read) as answer:
        stopped = json.loads(answer.read() or "[]")
    return freeze.holder(stack_dir), stopped


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "stack_dir": {"type": "path", "required": True},
            "pids": {"type": "list", "elements": "int", "default": []},
            "state": {"type": "str", "choices": ["frozen", "thawed"], "default": "frozen"},
            "lease": {"type": "float", "default": 3600},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not os.path.isdir(p["stack_dir"]):
        module.fail_json(msg=f"stack_dir {p['stack_dir']}: no such directory on this host")
    if module.check_mode:
        module.exit_json(changed=False, frozen=[], thawed=[], holder=0)
    if p["state"] == "thawed":
        holder = freeze.holder(p["stack_dir"])
        thawed = freeze.thaw_stack(p["stack_dir"])
        if holder:
            with contextlib.suppress(ProcessLookupError):  # it ended with its lease
                os.kill(holder, signal.SIGTERM)
        module.exit_json(changed=bool(thawed), frozen=[], thawed=thawed, holder=0)
    if p["lease"] <= 0:
        module.fail_json(msg=f"lease {p['lease']}: expected seconds above 0")
    holder, stopped = hold(p["stack_dir"], p["pids"], p["lease"])
    module.exit_json(changed=bool(stopped), frozen=stopped, thawed=[], holder=holder)


if __name__ == "__main__":
    main()
