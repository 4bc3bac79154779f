# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's progress: a line every few seconds, to progress.log (tail -f) and stdout."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path


class Progress:
    """A progress line every few seconds, to a file (tail -f) and optionally stdout."""

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
