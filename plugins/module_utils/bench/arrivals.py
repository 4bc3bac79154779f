# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Arrival processes: gaps between request sends, seeded."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

PROCESSES = ("fixed", "poisson", "gamma")


def intervals(
    rate: float, seed: int, process: str = "poisson", burstiness: float = 1.0
) -> Iterator[float]:
    """Seconds to wait before each request: fixed pace, Poisson or gamma at `rate` per second.

    Fixed pace sends one request every 1/rate seconds: every repetition then offers the
    same pattern, so repetitions differ only by the machine, not by the draw of gaps. A
    gamma process with shape `burstiness` has the same mean rate; shape 1 is Poisson, below
    1 burstier, above 1 more regular, infinite a fixed pace (as in `vllm bench serve`).
    An infinite rate sends everything at once.
    """
    if rate <= 0:
        raise ValueError(f"request rate must be > 0, got {rate}")
    if process not in PROCESSES:
        raise ValueError(f"arrival process {process!r}: expected one of {', '.join(PROCESSES)}")
    if burstiness <= 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    rng = random.Random(seed)
    while True:
        if math.isinf(rate):
            yield 0.0
        elif process == "fixed" or math.isinf(burstiness):
            yield 1.0 / rate  # also the limit of ever more regular gamma gaps
        elif process == "gamma":
            yield rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
        else:
            yield rng.expovariate(rate)


def offsets(
    count: int, rate: float, seed: int, process: str = "poisson", burstiness: float = 1.0
) -> list[float]:
    """Send times (seconds from the start) of `count` requests, spanning exactly count/rate.

    The gaps are drawn as in intervals(), then scaled so that their sum is count/rate, as
    `vllm bench serve` does: the sum of 32 exponential gaps at 4 req/s ranges from about
    6.5 to 10.3 s over seeds 0-5, so unscaled, each seed offered a different mean load
    and runs of one configuration disagreed by the seed alone.
    """
    gaps = intervals(rate, seed, process, burstiness)
    times: list[float] = []
    total = 0.0
    for _ in range(count):
        total += next(gaps)
        times.append(total)
    if times and total > 0:
        scale = count / rate / total
        times = [t * scale for t in times]
    return times
