"""Why a service never came up, from its log."""

import pytest
from ansible_collections.servelab.vllm.plugins.module_utils import readiness

CASES = [
    ("OSError: [Errno 98] Address already in use", "port in use"),
    ("torch.OutOfMemoryError: CUDA out of memory", "out of memory"),
    ("OSError: /x does not appear to have a file named config.json", "model path missing"),
    ("ValueError: Configuration validation failed: Power-of-two policy", "invalid configuration"),
    ("Traceback (most recent call last):\n  File x\nKeyError: 1", "crashed"),
]


@pytest.mark.parametrize(("log", "cause"), CASES)
def test_likely_cause(log, cause):
    assert cause in readiness.likely_cause(log, exited=True)


def test_unknown_causes():
    assert "exited" in readiness.likely_cause("bye", exited=True)
    assert "still starting" in readiness.likely_cause("loading", exited=False)


def test_tail_strips_colours_and_keeps_the_last_lines(tmp_path):
    log = tmp_path / "service.log"
    log.write_text("".join(f"\x1b[32mline {i}\x1b[0m\n" for i in range(100)))
    assert readiness.tail(str(log), 3) == "line 97\nline 98\nline 99"
    assert "no log" in readiness.tail(str(tmp_path / "missing"))
