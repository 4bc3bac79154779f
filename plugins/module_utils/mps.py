# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MPS client guard: prove that every engine of a stack is a client of the MPS daemon.

A CUDA process without CUDA_MPS_PIPE_DIRECTORY (or with one that names another
directory) does not fail: it runs outside MPS with the whole GPU, which measures exactly
like a 100% share. Two witnesses say that a process is a client:

- plain `nvidia-smi` lists it with type M+C in its process table (the MPS server itself
  is listed as C, named nvidia-cuda-mps-server; a process outside MPS is C too);
- the control daemon's control.log has `[<date> <time> Control <pid>] NEW CLIENT <pid>
  from user <uid>: <state>` for it. Inside a container nvidia-smi may list no process,
  or the host's pids, so this line counts as well.

An engine (its service's process tree and every process marked with its service dir)
passes when one of its processes is a client and none has a CUDA context of its own.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from ansible_collections.servelab.vllm.plugins.module_utils import (
    freeze,
    mps_probe,
    service_manager,
    supervisor,
)
from ansible_collections.servelab.vllm.plugins.module_utils.service_spec import Manifest

PROCESS_TYPES = ("C", "G", "C+G", "M", "M+C")
CLIENT_TYPE = "M+C"
OUTSIDE_TYPES = ("C", "C+G")  # a CUDA context of its own: the process is not behind MPS
MPS_ENV_PREFIX = "CUDA_MPS_"
PIPE_ENV = "CUDA_MPS_PIPE_DIRECTORY"
THREADS_ENV = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
CONTROL_LOG = "control.log"
LOG_TAIL_BYTES = 1 << 20  # the log grows for the daemon's life; new clients are at its end
# An engine's read-back SM count may sit this far from device SMs x share: MPS grants whole
# TPCs of 2 SMs, rounded down (H200, 132 SMs: 80% gave 104, 20% gave 26, 10% gave 12;
# docs/evidence/h200-mps/readback.txt). Further off, the daemon applied another share.
SM_SLACK = 2
# A NEW CLIENT line older than the process (minus this) belongs to an earlier holder of
# the pid. Both clocks are this host's local time, read to the second.
CLOCK_SLACK_S = 5.0
MEMORY = re.compile(r"\d+(?:\.\d+)?\s*[KMG]i?B|N/A")
NEW_CLIENT = re.compile(
    r"^\[(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?P<frac>\.\d+)?[^\]]*\]\s+"
    r"NEW CLIENT (?P<pid>\d+) from user (?P<uid>\d+)"
)


class GuardError(Exception):
    """An engine that is not (or not yet seen as) an MPS client, worded for the user;
    proof is what was seen last (empty when nothing could be looked at)."""

    def __init__(self, msg: str, proof: dict | None = None) -> None:
        super().__init__(msg)
        self.proof = proof or {}


@dataclass
class GpuProcess:
    """One row of nvidia-smi's process table."""

    gpu: str
    pid: int
    type: str
    name: str
    memory: str
    line: str = ""  # as nvidia-smi printed it


@dataclass
class ClientLine:
    """A NEW CLIENT line of control.log; at is its time (epoch seconds, None if unread)."""

    pid: int
    uid: int
    at: float | None
    line: str


@dataclass
class EngineProof:
    """What was seen of one engine, recorded in the results."""

    name: str
    service_dir: str
    pids: list[int]
    processes: list[dict] = field(default_factory=list)  # its nvidia-smi rows
    control_log: list[str] = field(default_factory=list)  # its NEW CLIENT lines
    env: dict[str, str] = field(default_factory=dict)  # CUDA_MPS_* of its main process
    clients: list[int] = field(default_factory=list)  # pids proven to be MPS clients
    read_back: dict = field(default_factory=dict)  # mps_probe with its CUDA_MPS_* (sms)
    problem: str = ""
    outside: bool = False  # a process of it has a CUDA context outside MPS: final


def parse_processes(text: str) -> list[GpuProcess]:
    """The process table of plain nvidia-smi output.

    Rows are `| GPU [GI CI] PID Type Process-name [GPU-Memory] |`: old drivers have no
    GI and CI columns, and newer ones (570, 580) a wider PID column; the columns are read
    outward from the Type column, so every layout parses alike."""
    rows: list[GpuProcess] = []
    in_table = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("|"):
            continue
        if "Processes:" in stripped:
            in_table = True
            continue
        if in_table:
            row = _process_row(stripped.strip("|").split())
            if row:
                row.line = stripped
                rows.append(row)
    return rows


def _process_row(tokens: list[str]) -> GpuProcess | None:
    if len(tokens) < 3 or not tokens[0].isdigit():
        return None  # the header, the separator, "No running processes found"
    for i in range(2, len(tokens)):
        if tokens[i] in PROCESS_TYPES and tokens[i - 1].isdigit():
            rest = tokens[i + 1 :]
            memory = rest.pop() if len(rest) > 1 and MEMORY.fullmatch(rest[-1]) else ""
            return GpuProcess(tokens[0], int(tokens[i - 1]), tokens[i], " ".join(rest), memory)
    return None


def parse_control_log(text: str) -> list[ClientLine]:
    """The NEW CLIENT lines of an MPS control.log."""
    found = []
    for line in text.splitlines():
        match = NEW_CLIENT.match(line.strip())
        if not match:
            continue
        try:
            at = time.mktime(time.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S"))
            at += float(match["frac"] or 0)
        except (ValueError, OverflowError):
            at = None
        found.append(ClientLine(int(match["pid"]), int(match["uid"]), at, line.strip()))
    return found


def read_control_log(log_dir: str) -> str:
    """The end of log_dir/control.log ('' when there is none)."""
    path = os.path.join(log_dir, CONTROL_LOG)
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - LOG_TAIL_BYTES))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def nvidia_smi_table(nvidia_smi: str = "nvidia-smi") -> str:
    path = shutil.which(nvidia_smi)
    if not path:
        raise GuardError(
            f"{nvidia_smi} is not on this host's PATH: the MPS guard reads its process table "
            "to prove that each engine is an MPS client"
        )
    proc = subprocess.run([path], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise GuardError(f"nvidia-smi failed: {(proc.stderr or proc.stdout).strip()[:300]}")
    return proc.stdout


def mps_env(pid: int) -> dict[str, str] | None:
    """The CUDA_MPS_* variables a process started with (None when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return None
    env = {}
    for entry in entries:
        name, sep, value = entry.decode(errors="replace").partition("=")
        if sep and name.startswith(MPS_ENV_PREFIX):
            env[name] = value
    return env


@dataclass
class Engine:
    name: str
    service_dir: str
    pids: list[int]


def engines(stack_dir: str, names: list[str] | None = None) -> list[Engine]:
    """The stack's engine services (those named, else every one that runs), each with its
    live processes: the service's process tree and what carries its SERVELAB_SERVICE."""
    stack_dir = os.path.abspath(stack_dir)
    marked = supervisor.marked(stack_dir) if os.path.isdir(stack_dir) else {}
    found = []
    for base in sorted(os.listdir(stack_dir)) if os.path.isdir(stack_dir) else []:
        service_dir = os.path.join(stack_dir, base)
        spec = supervisor.read_json(os.path.join(service_dir, supervisor.SPEC))
        manifest = Manifest.from_spec(spec)
        kind = manifest.kind if manifest else ("engine" if base.startswith("engine-") else "")
        if not spec or kind != "engine" or (names is not None and base not in names):
            continue
        main = service_manager.for_dir(service_dir).pid()
        pids = set(freeze.tree(main) if main else [])
        pids.update(pid for pid, where in marked.items() if where == service_dir)
        if names is None and not pids:
            continue
        found.append(Engine(spec.get("name", base), service_dir, sorted(pids)))
    missing = sorted(set(names or []) - {os.path.basename(e.service_dir) for e in found})
    if missing:
        raise GuardError(f"{stack_dir} has no engine service {', '.join(missing)}")
    return found


def _same_dir(a: str, b: str) -> bool:
    return os.path.realpath(a.rstrip("/") or "/") == os.path.realpath(b.rstrip("/") or "/")


def likely_cause(pids: list[int], envs: dict[int, dict[str, str] | None], pipe_dir: str) -> str:
    """Why processes are not clients, from the CUDA_MPS_PIPE_DIRECTORY they started with."""
    for pid in pids:
        env = envs.get(pid)
        if env is None:
            continue
        if PIPE_ENV not in env:
            return (
                f"{PIPE_ENV} is not set in the environment of pid {pid}, so CUDA looks for "
                f"the daemon in its default directory; the daemon listens in {pipe_dir}"
            )
        if not _same_dir(env[PIPE_ENV], pipe_dir):
            return (
                f"{PIPE_ENV} of pid {pid} is {env[PIPE_ENV]}, but the daemon listens in {pipe_dir}"
            )
    return (
        f"the environment names the daemon's pipe directory {pipe_dir}: check that the "
        f"daemon answers (`echo get_server_list | CUDA_MPS_PIPE_DIRECTORY={pipe_dir} "
        "nvidia-cuda-mps-control`) and read its control.log"
    )


def judge(
    engine: Engine,
    table: list[GpuProcess],
    clients: list[ClientLine],
    pipe_dir: str,
    envs: dict[int, dict[str, str] | None],
    starts: dict[int, float | None],
) -> EngineProof:
    """One engine's proof; problem is empty when it is an MPS client."""
    own = set(engine.pids)
    rows = [r for r in table if r.pid in own]
    lines = [
        c
        for c in clients
        if c.pid in own
        and (c.at is None or starts.get(c.pid) is None or c.at >= starts[c.pid] - CLOCK_SLACK_S)
    ]
    main_env = next((envs[p] for p in engine.pids if envs.get(p) is not None), {})
    proof = EngineProof(
        name=engine.name,
        service_dir=engine.service_dir,
        pids=engine.pids,
        processes=[asdict(r) for r in rows],
        control_log=[c.line for c in lines],
        env=dict(sorted((main_env or {}).items())),
        clients=sorted({r.pid for r in rows if r.type == CLIENT_TYPE} | {c.pid for c in lines}),
    )
    listed = ", ".join(f"pid {r.pid} as {r.type} ({r.name}, {r.memory or '?'})" for r in rows)
    seen = f"nvidia-smi lists {listed}" if rows else "nvidia-smi lists none of them"
    outside = [r.pid for r in rows if r.type in OUTSIDE_TYPES]
    if not engine.pids:
        proof.problem = f"{engine.name} has no live process: it is not running"
    elif outside:
        proof.outside = True
        proof.problem = (
            f"{engine.name} (pids {_join(engine.pids)}) runs outside MPS: {seen}; type C is "
            "a CUDA context of its own, an MPS client is M+C. Likely cause: "
            + likely_cause(outside, envs, pipe_dir)
        )
    elif not proof.clients:
        proof.problem = (
            f"{engine.name} (pids {_join(engine.pids)}) is not seen as an MPS client: {seen} "
            "and control.log has no NEW CLIENT line for them. Likely cause: "
            + likely_cause(engine.pids, envs, pipe_dir)
        )
    return proof


def _join(pids: list[int]) -> str:
    return ", ".join(str(p) for p in pids)


def prove(
    stack_dir: str,
    pipe_dir: str,
    log_dir: str,
    names: list[str] | None = None,
    nvidia_smi: str = "nvidia-smi",
) -> list[EngineProof]:
    """One look at every engine of the stack."""
    found = engines(stack_dir, names)
    if not found:
        raise GuardError(f"no engine of {stack_dir} runs: nothing to prove")
    table = parse_processes(nvidia_smi_table(nvidia_smi))
    clients = parse_control_log(read_control_log(log_dir))
    pids = [p for e in found for p in e.pids]
    envs = {p: mps_env(p) for p in pids}
    starts = {p: supervisor.process_start_time(p) for p in pids}
    return [judge(e, table, clients, pipe_dir, envs, starts) for e in found]


def run_probe(env: dict[str, str], processes: bool = False) -> dict:
    """mps_probe's answer, run as a process of its own with this process's environment
    but for CUDA_MPS_*, which come from env (a probe is a client for its whole life)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(MPS_ENV_PREFIX)}
    argv = [sys.executable, "-c", probe_source()] + (["--processes"] if processes else [])
    try:
        proc = subprocess.run(
            argv, env={**base, **env}, capture_output=True, text=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": "the SM read-back probe did not answer within 120 s"}
    return parse_probe(proc.stdout, proc.stderr)


def probe_source() -> str:
    """mps_probe's source, to run where it is not installed (python3 -c, kubectl exec)."""
    return inspect.getsource(mps_probe)


def parse_probe(stdout: str, stderr: str = "") -> dict:
    """The JSON object mps_probe printed last, or an error naming what came instead."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict):
            return found
    return {"error": f"the SM read-back probe printed no result: {(stderr or stdout)[-300:]}"}


def probe_sms(found: dict) -> int | None:
    """The SMs a probe's context may use: its execution affinity, else the device count
    it saw (both equal under MPS on the H200)."""
    return found.get("context_sms") or found.get("device_sms")


def read_back(proofs: list[EngineProof], probe=run_probe) -> dict:
    """The SMs each engine may use, read back by a client with its CUDA_MPS_* environment,
    and the device's own count, from a context outside MPS (a pipe directory where no
    daemon listens). An engine whose SMs are not its share of the device's, whole TPCs
    apart (SM_SLACK), was given another share than it asked for: a problem."""
    with tempfile.TemporaryDirectory(prefix="servelab-no-mps-") as nowhere:
        outside = probe({PIPE_ENV: nowhere})
    device = outside.get("device_sms")
    for proof in proofs:
        proof.read_back = probe(proof.env)
        sms, asked = probe_sms(proof.read_back), proof.env.get(THREADS_ENV)
        if not (device and sms and asked):
            continue
        wanted = device * float(asked) / 100
        if abs(sms - wanted) > SM_SLACK:
            proof.problem = (
                f"{proof.name} asked for {asked}% of the GPU ({THREADS_ENV}) but a client "
                f"with its environment may use {sms} of {device} SMs ({100 * sms / device:.1f}%): "
                "the daemon applies another share (a client cannot go above the daemon's "
                "set_default_active_thread_percentage)"
            )
    return {"device_sms": device, "error": outside.get("error", "")}


def summarize(
    proofs: list[EngineProof], pipe_dir: str, log_dir: str, device: dict | None = None
) -> dict:
    """The proof as the results record it (no secrets: only CUDA_MPS_* variables)."""
    types = sorted({p["type"] for e in proofs for p in e.processes})
    shares = sorted({e.env[THREADS_ENV] for e in proofs if THREADS_ENV in e.env})
    device = device or {}
    total = device.get("device_sms")
    sms = sorted({probe_sms(e.read_back) for e in proofs if probe_sms(e.read_back)})
    return {
        "pipe_dir": pipe_dir,
        "log_dir": log_dir,
        "engines": [{k: v for k, v in asdict(e).items() if k != "outside"} for e in proofs],
        "clients": sum(len(e.clients) for e in proofs),
        "types": types,
        "active_thread_percentages": shares,
        # Read back (read_back): the SMs the engines may use, of the device's.
        "device_sms": total,
        "sms": sms,
        "read_back_error": device.get("error")
        or next((e.read_back["error"] for e in proofs if e.read_back.get("error")), ""),
        "ok": all(not e.problem for e in proofs),
    }


def guard(
    stack_dir: str,
    pipe_dir: str,
    log_dir: str,
    names: list[str] | None = None,
    nvidia_smi: str = "nvidia-smi",
    timeout: float = 15.0,
    interval: float = 1.0,
    sleep=time.sleep,
    clock=time.monotonic,
    probe=run_probe,
) -> dict:
    """Look until every engine is an MPS client, or raise GuardError naming those that are
    not. A CUDA context appears a little after /health at worst, so an engine not seen yet
    is looked at again until timeout; one with a context outside MPS fails at once. Then
    read back the share each client was given (read_back)."""
    deadline = clock() + timeout
    while True:
        proofs = prove(stack_dir, pipe_dir, log_dir, names, nvidia_smi)
        bad = [p for p in proofs if p.problem]
        if not bad:
            device = read_back(proofs, probe)
            summary = summarize(proofs, pipe_dir, log_dir, device)
            if not summary["ok"]:
                raise GuardError(" | ".join(p.problem for p in proofs if p.problem), summary)
            return summary
        if any(p.outside for p in bad) or clock() >= deadline:
            raise GuardError(
                " | ".join(p.problem for p in bad)
                + f" (an engine outside MPS has the whole GPU, whatever its {THREADS_ENV}, "
                "and measures like 100%)",
                summarize(proofs, pipe_dir, log_dir),
            )
        sleep(interval)


# Kubernetes (NVIDIA's DRA driver, dra-driver-nvidia-gpu 0.4.0): a claim shared with MPS
# gets a control daemon Deployment of its own, mps-control-daemon-<claim uid>-<hash>, in
# the driver's namespace (templates/mps-control-daemon.tmpl.yaml). It runs the host
# driver's tools under chroot /driver-root, and sets the claim's share with
# set_default_active_thread_percentage. Engine containers get only CUDA_MPS_PIPE_DIRECTORY
# and the pipe directory, through CDI; nothing here can see the host's pids.
DAEMON_PREFIX = "mps-control-daemon-"
MPS_SERVER = "nvidia-cuda-mps-server"  # listed by nvidia-smi as C, beside its M+C clients
DAEMON_COMMAND = (
    "chroot /driver-root sh -c 'for s in $(echo get_server_list | nvidia-cuda-mps-control); "
    'do echo "server $s"; echo "get_client_list $s" | nvidia-cuda-mps-control; done; '
    'echo "default $(echo get_default_active_thread_percentage | nvidia-cuda-mps-control)"; '
    "nvidia-smi'"
)


def pod_probe_command(python: str = "python3") -> str:
    """The probe as one command line for kubectl exec (kubernetes.core.k8s_exec splits it
    with shlex): its source travels base64-encoded, so no quoting can break it, and it
    lists the container's processes (the engine's) with their CUDA_MPS_* variables."""
    code = base64.b64encode(probe_source().encode()).decode()
    return f"{python} -c \"import base64; exec(base64.b64decode('{code}'))\" --processes"


def cluster_commands(python: str = "python3") -> dict:
    """What the bench role runs on Kubernetes: the probe in each engine container, the
    query in the claim's daemon pod, and the prefix of that pod's name."""
    return {"probe": pod_probe_command(python), "daemon": DAEMON_COMMAND, "prefix": DAEMON_PREFIX}


def exec_answer(result: dict) -> dict:
    """A registered kubernetes.core.k8s_exec result (failed_when false, in a loop over
    pods or not) as judge_pods reads it: pod, rc, stdout, stderr. A call that failed
    before the command ran has no rc: its message is the stderr."""
    args = (result.get("invocation") or {}).get("module_args") or {}
    item = result.get("item") or {}
    pod = args.get("pod") or (item.get("metadata") or {}).get("name", "")
    return {
        "pod": pod,
        "rc": result.get("rc", 1),
        "stdout": result.get("stdout") or "",
        "stderr": result.get("stderr") or result.get("msg") or "",
    }


def parse_daemon(text: str) -> dict:
    """DAEMON_COMMAND's output: each server's client pids (host pids), the daemon's default
    share, and nvidia-smi's process table (M+C rows are clients)."""
    servers: dict[str, list[int]] = {}
    current = None
    default = None
    for line in text.splitlines():
        word = line.strip()
        if word.startswith("server ") and word[7:].isdigit():
            current = word[7:]
            servers[current] = []
        elif word.isdigit() and current is not None:
            servers[current].append(int(word))
        elif word.startswith("default "):
            default, current = word[8:].strip(), None
        elif word.startswith("+") or word.startswith("|"):
            current = None
    return {
        "servers": servers,
        "default_active_thread_percentage": default,
        "processes": [asdict(r) for r in parse_processes(text)],
    }


def judge_pods(pods: list[dict], daemon: dict | None = None) -> dict:
    """The MPS proof of a group's engine pods, from each pod's probe (pod_probe_command,
    run in its engine container) and the claim's daemon (DAEMON_COMMAND, where it could
    run). An engine pod passes when its container names a pipe directory, every process
    in it started with that same directory, and a probe with the container's environment
    became a client (under the driver's EXCLUSIVE_PROCESS mode a context outside MPS is
    refused) and read back the SMs its share gives."""
    proofs = []
    for pod in pods:
        found = parse_probe(pod.get("stdout", ""), pod.get("stderr", ""))
        procs = found.pop("processes", [])
        pipe = (found.get("env") or {}).get(PIPE_ENV, "")
        proof = EngineProof(
            name=pod["pod"],
            service_dir="",
            pids=[p["pid"] for p in procs],
            env=dict(found.get("env") or {}),
            read_back=found,
        )
        astray = [p for p in procs if (p.get("env") or {}).get(PIPE_ENV, "") != pipe]
        if pod.get("rc"):
            proof.problem = (
                f"the MPS probe failed in pod {pod['pod']} (exit {pod['rc']}): "
                f"{(pod.get('stderr') or pod.get('stdout') or '')[-300:]}"
            )
        elif not pipe:
            proof.problem = (
                f"pod {pod['pod']}'s engine container has no {PIPE_ENV}: the claim's MPS "
                "daemon was not wired into it (CDI), so its engine is not an MPS client"
            )
        elif not procs:
            proof.problem = f"pod {pod['pod']} shows no engine process to the probe"
        elif astray:
            listed = ", ".join(
                f"pid {p['pid']} ({p['program']}) {(p.get('env') or {}).get(PIPE_ENV, 'unset')}"
                for p in astray
            )
            proof.problem = (
                f"in pod {pod['pod']}, {PIPE_ENV} is {pipe} but not for {listed}: "
                "those processes are outside MPS"
            )
        elif not probe_sms(found) and "libcuda.so.1 cannot be loaded" not in found.get("error", ""):
            proof.problem = (
                f"a process with pod {pod['pod']}'s environment got no CUDA context through "
                f"MPS ({found.get('error', 'no answer')}): the engine's cannot be one either"
            )
        else:
            proof.clients = proof.pids
        proofs.append(proof)
    summary = summarize(proofs, (proofs[0].env.get(PIPE_ENV, "") if proofs else ""), "")
    summary["clients"] = sum(1 for p in proofs if p.clients)
    summary["ok"] = summary["ok"] and bool(proofs)
    if daemon is not None:
        parsed = parse_daemon(daemon.get("stdout", "")) if not daemon.get("rc") else {}
        summary["daemon"] = {
            "pod": daemon.get("pod", ""),
            "error": (daemon.get("stderr") or daemon.get("stdout") or "")[-300:]
            if daemon.get("rc")
            else "",
            **parsed,
        }
        summary["types"] = sorted(
            {r["type"] for r in parsed.get("processes", []) if r["name"] != MPS_SERVER}
        )
    return summary
