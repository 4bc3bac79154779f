# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Status of a group's supervised services from real probes, not from ps."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

from ansible_collections.servelab.vllm.plugins.module_utils import (
    freeze,
    readiness,
    service_manager,
    supervisor,
)


@dataclass
class ServiceStatus:
    name: str
    kind: str
    state: str  # up, down, starting, frozen
    pid: int
    port: int
    model: str
    version: str
    uptime_s: int
    restarts: int
    detail: str
    model_path: str


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv and argv.index(flag) + 1 < len(argv) else ""


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _program(argv: list[str]) -> str:
    """The served program, past a launcher such as `taskset -c 0`."""
    return next(
        (a for a in argv if a.endswith(("/python", "/vllm-router"))), argv[0] if argv else ""
    )


def _router_version(argv: list[str]) -> str:
    # The router venv is named vllm-router-<version> by the vllm_router role.
    program = _program(argv)
    parent = os.path.basename(os.path.dirname(os.path.dirname(program))) if program else ""
    return parent.removeprefix("vllm-router-") if parent.startswith("vllm-router-") else ""


def probe_service(service_dir: str, now: float | None = None) -> ServiceStatus:
    spec = supervisor.read_json(os.path.join(service_dir, supervisor.SPEC))
    manager = service_manager.for_dir(service_dir)
    state = manager.state()
    argv = spec.get("argv", [])
    kind = "router" if _program(argv).endswith("vllm-router") else "engine"
    host = _client_host(_arg(argv, "--host"))
    port = int(_arg(argv, "--port") or 0)
    key = spec.get("env", {}).get("VLLM_API_KEY") or _arg(argv, "--api-key")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    base = f"http://{host}:{port}"
    pid = manager.pid()
    running = pid > 0
    if running and freeze.is_frozen(pid):  # stopped while the other group is measured
        return ServiceStatus(
            name=spec.get("name", os.path.basename(service_dir)), kind=kind, state="frozen",
            pid=pid, port=port, model="", version="", uptime_s=0, restarts=state["restarts"],
            detail="stopped (SIGSTOP) by a benchmark; continued when its block ends",
            model_path=_arg(argv, "--model"),
        )  # fmt: skip
    health, _ = readiness.probe(base + "/health", timeout=3, headers=headers) if port else (0, b"")
    model = version = ""
    status, body = readiness.probe(base + "/v1/models", timeout=5, headers=headers)
    if status == 200:
        try:
            model = ",".join(m["id"] for m in json.loads(body)["data"])
        except (ValueError, KeyError, TypeError):
            model = "?"
    if kind == "engine":
        status, body = readiness.probe(base + "/version", timeout=3, headers=headers)
        if status == 200:
            try:
                version = json.loads(body).get("version", "")
            except ValueError:
                version = ""
    else:
        version = _router_version(argv)
    started = supervisor.process_start_time(pid) if running else None
    now = time.time() if now is None else now
    if health == 200 and running:
        verdict, detail = "up", ""
    elif running:
        verdict, detail = "starting", f"/health answered {health or 'nothing'}"
    else:
        verdict = "down"
        detail = f"{manager.kind} {state['state']}, last exit {state['last_exit']}"
    return ServiceStatus(
        name=spec.get("name", os.path.basename(service_dir)),
        kind=kind,
        state=verdict,
        pid=pid if running else 0,
        port=port,
        model=model,
        version=version,
        uptime_s=int(now - started) if started else 0,
        restarts=state["restarts"],
        detail=detail,
        model_path=_arg(argv, "--model"),
    )


def stack_status(stack_dir: str) -> list[dict]:
    if not os.path.isdir(stack_dir):
        return []
    dirs = sorted(
        os.path.join(stack_dir, d)
        for d in os.listdir(stack_dir)
        if os.path.isfile(os.path.join(stack_dir, d, supervisor.SPEC))
    )
    return [asdict(probe_service(d)) for d in dirs]


def orphans(stack_dir: str) -> list[dict]:
    """Processes of the stack (marked with a service dir under stack_dir) that no live
    service owns: left by a service whose main process died, or by a removed stack."""
    owned: set[int] = set()
    if os.path.isdir(stack_dir):
        for name in os.listdir(stack_dir):
            service_dir = os.path.join(stack_dir, name)
            if os.path.isfile(os.path.join(service_dir, supervisor.SPEC)):
                pid = service_manager.for_dir(service_dir).pid()
                owned.update(freeze.tree(pid) if pid else [])
    return [
        {
            "pid": pid,
            "service": os.path.basename(service),
            "command": supervisor.cmdline(pid)[:80] or "?",
        }
        for pid, service in sorted(supervisor.marked(stack_dir).items())
        if pid not in owned
    ]


def format_orphans(found: list[dict]) -> list[str]:
    return [
        f"orphan: pid {o['pid']} ({o['service']}: {o['command']}) belongs to no running "
        "service; `make vllm-teardown` stops it"
        for o in found
    ]


def format_table(rows: list[dict]) -> list[str]:
    header = ("service", "state", "pid", "port", "model", "version", "uptime", "restarts")
    lines = [
        (
            r["name"],
            r["state"],
            str(r["pid"] or "-"),
            str(r["port"]),
            r["model"] or "-",
            r["version"] or "-",
            f"{r['uptime_s']}s" if r["uptime_s"] else "-",
            str(r["restarts"]),
        )
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *lines, strict=False)]
    rows_out = [header, *lines]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows_out]
