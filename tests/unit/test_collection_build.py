"""The collection builds, installs, and its playbooks resolve from the installed copy."""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_build_install_and_run_playbooks_by_fqcn(tmp_path):
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "build", "--output-path", tmp_path, TOP],
        check=True,
        capture_output=True,
    )
    (tarball,) = tmp_path.glob("servelab-vllm-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "plugins/modules/local_service.py" in names
    assert "roles/vllm_engine/meta/argument_specs.yml" in names
    assert not [n for n in names if n.startswith((".venv", "collections", "results"))]
    # Outside the checkout, with an empty ansible.cfg: only the installed copy resolves.
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "c"),
        ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
    )
    # Its dependency kubernetes.core, as a user who installed it first has it: the pinned
    # copy satisfies galaxy.yml's range, so the install needs no network.
    shutil.copytree(
        TOP / "collections/ansible_collections/kubernetes/core",
        tmp_path / "c/ansible_collections/kubernetes/core",
    )
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "install", "-p", tmp_path / "c", tarball],
        check=True,
        capture_output=True,
        cwd=tmp_path,
        env=env,
    )
    assert (tmp_path / "c/ansible_collections/servelab/vllm/playbooks/deploy.yml").is_file()
    for playbook in ("servelab.vllm.deploy", "servelab.vllm.vllm", "servelab.vllm.teardown"):
        proc = subprocess.run(
            [BIN / "ansible-playbook", "--syntax-check", "-i", "localhost,", playbook],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
