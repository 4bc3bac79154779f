"""The streaming client against a local server that speaks the OpenAI SSE protocol.

The server here is a protocol stand-in with known timing, so that stamps and error
classes can be checked exactly; tests/integration runs the client against real vLLM.
"""

import asyncio
import contextlib
import gc
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from ansible_collections.servelab.vllm.plugins.module_utils.bench import client, datasets, selfcheck

GAP = 0.05  # seconds between streamed chunks


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    mode = body["prompt"]
    if mode == "http500":
        return web.Response(status=500, text="boom")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    n = body["max_tokens"]
    for i in range(n):
        if mode == "reset" and i == 2:
            request.transport.close()
            return resp
        await asyncio.sleep(GAP)
        # vLLM streams a token that decodes to no text yet as an empty-text chunk.
        text = "" if mode == "empty-first" and i == 0 else f"t{i} "
        chunk = {"choices": [{"index": 0, "text": text}]}
        await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
    usage = {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}
    await resp.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def call(prompt: str, max_tokens: int, timeout: float = 30, save_text: bool = False):
    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            req = datasets.BenchRequest(prompt, 5, max_tokens)
            target = client.Target(
                f"http://127.0.0.1:{port}", "m", timeout=timeout, save_text=save_text
            )
            return await client.send(session, target, req, 0, time.perf_counter())
    finally:
        await runner.cleanup()


def test_chunks_are_stamped_on_arrival():
    out = asyncio.run(call("ok", 6))
    assert out.success and out.output_tokens == 6 and out.prompt_tokens == 5
    assert out.chunks == 6 and len(out.itl) == 5
    assert out.ttft == pytest.approx(GAP, abs=0.03)
    assert all(x == pytest.approx(GAP, abs=0.03) for x in out.itl)
    assert out.latency == pytest.approx(6 * GAP, abs=0.05)
    assert out.tpot == pytest.approx(GAP, abs=0.02)
    assert out.text == "" and "text" not in out.to_record()


def test_a_chunk_is_stamped_when_it_is_read_not_when_it_is_parsed(monkeypatch):
    """Between each socket read and its parse the loop is held 30 ms (as other streams'
    reads and parses hold it under load): the first token is still timed at the server's
    pace, and no watch is left behind."""
    feed = client._WatchedReader.feed_data

    def held(self, data, *args):
        asyncio.get_running_loop().call_soon(time.sleep, 0.03)  # runs before the parse
        return feed(self, data, *args)

    monkeypatch.setattr(client._WatchedReader, "feed_data", held)
    out = asyncio.run(call("ok", 4))
    assert out.success and out.chunks == 4
    assert out.ttft == pytest.approx(GAP, abs=0.015)  # parsed at GAP + 0.03
    assert client._WATCHED == {}


def test_a_token_with_empty_text_is_still_the_first_token():
    out = asyncio.run(call("empty-first", 4, save_text=True))
    assert out.chunks == 4 and len(out.itl) == 3
    assert out.ttft == pytest.approx(GAP, abs=0.03)
    assert out.text == "t1 t2 t3 "


def test_answers_are_kept_only_when_asked_for():
    out = asyncio.run(call("ok", 3, save_text=True))
    assert out.text == "t0 t1 t2 " and out.to_record()["text"] == "t0 t1 t2 "


@pytest.mark.parametrize(
    ("prompt", "timeout", "error_class"),
    [("http500", 30, "http_500"), ("reset", 30, "connection_reset"), ("ok", 0.12, "timeout")],
)
def test_failures_are_classified_not_raised(prompt, timeout, error_class):
    out = asyncio.run(call(prompt, 10, timeout))
    assert not out.success and out.error_class == error_class, out


def test_chat_payload_and_session_header():
    req = datasets.BenchRequest([{"role": "user", "content": "hi"}], 0, 8, session="s1")
    body = client.payload(req, "m", "chat", ignore_eos=False)
    assert body["messages"][0]["content"] == "hi" and body["max_completion_tokens"] == 8
    assert body["stream_options"] == {"include_usage": True} and body["user"] == "s1"
    flat = client.payload(req, "m", "completions", ignore_eos=True)
    assert flat["prompt"].endswith("assistant:") and flat["ignore_eos"] is True


@contextlib.contextmanager
def serving():
    """The stand-in server on a port of its own, in a thread: its base URL."""

    async def models(_request):
        return web.json_response({"data": [{"id": "m"}]})

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    server = web.AppRunner(app)
    loop.run_until_complete(server.setup())
    site = web.TCPSite(server, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def bench_cli(url: str, out: Path, *extra: str) -> subprocess.Popen:
    top = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, str(top / "bin/servelab-bench"), "--url", url, "--model", "m",
         "--dataset", "short", "--output-len", "10", "--warmup-requests", "0", "--out", str(out),
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def wait_for_done(out: Path, count: int, timeout: float = 60) -> None:
    """Until the run's progress.log says `count` requests ended (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = out / "progress.log"
        if log.exists() and any(
            int(n) >= count for n in re.findall(r"(\d+) done", log.read_text())
        ):
            return
        time.sleep(0.1)


def test_an_interrupted_run_keeps_what_it_did(tmp_path):
    """SIGTERM (as a stopped playbook sends) mid-run: the requests that ended are saved,
    the summary says interrupted, and nothing half-written is left."""
    out = tmp_path / "run"
    with serving() as url:
        proc = bench_cli(url, out, "--request-rate", "4", "--num-prompts", "40")
        wait_for_done(out, 3)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted (SIGTERM)" in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert 3 <= summary["completed"] < 40
    records = (out / "requests.jsonl").read_text().splitlines()
    assert len(records) == summary["completed"] + summary["failed"]
    assert not [p.name for p in out.rglob("*") if ".tmp" in p.name]


@pytest.fixture
def small_fs(tmp_path):
    """A 256 KiB tmpfs holding an earlier run (root only; skipped elsewhere)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    earlier = mount / "earlier" / "summary.json"
    earlier.parent.mkdir()
    earlier.write_text('{"completed": 8}')
    try:
        yield mount, earlier
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_results_directory_is_refused_before_any_load(small_fs):
    mount, earlier = small_fs
    with serving() as url:
        proc = bench_cli(url, mount / "new", "--request-rate", "inf", "--num-prompts", "4")
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, output
    assert f"free under {mount}" in output and "VLLM_BENCHMARK_RESULTS_DIR" in output
    assert not (mount / "new").exists()  # nothing was sent, nothing written
    assert earlier.read_text() == '{"completed": 8}'


def test_a_disk_that_fills_during_a_run_leaves_no_partial_file(small_fs, monkeypatch):
    """The check before the run passed (the disk filled later): writing the results fails
    with a clear error, and no half-written file is left."""
    from ansible_collections.servelab.vllm.plugins.module_utils.bench import preflight, runner

    mount, earlier = small_fs
    monkeypatch.setattr(preflight, "check_room", lambda *_: None)
    filler = mount / "filler"
    with serving() as url:
        spec = runner.RunSpec(url=url, model="m", dataset="short", num_prompts=4,
                              output_len=10, warmup_requests=0, request_rate=float("inf"),
                              save_text=True)  # fmt: skip
        # Fill what is left, then give back a few KiB: enough to start, not to finish.
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"x" * 4096)
        filler.write_bytes(filler.read_bytes()[: -2 * 4096])
        with pytest.raises(runner.BenchError, match=r"could not be written under .*no partial"):
            runner.run(spec, mount / "new")
    assert not [p.name for p in mount.rglob("*") if ".tmp" in p.name]
    assert not (mount / "new" / "summary.json").exists()
    assert earlier.read_text() == '{"completed": 8}'


def test_every_run_reports_the_clients_own_lag_and_cpu(tmp_path):
    """summary.json's `client`: one worker (this process) with its send lag, loop lag and
    CPU over the measured phase; requests.jsonl has each request's send lag."""
    out = tmp_path / "run"
    with serving() as url:
        proc = bench_cli(url, out, "--request-rate", "20", "--num-prompts", "20")
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    summary = json.loads((out / "summary.json").read_text())
    check = summary["client"]
    (worker,) = check["workers"]
    assert worker["requests"] == 20 and worker["pid"] != 0
    assert 0 <= worker["send_lag_p50_ms"] <= worker["send_lag_p99_ms"] <= worker["send_lag_max_ms"]
    # 20 requests at 20 req/s, then 10 chunks 50 ms apart: about 1.5 s, 10 ms ticks.
    assert worker["wall_seconds"] == pytest.approx(summary["duration"], abs=0.05)
    assert worker["loop_ticks"] >= 0.5 * summary["duration"] / 0.010
    assert 0 <= worker["loop_lag_p99_ms"] <= worker["loop_lag_max_ms"]
    assert 0 < worker["cpu_pct"] <= 100 * os.cpu_count()
    assert check["send_lag_p99_ms"] == worker["send_lag_p99_ms"]
    assert check["cpu_pct_max"] == worker["cpu_pct"] and check["send_lag_judged"] is True
    lag = worker["send_lag_p50_ms" if worker["requests"] < 100 else "send_lag_p99_ms"]
    over = lag > 1.0 or worker["cpu_pct"] > 90.0
    assert check["bound"] is over and bool(check["why"]) is over, check
    lags = [json.loads(line)["send_lag"] for line in (out / "requests.jsonl").open()]
    assert len(lags) == 20 and all(0 <= lag < 1 for lag in lags)
    assert max(lags) * 1000 == pytest.approx(worker["send_lag_max_ms"])


def test_a_blocked_event_loop_marks_the_run_client_bound(tmp_path, monkeypatch):
    """Every send blocks the loop for 10 ms while requests are due every 5 ms: the sends
    fall behind their schedule, and the summary says the client was the bottleneck."""
    from ansible_collections.servelab.vllm.plugins.module_utils.bench import runner, sending

    real_send = sending.send

    async def blocking_send(*args, **kwargs):
        time.sleep(0.010)  # a callback that holds the loop, as a CPU-bound client would
        return await real_send(*args, **kwargs)

    monkeypatch.setattr(sending, "send", blocking_send)
    with serving() as url:
        spec = runner.RunSpec(
            url=url,
            model="m",
            dataset="short",
            num_prompts=30,
            output_len=4,
            warmup_requests=0,
            request_rate=200.0,
            client_workers=1,
        )  # fmt: skip  (the patched send runs here)
        summary = runner.run(spec, tmp_path / "run")
    check = summary["client"]
    assert check["bound"] is True, check
    # The 30th request is due at 145 ms and sets off after 29 blocks of 10 ms, at 290 ms.
    assert check["send_lag_p99_ms"] > 100
    # 30 sends: judged on the median, which the blocked loop pushes far behind too.
    assert "median send lag" in check["why"] and "above 1 ms" in check["why"]
    assert check["workers"][0]["loop_lag_max_ms"] >= 9


def test_worker_processes_keep_the_schedule_and_merge_into_one_run(tmp_path):
    """Two worker processes: the same 60 requests as one process sends, each at its own
    send time, merged by index into one requests.jsonl; the summary reports both
    workers (their own pids) and the coordinator's figures agree with them."""
    runs = {}
    with serving() as url:
        for workers in ("1", "2"):
            out = tmp_path / f"w{workers}"
            proc = bench_cli(url, out, "--request-rate", "40", "--num-prompts", "60",
                             "--client-workers", workers)  # fmt: skip
            output, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, output
            records = [json.loads(line) for line in (out / "requests.jsonl").open()]
            runs[workers] = (json.loads((out / "summary.json").read_text()), records)
    for summary, records in runs.values():
        assert summary["completed"] == 60 and summary["failed"] == 0
        assert [r["index"] for r in records] == list(range(60))
        # Sent at 40 req/s: request i is due at (i + 1) / 40 s and leaves < 20 ms late.
        assert all(0 <= r["start"] - (r["index"] + 1) / 40 < 0.02 for r in records), records[:3]
    one, two = runs["1"][0]["client"], runs["2"][0]["client"]
    assert len(one["workers"]) == 1 and one["workers"][0]["requests"] == 60
    assert [w["worker"] for w in two["workers"]] == [0, 1]
    assert [w["requests"] for w in two["workers"]] == [30, 30]
    assert len({w["pid"] for w in two["workers"]}) == 2
    assert two["send_lag_p99_ms"] == max(w["send_lag_p99_ms"] for w in two["workers"])
    # No cyclic garbage collection stopped either client in its measured phase (600
    # chunks allocate far past the collector's threshold of 700 objects).
    assert [w["gc_collections"] for w in one["workers"] + two["workers"]] == [0, 0, 0]
    assert runs["2"][0]["median_tpot_ms"] == pytest.approx(GAP * 1000, abs=10)


def test_busy_polling_workers_report_the_share_of_their_core_at_work(tmp_path):
    """--client-busy-poll: one process and two workers keep the schedule as a sleeping
    client does; each reports its loop turns and the share of its CPU spent on work,
    and a full core is not taken for a client-bound run."""
    with serving() as url:
        for workers in ("1", "2"):
            out = tmp_path / f"w{workers}"
            proc = bench_cli(url, out, "--request-rate", "40", "--num-prompts", "40",
                             "--client-workers", workers, "--client-busy-poll")  # fmt: skip
            output, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, output
            summary = json.loads((out / "summary.json").read_text())
            assert summary["completed"] == 40 and summary["spec"]["client_busy_poll"] is True
            check = summary["client"]
            assert check["busy_poll"] is True and len(check["workers"]) == int(workers)
            for w in check["workers"]:
                assert w["busy_poll"] is True and w["loop_turns"] > 1000
                assert 0 <= w["loop_busy_pct"] < selfcheck.BUSY_PCT, w
            assert check["loop_busy_pct_max"] == max(w["loop_busy_pct"] for w in check["workers"])
            assert "% of a core" not in check["why"]  # the CPU rule is not applied
            records = [json.loads(line) for line in (out / "requests.jsonl").open()]
            assert all(0 <= r["start"] - (r["index"] + 1) / 40 < 0.02 for r in records)


def test_a_stop_reaches_every_worker_and_keeps_what_they_did(tmp_path):
    out = tmp_path / "run"
    with serving() as url:
        proc = bench_cli(url, out, "--request-rate", "4", "--num-prompts", "40",
                         "--client-workers", "2")  # fmt: skip
        wait_for_done(out, 3)
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()  # fmt: skip
        commands = {c: _cmdline(c) for c in children}
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and 3 <= summary["completed"] < 40
    assert len(summary["client"]["workers"]) == 2
    records = (out / "requests.jsonl").read_text().splitlines()
    assert len(records) == summary["completed"] + summary["failed"]
    workers = [c for c, command in commands.items() if "spawn_main" in command]
    assert len(workers) == 2, commands
    deadline = time.monotonic() + 10
    while [c for c in workers if Path(f"/proc/{c}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in workers if Path(f"/proc/{c}").exists()]  # no worker left


def _cmdline(pid: str) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def test_the_benchmark_module_runs_its_workers_too(tmp_path):
    """Through Ansible (the module's code runs from AnsiballZ's payload): the spawned
    workers find the collection as the module did."""
    from helpers.modules import ansible_module

    out = tmp_path / "run"
    with serving() as url:
        args = {"url": url, "model": "m", "dataset": "short", "output_len": 4,
                "num_prompts": 12, "request_rate": "40", "client_workers": 2,
                "out_dir": str(out), "point": "default", "repetition": 1}  # fmt: skip
        run = ansible_module("servelab.vllm.benchmark", json.dumps(args))
    assert '"changed": true' in run.stdout, run.stdout[-3000:]
    summary = json.loads((out / "default" / "rep-1" / "summary.json").read_text())
    assert summary["completed"] == 12
    assert [w["requests"] for w in summary["client"]["workers"]] == [6, 6]


def test_the_collector_is_paused_only_for_the_measured_phase():
    """gc_paused: the collector is off inside, back as it was after, also after an
    error; what lived before is frozen out of collections only meanwhile."""
    from ansible_collections.servelab.vllm.plugins.module_utils.bench.sending import gc_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        raise RuntimeError("a run that fails")
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()
