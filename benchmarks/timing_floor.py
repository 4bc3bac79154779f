"""The timing floor of a machine: how precisely can any client time chunks on it?

client_capacity.py measures a client's timing error: |measured ITL - the server's send
interval of the same two chunks|. Part of that error belongs to no client: the kernel's
loopback delivery and the time a process takes to wake. This script measures that part
without any client logic, against the same paced server:

- timer: how late a thread wakes from a 1 ms time.sleep (2,000 sleeps): the scheduler's
  wake-up latency.
- bare reader: the paced server's streams read with a blocking socket (no event loop, no
  HTTP library, a regex for the stamps), one stream at a time in each of P processes at
  once: the p99 of the same timing error, and the one-way delay (receive time minus the
  server's send stamp; both CLOCK_MONOTONIC on one machine). With --spin, also with a
  non-blocking socket polled in a loop: a reader whose CPU never idles, which tells a
  slow wake-up from an idle CPU (virtual machines) from slow delivery.

A client cannot time chunks better than the bare reader does at the same load: where
the bare reader's p99 is above 1 ms, so is every client's.

Usage: python benchmarks/timing_floor.py [--procs 1,8] [--streams 10] [--tokens 50]
           [--gap-ms 20] [--servers 1] [--spin]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import re
import socket
import statistics
import sys
import time

import paced_server
from client_capacity import p99

PORT = 18998
STAMP = re.compile(rb'"text": " (\d+)"')


def timer_lateness_ms(n: int = 2000, sleep_s: float = 0.001) -> list[float]:
    late = []
    for _ in range(n):
        before = time.perf_counter()
        time.sleep(sleep_s)
        late.append((time.perf_counter() - before - sleep_s) * 1000)
    return late


def read_stream(tokens: int, spin: bool) -> tuple[list[int], list[int]]:
    """One streamed request over a socket: (server send stamps, receive times), both in
    CLOCK_MONOTONIC ns, one pair per chunk. spin: poll a non-blocking socket instead of
    sleeping in recv, so that the reader's CPU never goes idle."""
    body = json.dumps({"model": "paced", "prompt": "x", "max_tokens": tokens, "stream": True})
    request = (
        f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n{body}"
    ).encode()
    sent, received = [], []
    with socket.create_connection(("127.0.0.1", PORT)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        sock.setblocking(not spin)
        buffer, pos = b"", 0
        while len(sent) < tokens:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            now = time.monotonic_ns()
            if not data:
                break
            buffer += data
            for match in STAMP.finditer(buffer, pos):
                sent.append(int(match.group(1)))
                received.append(now)
                pos = match.end()
    return sent, received


def reader(streams: int, tokens: int, spin: bool, queue) -> None:
    errors, delays = [], []
    for _ in range(streams):
        sent, received = read_stream(tokens, spin)
        delays += [(r - s) / 1e6 for s, r in zip(sent, received, strict=True)]
        for i in range(1, len(sent)):
            errors.append(abs((received[i] - received[i - 1]) - (sent[i] - sent[i - 1])) / 1e6)
    queue.put((errors, delays))


def bare(procs: int, streams: int, tokens: int, spin: bool) -> tuple[list[float], list[float]]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=reader, args=(streams, tokens, spin, queue)) for _ in range(procs)
    ]
    for proc in workers:
        proc.start()
    errors, delays = [], []
    for _ in workers:
        e, d = queue.get()
        errors += e
        delays += d
    for proc in workers:
        proc.join()
    return errors, delays


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", default="1,8", help="bare readers at once (a list)")
    ap.add_argument("--streams", type=int, default=10, help="streams per reader, one at a time")
    ap.add_argument("--tokens", type=int, default=50)
    ap.add_argument("--gap-ms", type=float, default=20)
    ap.add_argument("--servers", type=int, default=1, help="paced server processes")
    ap.add_argument("--spin", action="store_true", help="also with readers that poll")
    args = ap.parse_args()
    modes = (False, True) if args.spin else (False,)
    late = timer_lateness_ms()
    print(
        f"timer: 1 ms sleep wakes late by p50 {statistics.median(late):.3f} ms, "
        f"p99 {p99(late):.3f} ms, max {max(late):.3f} ms ({len(late)} sleeps)"
    )
    with paced_server.running(PORT, args.gap_ms, args.servers):
        for procs, spin in itertools.product([int(p) for p in args.procs.split(",")], modes):
            errors, delays = bare(procs, args.streams, args.tokens, spin)
            rate = procs * 1000 / args.gap_ms
            how = "polling" if spin else "blocking"
            print(
                f"bare reader x{procs}, {how} ({rate:g} chunks/s, {len(errors)} intervals): timing "
                f"error p50 {statistics.median(errors):.3f} ms, p99 {p99(errors):.3f} ms; "
                f"one-way delay p50 {statistics.median(delays):.3f} ms, "
                f"p99 {p99(delays):.3f} ms",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
