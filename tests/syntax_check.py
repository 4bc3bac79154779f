#!/usr/bin/env python3
"""ansible-playbook --syntax-check on every playbook, against a generated inventory."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = [
            sys.executable,
            str(TOP / "kconfig/scripts/servelab_config.py"),
            "--config",
            f"{tmp}/.config",
            "--extra-vars",
            f"{tmp}/extra_vars.yaml",
            "--hosts",
            f"{tmp}/hosts.yml",
        ]
        subprocess.run([*cfg, "defconfig", "vllm-quick-test"], check=True, capture_output=True)
        subprocess.run([*cfg, "generate"], check=True, capture_output=True)
        env = dict(os.environ, ANSIBLE_CONFIG=str(TOP / "ansible.cfg"))
        failed = 0
        playbooks = sorted((TOP / "playbooks").glob("*.yml"))
        for playbook in playbooks:
            proc = subprocess.run(
                [
                    str(Path(sys.executable).parent / "ansible-playbook"),
                    "--syntax-check",
                    "-i",
                    f"{tmp}/hosts.yml",
                    "-e",
                    f"@{tmp}/extra_vars.yaml",
                    str(playbook),
                ],
                cwd=TOP,
                env=env,
                capture_output=True,
                text=True,
            )
            status = "ok" if proc.returncode == 0 else "FAILED"
            print(f"syntax-check {playbook.relative_to(TOP)}: {status}")
            if proc.returncode:
                failed += 1
                print(proc.stdout + proc.stderr)
    print(f"{len(playbooks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
