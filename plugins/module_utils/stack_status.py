# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Status of a group's supervised services from real probes, not from ps."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

from ansible_collections.servelab.vllm.plugins.module_utils import (
    freeze,
    net,
    readiness,
    service_manager,
    supervisor,
)
from ansible_collections.servelab.vllm.plugins.module_utils.service_spec import Manifest


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
    service_dir: str = ""
    placement: dict = field(default_factory=dict)


def _json_field(body: bytes, read) -> str:
    try:
        return read(json.loads(body))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "?"


def probe_service(service_dir: str, now: float | None = None) -> ServiceStatus:
    """Probe one service, as its manifest (written by local_service) describes it."""
    spec = supervisor.read_json(os.path.join(service_dir, supervisor.SPEC))
    manifest = Manifest.from_spec(spec)
    manager = service_manager.for_dir(service_dir)
    state = manager.state()
    name = spec.get("name", os.path.basename(service_dir))
    pid = manager.pid()
    running = pid > 0
    if manifest is None:
        return ServiceStatus(
            name=name, kind="unknown", state="up" if running else "down",
            pid=pid if running else 0, port=0, model="", version="", uptime_s=0,
            restarts=state["restarts"], model_path="", service_dir=service_dir,
            detail="started by an older servelab, which recorded no manifest: "
            "`make vllm-deploy` records it",
        )  # fmt: skip
    if running and freeze.is_frozen(pid):  # stopped while the other group is measured
        return ServiceStatus(
            name=name, kind=manifest.kind, state="frozen", pid=pid, port=manifest.port,
            model="", version=manifest.version, uptime_s=0, restarts=state["restarts"],
            detail="stopped (SIGSTOP) by a benchmark; continued when its block ends",
            model_path=manifest.model_path, service_dir=service_dir,
            placement=manifest.placement,
        )  # fmt: skip
    headers = {"Authorization": f"Bearer {manifest.api_key}"} if manifest.api_key else {}
    base = f"http://{net.client_host(manifest.host)}:{manifest.port}"
    serves_api = manifest.kind in ("engine", "router") and manifest.port > 0
    model, version = "", manifest.version
    if serves_api:
        health, _ = readiness.probe(base + "/health", timeout=3, headers=headers)
        status, body = readiness.probe(base + "/v1/models", timeout=5, headers=headers)
        if status == 200:
            model = _json_field(body, lambda d: ",".join(m["id"] for m in d["data"]))
        if manifest.kind == "engine":
            # What answers, not what was asked for: a venv can hold another build.
            status, body = readiness.probe(base + "/version", timeout=3, headers=headers)
            if status == 200:
                answered = _json_field(body, lambda d: d.get("version", ""))
                version = "" if answered == "?" else answered
    else:
        health = 200  # a port-forward or other process: up while it runs
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
        name=name,
        kind=manifest.kind,
        state=verdict,
        pid=pid if running else 0,
        port=manifest.port,
        model=model,
        version=version,
        uptime_s=int(now - started) if started else 0,
        restarts=state["restarts"],
        detail=detail,
        model_path=manifest.model_path,
        service_dir=service_dir,
        placement=manifest.placement,
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
