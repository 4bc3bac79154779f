# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read back the SM limit that the MPS server applies to a client, from the client.

The control daemon's get_active_thread_percentage answers for a server, not for a client
that lowered its share with CUDA_MPS_ACTIVE_THREAD_PERCENTAGE, so it reads 100 whatever
the engines were given. A client's own context knows its limit: cuCtxGetExecAffinity
(CU_EXEC_AFFINITY_TYPE_SM_COUNT) returns the SMs the context may use, and the device's
multiprocessor count is read beside it. Run with an engine's CUDA_MPS_* environment, this
probe becomes a client of the same daemon with the same share, so what it reads is what the
daemon applies to the engine.

Standalone on purpose: the standard library and the driver's libcuda.so.1 only, so that it
runs as `python3 mps_probe.py [--processes]` on a GPU host or inside an engine's
container (kubectl exec) where no servelab code is installed. It prints one JSON object
and exits 0; a failure is an "error" key, never a traceback.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

MULTIPROCESSOR_COUNT = 16  # CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
EXEC_AFFINITY_SM_COUNT = 0  # CU_EXEC_AFFINITY_TYPE_SM_COUNT


class _ExecAffinity(ctypes.Structure):
    # CUexecAffinityParam: the type, then a union whose only member is smCount.val.
    _fields_ = [("type", ctypes.c_int), ("sm_count", ctypes.c_uint)]


class _CudaError(Exception):
    pass


def _call(cuda, name: str, *args) -> None:
    rc = getattr(cuda, name)(*args)
    if rc:
        text = ctypes.c_char_p()
        cuda.cuGetErrorString(rc, ctypes.byref(text))
        raise _CudaError(f"{name} returned {rc} ({(text.value or b'').decode()})")


def _mps_env(environ: dict) -> dict:
    return {k: v for k, v in sorted(environ.items()) if k.startswith("CUDA_MPS_")}


def processes() -> list[dict]:
    """Every other process this probe can see, with the CUDA_MPS_* variables it started
    with: inside an engine's container, the engine's own processes."""
    found = []
    for name in sorted(os.listdir("/proc"), key=lambda n: (len(n), n)):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            with open(f"/proc/{name}/environ", "rb") as handle:
                entries = handle.read().split(b"\0")
            pairs = [e.decode(errors="replace").partition("=") for e in entries]
        except OSError:
            continue
        # The program's name only: the rest of a command line can hold a secret
        # (vllm serve --api-key); vLLM's processes retitle themselves (VLLM::EngineCore).
        program = os.path.basename(argv[0].decode(errors="replace").split(" ")[0])[:60]
        if program:
            env = _mps_env({k: v for k, sep, v in pairs if sep})
            found.append({"pid": int(name), "program": program, "env": env})
    return found


def probe(device: int = 0) -> dict:
    """The device's SM count and the SMs a context created now may use."""
    found: dict = {"device": device, "env": _mps_env(dict(os.environ))}
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as err:
        found["error"] = f"libcuda.so.1 cannot be loaded: {err}"
        return found
    dev, count, ctx = ctypes.c_int(), ctypes.c_int(), ctypes.c_void_p()
    try:
        _call(cuda, "cuInit", 0)
        _call(cuda, "cuDeviceGet", ctypes.byref(dev), device)
        _call(cuda, "cuDeviceGetAttribute", ctypes.byref(count), MULTIPROCESSOR_COUNT, dev)
        found["device_sms"] = count.value
        # The primary context is the one CUDA runtimes (torch, vLLM) use.
        _call(cuda, "cuDevicePrimaryCtxRetain", ctypes.byref(ctx), dev)
        try:
            _call(cuda, "cuCtxSetCurrent", ctx)
            _call(cuda, "cuDeviceGetAttribute", ctypes.byref(count), MULTIPROCESSOR_COUNT, dev)
            found["context_device_sms"] = count.value
            affinity = _ExecAffinity()
            _call(cuda, "cuCtxGetExecAffinity", ctypes.byref(affinity), EXEC_AFFINITY_SM_COUNT)
            found["context_sms"] = affinity.sm_count
        finally:
            cuda.cuDevicePrimaryCtxRelease(dev)
    except _CudaError as err:
        found["error"] = str(err)
    except AttributeError as err:  # a driver older than the call (exec affinity: 11.4)
        found["error"] = f"libcuda.so.1 lacks {err}"
    return found


if __name__ == "__main__":
    result = probe()
    if "--processes" in sys.argv[1:]:
        result["processes"] = processes()
    print(json.dumps(result))
