#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the CPU's capabilities and choose the engine dtype and core sets."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cpu_placement
short_description: Choose a CPU engine's dtype and core sets from the host's CPU
description:
  - Reads the flags avx2, avx512f, avx512_bf16 and amx_bf16 from C(/proc/cpuinfo), the
    CPUs this process may use and the NUMA node count.
  - Resolves O(dtype) C(auto) to C(bfloat16) where the CPU computes it natively and
    C(float32) elsewhere; any other value is kept.
  - Gives the API servers, routers and benchmark client O(frontend_cpus), by default the
    first usable CPU) and splits O(engine_cpus), by default the rest, evenly between the
    replicas. Both groups get the same sets (they are measured one at a time).
  - Fails with a message naming the setting when a CPU named is not usable or there are
    fewer engine CPUs than replicas.
version_added: "0.2.0"
author: servelab developers (@servelab)
options:
  dtype: {description: The configured dtype (VLLM_DTYPE)., type: str, default: auto}
  replicas: {description: Engine replicas per group., type: int, default: 1}
  engine_cpus: {description: CPU list of the engines; empty for automatic., type: str, default: ""}
  frontend_cpus: {description: CPU list of the rest; empty for automatic., type: str, default: ""}
"""

EXAMPLES = r"""
- name: Choose the engine placement
  servelab.vllm.cpu_placement:
    dtype: auto
    replicas: 1
  register: placement
"""

RETURN = r"""
placement:
  description: dtype, dtype_reason, frontend_cpus, engine_cpus (one list per replica), facts.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils import hardware  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dtype": {"type": "str", "default": "auto"},
            "replicas": {"type": "int", "default": 1},
            "engine_cpus": {"type": "str", "default": ""},
            "frontend_cpus": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        placement = hardware.place(
            hardware.read_facts(), p["replicas"], p["engine_cpus"], p["frontend_cpus"], p["dtype"]
        )
    except hardware.PlacementError as err:
        module.fail_json(msg=str(err))
    module.exit_json(changed=False, placement=placement.to_dict())


if __name__ == "__main__":
    main()
