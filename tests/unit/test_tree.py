"""The tree's own rules: tests share helpers through tests/helpers, never through each
other; and every file, Make target and setting a doc names exists."""

import ast
import re
from pathlib import Path

import tomllib

TOP = Path(__file__).resolve().parents[2]
TEST_FILES = sorted((TOP / "tests").rglob("test_*.py"))


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_test_file_imports_another():
    tests = {p.stem for p in TEST_FILES}
    for path in TEST_FILES:
        wrong = {m for m in imported_modules(path) if m.split(".")[-1] in tests}
        assert not wrong, f"{path.relative_to(TOP)} imports {wrong}: move it to tests/helpers"


def test_no_pythonpath_trick():
    pytest_options = tomllib.loads((TOP / "pyproject.toml").read_text())["tool"]["pytest"]
    assert "pythonpath" not in pytest_options["ini_options"]
    assert len(TEST_FILES) > 20 and (TOP / "tests/helpers/__init__.py").is_file()
