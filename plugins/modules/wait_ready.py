#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for a supervised service's health endpoint; on failure, say why."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wait_ready
short_description: Wait until a service answers its health check
description:
  - Polls O(url) until it answers HTTP 200. Fails early when the service manager
    (systemd or our supervisor) reports that it exited for good, and fails after
    O(timeout) seconds otherwise.
  - The failure message carries the likely cause (port in use, model path missing, out
    of memory, engine crashed) and the last lines of the service's log.
version_added: "0.1.0"
author: servelab developers (@servelab)
options:
  name:
    description: Name of the service, for messages.
    type: str
    required: true
  url:
    description: Health URL, for example C(http://127.0.0.1:8100/health).
    type: str
    required: true
  timeout:
    description: Seconds to wait.
    type: int
    default: 600
  service_dir:
    description: Directory of the service (as in M(servelab.vllm.local_service)), whose
      state and log explain a failure.
    type: path
  log_lines:
    description: Log lines to include in a failure message.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Wait for the engine
  servelab.vllm.wait_ready:
    name: engine-0
    url: http://127.0.0.1:8100/health
    timeout: 900
    service_dir: /var/lib/servelab/stacks/baseline/engine-0
"""

RETURN = r"""
waited:
  description: Seconds waited.
  returned: always
  type: float
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils import (  # noqa: E402
    readiness,
    service_manager,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "url": {"type": "str", "required": True},
            "timeout": {"type": "int", "default": 600},
            "service_dir": {"type": "path"},
            "log_lines": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        module.exit_json(changed=False, waited=0.0)
    sdir = p["service_dir"]

    def given_up() -> bool:
        if not sdir:
            return False
        state = service_manager.for_dir(sdir).state()
        return state.get("state") in ("failed", "stopped") or (
            state.get("state") == "restarting" and state.get("restarts", 0) >= 1
        )

    result = readiness.wait_until_ready(p["url"], p["timeout"], given_up)
    if result.ready:
        module.exit_json(changed=False, waited=round(result.waited, 1))
    log = os.path.join(sdir, "service.log") if sdir else ""
    text = readiness.tail(log, p["log_lines"]) if log else ""
    cause = readiness.likely_cause(text, exited=given_up())
    module.fail_json(
        msg=f"{p['name']} did not become ready at {p['url']} within {result.waited:.0f} s. "
        f"Likely cause: {cause}. Last log lines ({log}):\n{text}",
        waited=round(result.waited, 1),
        cause=cause,
    )


if __name__ == "__main__":
    main()
