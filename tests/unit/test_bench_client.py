"""The streaming client against a local server that speaks the OpenAI SSE protocol.

The server here is a protocol stand-in with known timing, so that stamps and error
classes can be checked exactly; tests/integration runs the client against real vLLM.
"""

import asyncio
import json
import re
import time

import aiohttp
import pytest
from aiohttp import web
from ansible_collections.servelab.vllm.plugins.module_utils.bench import client, datasets

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
            return await client.send(
                session,
                f"http://127.0.0.1:{port}/v1/completions",
                "completions",
                req,
                0,
                "m",
                {},
                timeout,
                time.perf_counter(),
                save_text=save_text,
            )
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


def test_an_interrupted_run_keeps_what_it_did(tmp_path):
    """SIGTERM (as a stopped playbook sends) mid-run: the requests that ended are saved,
    the summary says interrupted, and nothing half-written is left."""
    import signal
    import subprocess
    import sys
    import threading
    from pathlib import Path

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
    out = tmp_path / "run"
    top = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, str(top / "bin/servelab-bench"), "--url", f"http://127.0.0.1:{port}",
         "--model", "m", "--dataset", "short", "--output-len", "10", "--request-rate", "4",
         "--num-prompts", "40", "--warmup", "0", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log = out / "progress.log"
            if log.exists() and any(
                int(n) >= 3 for n in re.findall(r"(\d+) done", log.read_text())
            ):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert proc.returncode == 130, output
    assert "interrupted (SIGTERM)" in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert 3 <= summary["completed"] < 40
    records = (out / "requests.jsonl").read_text().splitlines()
    assert len(records) == summary["completed"] + summary["failed"]
    assert not [p.name for p in out.rglob("*") if ".tmp" in p.name]
