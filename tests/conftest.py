"""Shared test setup: make the collection's Python importable without installing it."""

import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
for path in (TOP / "kconfig" / "scripts", TOP / "collections"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
