# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streaming OpenAI client: every chunk stamped on arrival with a monotonic clock."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field

try:
    import aiohttp
except ImportError:  # the module reports it with missing_required_lib
    aiohttp = None
try:  # every chunk is parsed on the client's loop: the faster parser where it installs
    from orjson import loads
except ImportError:
    from json import loads

from ..records import RequestOutcome
from .datasets import BenchRequest, as_completion_prompt


@dataclass(frozen=True)
class Target:
    """Where and how a run's requests go: the same for every request of the run."""

    base_url: str  # e.g. http://127.0.0.1:8000
    model: str
    endpoint: str = "completions"  # or chat
    headers: dict = field(default_factory=dict)
    timeout: float = 3600.0  # seconds per request
    ignore_eos: bool = False
    save_text: bool = False  # keep each answer's text

    @property
    def url(self) -> str:
        path = "/v1/chat/completions" if self.endpoint == "chat" else "/v1/completions"
        return self.base_url.rstrip("/") + path


def payload(req: BenchRequest, model: str, endpoint: str, ignore_eos: bool) -> dict:
    body: dict = {
        "model": model,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": ignore_eos,
    }
    if endpoint == "chat":
        messages = (
            req.prompt
            if isinstance(req.prompt, list)
            else [{"role": "user", "content": req.prompt}]
        )
        body.update(messages=messages, max_completion_tokens=req.output_len)
    else:
        prompt = req.prompt if isinstance(req.prompt, str) else as_completion_prompt(req.prompt)
        body.update(prompt=prompt, max_tokens=req.output_len)
    if req.session:
        body["user"] = req.session
    return body


def _chunk_text(chunk: dict, endpoint: str) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    if endpoint == "chat":
        delta = choices[0].get("delta") or {}
        return (delta.get("content") or "") + (delta.get("reasoning_content") or "")
    return choices[0].get("text") or ""


class _Arrivals:
    """When each part of a response body came off the socket. The event loop reads a
    socket and hands the bytes to the response's reader in one step, but the task that
    parses them runs later, after every other socket read of the same loop turn and every
    task woken before it: with many streams at once that wait was a large part of the
    client's timing error (at 10 req/s x 50 chunks here, p99 0.93 -> 0.60 ms). So a line
    is stamped with the time its last byte was read; where the reader cannot be watched
    (an aiohttp whose reader is built otherwise), when it is parsed, as before."""

    def __init__(self, content) -> None:
        self.fed: collections.deque[tuple[int, float]] = collections.deque()  # (end, time)
        self.before = content.total_bytes  # bytes fed before the watch: stamped when parsed
        self.key = id(content)
        try:
            content.__class__ = _WatchedReader  # the same layout: only feed_data differs
            _WATCHED[self.key] = self
        except TypeError:
            pass

    def __enter__(self) -> _Arrivals:
        return self

    def __exit__(self, *_exc) -> None:
        _WATCHED.pop(self.key, None)  # also when the stream fails: ids are reused

    def when(self, end: int) -> float:
        """The time the body's bytes up to offset `end` had all been read."""
        while self.fed and self.fed[0][0] < end:
            self.fed.popleft()
        if end <= self.before or not self.fed:
            return time.perf_counter()
        return self.fed[0][1]


_WATCHED: dict[int, _Arrivals] = {}  # by id() of the reader: it has no room for more


if aiohttp is not None:

    class _WatchedReader(aiohttp.StreamReader):
        __slots__ = ()

        def feed_data(self, data: bytes, *args) -> bool:
            now = time.perf_counter()
            more = super().feed_data(data, *args)
            watch = _WATCHED.get(id(self))
            if watch is not None:
                watch.fed.append((self.total_bytes, now))
            return more


async def send(
    session: aiohttp.ClientSession,
    target: Target,
    req: BenchRequest,
    index: int,
    run_start: float,
) -> RequestOutcome:
    """Send one streamed request; never raises for a failed request.

    index: the request's number in the run (negative for warm-up); run_start: the
    perf_counter() that the outcome's start is relative to."""
    out = RequestOutcome(index=index, session=req.session)
    endpoint, timeout = target.endpoint, target.timeout
    hdrs = dict(target.headers)
    if req.session:
        hdrs["X-Session-ID"] = req.session
    body = payload(req, target.model, endpoint, target.ignore_eos)
    started = time.perf_counter()
    out.start = started - run_start
    last = started
    try:
        async with session.post(
            target.url, json=body, headers=hdrs, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            if resp.status != 200:
                text = (await resp.text())[:300]
                out.error_class, out.error = f"http_{resp.status}", text
                out.latency = time.perf_counter() - started
                return out
            with _Arrivals(resp.content) as arrivals:
                buffer = b""
                base = 0  # the stream offset of buffer[0]
                async for data in resp.content.iter_any():
                    buffer += data
                    while (end := buffer.find(b"\n")) >= 0:
                        line, buffer = buffer[:end], buffer[end + 1 :]
                        base += end + 1
                        now = arrivals.when(base)
                        line = line.strip()
                        if not line.startswith(b"data:"):
                            continue
                        item = line[5:].strip()
                        if item == b"[DONE]":
                            continue
                        chunk = loads(item)
                        if chunk.get("usage"):
                            out.prompt_tokens = chunk["usage"].get("prompt_tokens", 0)
                            out.output_tokens = chunk["usage"].get("completion_tokens", 0)
                        # A chunk with choices carries a generated token, even when its text
                        # is empty (a special token, or bytes of a character still to come):
                        # it is stamped like any other, as `vllm bench serve` does. Counting
                        # only visible text put TTFT one decode step late.
                        if chunk.get("choices"):
                            if target.save_text:
                                out.text += _chunk_text(chunk, endpoint)
                            if out.chunks == 0:
                                out.ttft = now - started
                            else:
                                out.itl.append(now - last)
                            out.chunks += 1
                            last = now
            out.latency = time.perf_counter() - started
            out.success = out.chunks > 0
            if not out.success:
                out.error_class, out.error = "invalid_response", "no content in the stream"
    except TimeoutError:
        out.error_class, out.error = "timeout", f"no complete answer within {timeout:g} s"
    except asyncio.CancelledError:
        out.error_class, out.error = "client_abort", "cancelled by the benchmark"
    except (
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientConnectionError,
        aiohttp.ClientPayloadError,  # the stream ended early: the server went away
        ConnectionError,
    ) as err:
        out.error_class, out.error = "connection_reset", str(err) or type(err).__name__
    except (aiohttp.ClientError, ValueError) as err:
        out.error_class, out.error = "invalid_response", str(err)[:300]
    if not out.latency:
        out.latency = time.perf_counter() - started
    return out
