# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where servelab keeps things on a node, and where pip installs from there.

The roles reach these through the filters of plugins/filter/serving.py, so that each
convention has one definition:

    <work_dir>/stacks/<group>/<service>/   one directory per supervised service
    <work_dir>/mps/{pipe,log}/             the host's one MPS control daemon
    <wheelhouse>                           pip's only source when set (offline installs)
    <checkout>/render/<group>/             what a Kubernetes group applies (controller)
"""

from __future__ import annotations

import os

STACKS = "stacks"
MPS = "mps"
RENDER = "render"


def home_path(path: str, home: str) -> str:
    """A configured path with its leading ~ replaced by the node user's home directory."""
    path = str(path)
    return f"{home}{path[1:]}" if path.startswith("~") and home else path


def stack_dir(work_dir: str, group: str, home: str = "") -> str:
    """The directory of a group's stack (its services) under the work directory."""
    if not group:
        raise ValueError("stack_dir needs the group (servelab_group)")
    return f"{home_path(work_dir, home)}/{STACKS}/{group}"


def mps_dir(work_dir: str, home: str = "") -> str:
    """The MPS control daemon's directory (pipe/ and log/) under the work directory: one
    daemon a host, shared by every group's engines there."""
    return f"{home_path(work_dir, home)}/{MPS}"


def render_dir(playbook_dir: str, group: str) -> str:
    """Where a group's Kubernetes files are written, beside the playbooks' checkout."""
    if not group:
        raise ValueError("render_dir needs the group")
    return os.path.join(os.path.dirname(os.path.normpath(playbook_dir)), RENDER, group)


def group_peers(groups_enabled: list, groups: dict, hostvars) -> list:
    """The settings of every enabled group, read from its first host: groups that share a
    cluster or a GPU decide together how it is shared."""
    return [hostvars[groups[group][0]] for group in groups_enabled]


def pip_source_args(wheelhouse: str | None) -> list[str]:
    """pip install arguments that take every package from the wheelhouse, if one is set."""
    return ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
