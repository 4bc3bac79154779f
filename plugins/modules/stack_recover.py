#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Recover a stack from an interrupted run: continue what it froze, stop its orphans."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_recover
short_description: Continue a stack's frozen processes and stop its orphans
description:
  - The recovery step that M(servelab.vllm.stack_status) (which only reads) leaves to
    its own name. A benchmark freezes (SIGSTOP) the other group's stack during a block
    and lists it in C(frozen.json); a run killed meanwhile leaves it stopped.
  - O(thaw=stale) continues such processes when the run that froze them is no longer
    running; O(thaw=always) continues them in any case (teardown).
  - O(stop_orphans) stops the processes that carry a service dir of this stack in
    C(SERVELAB_SERVICE) but belong to no running service (a service whose main process
    died, or a removed stack).
version_added: "0.6.0"
author: servelab developers (@servelab)
options:
  stack_dir:
    description: Directory of the group's stack.
    type: path
    required: true
  thaw:
    description: Which frozen processes to continue.
    type: str
    choices: [never, stale, always]
    default: stale
  stop_orphans:
    description: Stop the stack's processes that no running service owns.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Continue what an interrupted benchmark left frozen
  servelab.vllm.stack_recover:
    stack_dir: /root/.local/share/servelab/stacks/baseline
"""

RETURN = r"""
thawed:
  description: Pids continued.
  returned: always
  type: list
  elements: int
stopped:
  description: The orphans stopped (pid, service, command).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils import (  # noqa: E402
    freeze,
    stack_status,
    supervisor,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "stack_dir": {"type": "path", "required": True},
            "thaw": {"type": "str", "default": "stale", "choices": ["never", "stale", "always"]},
            "stop_orphans": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    stack_dir = module.params["stack_dir"]
    thawed, stopped = [], []
    if module.params["thaw"] != "never" and not module.check_mode:
        thaw = freeze.thaw_stale if module.params["thaw"] == "stale" else freeze.thaw_stack
        thawed = thaw(stack_dir)
    if module.params["stop_orphans"] and not module.check_mode:
        orphans = stack_status.orphans(stack_dir)
        if orphans and supervisor.stop_pids([o["pid"] for o in orphans], 10):
            stopped = orphans
    module.exit_json(changed=bool(thawed or stopped), thawed=thawed, stopped=stopped)


if __name__ == "__main__":
    main()
