"""A local OpenAI-style streaming endpoint with no model: one chunk every GAP seconds.

Usage: python paced_server.py PORT GAP_MS [PROCESSES]
PROCESSES (default 1) serve the one port together (SO_REUSEPORT: the kernel deals the
connections), so that the server is not what limits a fast client.
Serves /v1/models and streamed /v1/completions and /v1/chat/completions (with usage).
Each chunk's text is " <send time>": CLOCK_MONOTONIC in nanoseconds, read just before
the write. A client that keeps the answers' text can so compare its measured
inter-token latencies with the server's real send intervals, which removes this
server's own scheduling jitter from the client's timing error.
"""

import asyncio
import contextlib
import gc
import json
import multiprocessing
import subprocess
import sys
import time
import urllib.request

from aiohttp import web

MODEL = "paced"


async def models(_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


def handler(gap: float, chat: bool):
    async def stream(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        n = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(n):
            # Paced against the start, so delays do not accumulate.
            await asyncio.sleep(max(0.0, start + (i + 1) * gap - loop.time()))
            stamp = f" {time.monotonic_ns()}"
            if chat:
                choice = {"index": 0, "delta": {"content": stamp}}
            else:
                choice = {"index": 0, "text": stamp}
            chunk = {"id": "x", "object": "chunk", "model": MODEL, "choices": [choice]}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}
        final = {"id": "x", "object": "chunk", "model": MODEL, "choices": [], "usage": usage}
        await resp.write(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
        return resp

    return stream


def serve(port: int, gap: float) -> None:
    # No cyclic garbage collection: a collection between a chunk's stamp and its write
    # would count as the client's error. A benchmark's few minutes of requests leave
    # little cyclic garbage; what the imports left is frozen out of the count.
    gc.collect()
    gc.freeze()
    gc.disable()
    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", handler(gap, chat=False))
    app.router.add_post("/v1/chat/completions", handler(gap, chat=True))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, reuse_port=True)


@contextlib.contextmanager
def running(port: int, gap_ms: float, processes: int = 1, cpus: str = ""):
    """This server in a subprocess (pinned to `cpus` with taskset if given), ready to
    answer when the block starts, stopped when it ends."""
    pin = ["taskset", "-c", cpus] if cpus else []
    server = subprocess.Popen(
        [*pin, sys.executable, __file__, str(port), str(gap_ms), str(processes)]
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    port, gap = int(sys.argv[1]), float(sys.argv[2]) / 1000
    processes = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    others = [
        multiprocessing.Process(target=serve, args=(port, gap), daemon=True)
        for _ in range(processes - 1)
    ]
    for proc in others:
        proc.start()
    serve(port, gap)


if __name__ == "__main__":
    main()
