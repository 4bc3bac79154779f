#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take the controller's run lock for the ansible-playbook that runs this task."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: run_lock
short_description: One servelab run at a time on a controller
description:
  - Records the ansible-playbook process that runs this task in O(path), unless another
    live ansible-playbook holds it, in which case the task fails naming that run.
  - The lock needs no release; it is stale once its ansible-playbook has ended. The same
    playbook run may take it again (the main job deploys, then benchmarks).
  - Reports no change, since the lock is bookkeeping, not state of the hosts.
  - Runs on the controller (C(localhost)).
version_added: "0.2.0"
author: servelab developers (@servelab)
options:
  path:
    description: The lock file.
    type: path
    required: true
  what:
    description: What the run does, for the message a second run gets.
    type: str
    default: a servelab playbook
"""

EXAMPLES = r"""
- name: Take this host for the run
  servelab.vllm.run_lock:
    path: "{{ lookup('env', 'HOME') }}/.local/share/servelab/run.lock"
    what: deploy
"""

RETURN = r"""
owner:
  description: The record of the run that holds the lock (pid, started, command, what).
  returned: always
  type: dict
taken:
  description: Whether this task took the lock (false when this run held it already).
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils import run_lock  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "what": {"type": "str", "default": "a servelab playbook"},
        },
        supports_check_mode=True,
    )
    owner = run_lock.playbook_pid()
    if not owner:
        module.exit_json(changed=False, taken=False, owner={}, msg="not run by ansible-playbook")
    if module.check_mode:
        module.exit_json(changed=False, taken=False, owner={})
    try:
        taken, record = run_lock.acquire(module.params["path"], owner, module.params["what"])
    except run_lock.Held as err:
        module.fail_json(
            msg=f"{err}: wait until it ends, or stop it; runs on one host must not overlap "
            "(they would share its cores)",
            owner={},
        )
    except OSError as err:
        module.fail_json(msg=f"run lock {module.params['path']}: {err}", owner={})
    module.exit_json(changed=False, taken=taken, owner=record)


if __name__ == "__main__":
    main()
