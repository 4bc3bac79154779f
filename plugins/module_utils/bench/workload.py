# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's workload: the requests a RunSpec asks for (warm-up first), from its dataset."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from . import datasets
from .spec import BenchError, RunSpec


class Workload(NamedTuple):
    requests: list[datasets.BenchRequest]  # spec.warmup_requests warm-up ones first
    info: dict  # what the reader reported, recorded in the summary
    ignore_eos: bool  # what the workload wants when the spec does not say


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


def build(spec: RunSpec) -> Workload:
    """The requests (warm-up first), what the reader reported, and whether to ignore EOS."""
    tokenizer = HfTokenizer(spec.tokenizer_path) if spec.tokenizer_path else None
    total = spec.warmup_requests + max(spec.num_prompts, 1)
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
            return Workload(reqs, info, False)
        if spec.dataset == "random":
            if tokenizer is None:
                raise BenchError("the random workload needs the model's tokenizer (tokenizer_path)")
            reqs = datasets.random_prompts(
                total, spec.input_len, spec.output_len or 128, spec.seed, tokenizer,
                spec.prefix_len,
            )  # fmt: skip
            return Workload(reqs, info, True)
        if spec.dataset in ("short", "long"):
            reqs = datasets.fixed_payload(total, spec.dataset, spec.output_len, tokenizer)
            return Workload(reqs, info, True)
        if spec.dataset == "multi_turn":
            reqs = datasets.multi_turn(total, spec.seed, spec.output_len, tokenizer=tokenizer)
            return Workload(reqs, info, False)
    except datasets.DatasetError as err:
        raise BenchError(str(err)) from None
    raise BenchError(
        f"workload {spec.dataset!r}: expected sharegpt, random, short, long or multi_turn"
    )
