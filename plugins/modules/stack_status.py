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
  - Reads only; M(servelab.vllm.stack_recover) continues frozen processes and stops
    orphans.
version_added: "0.1.0"
author: servelab developers (@servelab)
options:
  stack_dir:
    description: Directory of the group's stack.
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Report the stack
  servelab.vllm.stack_status:
    stack_dir: /root/.local/share/servelab/stacks/baseline
"""

RETURN = r"""
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
      no running service (pid, service, command); M(servelab.vllm.stack_recover) stops them.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils import stack_status  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={"stack_dir": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    stack_dir = module.params["stack_dir"]
    rows = stack_status.stack_status(stack_dir)
    orphans = stack_status.orphans(stack_dir)
    table = stack_status.format_table(rows) if rows else ["(no stack deployed)"]
    module.exit_json(
        changed=False,
        services=rows,
        orphans=orphans,
        table=table + stack_status.format_orphans(orphans),
        all_up=bool(rows) and all(r["state"] == "up" for r in rows),
    )


if __name__ == "__main__":
    main()
