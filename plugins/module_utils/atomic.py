# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way servelab writes a file: write beside it, fsync, rename.

A reader sees the old file or the whole new one; a failure (a full disk, a signal)
leaves no partial file behind, and the temporary name (.<name>.tmp.<pid>, hidden) is
unique per process so two writers never share one.

Standard library only: scripts/ import it from the checkout, and supervisor.py, which
also runs alone on a node, keeps a copy that tests hold to the same result.
"""

from __future__ import annotations

import contextlib
import json
import os


def write_atomic(path: str | os.PathLike, text: str | bytes, mode: int = 0o644) -> None:
    """Replace path with text (UTF-8 when a str), or leave it as it was on any failure.

    mode is that of a newly created file (less the umask), as with open(2).
    """
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.tmp.{os.getpid()}")
    data = text.encode() if isinstance(text, str) else text
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, data, mode: int = 0o644) -> None:
    """write_atomic of data as indented JSON with sorted keys (what is not JSON: str())."""
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True, default=str), mode)
