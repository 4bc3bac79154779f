#!/usr/bin/env bash
# ansible-test sanity on the collection's plugins, in venvs of its own (no containers).
# ansible-test wants the tree at .../ansible_collections/servelab/vllm, so the plugins,
# roles and metadata are copied to such a path outside this git checkout (inside it,
# ansible-test would list files with git and find none).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/servelab/vllm"
mkdir -p "$dest"
cp -r "$top"/{galaxy.yml,meta,plugins,roles,playbooks,README.md} "$dest"/
find "$dest" -name __pycache__ -prune -exec rm -rf {} +
# ansible-test bootstraps pip in each test venv with a script it downloads from a host
# this network does not reach; it reads the script from a cache under $HOME first. Ours
# does the same job with the interpreter's bundled pip (ensurepip), then installs the
# requested pip from the package index. HOME is private to this run.
export HOME="$work/home"
pip_version=$("$top/.venv/bin/python" - <<'PY'
import ansible_test._internal.python_requirements as r
print(r.PIP_VERSION if hasattr(r, "PIP_VERSION") else "")
PY
)
mkdir -p "$HOME/.ansible/test/cache" "$HOME/.config/pip"
# ansible-test runs pip with an environment of its own: carry this machine's CA bundle
# (PIP_CERT) through pip's per-user config file instead.
if [ -n "${PIP_CERT:-}" ]; then
  printf '[global]\ncert = %s\n' "$PIP_CERT" > "$HOME/.config/pip/pip.conf"
fi
for v in ${pip_version:-24.2} 24.2 25.0; do
  cat > "$HOME/.ansible/test/cache/get_pip_${v//./_}.py" <<'PY'
import ensurepip
import subprocess
import sys
ensurepip.bootstrap(upgrade=True)
import os
os.environ.pop("PIP_CONFIG_FILE", None)  # ensurepip points it at /dev/null
# --no-setuptools and --no-wheel are get-pip's own options, not pip's.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
PY
done
cd "$dest"
# Tests left out: those that need containers or a git checkout of ansible-core itself.
"$top/.venv/bin/ansible-test" sanity --python 3.11 --color no \
  --skip-test pylint --skip-test pslint --skip-test shellcheck "$@"
