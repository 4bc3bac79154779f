# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a supervised service runs: command line, environment, log."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


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
