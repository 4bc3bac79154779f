# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a client on the same host reaches a service from the address it binds to."""

from __future__ import annotations

# Bind addresses that mean "every interface": a client reaches those through loopback.
WILDCARDS = ("", "0.0.0.0", "::")
LOOPBACK = "127.0.0.1"


def client_host(bind_address: str | None) -> str:
    """The address a client on the same host connects to, for a service bound to this one."""
    return LOOPBACK if (bind_address or "") in WILDCARDS else str(bind_address)
