# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Before any load: the results fit on disk, and the server answers and serves the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .. import readiness
from .spec import BenchError, RunSpec

# Room a run needs under its results directory before it sends anything: the metrics
# snapshots and telemetry (about 1 MB here) plus a few KB a request.
MIN_FREE_BYTES = 4 << 20
FREE_BYTES_PER_REQUEST = 8 << 10


def http_get(url: str, headers: dict, timeout: float = 10) -> tuple[int, str]:
    """(HTTP status, body) of a GET; (0, why) when nothing answered."""
    status, body = readiness.probe(url, timeout=timeout, headers=headers)
    return status, body.decode(errors="replace") if status else "no answer"


def auth_headers(spec: RunSpec) -> dict[str, str]:
    return {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}


def check_room(out_dir: Path, requests: int) -> None:
    """Refuse to start a run whose results would not fit, before any load is sent."""
    existing = next((p for p in [out_dir, *out_dir.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    need = MIN_FREE_BYTES + FREE_BYTES_PER_REQUEST * requests
    if free < need:
        raise BenchError(
            f"only {free >> 10} KiB free under {existing}, and a run of {requests} requests "
            f"needs about {need >> 10} KiB for its results: free some space or choose "
            "another results directory (VLLM_BENCHMARK_RESULTS_DIR, or --out)"
        )


def check_server(spec: RunSpec) -> None:
    """The server answers and serves the model."""
    status, body = http_get(spec.url.rstrip("/") + "/v1/models", auth_headers(spec))
    if status == 0:
        raise BenchError(f"{spec.url} is unreachable: {body}")
    if status != 200:
        raise BenchError(f"{spec.url}/v1/models answered HTTP {status}: {body[:200]}")
    try:
        served = [m["id"] for m in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError):
        raise BenchError(f"{spec.url}/v1/models did not answer a model list") from None
    if spec.model not in served:
        raise BenchError(
            f"model {spec.model!r} is not served at {spec.url}; it serves: {', '.join(served)}"
        )
