"""The MPS client guard: nvidia-smi's process table, control.log, and the module.

The module runs through Ansible against real sleeping processes that carry an engine's
SERVELAB_SERVICE marker, with a stand-in nvidia-smi first on PATH that lists them as
M+C (MPS clients) or C (a CUDA context outside MPS)."""

import json
import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from ansible_collections.servelab.vllm.plugins.module_utils import mps, records
from ansible_collections.servelab.vllm.plugins.module_utils.records import BlockSummary
from ansible_collections.servelab.vllm.plugins.module_utils.results import report
from helpers.modules import ansible_module
from helpers.stack import TOP

# Driver 470-535 layout (GI and CI columns, narrow PID), as Azure Stack Edge's MPS docs
# show it: clients are M+C, the MPS server itself is C.
OLDER = """\
+-----------------------------------------------------------------------------+
| Processes:                                                                  |
|  GPU   GI   CI        PID   Type   Process name                  GPU Memory |
|        ID   ID                                                   Usage      |
|=============================================================================|
|    0   N/A  N/A     56832    M+C   /tmp/nbody                        107MiB |
|    0   N/A  N/A     56900    M+C   /tmp/nbody                        107MiB |
|    0   N/A  N/A    122792      C   nvidia-cuda-mps-server             25MiB |
+-----------------------------------------------------------------------------+
"""

# Driver 550+ layout (wider PID column), here 580 on an H100, below its GPU table.
NEWER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |
+-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:19:00.0 Off |                    0 |
| N/A   31C    P0            117W /  700W |   65011MiB /  81559MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+

+-----------------------------------------------------------------------------------------+
| Processes:                                                                              |
|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |
|        ID   ID                                                               Usage      |
|=========================================================================================|
|    0   N/A  N/A           43436      C   nvidia-cuda-mps-server                   30MiB |
|    0   N/A  N/A           43462    M+C   VLLM::EngineCore                      32512MiB |
|    1    3    0          1234567      C   python3                                 149MiB |
+-----------------------------------------------------------------------------------------+
"""

# Before driver 450: no GI/CI columns.
OLDEST = """\
+-----------------------------------------------------------------------------+
| Processes:                                                       GPU Memory |
|  GPU       PID   Type   Process name                             Usage      |
|=============================================================================|
|    0     87315      C   python                                       439MiB |
+-----------------------------------------------------------------------------+
"""

NONE = """\
+-----------------------------------------------------------------------------------------+
| Processes:                                                                              |
|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |
|        ID   ID                                                               Usage      |
|=========================================================================================|
|  No running processes found                                                             |
+-----------------------------------------------------------------------------------------+
"""


def _row(pid: int, kind: str, name: str = "VLLM::EngineCore") -> str:
    return f"|    0   N/A  N/A   {pid:>14}   {kind:>4}   {name:<33} 32512MiB |"


def table(rows: list[str]) -> str:
    head = NONE.splitlines()[:5]
    return "\n".join([*head, *rows, head[0]]) + "\n"


def test_the_process_table_parses_in_every_layout():
    older = mps.parse_processes(OLDER)
    assert [(p.pid, p.type, p.name, p.memory) for p in older] == [
        (56832, "M+C", "/tmp/nbody", "107MiB"),
        (56900, "M+C", "/tmp/nbody", "107MiB"),
        (122792, "C", "nvidia-cuda-mps-server", "25MiB"),
    ]
    newer = mps.parse_processes(NEWER)  # the GPU table above is not read as processes
    assert [(p.gpu, p.pid, p.type, p.name) for p in newer] == [
        ("0", 43436, "C", "nvidia-cuda-mps-server"),
        ("0", 43462, "M+C", "VLLM::EngineCore"),
        ("1", 1234567, "C", "python3"),  # a MIG instance: GI 3, CI 0 are not the pid
    ]
    assert [(p.pid, p.type) for p in mps.parse_processes(OLDEST)] == [(87315, "C")]
    assert mps.parse_processes(NONE) == []


def test_control_log_new_client_lines_in_both_wordings():
    log = (
        # NVIDIA's MPS docs (control log example)
        "[2013-08-05 13:02:10.866 Control 13894] NEW CLIENT 19276 from user 500: "
        "Server already exists\n"
        "[2013-08-05 13:02:10.961 Control 13894] Accepting connection...\n"
        # driver 580, a first client while the server starts
        "[2026-05-31 23:48:21.671 Control 11107] NEW CLIENT 11801 from user 1000: Server is "
        "not ready, push client to pending list\n"
        "[2026-05-31 23:48:21.748 Control 11107] NEW SERVER 11803: Ready\n"
    )
    lines = mps.parse_control_log(log)
    assert [(c.pid, c.uid) for c in lines] == [(19276, 500), (11801, 1000)]
    expected = time.mktime(time.strptime("2013-08-05 13:02:10", "%Y-%m-%d %H:%M:%S")) + 0.866
    assert lines[0].at == pytest.approx(expected)
    assert lines[1].line.endswith("push client to pending list")


@pytest.fixture
def stack(tmp_path):
    """A stack dir with engine-0 and a way to start its 'processes': sleeps that carry
    the engine's SERVELAB_SERVICE and the given CUDA_MPS_* environment."""
    procs: list[subprocess.Popen] = []
    service = tmp_path / "stack" / "engine-0"
    service.mkdir(parents=True)
    spec = {"name": "baseline-engine-0", "argv": [], "env": {}, "service": {"kind": "engine"}}
    (service / "spec.json").write_text(json.dumps(spec))
    mps_dir = tmp_path / "mps"
    (mps_dir / "pipe").mkdir(parents=True)
    (mps_dir / "log").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\ncat "{tmp_path}/table.txt"\n')
    smi.chmod(0o755)

    def start(**env: str) -> int:
        base = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_MPS_")}
        proc = subprocess.Popen(
            ["sleep", "300"], env={**base, "SERVELAB_SERVICE": str(service), **env}
        )
        procs.append(proc)
        # Until the child has exec'd, /proc shows the parent's environment: the guard
        # would find no process of the service (a loaded CI machine hit that).
        deadline = time.monotonic() + 10
        while b"SERVELAB_SERVICE=" not in Path(f"/proc/{proc.pid}/environ").read_bytes():
            assert time.monotonic() < deadline, "the stand-in engine never exec'd"
            time.sleep(0.01)
        return proc.pid

    yield SimpleNamespace(
        dir=tmp_path / "stack",
        pipe=str(mps_dir / "pipe"),
        log=str(mps_dir / "log"),
        bin=str(bin_dir),
        table=tmp_path / "table.txt",
        start=start,
    )
    for proc in procs:
        proc.kill()
        proc.wait()


def guard_module(s, **extra) -> tuple[subprocess.CompletedProcess, dict]:
    args = f"stack_dir={s.dir} pipe_dir={s.pipe} log_dir={s.log} engines=engine-0"
    args += "".join(f" {k}={v}" for k, v in extra.items())
    done = ansible_module("servelab.vllm.mps_guard", args)
    # `ansible` prints "localhost | SUCCESS => {json}" (or FAILED!).
    return done, json.loads(done.stdout.split("=>", 1)[1])


def test_the_module_passes_mps_clients_and_records_the_proof(stack, monkeypatch):
    env = {"CUDA_MPS_PIPE_DIRECTORY": stack.pipe, "CUDA_MPS_LOG_DIRECTORY": stack.log}
    api = stack.start(**env, CUDA_MPS_ACTIVE_THREAD_PERCENTAGE="50")
    core = stack.start(**env, CUDA_MPS_ACTIVE_THREAD_PERCENTAGE="50")
    # The API server holds no CUDA context; EngineCore is the client; the MPS server
    # (another pid, type C) belongs to no engine.
    stack.table.write_text(table([_row(7, "C", "nvidia-cuda-mps-server"), _row(core, "M+C")]))
    monkeypatch.setenv("PATH", f"{stack.bin}{os.pathsep}{os.environ['PATH']}")
    done, out = guard_module(stack)
    assert done.returncode == 0, done.stdout + done.stderr
    proof = out["proof"]
    engine = proof["engines"][0]
    assert engine["name"] == "baseline-engine-0"
    assert engine["pids"] == sorted([api, core])
    assert engine["clients"] == [core]
    assert [(p["pid"], p["type"]) for p in engine["processes"]] == [(core, "M+C")]
    assert engine["env"] == {**env, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50"}
    assert (proof["clients"], proof["types"], proof["ok"]) == (1, ["M+C"], True)
    assert records.describe_mps([proof]) == "MPS: 1 client(s), M+C, 50%"


def test_the_module_fails_at_once_on_a_process_outside_mps(stack, monkeypatch):
    api = stack.start(CUDA_MPS_PIPE_DIRECTORY=stack.pipe)
    core = stack.start()  # lost CUDA_MPS_PIPE_DIRECTORY: alone on the GPU
    stack.table.write_text(table([_row(core, "C", "python3")]))
    monkeypatch.setenv("PATH", f"{stack.bin}{os.pathsep}{os.environ['PATH']}")
    began = time.monotonic()
    done, out = guard_module(stack, timeout=60)
    assert done.returncode != 0
    assert time.monotonic() - began < 45  # type C is final: no waiting for the timeout
    msg = out["msg"]
    assert f"baseline-engine-0 (pids {min(api, core)}, {max(api, core)}) runs outside MPS" in msg
    assert f"nvidia-smi lists pid {core} as C (python3, 32512MiB)" in msg
    assert f"CUDA_MPS_PIPE_DIRECTORY is not set in the environment of pid {core}" in msg
    assert stack.pipe in msg and "measures like 100%" in msg
    assert out["proof"]["ok"] is False
    assert out["proof"]["engines"][0]["processes"][0]["type"] == "C"


def test_a_pipe_directory_other_than_the_daemons_is_named(stack, monkeypatch):
    core = stack.start(CUDA_MPS_PIPE_DIRECTORY="/tmp/elsewhere")
    stack.table.write_text(table([_row(core, "C")]))
    monkeypatch.setenv("PATH", f"{stack.bin}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(mps.GuardError) as err:
        mps.guard(str(stack.dir), stack.pipe, stack.log, ["engine-0"], timeout=0)
    assert (
        f"CUDA_MPS_PIPE_DIRECTORY of pid {core} is /tmp/elsewhere, but the daemon listens "
        f"in {stack.pipe}" in str(err.value)
    )


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + ".250"


def test_a_new_client_line_proves_a_client_nvidia_smi_does_not_list(stack, monkeypatch):
    # In a container nvidia-smi may list no process; the daemon's log still names the pid.
    core = stack.start(CUDA_MPS_PIPE_DIRECTORY=stack.pipe, CUDA_MPS_ACTIVE_THREAD_PERCENTAGE="20")
    stack.table.write_text(NONE)
    line = (
        f"[{_stamp(time.time())} Control  4242] NEW CLIENT {core} from user 0: "
        "Server already exists"
    )
    Path(stack.log, "control.log").write_text(
        f"[{_stamp(time.time())} Control  4242] Accepting connection...\n{line}\n"
    )
    monkeypatch.setenv("PATH", f"{stack.bin}{os.pathsep}{os.environ['PATH']}")
    proof = mps.guard(str(stack.dir), stack.pipe, stack.log, timeout=0)
    assert proof["engines"][0]["control_log"] == [line]
    assert proof["engines"][0]["clients"] == [core]
    assert records.describe_mps([proof]) == "MPS: 1 client(s), control.log only, 20%"


def test_an_engine_never_seen_as_a_client_fails_after_the_timeout(stack, monkeypatch):
    core = stack.start(CUDA_MPS_PIPE_DIRECTORY=stack.pipe)
    stack.table.write_text(NONE)
    # A NEW CLIENT line from before the process started was another holder of its pid.
    Path(stack.log, "control.log").write_text(
        f"[{_stamp(time.time() - 3600)} Control  4242] NEW CLIENT {core} from user 0: "
        "Server already exists\n"
    )
    monkeypatch.setenv("PATH", f"{stack.bin}{os.pathsep}{os.environ['PATH']}")
    looks = []
    with pytest.raises(mps.GuardError) as err:
        mps.guard(str(stack.dir), stack.pipe, stack.log, timeout=0.3, interval=0.1,
                  sleep=lambda s: (looks.append(s), time.sleep(s)))  # fmt: skip
    assert looks  # looked again before giving up
    msg = str(err.value)
    assert f"baseline-engine-0 (pids {core}) is not seen as an MPS client" in msg
    assert "nvidia-smi lists none of them and control.log has no NEW CLIENT line" in msg
    assert "the environment names the daemon's pipe directory" in msg


def test_a_missing_engine_and_a_missing_nvidia_smi_are_named(stack, monkeypatch):
    stack.start(CUDA_MPS_PIPE_DIRECTORY=stack.pipe)
    with pytest.raises(mps.GuardError, match="has no engine service engine-1"):
        mps.guard(str(stack.dir), stack.pipe, stack.log, ["engine-0", "engine-1"], timeout=0)
    monkeypatch.setenv("PATH", stack.bin)  # holds no nvidia-smi by that name
    with pytest.raises(mps.GuardError, match="nvidia-smi-absent is not on this host's PATH"):
        mps.guard(str(stack.dir), stack.pipe, stack.log, nvidia_smi="nvidia-smi-absent")


def test_the_report_shows_one_mps_line_per_group():
    def rep(group: str, share: str) -> SimpleNamespace:
        proof = {"clients": 2, "types": ["M+C"], "active_thread_percentages": [share], "ok": True}
        summary = {"context": {"versions": {"engine": "0.25.0"}, "mps": proof}}
        return SimpleNamespace(
            group=group, host="localhost", summary=BlockSummary.from_json(summary)
        )

    run = SimpleNamespace(
        reps=[rep("baseline", "100"), rep("dev", "50"), rep("dev", "20")],
        groups=lambda: ["baseline", "dev"],
    )
    lines = report._context(run)
    assert lines[0].endswith("1 block(s); MPS: 2 client(s), M+C, 100%")
    assert lines[1].endswith("2 block(s); MPS: 2 client(s), M+C, 20%/50%")
    bare = BlockSummary.from_json({"context": {"versions": {}}})
    run.reps = [SimpleNamespace(group="baseline", host="h", summary=bare)]
    run.groups = lambda: ["baseline"]
    assert "MPS" not in report._context(run)[0]


# A stand-in for the NVIDIA driver's libcuda.so.1 (no GPU here), modelled on what the real
# one answered on the lent H200 (docs/evidence/h200-mps/readback.txt): 132 SMs outside MPS;
# a client of the daemon whose pipe directory it names gets whole TPCs (2 SMs) of its
# CUDA_MPS_ACTIVE_THREAD_PERCENTAGE, never above the daemon's default percentage.
FAKE_LIBCUDA = r"""
#include <stdlib.h>
#include <string.h>
static int sms(void) {
    const char *pipe = getenv("CUDA_MPS_PIPE_DIRECTORY"), *daemon = getenv("FAKE_MPS_PIPE");
    const char *share = getenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE");
    const char *limit = getenv("FAKE_MPS_DEFAULT_PERCENTAGE");
    double p = share ? atof(share) : 100, d = limit ? atof(limit) : 100;
    if (!pipe || !daemon || strcmp(pipe, daemon)) return 132;
    return 2 * (int)(132 * (p < d ? p : d) / 200);
}
typedef struct { int type; unsigned val; } affinity;
int cuInit(unsigned flags) { return 0; }
int cuDeviceGet(int *dev, int ordinal) { *dev = ordinal; return 0; }
int cuDeviceGetAttribute(int *v, int attr, int dev) { *v = attr == 16 ? sms() : 0; return 0; }
int cuDevicePrimaryCtxRetain(void **ctx, int dev) { *ctx = (void *)1; return 0; }
int cuDevicePrimaryCtxRelease(int dev) { return 0; }
int cuCtxSetCurrent(void *ctx) { return 0; }
int cuCtxGetExecAffinity(affinity *a, int type) { a->type = type; a->val = sms(); return 0; }
int cuGetErrorString(int rc, const char **text) { *text = "fake"; return 0; }
"""


@pytest.fixture
def libcuda(tmp_path, monkeypatch, stack):
    """The stand-in libcuda.so.1 on LD_LIBRARY_PATH, its daemon listening in stack.pipe."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (tmp_path / "libcuda.c").write_text(FAKE_LIBCUDA)
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", str(lib / "libcuda.so.1"), str(tmp_path / "libcuda.c")],
        check=True,
    )
    monkeypatch.setenv("LD_LIBRARY_PATH", str(lib))
    monkeypatch.setenv("FAKE_MPS_PIPE", stack.pipe)
    monkeypatch.setenv("PATH", f"{stack.bin}{os.pathsep}{os.environ['PATH']}")
    return lib


def test_the_share_each_engine_was_given_is_read_back(stack, libcuda):
    env = {"CUDA_MPS_PIPE_DIRECTORY": stack.pipe, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50"}
    core = stack.start(**env)
    stack.table.write_text(table([_row(core, "M+C")]))
    done, out = guard_module(stack)  # through Ansible: the probe's source travels inside
    assert done.returncode == 0, done.stdout + done.stderr
    proof = out["proof"]
    (engine,) = proof["engines"]
    assert engine["read_back"]["env"] == env
    assert (engine["read_back"]["device_sms"], engine["read_back"]["context_sms"]) == (66, 66)
    assert (proof["device_sms"], proof["sms"], proof["read_back_error"]) == (132, [66], "")
    assert engine["processes"][0]["line"].startswith(f"|    0   N/A  N/A  {core:>15}    M+C")
    assert records.describe_mps([proof]) == "MPS: 1 client(s), M+C, 50% (66 of 132 SMs read back)"


def test_a_share_the_daemon_does_not_apply_fails_the_guard(stack, libcuda, monkeypatch):
    # A client cannot go above the daemon's default: 80% asked, 30% given.
    monkeypatch.setenv("FAKE_MPS_DEFAULT_PERCENTAGE", "30")
    core = stack.start(CUDA_MPS_PIPE_DIRECTORY=stack.pipe, CUDA_MPS_ACTIVE_THREAD_PERCENTAGE="80")
    stack.table.write_text(table([_row(core, "M+C")]))
    with pytest.raises(mps.GuardError) as err:
        mps.guard(str(stack.dir), stack.pipe, stack.log, timeout=0)
    assert "asked for 80% of the GPU" in str(err.value)
    assert "may use 38 of 132 SMs (28.8%)" in str(err.value)
    assert err.value.proof["ok"] is False and err.value.proof["sms"] == [38]


def test_no_driver_leaves_the_share_unread_not_failed(stack, monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", str(stack.dir))  # no libcuda.so.1 there
    monkeypatch.setenv("PATH", f"{stack.bin}{os.pathsep}{os.environ['PATH']}")
    core = stack.start(CUDA_MPS_PIPE_DIRECTORY=stack.pipe, CUDA_MPS_ACTIVE_THREAD_PERCENTAGE="40")
    stack.table.write_text(table([_row(core, "M+C")]))
    proof = mps.guard(str(stack.dir), stack.pipe, stack.log, timeout=0)
    assert proof["ok"] and proof["sms"] == [] and proof["device_sms"] is None
    assert "libcuda.so.1 cannot be loaded" in proof["read_back_error"]
    assert records.describe_mps([proof]) == "MPS: 1 client(s), M+C, 40%"


def test_the_sm_slack_holds_on_the_h200s_own_answers():
    """The real driver's answers (H200, 132 SMs): every share the daemon applied lies
    within SM_SLACK of 132 x share, and a share clamped by the daemon's default does not."""
    text = (TOP / "docs/evidence/h200-mps/readback.txt").read_text()
    answers = [json.loads(line) for line in text.splitlines() if line.startswith('{"device"')]
    device = answers[0]["device_sms"]  # no daemon yet: the device's own count
    assert device == 132
    applied, clamped = [], []
    for found in answers[1:]:
        share = found["env"].get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE")
        if share:
            near = abs(mps.probe_sms(found) - device * float(share) / 100) <= mps.SM_SLACK
            (applied if near else clamped).append((share, mps.probe_sms(found)))
    assert applied[:6] == [("100", 132), ("80", 104), ("60", 78), ("40", 52), ("20", 26),
                           ("10", 12)]  # fmt: skip
    assert clamped == [("80", 66)]  # under the daemon's default of 50


def test_the_daemon_query_parses_what_the_h200_answered():
    """mps.DAEMON_COMMAND's script, run on the lent H200 (its chroot dropped; readback2.txt):
    one server, its one client, the default share and nvidia-smi's table."""
    text = (TOP / "docs/evidence/h200-mps/readback2.txt").read_text()
    answer = text.split("== the daemon query script (chroot dropped)\nrc 0\n", 1)[1]
    parsed = mps.parse_daemon(answer)
    assert parsed["servers"] == {"539": [521]}
    assert parsed["default_active_thread_percentage"] == "100.0"
    rows = {(r["pid"], r["type"], r["name"]) for r in parsed["processes"]}
    assert rows == {(521, "M+C", "/opt/torch/.venv/bin/python3"),
                    (539, "C", "nvidia-cuda-mps-server")}  # fmt: skip
    # The probe as Kubernetes runs it (shlex-split, base64) answered there too: 52 SMs at 40%.
    line = next(ln for ln in text.splitlines() if ln.startswith("{'device'"))
    assert "'context_sms': 52" in line and "'CUDA_MPS_ACTIVE_THREAD_PERCENTAGE': '40'" in line
