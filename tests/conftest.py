"""Shared test setup: make the collection's Python importable without installing it."""

import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
for path in (TOP / "kconfig" / "scripts", TOP / "collections"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

_terminal = None


def pytest_sessionstart(session):
    global _terminal
    _terminal = session.config.pluginmanager.get_plugin("terminalreporter")


def pytest_runtest_logreport(report):
    """A failure's traceback as it happens, not only in the summary at the end: CI stops
    at its time limit, and session 19's run was stopped after a failure it never showed."""
    if report.failed and _terminal is not None:
        _terminal.write_line(f"\n{report.nodeid} ({report.when}) failed:")
        text = report.longreprtext  # the test's own frame first, the innermost last
        _terminal.write_line(text if len(text) < 6000 else f"{text[:3000]}\n...\n{text[-3000:]}")
