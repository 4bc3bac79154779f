#!/usr/bin/python
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ensure a supervised background process is running with a given command line."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: local_service
short_description: Run a command as a supervised background service
description:
  - Runs a command as a service that is restarted on failure, as a systemd unit where
    systemd is the init system, otherwise a small supervisor of ours (restart with
    backoff, start limit, process-group stop). The service is identified by its
    directory, which holds its spec, log and (systemd) environment file.
  - A running service whose command line and environment are unchanged is left alone,
    a changed one is restarted, and a port taken by another process is an error.
  - The spec also records what the service is (O(kind), O(port), O(model_path),
    O(version), O(placement)), which M(servelab.vllm.stack_status) and the benchmark
    read; a change of that record alone is written without a restart.
version_added: "0.1.0"
author: servelab developers (@servelab)
options:
  name:
    description: Name of the service, used in messages and the log.
    type: str
    required: true
  service_dir:
    description: Directory of the service (spec, pid files, state, log).
    type: path
    required: true
  argv:
    description:
      - Command line, program first. Required when O(state=started).
      - Left out with O(state=restarted), the service restarts with the command line and
        environment its spec records (a new deployment of what runs).
    type: list
    elements: str
  env:
    description: Environment variables added to the supervisor's environment.
    type: dict
    default: {}
  secret_env:
    description: Like O(env), for secrets; never returned or logged.
    type: dict
    default: {}
  port:
    description: TCP port the service listens on; checked to be free before a start.
    type: int
  host:
    description:
      - Address the service binds to, for the port check. Its readers reach a wildcard
        address (V(0.0.0.0), V(::), empty) through loopback.
    type: str
    default: 127.0.0.1
  kind:
    description:
      - What the service is. V(engine) and V(router) answer the OpenAI API and are
        probed by M(servelab.vllm.stack_status); V(port-forward) forwards O(port) to one.
    type: str
    choices: [engine, router, port-forward, other]
    default: other
  model_path:
    description: Directory of the model the service serves (an engine), recorded for its readers.
    type: str
    default: ""
  version:
    description: Version of the served program, recorded for status and results.
    type: str
    default: ""
  placement:
    description:
      - A CPU engine's placement as M(servelab.vllm.cpu_placement) chose it at deploy
        (dtype, its reason, core sets, CPU facts), recorded for status and results.
    type: dict
    default: {}
  api_key:
    description:
      - API key that clients of the service send, recorded in the owner-only spec for the
        status probes. Never returned or logged.
    type: str
    default: ""
  manager:
    description:
      - Who supervises the service. V(auto) picks V(systemd) when systemd is running
        (C(/run/systemd/system) exists), else V(process).
      - V(systemd) writes C(servelab-<name>.service) into O(unit_dir), its environment
        (secrets included) into an owner-only C(service.env) in O(service_dir), enables
        and starts it. V(process) runs our supervisor in the background.
      - A service is stopped with the manager it was started with.
    type: str
    choices: [auto, systemd, process]
    default: auto
  unit_dir:
    description: Directory of systemd unit files, for O(manager=systemd).
    type: path
    default: /etc/systemd/system
  state:
    description: V(started) ensures it runs with this spec, V(stopped) stops it,
      V(restarted) always restarts it.
    type: str
    choices: [started, stopped, restarted]
    default: started
seealso:
  - module: servelab.vllm.wait_ready
"""

EXAMPLES = r"""
- name: Ensure the engine runs
  servelab.vllm.local_service:
    name: engine-0
    service_dir: /var/lib/servelab/stacks/baseline/engine-0
    argv: [/opt/venv/bin/python, -m, vllm.entrypoints.openai.api_server, --port, "8100"]
    env:
      VLLM_CPU_KVCACHE_SPACE: "2"
    port: 8100
    kind: engine
    model_path: /var/cache/servelab/models/hf-model
    version: 0.25.0
"""

RETURN = r"""
action:
  description:
    - What was done. V(recorded) when only the record of what the service is changed.
  returned: always
  type: str
  sample: started
pid:
  description: Pid of the service process, when running.
  returned: always
  type: int
spec_hash:
  description: Hash of the command line and environment the service runs with.
  returned: always
  type: str
log:
  description: Path of the service's log file.
  returned: always
  type: str
manager:
  description: The service manager in charge, V(systemd) or V(process).
  returned: always
  type: str
  sample: process
"""

import inspect  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.servelab.vllm.plugins.module_utils import (  # noqa: E402
    atomic,
    net,
    service_manager,
    supervisor,
)
from ansible_collections.servelab.vllm.plugins.module_utils.service_spec import (  # noqa: E402
    KINDS,
    MANIFEST_KEY,
    Manifest,
    ServiceSpec,
)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((net.client_host(host), port)) == 0


def wait_port_free(host: str, port: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while port_in_use(host, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def start_and_exit(module: AnsibleModule, manager, record: dict, result: dict) -> None:
    """Start the recorded spec under its manager and exit with its pid."""
    name, log = module.params["name"], result["log"]
    try:
        manager.start(record, service_manager.supervisor_python(), inspect.getsource(supervisor))
    except (OSError, RuntimeError) as err:
        module.fail_json(msg=f"{name}: could not start: {err}; see {log}", **result)
    result["pid"] = manager.pid()
    if not result["pid"]:
        module.fail_json(msg=f"{name}: the service did not start; see {log}", **result)
    module.exit_json(**result)


def restart_recorded(module: AnsibleModule, current, running: bool, result: dict) -> None:
    """state=restarted without argv: stop the service and start its recorded spec again."""
    p = module.params
    sdir = p["service_dir"]
    record = supervisor.read_json(os.path.join(sdir, supervisor.SPEC))
    if not record.get("argv") or not record.get("manager"):
        module.fail_json(
            msg=f"{p['name']}: {sdir} records no command line to restart: deploy the "
            "service first (make vllm-deploy)",
            **result,
        )
    result.update(changed=True, action="restarted" if running else "started")
    result.update(manager=record["manager"], spec_hash=record.get("hash", ""))
    if module.check_mode:
        module.exit_json(**result)
    if running:
        current.stop()
        host = net.client_host(record.get(MANIFEST_KEY, {}).get("host", p["host"]))
        if record.get("port") and not wait_port_free(host, record["port"]):
            module.fail_json(
                msg=f"{p['name']}: port {record['port']} is still in use after stopping it",
                **result,
            )
    manager = service_manager.new(
        record["manager"],
        sdir,
        record.get("name", p["name"]),
        record.get("unit_dir", p["unit_dir"]),
    )
    start_and_exit(module, manager, record, result)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "service_dir": {"type": "path", "required": True},
            "argv": {"type": "list", "elements": "str"},
            "env": {"type": "dict", "default": {}},
            "secret_env": {"type": "dict", "default": {}, "no_log": True},
            "port": {"type": "int"},
            "host": {"type": "str", "default": "127.0.0.1"},
            "kind": {"type": "str", "default": "other", "choices": list(KINDS)},
            "model_path": {"type": "str", "default": ""},
            "version": {"type": "str", "default": ""},
            "placement": {"type": "dict", "default": {}},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "manager": {
                "type": "str",
                "default": "auto",
                "choices": ["auto", "systemd", "process"],
            },
            "unit_dir": {"type": "path", "default": service_manager.DEFAULT_UNIT_DIR},
            "state": {
                "type": "str",
                "default": "started",
                "choices": ["started", "stopped", "restarted"],
            },
        },
        required_if=[("state", "started", ["argv"])],
        supports_check_mode=True,
    )
    p = module.params
    sdir = p["service_dir"]
    log = os.path.join(sdir, "service.log")
    result = {"changed": False, "action": "unchanged", "log": log, "pid": 0, "spec_hash": ""}
    current = service_manager.for_dir(sdir, p["unit_dir"])
    try:
        running = current.running()
    except (OSError, RuntimeError) as err:
        module.fail_json(msg=f"{p['name']}: cannot ask its service manager: {err}", **result)
    result["manager"] = current.kind

    if p["state"] == "stopped":
        if running or (current.kind == "systemd" and os.path.exists(current.unit_path)):
            result.update(changed=True, action="stopped")
            if not module.check_mode:
                current.stop()
        module.exit_json(**result)

    if p["state"] == "restarted" and p["argv"] is None:
        restart_recorded(module, current, running, result)

    try:
        kind = service_manager.choose(p["manager"])
    except ValueError as err:
        module.fail_json(msg=f"{p['name']}: {err}", **result)
    result["manager"] = kind
    spec = ServiceSpec(
        name=p["name"],
        argv=p["argv"],
        env={k: str(v) for k, v in p["env"].items()},
        secret_env={k: str(v) for k, v in p["secret_env"].items()},
        log=log,
    )
    manifest = Manifest(
        kind=p["kind"],
        host=net.client_host(p["host"]),
        port=p["port"] or 0,
        model_path=p["model_path"],
        version=p["version"],
        api_key=p["api_key"],
        placement=p["placement"],
    )
    result["spec_hash"] = spec.digest()
    spec_path = os.path.join(sdir, supervisor.SPEC)
    previous = supervisor.read_json(spec_path)
    same = previous.get("hash") == spec.digest() and current.kind == kind
    if running and same and p["state"] == "started":
        result["pid"] = current.pid()
        if Manifest.from_spec(previous) != manifest:
            # What the service is was recorded differently (or not at all, by an older
            # servelab); what it runs is the same: no restart.
            result.update(changed=True, action="recorded")
            if not module.check_mode:
                record = {**previous, MANIFEST_KEY: manifest.to_json()}
                atomic.write_json_atomic(spec_path, record, mode=0o600)
        module.exit_json(**result)

    # A port held by anyone but the running instance itself is found before that
    # instance is touched: a bad port never takes a running stack down.
    own_port = running and previous.get("port") == p["port"]
    if p["port"] and not own_port and port_in_use(p["host"], p["port"]):
        module.fail_json(
            msg=f"{p['name']}: port {p['port']} on {p['host']} is already in use by another "
            "process: stop it or choose another port in the config (make menuconfig)",
            **result,
        )
    result.update(changed=True, action="restarted" if running else "started")
    if module.check_mode:
        module.exit_json(**result)
    if running or current.kind != kind:
        current.stop()
        if running and p["port"] and not wait_port_free(p["host"], p["port"]):
            module.fail_json(
                msg=f"{p['name']}: port {p['port']} is still in use after stopping "
                "the previous instance",
                **result,
            )
    os.makedirs(sdir, mode=0o750, exist_ok=True)
    manager = service_manager.new(kind, sdir, p["name"], p["unit_dir"])
    # The spec holds secrets in its environment: owner-only.
    record = {**spec.to_json(), "port": p["port"], "manager": kind}
    record[MANIFEST_KEY] = manifest.to_json()
    if kind == "systemd":
        record.update(unit=manager.unit, unit_dir=p["unit_dir"])
    atomic.write_json_atomic(os.path.join(sdir, supervisor.SPEC), record, mode=0o600)
    start_and_exit(module, manager, record, result)


if __name__ == "__main__":
    main()
