"""inventories/examples/: what `make inventory-examples` generates, and usable as is."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import servelab_config as sc
import yaml

TOP = Path(__file__).resolve().parents[2]
EXAMPLES = TOP / "inventories" / "examples"
PLATFORMS = {"declared-hosts": "declared_hosts", "existing-cluster": "existing_cluster"}


@pytest.mark.parametrize("name", sorted(sc.EXAMPLES))
def test_example_is_what_its_defconfig_generates(name):
    """A setting added to Kconfig without regenerating the examples fails here."""
    for rel, text in sc.example_files(name).items():
        path = EXAMPLES / name / rel
        assert path.is_file(), f"{path} missing: run make inventory-examples"
        assert path.read_text() == text, f"{path} is stale: run make inventory-examples"


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_example_gives_each_group_hosts_and_settings(name):
    listed = subprocess.run(
        [Path(sys.executable).with_name("ansible-inventory"), "-i", EXAMPLES / name, "--list"],
        capture_output=True, text=True, check=True, cwd=TOP,
    )  # fmt: skip
    inv = json.loads(listed.stdout)
    for group in ("baseline", "dev"):
        hosts = inv[group]["hosts"]
        assert hosts, f"{name}: no {group} host"
        host_vars = inv["_meta"]["hostvars"][hosts[0]]
        assert host_vars["servelab_group"] == group
        assert host_vars["vllm_platform"] == PLATFORMS[name]
        assert "vllm_engine_version" in host_vars


def test_galaxy_declares_every_collection_the_roles_call():
    """A collection a task calls by its FQCN is a dependency of ours, at the version
    scripts/fetch_deps.py installs for the tests."""
    pinned = re.search(
        r'^KUBERNETES_CORE_VERSION = "([^"]+)"', (TOP / "scripts/fetch_deps.py").read_text(), re.M
    ).group(1)
    galaxy = yaml.safe_load((TOP / "galaxy.yml").read_text())
    used = set()
    for path in [*TOP.glob("roles/*/tasks/*.yml"), *TOP.glob("playbooks/*.yml")]:
        used |= set(re.findall(r"^\s*-?\s*([a-z_]+\.[a-z_]+)\.[a-z_]+:\s", path.read_text(), re.M))
    assert used - {"ansible.builtin", "servelab.vllm"} == set(galaxy["dependencies"])
    spec = galaxy["dependencies"]["kubernetes.core"]
    assert f">={pinned}," in spec
