"""Download a Hugging Face model snapshot into a directory, atomically.

Usage: hf_download.py MODEL_ID OUT_DIR   (HF_TOKEN from the environment, never printed)
"""

import shutil
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    model_id, out = sys.argv[1], Path(sys.argv[2])
    from huggingface_hub import snapshot_download

    tmp = out.with_name(out.name + ".partial")
    try:
        snapshot_download(repo_id=model_id, local_dir=tmp)
    except Exception as err:  # network, auth and not-found errors all end here
        print(f"error: cannot download {model_id}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"downloaded {model_id} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
