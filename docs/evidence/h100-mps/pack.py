#!/usr/bin/env python3
"""Split a wheelhouse into folders of at most 60 MiB, one per device call (64 MiB a call,
the checkout's tree included: give a lower limit in MiB when the tree has grown).

  pack.py WHEELHOUSE CONTROLLER_WHEELS OUT [MIB]   ->  OUT/p1, OUT/p2, ...

A file over 50 MiB (the vllm wheel, the model's) is cut in parts NAME.part-NN, joined
with cat on the device; the controller's wheels go under ctl/. On the device: copy
every folder's contents into /tmp/carry.
"""

import shutil
import sys
from pathlib import Path

LIMIT = int(sys.argv[4] if len(sys.argv) > 4 else 60) * 2**20
PART = min(50 * 2**20, LIMIT)
wh, ctl, out = map(Path, sys.argv[1:4])
out.mkdir(parents=True, exist_ok=False)
items = []  # (size, relative name, bytes or source path)
for f in sorted(wh.iterdir()):
    if f.stat().st_size <= PART:
        items.append((f.stat().st_size, f.name, f))
        continue
    data = f.read_bytes()
    for i in range(0, len(data), PART):
        chunk = data[i : i + PART]
        items.append((len(chunk), f"{f.name}.part-{i // PART:02d}", chunk))
items += [(f.stat().st_size, f"ctl/{f.name}", f) for f in sorted(ctl.glob("*.whl"))]
bins: list[list] = []
for item in sorted(items, key=lambda t: -t[0]):  # first fit, largest first
    target = next((b for b in bins if sum(t[0] for t in b) + item[0] <= LIMIT), None)
    if target is None:
        bins.append(target := [])
    target.append(item)
for n, b in enumerate(bins, 1):
    for _, name, src in b:
        dest = out / f"p{n}" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src) if isinstance(src, bytes) else shutil.copy(src, dest)
    print(f"p{n}: {len(b)} files, {sum(t[0] for t in b) / 2**20:.1f} MiB")
