# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where servelab keeps things on a node, and where pip installs from there.

The roles reach these through the filters of plugins/filter/serving.py, so that each
convention has one definition:

    <work_dir>/stacks/<group>/<service>/   one directory per supervised service
    <wheelhouse>                           pip's only source when set (offline installs)
"""

from __future__ import annotations

STACKS = "stacks"


def home_path(path: str, home: str) -> str:
    """A configured path with its leading ~ replaced by the node user's home directory."""
    path = str(path)
    return f"{home}{path[1:]}" if path.startswith("~") and home else path


def stack_dir(work_dir: str, group: str, home: str = "") -> str:
    """The directory of a group's stack (its services) under the work directory."""
    if not group:
        raise ValueError("stack_dir needs the group (servelab_group)")
    return f"{home_path(work_dir, home)}/{STACKS}/{group}"


def pip_source_args(wheelhouse: str | None) -> list[str]:
    """pip install arguments that take every package from the wheelhouse, if one is set."""
    return ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
