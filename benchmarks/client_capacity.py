"""Client capacity: the highest load each benchmark client times to within 1 ms at p99.

A local endpoint (paced_server.py, no model) streams one chunk every GAP ms, each
chunk's text being its send time (CLOCK_MONOTONIC, ns). Both clients keep the answers'
text (servelab --save-text, vllm --save-detailed), so each measured inter-token latency
is compared with the server's actual send interval of the same two chunks: the
difference is the client's (and the loopback's) timing error alone, free of the
server's own jitter. For request rates rising by steps, both clients run the same load;
the script prints, per tool, the highest request rate and chunk rate whose p99 error
stays under 1 ms, and the ratio; and under each point servelab's self-check of each run
(its worst worker's CPU, or share of its core at work when busy-polling, and p99 send
lag; "!" where it judged itself client-bound).

servelab runs with each worker count of --workers (1 is the single asyncio client; more
are worker processes, bench/workers.py; a "p" after the count, e.g. 1p, runs them
busy-polling, --client-busy-poll, whose self-check gives the share of the core spent on
work instead of CPU), and the paced server with --servers processes
on one port, so that the server is not the limit. Without --vllm-python, servelab alone.

Usage: .venv/bin/python benchmarks/client_capacity.py [--vllm-python ENGINE_VENV/bin/python \
           --tokenizer MODEL_DIR] [--workers 1,2,1p] [--servers 1] [--gap-ms 20] [--tokens 50] \
           [--seconds 8] [--rates 10,20,...] [--reps 3] [--server-cpus 0-7] [--checks FILE]
(run it under `taskset -c 8-15` with --server-cpus 0-7 to keep the server off the
client's cores)
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import paced_server

TOP = Path(__file__).resolve().parents[1]
PORT = 18999


def errors_ms(itls_s: list[float], text: str) -> list[float]:
    """|measured ITL - server send interval| per chunk pair, in ms."""
    sent = [int(x) for x in text.split()]
    if len(sent) != len(itls_s) + 1:
        raise SystemExit(f"{len(sent)} stamped chunks but {len(itls_s)} ITLs: lost chunks")
    intervals = [(b - a) / 1e9 for a, b in itertools.pairwise(sent)]
    return [abs(itl - gap) * 1000 for itl, gap in zip(itls_s, intervals, strict=True)]


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * (len(values) - 1) + 0.5))] if values else 0.0


def capacity(points: list[tuple[float, float]]) -> float:
    """The highest rate of the passing run from the lowest rate: a pass above a failure
    is noise, not capacity."""
    best = 0.0
    for rate, error in sorted(points):
        if error >= 1.0:
            break
        best = rate
    return best


def ours(rate: float, n: int, tokens: int, out: Path, workers: int, poll: bool) -> list[float]:
    """servelab-bench with `workers` processes, busy-polling if `poll`."""
    done = subprocess.run(
        [
            sys.executable,
            str(TOP / "bin/servelab-bench"),
            "--url",
            f"http://127.0.0.1:{PORT}",
            "--model",
            "paced",
            "--dataset",
            "short",
            "--output-len",
            str(tokens),
            "--num-prompts",
            str(n),
            "--request-rate",
            str(rate),
            "--save-text",
            "--warmup-requests",
            "0",
            "--client-workers",
            str(workers),
            *(["--client-busy-poll"] if poll else []),
            "--out",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"servelab-bench failed ({done.returncode}):\n{done.stderr[-3000:]}")
    errors = []
    for line in (out / "requests.jsonl").read_text().splitlines():
        record = json.loads(line)
        errors += errors_ms(record["itl"], record["text"])
    CHECKS.append(json.loads((out / "summary.json").read_text())["client"])
    return errors


CHECKS: list[dict] = []  # servelab's self-check of each run, in order


def _servelab(workers: str) -> tuple[str, tuple[int, bool]]:
    """One --workers entry: the tool's name and (processes, busy-polling);
    "1" -> servelab x1, "2p" -> servelab x2 poll."""
    count, poll = workers.removesuffix("p"), workers.endswith("p")
    if not count.isdigit():
        raise SystemExit(f"--workers: {workers!r}: expected a count, optionally with p (2p)")
    return f"servelab x{count}" + (" poll" if poll else ""), (int(count), poll)


def theirs(python: str, tokenizer: str, rate: float, n: int, tokens: int, out: Path) -> list[float]:
    subprocess.run(
        [
            python,
            str(TOP / "roles/vllm_engine/files/vllm_cli.py"),
            "bench",
            "serve",
            "--backend",
            "vllm",
            "--base-url",
            f"http://127.0.0.1:{PORT}",
            "--model",
            tokenizer,
            "--served-model-name",
            "paced",
            "--tokenizer",
            tokenizer,
            "--dataset-name",
            "random",
            "--random-input-len",
            "8",
            "--random-output-len",
            str(tokens),
            "--num-prompts",
            str(n),
            "--request-rate",
            str(rate),
            "--ignore-eos",
            "--save-result",
            "--save-detailed",
            "--result-dir",
            str(out),
            "--result-filename",
            "r.json",
        ],
        check=True,
        capture_output=True,
        cwd=out,
    )
    result = json.loads((out / "r.json").read_text())
    errors = []
    for itls, text in zip(result["itls"], result["generated_texts"], strict=True):
        errors += errors_ms(itls, text)
    return errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vllm-python", default="", help="an engine venv's python; empty: skip")
    ap.add_argument("--tokenizer", default="", help="model directory (for vllm bench serve)")
    ap.add_argument(
        "--workers", default="1,2", help="servelab worker counts to compare (2p: busy-polling)"
    )
    ap.add_argument("--servers", type=int, default=1, help="paced server processes")
    ap.add_argument(
        "--server-cpus", default="", help="pin the server to these CPUs (taskset -c LIST)"
    )
    ap.add_argument("--gap-ms", type=float, default=20)
    ap.add_argument("--tokens", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rates", default="10,20,40,60,80,100,120,160,200,240")
    ap.add_argument("--reps", type=int, default=3, help="runs a point and tool (the median)")
    ap.add_argument("--checks", type=Path, help="write servelab's self-check of every run here")
    args = ap.parse_args()
    ours_by_tool = dict(_servelab(w) for w in args.workers.split(","))
    tools = list(ours_by_tool) + (["vllm bench serve"] if args.vllm_python else [])
    with paced_server.running(PORT, args.gap_ms, args.servers, args.server_cpus):
        print(
            f"pace {args.gap_ms:g} ms/chunk, {args.tokens} chunks/request, "
            f"~{args.seconds:g} s per point, {args.servers} server process(es), "
            f"{args.reps} repetition(s) a point, tools alternating"
        )
        header = " ".join(f"{t + ' p99 ms':>24}" for t in tools)
        print(f"{'rate req/s':>10} {'chunks/s':>9} {header}")
        medians: dict[str, list[tuple[float, float]]] = {t: [] for t in tools}
        for rate in [float(r) for r in args.rates.split(",")]:
            n = max(10, int(rate * args.seconds))
            errors: dict[str, list[float]] = {t: [] for t in tools}
            checks: dict[str, list[dict]] = {t: [] for t in tools}
            for rep in range(args.reps):
                # Alternate the order, so that neither tool always runs first or last.
                for tool in tools if rep % 2 == 0 else tools[::-1]:
                    with tempfile.TemporaryDirectory() as tmp:
                        out = Path(tmp) / "out"
                        if tool == "vllm bench serve":
                            out.mkdir()
                            errs = theirs(
                                args.vllm_python, args.tokenizer, rate, n, args.tokens, out
                            )
                        else:
                            errs = ours(rate, n, args.tokens, out, *ours_by_tool[tool])
                            checks[tool].append(CHECKS[-1])
                            CHECKS[-1].update(tool=tool, rate=rate, rep=rep)
                    errors[tool].append(p99(errs))
            cells = []
            for tool in tools:
                median = statistics.median(errors[tool])
                medians[tool].append((rate, median))
                spread = "/".join(f"{e:.2f}" for e in errors[tool]) if args.reps > 1 else ""
                cells.append(f"{median:>7.3f} {('(' + spread + ')') if spread else '':>16}")
            print(f"{rate:>10g} {rate * args.tokens:>9g} " + " ".join(cells), flush=True)
            # servelab's own verdict on itself, per run: worst worker's CPU (busy-polling:
            # share of its core at work) and send lag.
            print(
                " " * 21
                + "self-check (CPU or busy % / p99 send lag ms): "
                + "; ".join(
                    f"{tool} "
                    + " ".join(
                        f"{c['loop_busy_pct_max'] if c.get('busy_poll') else c['cpu_pct_max']:.0f}"
                        f"/{c['send_lag_p99_ms']:.2f}" + ("!" if c["bound"] else "")
                        for c in checks[tool]
                    )
                    for tool in tools
                    if checks[tool]
                ),
                flush=True,
            )
        if args.checks:
            args.checks.write_text(json.dumps(CHECKS, indent=1))
        best = {tool: capacity(points) for tool, points in medians.items()}
        for tool, rate in best.items():
            print(
                f"{tool}: highest rate under 1 ms p99 error (median of {args.reps}, every lower "
                f"rate under too): {rate:g} req/s ({rate * args.tokens:g} chunks/s)"
            )
        name = "vllm bench serve" if "vllm bench serve" in best else tools[0]
        for tool in tools:
            if tool != name and best[name]:
                print(f"ratio {tool} / {name}: {best[tool] / best[name]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
