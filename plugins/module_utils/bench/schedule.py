# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""When each measured request of a run is sent: seconds from the run's start."""

from __future__ import annotations

from collections.abc import Iterator

from . import arrivals
from .spec import RunSpec


def send_times(spec: RunSpec, count: int) -> Iterator[float]:
    """Send offsets of the measured requests.

    A request count is spread over exactly count/rate seconds (arrivals.schedule); a
    duration runs an open process with no end: the caller stops at its deadline."""
    if not spec.duration:
        yield from arrivals.offsets(
            count, spec.request_rate, spec.seed, spec.arrivals, spec.burstiness
        )
        return
    gaps = arrivals.intervals(spec.request_rate, spec.seed, spec.arrivals, spec.burstiness)
    offset = 0.0
    while True:
        offset += next(gaps)
        yield offset
