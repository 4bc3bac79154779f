#!/usr/bin/env python3
# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two (or more) SSH hosts on this machine, for the declared-hosts A/B (`make ssh-lab`).

Each host is Debian's own sshd, started by `unshare` in mount, PID and UTS namespaces of
its own, so it has its own hostname, its own process space (its init is pid 1 there) and
its own writable filesystem:
- private directories bound over /root, /home, /tmp, /var/tmp, /run, /srv, /mnt and the
  directory that holds this checkout (the controller's repository and results stay out of
  sight);
- a copy of /etc (its hostname, hosts, passwd with sshd's privilege-separation user);
- /usr and /var/lib read-only: the system's programs are shared, as a golden image's
  are, but no host can install into them.

Hosts share this machine's kernel (one boot id) and network stack. Each listens on its
own loopback address (127.0.0.2, 127.0.0.3, ...), and its servers bind to that address
(the inventory sets the bind addresses), so their ports never meet.

sshd comes from Debian's openssh-server package, downloaded by apt and unpacked under
.tools/ (nothing is installed on the system). Authentication is by a key this lab makes.
known_hosts holds the hosts' own keys, and host-key checking stays on.

  scripts/ssh_lab.py start [--dir DIR] [--hosts N] [--port P]  # writes DIR/inventory.yml
  scripts/ssh_lab.py status [--dir DIR]
  scripts/ssh_lab.py stop [--dir DIR]                          # leaves nothing behind

`stop` ends each host's namespaces (their mounts go with them) and removes DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
TOOLS = TOP / ".tools"
DEFAULT_DIR = TOP / ".ssh-lab"
PACKAGES = ("openssh-server", "openssh-sftp-server", "libwrap0")  # sshd links libwrap
NAMES = ("baseline-host", "dev-host", "host-3", "host-4")
PRIVATE = ("/root", "/home", "/tmp", "/var/tmp", "/run", "/srv", "/mnt")
READ_ONLY = ("/usr", "/var/lib")
IN_HOST = "/run/ssh-lab"  # where a host finds its sshd, config and keys (its private /run)
STATE = "lab.json"

# Pid 1 of a host's PID namespace, run by the system's python3 (the checkout may be hidden
# by then): mounts the host's own filesystem, starts sshd, reaps orphans (engines started
# with setsid end up here), and on SIGTERM ends every process of the namespace.
INIT = r"""
import json, os, signal, subprocess, sys, time
cfg = json.loads(sys.argv[1])
def run(*argv):
    subprocess.run(argv, check=True)
run("mount", "--make-rprivate", "/")
run("hostname", cfg["hostname"])
for src, dst in cfg["binds"]:
    run("mount", "--bind", src, dst)
for dst in cfg["read_only"]:
    run("mount", "--bind", dst, dst)
    run("mount", "-o", "remount,bind,ro", dst)
os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
path = "/usr/sbin:/usr/bin:/sbin:/bin"
sshd = subprocess.Popen(cfg["sshd"], env={"LD_LIBRARY_PATH": cfg["libs"], "PATH": path})
def stop(*_):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(-1, sig)
        except ProcessLookupError:
            break
        time.sleep(1)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        time.sleep(1)
        continue
    if pid == sshd.pid:
        sys.exit(f"sshd ended ({status})")
"""


class LabError(Exception):
    """What stops the lab, worded for the user."""


def sshd_tree() -> Path:
    """Debian's sshd unpacked under .tools/openssh-<version>/ (fetched once)."""
    version = subprocess.run(
        ["apt-cache", "policy", "openssh-server"], capture_output=True, text=True, check=False
    ).stdout
    candidate = next(
        (line.split()[-1] for line in version.splitlines() if "Candidate:" in line), ""
    )
    if not candidate or candidate == "(none)":
        raise LabError(
            "apt has no candidate for openssh-server: the SSH lab unpacks Debian's sshd "
            "(run `apt-get update` first, on Debian or Ubuntu)"
        )
    tree = TOOLS / f"openssh-{candidate.replace(':', '_')}"
    if (tree / "usr/sbin/sshd").exists():
        return tree
    with tempfile.TemporaryDirectory(prefix="ssh-lab-debs-") as debs:
        done = subprocess.run(
            ["apt-get", "download", *PACKAGES], cwd=debs, capture_output=True, text=True
        )
        if done.returncode:
            raise LabError(f"apt-get download {' '.join(PACKAGES)} failed: {done.stderr[-500:]}")
        partial = Path(f"{tree}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        for deb in sorted(Path(debs).glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
        partial.rename(tree)  # whole, or not at all
    return tree


# Where pip finds packages is part of a machine's image (its index, a proxy, a directory
# of wheels such as these machines' torch +cpu): each host gets this machine's, the
# PIP_* variables through sshd's SetEnv and the user's pip.conf in its own home.
PIP_CONFIGS = (".config/pip/pip.conf", ".pip/pip.conf")


def _pip_setenv() -> list[str]:
    pairs = [f'{k}="{v}"' for k, v in sorted(os.environ.items()) if k.startswith("PIP_")]
    return [f"SetEnv {' '.join(pairs)}"] if pairs else []


def _copy_pip_config(home: Path) -> None:
    for name in PIP_CONFIGS:
        source = Path.home() / name
        if source.is_file():
            (home / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, home / name)


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def _listening(addr: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((addr, port)) == 0


def _hidden_checkout() -> str:
    """The top directory that holds this checkout, unless PRIVATE already hides it."""
    top = "/" + TOP.parts[1]
    return "" if top in PRIVATE or top in READ_ONLY else top


def start(lab: Path, hosts: int, port: int) -> dict:
    if (lab / STATE).exists():
        raise LabError(f"{lab} holds a lab already: `scripts/ssh_lab.py stop --dir {lab}` first")
    if os.geteuid() != 0:
        raise LabError("the SSH lab needs root: unshare makes mount and PID namespaces")
    if not 1 <= hosts <= len(NAMES):
        raise LabError(f"--hosts {hosts}: expected 1 to {len(NAMES)}")
    tree = sshd_tree()
    lab.mkdir(parents=True)
    client_key = _keygen(lab / "id_ed25519", "servelab-ssh-lab")
    state: dict = {"hosts": [], "tools": str(tree), "port": port}
    known = []
    for i in range(hosts):
        name, addr = NAMES[i], f"127.0.0.{i + 2}"
        if _listening(addr, port):
            raise LabError(f"{addr}:{port} is taken: choose another --port")
        host = lab / name
        run_dir = host / "fs/run"
        for path in PRIVATE:
            (host / "fs" / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (host / "fs/root").chmod(0o700)
        (host / "fs/tmp").chmod(0o1777)
        (host / "fs/var/tmp").chmod(0o1777)
        etc = host / "fs/etc"
        shutil.copytree("/etc", etc, symlinks=True, ignore_dangling_symlinks=True)
        (etc / "hostname").write_text(f"{name}\n")
        with (etc / "hosts").open("a") as hosts_file:
            hosts_file.write(f"{addr} {name}\n")
        if "sshd:" not in (etc / "passwd").read_text():
            with (etc / "passwd").open("a") as passwd:
                passwd.write("sshd:x:999:65534::/run/sshd:/usr/sbin/nologin\n")
        _copy_pip_config(host / "fs/root")
        ssh = run_dir / "ssh-lab"
        shutil.copytree(tree, ssh / "openssh", symlinks=True)
        host_key = _keygen(ssh / "ssh_host_ed25519_key", name)
        (ssh / "authorized_keys").write_text(client_key + "\n")
        (ssh / "authorized_keys").chmod(0o600)
        inside = f"{IN_HOST}/openssh"
        (ssh / "sshd_config").write_text(
            "\n".join([
                f"ListenAddress {addr}:{port}",
                f"HostKey {IN_HOST}/ssh_host_ed25519_key",
                f"AuthorizedKeysFile {IN_HOST}/authorized_keys",
                f"PidFile {IN_HOST}/sshd.pid",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PrintMotd no",
                *_pip_setenv(),
                f"Subsystem sftp {inside}/usr/lib/openssh/sftp-server",
                "",
            ])
        )  # fmt: skip
        binds = [[str(host / "fs" / p.lstrip("/")), p] for p in PRIVATE]
        binds.append([str(etc), "/etc"])
        hide = _hidden_checkout()
        if hide:
            (host / "fs/checkout").mkdir()
            binds.append([str(host / "fs/checkout"), hide])
        # The directory that holds the lab goes last: once covered, the sources under it
        # are out of reach.
        binds.sort(key=lambda bind: lab.is_relative_to(bind[1]))
        cfg = {
            "hostname": name,
            "binds": binds,
            "read_only": list(READ_ONLY),
            "libs": f"{inside}/usr/lib/x86_64-linux-gnu",
            "sshd": [f"{inside}/usr/sbin/sshd", "-D", "-e", "-f", f"{IN_HOST}/sshd_config"],
        }
        log = (host / "init.log").open("w")
        init = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--uts", "--fork", "--mount-proc",
             "/usr/bin/python3", "-c", INIT, json.dumps(cfg)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        state["hosts"].append({"name": name, "address": addr, "pid": init.pid})
        (lab / STATE).write_text(json.dumps(state, indent=1))
        known.append(f"[{addr}]:{port} {host_key}" if port != 22 else f"{addr} {host_key}")
    (lab / "known_hosts").write_text("\n".join(known) + "\n")
    deadline = time.monotonic() + 30
    for entry in state["hosts"]:
        while not _listening(entry["address"], port):
            if time.monotonic() > deadline:
                log = (lab / entry["name"] / "init.log").read_text()[-2000:]
                stop(lab)
                raise LabError(f"{entry['name']}'s sshd did not listen within 30 s: {log}")
            time.sleep(0.2)
    write_inventory(lab, state)
    return state


def write_inventory(lab: Path, state: dict) -> None:
    """inventory.yml (one group per host, as the declared-hosts example) and ssh_config."""
    ssh_args = (
        f"-o UserKnownHostsFile={lab}/known_hosts -o StrictHostKeyChecking=yes "
        "-o IdentitiesOnly=yes"
    )
    groups = {}
    for group, entry in zip(("baseline", "dev", "extra", "extra2"), state["hosts"], strict=False):
        groups[group] = {"hosts": {entry["name"]: {
            "ansible_host": entry["address"], "ansible_port": state["port"],
            "ansible_user": "root", "ansible_ssh_private_key_file": str(lab / "id_ed25519"),
            "ansible_ssh_common_args": ssh_args,
            "ansible_python_interpreter": "/usr/bin/python3",
            # Servers bind to the host's own address: the hosts share one network stack.
            "vllm_engine_bind_address": entry["address"],
            "vllm_router_bind_address": entry["address"],
        }}}  # fmt: skip
    text = json.dumps({"all": {"children": groups}}, indent=1)
    (lab / "inventory.yml").write_text(text + "\n")  # JSON is YAML
    (lab / "ssh_config").write_text(
        "".join(
            f"Host {e['name']}\n  HostName {e['address']}\n  Port {state['port']}\n  User root\n"
            f"  IdentityFile {lab}/id_ed25519\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {lab}/known_hosts\n  StrictHostKeyChecking yes\n"
            for e in state["hosts"]
        )
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(lab: Path) -> list[str]:
    """End every host's namespaces and remove the lab; the names of the hosts stopped."""
    path = lab / STATE
    if not path.exists():
        if lab.exists():
            shutil.rmtree(lab)
        return []
    state = json.loads(path.read_text())
    for entry in state["hosts"]:
        # unshare --fork waits for the namespace's init, which ends every process there.
        if _alive(entry["pid"]):
            os.killpg(entry["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 20
    for entry in state["hosts"]:
        while _alive(entry["pid"]) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):  # ours to reap when we started it
                os.waitpid(entry["pid"], os.WNOHANG)
            time.sleep(0.1)
        if _alive(entry["pid"]):
            os.killpg(entry["pid"], signal.SIGKILL)
    shutil.rmtree(lab)
    return [e["name"] for e in state["hosts"]]


def status(lab: Path) -> list[str]:
    path = lab / STATE
    if not path.exists():
        return [f"no SSH lab in {lab}"]
    state = json.loads(path.read_text())
    return [
        f"{e['name']}: {e['address']}:{state['port']} "
        f"{'listening' if _listening(e['address'], state['port']) else 'NOT listening'} "
        f"(init pid {e['pid']}{'' if _alive(e['pid']) else ', gone'})"
        for e in state["hosts"]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the lab's directory")
    parser.add_argument("--hosts", type=int, default=2, help="how many hosts (start)")
    parser.add_argument("--port", type=int, default=2222, help="sshd's port on each address")
    args = parser.parse_args(argv)
    lab = args.dir.resolve()
    try:
        if args.action == "start":
            state = start(lab, args.hosts, args.port)
            for line in status(lab):
                print(line)
            print(f"inventory: {lab}/inventory.yml  ssh: ssh -F {lab}/ssh_config "
                  f"{state['hosts'][0]['name']}")  # fmt: skip
        elif args.action == "stop":
            stopped = stop(lab)
            print(f"stopped {', '.join(stopped)}; removed {lab}" if stopped else f"no lab in {lab}")
        else:
            print("\n".join(status(lab)))
    except LabError as err:
        print(f"ssh-lab: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
