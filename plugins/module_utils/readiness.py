# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for a service's health endpoint, and explaining why it never came up."""

from __future__ import annotations

import re
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass

from ansible.module_utils.urls import open_url

# Patterns in an engine's or router's log and the cause they point to, most specific first.
CAUSES: list[tuple[str, str]] = [
    (r"[Aa]ddress already in use|Errno 98", "port in use: another process holds the port"),
    (
        r"OutOfMemoryError|out of memory|Cannot allocate memory|std::bad_alloc|MemoryError",
        "out of memory: lower the KV cache space or GPU memory utilization, or the replicas",
    ),
    (
        r"does not appear to have a file named config\.json|No such file or directory|"
        r"Repo id must be|is not a local folder|Can't load the configuration",
        "model path missing or not a model directory",
    ),
    (
        r"insufficient KV cache|No available memory for the cache blocks|max_model_len.*larger",
        "KV cache too small for the maximum model length",
    ),
    (
        r"No module named|ImportError|cannot open shared object file",
        "broken engine install: a module or library is missing",
    ),
    (
        r"Configuration validation failed|Incompatible configuration|error: argument|"
        r"unrecognized arguments",
        "invalid configuration: the process refused its arguments",
    ),
    (r"Traceback \(most recent call last\)", "the process crashed: see the traceback"),
]


def likely_cause(log_text: str, exited: bool) -> str:
    for pattern, cause in CAUSES:
        if re.search(pattern, log_text):
            return cause
    if exited:
        return "the process exited: see its log"
    return "still starting or hung: raise the readiness timeout, or see its log"


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(ANSI.sub("", line) for line in text.splitlines()[-lines:])


def probe(url: str, timeout: float = 5.0, headers: dict | None = None) -> tuple[int, bytes]:
    """GET url; return (HTTP status, body), status 0 when nothing answered."""
    try:
        with open_url(url, headers=headers or {}, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


@dataclass
class Readiness:
    ready: bool
    waited: float
    status: int


def wait_until_ready(
    url: str,
    timeout: float,
    exited: Callable[[], bool],
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> Readiness:
    """Poll url until it answers 200, the deadline passes or the process has given up."""
    start = clock()
    status = 0
    while True:
        status, _ = probe(url, timeout=min(5.0, interval * 5))
        waited = clock() - start
        if status == 200:
            return Readiness(True, waited, status)
        if exited() or waited >= timeout:
            return Readiness(False, waited, status)
        time.sleep(interval)
