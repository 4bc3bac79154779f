"""The tree's own rules: tests share helpers through tests/helpers, never through each
other; and every file, Make target and setting a doc names exists."""

import ast
import re
import tomllib
from pathlib import Path

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


# The docs we write; reports that `make vllm-results` wrote, kept as evidence, name plots
# that were not kept with them.
DOCS = [
    TOP / "README.md",
    TOP / "CHANGELOG.md",
    *sorted(p for p in (TOP / "docs").rglob("*.md") if p.name != "report.md"),
]
TOP_DIRS = ("roles", "plugins", "kconfig", "playbooks", "tests", "benchmarks", "scripts",
            "docs", "inventories", "bin", ".ci")  # fmt: skip


GENERATED = ("inventories/generated/",)  # written by make from .config, not in the tree


def doc_text() -> dict[Path, str]:
    return {path: path.read_text() for path in DOCS}


def code_in(text: str) -> str:
    """The doc's code: fenced blocks and inline spans, where commands are named."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", text))


def kconfig_symbols() -> set[str]:
    names = set()
    for path in (TOP / "kconfig").glob("Kconfig*"):
        names.update(re.findall(r"^(?:menu)?(?:config|choice) (\w+)", path.read_text(), re.M))
    return names


def test_every_file_a_doc_names_exists():
    missing = []
    for path, text in doc_text().items():
        named = set(re.findall(rf"`((?:{'|'.join(map(re.escape, TOP_DIRS))})/[\w./-]+)`", text))
        named |= {
            (path.parent / link).resolve().relative_to(TOP).as_posix()
            for link in re.findall(r"\]\(((?!https?:|#)[^)#\s]+)", text)
            if (path.parent / link).resolve().is_relative_to(TOP)
        }
        for rel in named:
            rel = rel.rstrip("/.")
            placeholder = any(c in rel for c in "<>*") or re.search(r"/[A-Z]+(/|$)", rel)
            if not (TOP / rel).exists() and not placeholder and not rel.startswith(GENERATED):
                missing.append(f"{path.relative_to(TOP)}: {rel}")
    assert not missing, "\n".join(sorted(missing))


def test_every_make_target_a_doc_names_exists():
    makefile = (TOP / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:", makefile, re.M))
    defconfigs = {p.name for p in (TOP / "kconfig/defconfigs").iterdir()}
    missing = []
    for path, text in doc_text().items():
        for target in set(re.findall(r"\bmake ([a-z][\w-]*\w)\b(?!-)", code_in(text))):
            if target.startswith("defconfig-"):
                ok = target.removeprefix("defconfig-") in defconfigs | {"NAME"}
            else:
                ok = target in targets
            if not ok:
                missing.append(f"{path.relative_to(TOP)}: make {target}")
    assert not missing, "\n".join(sorted(missing))


def test_every_setting_a_doc_names_exists():
    from servelab_config import REMOVED, RENAMED

    known = kconfig_symbols() | set(RENAMED) | set(REMOVED)
    missing = []
    for path, text in doc_text().items():
        if path.name == "CHANGELOG.md":
            continue  # history names what was renamed or removed
        for name in set(re.findall(r"\bCONFIG_(VLLM_\w+?)(?:=|\b)", text)):
            if name not in known and not name.endswith("_"):
                missing.append(f"{path.relative_to(TOP)}: CONFIG_{name}")
        for name in set(re.findall(r"`(VLLM_(?:BENCHMARK|RESULTS)_\w+)", text)):
            if name not in known and not name.endswith("_"):
                missing.append(f"{path.relative_to(TOP)}: {name}")
    assert not missing, "\n".join(sorted(missing))


def test_the_defconfig_table_lists_every_defconfig():
    table = (TOP / "docs/configuration.md").read_text()
    for path in (TOP / "kconfig/defconfigs").iterdir():
        assert f"| `{path.name}` |" in table, path.name


def test_the_collection_version_is_the_changelogs_newest():
    galaxy = re.search(r"^version: (\S+)", (TOP / "galaxy.yml").read_text(), re.M).group(1)
    newest = re.search(r"^## (\S+)", (TOP / "CHANGELOG.md").read_text(), re.M).group(1)
    assert galaxy == newest


def test_results_depend_on_the_contract_alone():
    """results/ reads what the benchmark wrote through layout.py and records.py, never
    through the client's code (bench/) or the nodes' (mps, supervisor, ...)."""
    allowed = {"layout", "records", "atomic"}
    for path in sorted((TOP / "plugins/module_utils/results").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2:  # from .. import x
                names = {node.module} if node.module else {a.name for a in node.names}
                assert names <= allowed, f"{path.name} imports {names - allowed}"
            elif isinstance(node, ast.ImportFrom) and "module_utils" in (node.module or ""):
                assert node.module.endswith(tuple(allowed)), f"{path.name}: {node.module}"


def test_one_send_path_and_no_import_cycle():
    """loop.py (one process) and workers.py (N processes) both send through
    sending.send_share; workers.py does not import loop.py, at the top or in a function."""
    bench = TOP / "plugins/module_utils/bench"
    assert "loop" not in {m.rsplit(".", 1)[-1] for m in imported_modules(bench / "workers.py")}
    for name in ("loop.py", "workers.py"):
        text = (bench / name).read_text()
        assert "send_share(" in text and "send_on_time(" not in text, name
