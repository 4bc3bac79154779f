#!/usr/bin/env python3
"""A known handicap for tests and benchmarks: an HTTP proxy that stretches a streamed
response in time by an exact factor.

Put it in front of dev's router (the inventory host variable `servelab_bench_url` points
the benchmark at it) and dev's streamed answers arrive later by a known amount: the
first chunk as it came (time to first token unchanged, bar one local hop), every later
chunk at t0 + (t - t0) x STRETCH, where t0 is the first chunk's arrival. Time per
output token (TPOT) and every inter-token gap then grow by exactly STRETCH - 1 (10% with
--stretch 1.1), whatever the engine's speed, so the verdict's power can be measured on
the real stack. Not part of the product: nothing in roles/ or plugins/ starts it.

Usage: benchmarks/delay_proxy.py --upstream http://127.0.0.1:19000 --port 19555 \\
           [--host 127.0.0.1] [--stretch 1.1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import ClientSession, ClientTimeout, web

# Headers that describe one hop, not the message: each side sets its own.
HOP = {"connection", "content-length", "transfer-encoding", "keep-alive", "host"}
SESSION = web.AppKey("session", ClientSession)


def app(upstream: str, stretch: float) -> web.Application:
    async def start(application: web.Application) -> None:
        application[SESSION] = ClientSession(timeout=ClientTimeout(total=None))

    async def stop(application: web.Application) -> None:
        await application[SESSION].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        session = request.app[SESSION]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        body = await request.read()
        async with session.request(
            request.method, upstream + request.path_qs, data=body or None, headers=headers
        ) as up:
            response = web.StreamResponse(
                status=up.status,
                headers={k: v for k, v in up.headers.items() if k.lower() not in HOP},
            )
            await response.prepare(request)
            # Each chunk is timed as it arrives, by a reader the writer's waits never hold
            # up: a chunk read only after the previous one was written would be timed late,
            # and its delay stretched again (a 1.1x stretch measured +17-26% on the real
            # stack, its backlog sent in fewer, merged chunks).
            loop = asyncio.get_running_loop()
            arrived: asyncio.Queue = asyncio.Queue()

            async def read() -> None:
                try:
                    async for chunk in up.content.iter_any():
                        arrived.put_nowait((loop.time(), chunk))
                finally:
                    arrived.put_nowait((loop.time(), None))

            reader = asyncio.create_task(read())
            try:
                first = None
                while True:
                    at, chunk = await arrived.get()
                    if chunk is None:
                        break
                    if first is None:
                        first = at
                    else:
                        await asyncio.sleep(max(0.0, first + (at - first) * stretch - loop.time()))
                    await response.write(chunk)
                await reader  # an upstream error surfaces here
            finally:
                reader.cancel()
            await response.write_eof()
            return response

    application = web.Application()
    application.on_startup.append(start)
    application.on_cleanup.append(stop)
    application.router.add_route("*", "/{path:.*}", forward)
    return application


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:19000")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--stretch", type=float, default=1.1, help="factor on time after the first chunk"
    )
    args = p.parse_args(argv[1:])
    if args.stretch < 1:
        p.error(f"--stretch {args.stretch}: expected >= 1 (a proxy cannot make answers early)")
    web.run_app(
        app(args.upstream.rstrip("/"), args.stretch), host=args.host, port=args.port,
        print=lambda *_: print(f"delay proxy on {args.host}:{args.port}", flush=True),
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
