# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the typed settings into engine and router command lines."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.servelab.vllm.plugins.module_utils import commands


def _wrap(func):
    def call(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (KeyError, ValueError) as err:
            raise AnsibleFilterError(f"{func.__name__}: {err}") from err

    call.__name__ = func.__name__
    call.__doc__ = func.__doc__
    return call


class FilterModule:
    """servelab.vllm serving filters."""

    def filters(self):
        return {
            "router_policy": _wrap(commands.router_policy),
            "engine_argv": _wrap(commands.engine_argv),
            "engine_env": _wrap(commands.engine_env),
            "engine_urls": _wrap(commands.engine_urls),
            "router_argv": _wrap(commands.router_argv),
        }
