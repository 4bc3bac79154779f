#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check a GPU host before engines start on it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_preflight
short_description: Check that a GPU host can run the configured vLLM engines
description:
  - Fails with a message naming the setting when nvidia-smi is missing, the GPU's compute
    capability is below 8.0 (what current vLLM needs), the engines that share the GPU ask
    for more than its memory in all, or its free memory cannot hold the engines still to
    start.
version_added: "0.2.0"
author: servelab developers (@servelab)
options:
  utilization: {description: gpu_memory_utilization of each engine., type: float, required: true}
  engines_on_gpu: {description: Engines of all groups on the GPU., type: int, required: true}
  running: {description: How many of them already run (a redeploy)., type: int, default: 0}
  nvidia_smi: {description: The nvidia-smi program., type: str, default: nvidia-smi}
"""

EXAMPLES = r"""
- name: Check the GPU
  servelab.vllm.gpu_preflight:
    utilization: 0.4
    engines_on_gpu: 2
"""

RETURN = r"""
checked:
  description: What was checked, as text.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils import gpu  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "utilization": {"type": "float", "required": True},
            "engines_on_gpu": {"type": "int", "required": True},
            "running": {"type": "int", "default": 0},
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        checked = gpu.check(
            gpu.query(p["nvidia_smi"]), p["utilization"], p["engines_on_gpu"], p["running"]
        )
    except gpu.PreflightError as err:
        module.fail_json(msg=str(err))
    module.exit_json(changed=False, checked=checked)


if __name__ == "__main__":
    main()
