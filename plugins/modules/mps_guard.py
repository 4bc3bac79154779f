#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prove that every engine of a stack is a client of the MPS control daemon."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mps_guard
short_description: Fail unless every engine of a stack is a client of the MPS daemon
description:
  - A CUDA process that lacks C(CUDA_MPS_PIPE_DIRECTORY), or names another directory than
    the daemon's, runs outside MPS with the whole GPU and measures exactly like a 100%
    share. This module proves that each engine is an MPS client and fails otherwise.
  - An engine is the process tree of its service under O(stack_dir) and every process
    marked with its service directory in C(SERVELAB_SERVICE) (vLLM's EngineCore and
    workers, which hold the CUDA context, not only the API server).
  - An engine passes when plain C(nvidia-smi) lists one of its processes with type
    C(M+C), or the daemon's C(control.log) in O(log_dir) has a C(NEW CLIENT) line for
    one of them, and none of its processes is listed with type C(C) or C(C+G).
  - An engine not seen as a client yet is looked at again until O(timeout), since a
    CUDA context can appear a little after C(/health) answers; one with a context
    outside MPS fails at once. The message names the engine, its pids, what nvidia-smi
    listed and the likely cause.
  - Then the share is read back. A probe process with an engine's C(CUDA_MPS_*) environment
    becomes a client of the same daemon and reads the SMs its context may use
    (C(cuCtxGetExecAffinity) through the driver's C(libcuda.so.1)); one outside MPS reads
    the device's. An engine whose SMs are more than 2 away from the device's times its
    C(CUDA_MPS_ACTIVE_THREAD_PERCENTAGE) was given another share, and fails. The daemon's
    C(get_active_thread_percentage) cannot tell, as it answers for the server, not the
    client. A probe that cannot run (no driver) is recorded, not failed.
version_added: "0.3.0"
author: servelab developers (@servelab)
  - On Kubernetes (O(pods)), the proof comes from inside each engine pod instead. The
    probe ran there (kubectl exec) with the container's environment and listed the
    container's processes with their C(CUDA_MPS_*) variables. A pod passes when its
    container names a pipe directory, every process in it started with that directory,
    and the probe got a context through MPS and read back its SMs. The claim's daemon
    (O(daemon)) adds its servers' client lists and nvidia-smi's table where it could be
    asked; its failure is recorded, not fatal.
options:
  stack_dir:
    description:
      - Directory of the group's stack (its services are subdirectories).
      - Required unless O(pods) is given.
    type: path
  pipe_dir:
    description: The MPS control daemon's pipe directory (its C(CUDA_MPS_PIPE_DIRECTORY)).
    type: path
  log_dir:
    description: The daemon's log directory (its C(CUDA_MPS_LOG_DIRECTORY)).
    type: path
  pods:
    description:
      - Kubernetes only. What the probe (mps.pod_probe_command) answered in each engine
        pod, as kubernetes.core.k8s_exec returns it, with the pod's name in C(pod).
    type: list
    elements: dict
  daemon:
    description:
      - Kubernetes only. What the claim's MPS daemon pod answered to mps.DAEMON_COMMAND
        (kubernetes.core.k8s_exec's result, with C(pod)).
    type: dict
  engines:
    description:
      - Service directory names to check (C(engine-0)); a name without a running
        engine fails. Empty checks every engine service that runs.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds to wait for an engine to be seen as a client.
    type: float
    default: 15
  nvidia_smi:
    description: The nvidia-smi program.
    type: str
    default: nvidia-smi
"""

EXAMPLES = r"""
- name: Ensure every replica is a client of the MPS daemon
  servelab.vllm.mps_guard:
    stack_dir: /root/.local/share/servelab/stacks/baseline
    pipe_dir: /root/.local/share/servelab/mps/pipe
    log_dir: /root/.local/share/servelab/mps/log
    engines: [engine-0, engine-1]
"""

RETURN = r"""
proof:
  description:
    - What proves it, as recorded in the results; also returned on failure.
    - Keys are pipe_dir, log_dir, clients (client pids in all), types (the nvidia-smi
      types of the engines' processes), active_thread_percentages, device_sms (the
      device's SMs), sms (the SMs the engines may use, read back), read_back_error, ok,
      and engines.
    - Each engine has name, service_dir, pids, processes (its nvidia-smi rows with gpu,
      pid, type, name, memory and the line as printed), control_log (its NEW CLIENT
      lines), env (the CUDA_MPS_* variables its main process started with), clients,
      read_back (the probe's answer) and problem.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils import mps  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "stack_dir": {"type": "path"},
            "pipe_dir": {"type": "path"},
            "log_dir": {"type": "path"},
            "pods": {"type": "list", "elements": "dict"},
            "daemon": {"type": "dict"},
            "engines": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "float", "default": 15},
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
        },
        required_one_of=[("stack_dir", "pods")],
        required_by={"stack_dir": ("pipe_dir", "log_dir")},
        supports_check_mode=True,
    )
    p = module.params
    if p["pods"] is not None:
        proof = mps.judge_pods(p["pods"], p["daemon"])
        if not proof["ok"]:
            problems = " | ".join(e["problem"] for e in proof["engines"] if e["problem"])
            module.fail_json(msg=problems or "no engine pod to prove", proof=proof)
        module.exit_json(changed=False, proof=proof)
    names = p["engines"] or None
    try:
        proof = mps.guard(
            p["stack_dir"], p["pipe_dir"], p["log_dir"], names, p["nvidia_smi"], p["timeout"]
        )
    except mps.GuardError as err:
        module.fail_json(msg=str(err), proof=err.proof)
    module.exit_json(changed=False, proof=proof)


if __name__ == "__main__":
    main()
