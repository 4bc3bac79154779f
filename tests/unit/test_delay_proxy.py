"""benchmarks/delay_proxy.py, the known handicap of the verdict's tests: every chunk after
the first arrives at first + (its upstream time - first) x STRETCH, one for one."""

from __future__ import annotations

import asyncio
import importlib.util
import socket

from aiohttp import ClientSession, web
from helpers.stack import TOP

spec = importlib.util.spec_from_file_location("delay_proxy", TOP / "benchmarks/delay_proxy.py")
delay_proxy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(delay_proxy)

GAP = 0.03  # seconds between the upstream's chunks, as an engine's tokens come
CHUNKS = 24


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def upstream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for i in range(CHUNKS):
        await response.write(f"data: {i}\n\n".encode())
        await asyncio.sleep(GAP)
    await response.write_eof()
    return response


async def arrivals(stretch: float) -> tuple[list[float], list[bytes]]:
    """The client's arrival times and chunks through a proxy of `stretch`."""
    up_app = web.Application()
    up_app.router.add_get("/stream", upstream)
    ports = [free_port(), free_port()]
    proxy = delay_proxy.app(f"http://127.0.0.1:{ports[0]}", stretch)
    runners = [web.AppRunner(up_app), web.AppRunner(proxy)]
    for runner, port in zip(runners, ports, strict=True):
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    times, chunks = [], []
    try:
        loop = asyncio.get_running_loop()
        async with (
            ClientSession() as session,
            session.get(f"http://127.0.0.1:{ports[1]}/stream") as response,
        ):
            async for chunk in response.content.iter_any():
                times.append(loop.time())
                chunks.append(chunk)
    finally:
        for runner in runners:
            await runner.cleanup()
    return times, chunks


def test_each_chunk_comes_late_by_the_stretch_of_its_time_since_the_first():
    plain_times, plain = asyncio.run(arrivals(1.0))
    times, chunks = asyncio.run(arrivals(1.5))
    expected = [f"data: {i}\n\n".encode() for i in range(CHUNKS)]
    assert b"".join(plain) == b"".join(chunks) == b"".join(expected)
    assert len(chunks) == CHUNKS  # one for one: none held back and merged
    span, plain_span = times[-1] - times[0], plain_times[-1] - plain_times[0]
    upstream_span = GAP * (CHUNKS - 1)
    assert abs(plain_span / upstream_span - 1) < 0.1, plain_span
    # 1.5 x, not compounded: a chunk timed after the previous one's wait came at 1.5^k.
    assert abs(span / upstream_span - 1.5) < 0.1, (span, upstream_span)
