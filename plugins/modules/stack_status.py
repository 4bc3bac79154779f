#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Report the supervised services of a stack from probes of their endpoints."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_status
short_description: Report a group's engines and router from real probes
description:
  - For every service under O(stack_dir) (as run by M(servelab.vllm.local_service)),
    probes C(/health), C(/v1/models) and, for engines, C(/version), and reads the pid
    and uptime of the live process from C(/proc).
version_added: "0.1.0"
author: servelab developers (@servelab)
options:
  stack_dir:
    description: Directory of the group's stack.
    type: path
    required: true
  thaw:
    description:
      - C(stale) continues the stack's processes that a benchmark froze (listed in
        C(frozen.json)) when that benchmark is no longer running, so that a killed run
        does not leave a group stopped. C(always) continues them in any case (teardown).
    type: str
    choices: [never, stale, always]
    default: never
  stop_orphans:
    description:
      - Stop the processes of the stack that no running service owns (see RV(orphans));
        teardown uses it after stopping the services.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Report the stack
  servelab.vllm.stack_status:
    stack_dir: /root/.local/share/servelab/stacks/baseline
"""

RETURN = r"""
thawed:
  description: Pids continued because the run that froze them had ended.
  returned: always
  type: list
  elements: int
services:
  description: One entry per service.
  returned: always
  type: list
  elements: dict
table:
  description: The same as aligned text lines.
  returned: always
  type: list
  elements: str
all_up:
  description: Whether every service answers its health check.
  returned: always
  type: bool
orphans:
  description:
    - Processes that carry a service dir of this stack in SERVELAB_SERVICE but belong to
      no running service (pid, service, command); stopped when O(stop_orphans) is set.
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
            "thaw": {"type": "str", "default": "never", "choices": ["never", "stale", "always"]},
            "stop_orphans": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    stack_dir = module.params["stack_dir"]
    thawed = []
    if module.params["thaw"] != "never" and not module.check_mode:
        thaw = freeze.thaw_stale if module.params["thaw"] == "stale" else freeze.thaw_stack
        thawed = thaw(stack_dir)
    rows = stack_status.stack_status(stack_dir)
    orphans = stack_status.orphans(stack_dir)
    stopped = False
    if orphans and module.params["stop_orphans"] and not module.check_mode:
        stopped = bool(supervisor.stop_pids([o["pid"] for o in orphans], 10))
    table = stack_status.format_table(rows) if rows else ["(no stack deployed)"]
    module.exit_json(
        changed=bool(thawed) or stopped,
        thawed=thawed,
        services=rows,
        orphans=orphans,
        table=table + stack_status.format_orphans(orphans),
        all_up=bool(rows) and all(r["state"] == "up" for r in rows),
    )


if __name__ == "__main__":
    main()
