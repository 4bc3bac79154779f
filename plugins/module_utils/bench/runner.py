# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One benchmark run against an OpenAI-compatible server, and its results on disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

try:
    import aiohttp

    IMPORT_ERROR = ""
except ImportError:  # the module reports it with missing_required_lib
    aiohttp = None
    IMPORT_ERROR = traceback.format_exc()

from .. import readiness
from . import arrivals, datasets, metrics, server_metrics, telemetry
from .client import send

SCHEMA_VERSION = 1


class BenchError(Exception):
    """A benchmark that cannot start, worded for the user."""


@dataclass
class RunSpec:
    url: str  # base URL, e.g. http://127.0.0.1:8000
    model: str
    endpoint: str = "completions"  # or chat
    dataset: str = "sharegpt"  # sharegpt, random, short, long, multi_turn
    dataset_path: str = ""
    tokenizer_path: str = ""  # directory with tokenizer.json
    num_prompts: int = 32
    duration: float = 0.0  # seconds; 0 = stop after num_prompts
    request_rate: float = float("inf")
    arrivals: str = "fixed"  # fixed (pace), poisson or gamma: arrivals.PROCESSES
    burstiness: float = 1.0
    max_concurrency: int = 0
    input_len: int = 256
    output_len: int = 0
    warmup: int = 0  # the most warm-up requests (0: none); warm-up stops earlier when steady
    warmup_tolerance: float = 0.1  # steady: median TPOT of two rounds differ by less
    warmup_concurrency: int = 0  # requests in flight during warm-up (0: max_concurrency or 4)
    ignore_eos: bool | None = None  # None: the workload decides (fixed lengths ignore EOS)
    seed: int = 42
    request_timeout: float = 3600.0
    percentiles: list[float] = field(default_factory=lambda: [50, 90, 95, 99])
    slo: metrics.Slo = field(default_factory=metrics.Slo)
    api_key: str = ""
    metrics_urls: dict[str, str] = field(default_factory=dict)  # name -> /metrics URL
    metrics_interval: float = 5.0
    processes: dict[str, int] = field(default_factory=dict)  # name -> pid, for telemetry
    save_text: bool = False  # keep each answer's text in requests.jsonl

    def check(self) -> None:
        """Refuse bad input before any load starts."""
        if self.endpoint not in ("completions", "chat"):
            raise BenchError(f"endpoint {self.endpoint!r}: expected completions or chat")
        if self.request_rate <= 0:
            raise BenchError(f"request rate {self.request_rate}: expected > 0 (or inf)")
        if self.max_concurrency < 0:
            raise BenchError(f"max concurrency {self.max_concurrency}: expected >= 0 (0: no limit)")
        if self.num_prompts <= 0 and self.duration <= 0:
            raise BenchError("expected a request count > 0 or a duration > 0")
        if self.duration < 0:
            raise BenchError(f"duration {self.duration}: expected >= 0")
        if self.arrivals not in arrivals.PROCESSES:
            raise BenchError(
                f"arrivals {self.arrivals!r}: expected one of {', '.join(arrivals.PROCESSES)}"
            )
        if self.burstiness <= 0:
            raise BenchError(f"burstiness {self.burstiness}: expected > 0")


def _get(url: str, headers: dict, timeout: float = 10) -> tuple[int, str]:
    status, body = readiness.probe(url, timeout=timeout, headers=headers)
    return status, body.decode(errors="replace") if status else "no answer"


def preflight(spec: RunSpec) -> None:
    """The server answers and serves the model."""
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    status, body = _get(spec.url.rstrip("/") + "/v1/models", headers)
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


class HfTokenizer:
    """A tokenizer.json (Hugging Face tokenizers) behind the datasets' Tokenizer protocol."""

    def __init__(self, directory: str) -> None:
        from tokenizers import Tokenizer

        path = Path(directory) / "tokenizer.json"
        if not path.is_file():
            raise BenchError(f"no tokenizer.json in {directory}")
        self._tok = Tokenizer.from_file(str(path))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()


def build_workload(spec: RunSpec) -> tuple[list[datasets.BenchRequest], dict, bool]:
    """The requests (warm-up first), what the reader reported, and whether to ignore EOS."""
    tokenizer = HfTokenizer(spec.tokenizer_path) if spec.tokenizer_path else None
    total = spec.warmup + max(spec.num_prompts, 1)
    info: dict = {"dataset": spec.dataset}
    try:
        if spec.dataset == "sharegpt":
            path = (
                Path(spec.dataset_path) if spec.dataset_path else datasets.sharegpt_default_path()
            )
            reqs, report = datasets.load_sharegpt(
                path, total, spec.seed, tokenizer, spec.output_len
            )
            info.update(report.__dict__)
            return reqs, info, False
        if spec.dataset == "random":
            if tokenizer is None:
                raise BenchError("the random workload needs the model's tokenizer (tokenizer_path)")
            reqs = datasets.random_prompts(
                total, spec.input_len, spec.output_len or 128, spec.seed, tokenizer
            )
            return reqs, info, True
        if spec.dataset in ("short", "long"):
            return (
                datasets.fixed_payload(total, spec.dataset, spec.output_len, tokenizer),
                info,
                True,
            )
        if spec.dataset == "multi_turn":
            return (
                datasets.multi_turn(total, spec.seed, spec.output_len, tokenizer=tokenizer),
                info,
                False,
            )
    except datasets.DatasetError as err:
        raise BenchError(str(err)) from None
    raise BenchError(
        f"workload {spec.dataset!r}: expected sharegpt, random, short, long or multi_turn"
    )


class MetricsSampler:
    """Snapshots of each /metrics URL before, during (every interval) and after the run."""

    def __init__(self, urls: dict[str, str], interval: float, out_dir: Path) -> None:
        self.urls, self.interval, self.out_dir = urls, interval, out_dir
        self.before: dict[str, dict] = {}
        self.after: dict[str, dict] = {}
        self.samples: dict[str, list[dict]] = {name: [] for name in urls}
        self.raw: dict[str, list[str]] = {name: [] for name in urls}

    def snapshot(self) -> dict[str, dict]:
        out = {}
        for name, url in self.urls.items():
            status, body = _get(url, {}, timeout=5)
            if status == 200:
                out[name] = server_metrics.parse(body)
                self.raw[name].append(f"# servelab snapshot {time.time():.3f}\n{body}")
        return out

    async def sample_until(self, done: asyncio.Event) -> None:
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), timeout=self.interval)
            except TimeoutError:
                snap = await asyncio.get_running_loop().run_in_executor(None, self.snapshot)
                for name, values in snap.items():
                    self.samples[name].append(values)

    def deltas(self) -> dict[str, dict]:
        out = {}
        for name in self.urls:
            if name in self.before and name in self.after:
                before, after, samples = self.before[name], self.after[name], self.samples[name]
                if name.startswith("router"):
                    out[name] = {
                        k: after[k] - before.get(k, 0.0) for k in after if k.endswith("_total")
                    }
                else:
                    out[name] = server_metrics.engine_deltas(before, after, samples)
        return out

    def save(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, chunks in self.raw.items():
            write_atomic(self.out_dir / f"{name}.prom", "\n".join(chunks))


def write_atomic(path: Path, text: str) -> None:
    """Write, then rename: a reader sees the old file or the whole new one, and a failed
    write (a full disk) leaves no partial file behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# Room a run needs under its results directory before it sends anything: the metrics
# snapshots and telemetry (about 1 MB here) plus a few KB a request.
MIN_FREE_BYTES = 4 << 20
FREE_BYTES_PER_REQUEST = 8 << 10


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


class Progress:
    """A progress line every few seconds, to a file (tail -f) and optionally stderr."""

    def __init__(self, path: Path, echo: bool) -> None:
        self.path, self.echo, self.last = path, echo, 0.0
        self.handle = open(path, "a")  # noqa: SIM115 (closed by close())

    def line(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= 2:
            self.last = now
            stamp = time.strftime("%H:%M:%S")
            with contextlib.suppress(OSError):  # a full disk must not stop the run itself
                self.handle.write(f"{stamp} {text}\n")
                self.handle.flush()
            if self.echo:
                print(f"{stamp} {text}", flush=True)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()


async def _run(
    spec: RunSpec,
    workload: list[datasets.BenchRequest],
    ignore_eos: bool,
    progress: Progress,
    sampler: MetricsSampler,
    outcomes: list,
    state: dict,
) -> tuple[float, dict]:
    """Send the workload; outcomes (the caller's list) fill as requests end, and state
    holds the start and warm-up, so that an interrupted run still has what it did."""
    url = spec.url.rstrip("/") + (
        "/v1/chat/completions" if spec.endpoint == "chat" else "/v1/completions"
    )
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    restore = _stop_on_signals(state)
    try:
        return await _send_all(spec, workload, ignore_eos, progress, sampler, outcomes, state,
                               url, headers, connector)  # fmt: skip
    finally:
        restore()


def _stop_on_signals(state: dict):
    """SIGINT and SIGTERM cancel the run's main task from the event loop, between callbacks.
    A handler that raised where the signal landed could land inside aiohttp's protocol,
    which turns any exception into one failed request and lets the run go on (seen in CI).
    Returns the function that puts the process's own handlers back."""
    loop, main = asyncio.get_running_loop(), asyncio.current_task()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def stop(name: str) -> None:
        state.setdefault("interrupted", name)
        main.cancel()

    try:
        for sig in previous:
            loop.add_signal_handler(sig, stop, sig.name)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
        return lambda: None

    def restore() -> None:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)

    return restore


async def _send_all(spec, workload, ignore_eos, progress, sampler, outcomes, state,
                    url, headers, connector) -> tuple[float, dict]:  # fmt: skip
    async with aiohttp.ClientSession(connector=connector, read_bufsize=2**20) as session:
        warm = await _warm_up(spec, session, url, headers, ignore_eos, workload[: spec.warmup])
        state["warm"] = warm
        measured = workload[spec.warmup :]
        sampler.before = await asyncio.get_running_loop().run_in_executor(None, sampler.snapshot)
        limit = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None
        gaps = arrivals.intervals(spec.request_rate, spec.seed, spec.arrivals, spec.burstiness)
        done_event = asyncio.Event()
        sampler_task = asyncio.create_task(sampler.sample_until(done_event))
        tasks: list[asyncio.Task] = []
        start = state["start"] = time.perf_counter()
        deadline = start + spec.duration if spec.duration else None

        async def one(i: int, req: datasets.BenchRequest) -> None:
            async with limit or contextlib.nullcontext():
                outcome = await send(
                    session,
                    url,
                    spec.endpoint,
                    req,
                    i,
                    spec.model,
                    headers,
                    spec.request_timeout,
                    start,
                    ignore_eos,
                    spec.save_text,
                )
            if state.get("interrupted") and outcome.error_class == "client_abort":
                return  # cut off by the user's stop: it never ended, so it is not a result
            outcomes.append(outcome)
            failed = sum(not o.success for o in outcomes)
            progress.line(
                f"{len(outcomes)} done ({failed} failed), {len(tasks) - len(outcomes)} in flight, "
                f"{time.perf_counter() - start:.0f} s"
            )

        # A request count is spread over exactly count/rate seconds; a duration runs an
        # open process until the deadline.
        fixed = (
            arrivals.schedule(
                len(measured), spec.request_rate, spec.seed, spec.arrivals, spec.burstiness
            )
            if deadline is None
            else None
        )
        i = 0
        next_send = start
        while True:
            if deadline is None and i >= len(measured):
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
            next_send = start + fixed[i] if fixed is not None else next_send + next(gaps)
            delay = next_send - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if deadline is not None and time.perf_counter() >= deadline:
                break
            tasks.append(asyncio.create_task(one(i, measured[i % len(measured)])))
            i += 1
            state["send_span_s"] = time.perf_counter() - start
        last_scheduled = time.perf_counter() - start
        await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
        done_event.set()
        await sampler_task
        sampler.after = await asyncio.get_running_loop().run_in_executor(None, sampler.snapshot)
    return duration, {**warm, "send_span_s": last_scheduled}


def _median_tpot(outcomes: list) -> float | None:
    tpots = sorted(t for o in outcomes if o.success and (t := o.tpot) is not None)
    return tpots[len(tpots) // 2] if tpots else None


async def _warm_up(spec, session, url, headers, ignore_eos, pool) -> dict:
    """Warm until steady: rounds of `concurrency` requests in flight at once, until the
    median TPOT of a round is within spec.warmup_tolerance of the round before, or the
    pool (spec.warmup requests) is spent. Excluded from the figures, recorded in them."""
    started = time.perf_counter()
    concurrency = spec.warmup_concurrency or spec.max_concurrency or 4
    rounds: list[float | None] = []
    sent, steady = 0, False
    while pool and sent + concurrency <= max(len(pool), concurrency) and not steady:
        batch = [pool[(sent + k) % len(pool)] for k in range(concurrency)]
        outcomes = await asyncio.gather(
            *(
                send(session, url, spec.endpoint, req, -1 - sent - k, spec.model, headers,
                     spec.request_timeout, time.perf_counter(), ignore_eos, False)
                for k, req in enumerate(batch)
            )
        )  # fmt: skip
        sent += len(batch)
        rounds.append(_median_tpot(outcomes))
        last, prev = rounds[-1], rounds[-2] if len(rounds) > 1 else None
        steady = bool(last and prev and abs(last - prev) / prev < spec.warmup_tolerance)
    return {
        "warmup_requests": sent,
        "warmup_seconds": time.perf_counter() - started,
        "warmup_steady": steady,
        "warmup_concurrency": concurrency,
        "warmup_round_tpot_ms": [None if r is None else r * 1000 for r in rounds],
    }


def load_figures(outcomes: list, spec: RunSpec, send_span: float) -> dict:
    """Offered vs achieved request rate, and whether the server kept up.

    The achieved rate is the completion rate between the first and the last completion,
    which under a steady load follows the arrival rate; a server that cannot keep up
    completes at its capacity instead, below what was offered."""
    ends = sorted(o.start + o.latency for o in outcomes if o.success)
    offered = spec.request_rate if math.isfinite(spec.request_rate) else None
    achieved = (
        (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 2 and ends[-1] > ends[0] else None
    )
    saturated = bool(offered and achieved is not None and achieved < 0.95 * offered)
    return {
        "offered_rate": offered,
        "achieved_rate": achieved,
        "saturated": saturated,
        "send_span_s": send_span,
    }


def run(
    spec: RunSpec,
    out_dir: Path,
    echo: bool = False,
    context: dict | None = None,
    workload: tuple | None = None,
) -> dict:
    """Run, write summary.json, requests.jsonl, metrics/ and telemetry.csv; return the summary.

    `workload` is build_workload(spec)'s result, when the caller reuses one across runs.
    Raises BenchError before any load for bad input. A run whose requests failed still
    writes everything it has; the summary says how many failed and why.
    """
    spec.check()
    check_room(out_dir, spec.num_prompts)
    preflight(spec)
    workload, dataset_info, ignore_eos = workload or build_workload(spec)
    if spec.ignore_eos is not None:
        ignore_eos = spec.ignore_eos
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        progress = Progress(out_dir / "progress.log", echo)
    except OSError as err:
        raise BenchError(f"cannot write the results under {out_dir}: {err.strerror}") from None
    sampler = MetricsSampler(spec.metrics_urls, spec.metrics_interval, out_dir / "metrics")
    started_at = time.time()
    progress.line(
        f"start: {spec.num_prompts} requests, rate {spec.request_rate}, "
        f"concurrency {spec.max_concurrency or 'unlimited'}",
        force=True,
    )
    outcomes: list[metrics.RequestOutcome] = []
    state: dict = {}
    interrupted = ""
    with (
        telemetry.Telemetry(str(out_dir / "telemetry.csv"), spec.processes),
        telemetry.HostLoad(spec.processes) as host,
    ):
        try:
            duration, extra = asyncio.run(
                _run(spec, workload, ignore_eos, progress, sampler, outcomes, state)
            )
        except (KeyboardInterrupt, asyncio.CancelledError) as err:
            # SIGINT or SIGTERM: during the load through _stop_on_signals, before or
            # after it through stop_on_sigterm or Python's own SIGINT handler.
            if isinstance(err, asyncio.CancelledError) and "interrupted" not in state:
                raise
            interrupted = state.get("interrupted") or str(err) or "SIGINT"
            duration = time.perf_counter() - state["start"] if "start" in state else 0.0
            extra = {**state.get("warm", {}), "send_span_s": state.get("send_span_s", 0.0)}
    outcomes.sort(key=lambda o: o.index)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "started_at": started_at,
        "ended_at": time.time(),
        **metrics.summarize(outcomes, duration, spec.percentiles, spec.slo),
        **load_figures(outcomes, spec, extra.pop("send_span_s")),
        "warmup": extra,
        # The requests that ended before the run was stopped are kept, and say so.
        "interrupted": bool(interrupted),
        "host_load": host.figures,
        "server": sampler.deltas(),
        "dataset": dataset_info,
        "spec": {
            k: v for k, v in spec.__dict__.items() if k not in ("api_key", "slo", "processes")
        },
        "slo": spec.slo.__dict__,
        **(context or {}),
    }
    try:  # summary.json last: its presence says the rest is complete
        sampler.save()
        write_atomic(
            out_dir / "requests.jsonl",
            "".join(json.dumps(o.to_record()) + "\n" for o in outcomes),
        )
        write_atomic(
            out_dir / "summary.json", json.dumps(summary, indent=1, sort_keys=True, default=str)
        )
    except OSError as err:
        progress.close()
        raise BenchError(
            f"the run's results could not be written under {out_dir}: {err.strerror or err}; "
            "no partial file is left and earlier runs are untouched"
        ) from None
    progress.line(
        f"{'interrupted (' + interrupted + ')' if interrupted else 'end'}: "
        f"{summary['completed']} completed, {summary['failed']} failed, "
        f"{summary['request_throughput']:.2f} req/s",
        force=True,
    )
    progress.close()
    if interrupted:
        raise KeyboardInterrupt(interrupted)
    return summary


def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_sigterm() -> None:
    """SIGTERM stops a run as SIGINT does: what it did is saved, marked interrupted."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
