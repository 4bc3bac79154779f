# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a supervised service runs (command line, environment, log) and what it is.

spec.json holds both: ServiceSpec.to_json() and, under "service", the Manifest that its
readers (status, the benchmark) use instead of parsing the command line back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

MANIFEST_KEY = "service"
# engine and router answer the OpenAI API; a port-forward only forwards a port to one.
KINDS = ("engine", "router", "port-forward", "other")


@dataclass
class ServiceSpec:
    name: str
    argv: list[str]
    log: str
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        """Hash of everything that, when changed, needs a restart (secrets included)."""
        blob = json.dumps([self.argv, self.env, self.secret_env, self.log], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "argv": self.argv,
            "env": {**self.env, **self.secret_env},
            "log": self.log,
            "hash": self.digest(),
        }


@dataclass
class Manifest:
    """What a service is: its kind, where a client reaches it, what it serves.

    api_key is what a client sends; it lives only in spec.json, which is owner-only and
    holds the key already (in the service's environment).
    """

    kind: str = "other"
    host: str = "127.0.0.1"  # as a client on the same host reaches it (never a wildcard)
    port: int = 0
    model_path: str = ""
    version: str = ""
    api_key: str = ""
    # A CPU engine's dtype and core sets as chosen at deploy (hardware.Placement): the
    # benchmark records this decision instead of taking it again.
    placement: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_spec(cls, spec: dict) -> Manifest | None:
        """The manifest stored in a spec.json, or None for a spec written without one."""
        data = spec.get(MANIFEST_KEY)
        if not isinstance(data, dict):
            return None
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        manifest = cls(**known)
        manifest.port = int(manifest.port or 0)
        return manifest
