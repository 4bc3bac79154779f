"""Download a Hugging Face model snapshot into a directory, atomically.

Usage: hf_download.py MODEL_ID OUT_DIR [--tokenizer-only]
HF_TOKEN comes from the environment and is never printed. --tokenizer-only fetches the
tokenizer and config files alone (what a benchmark client needs for a model that is
served elsewhere, e.g. on a Kubernetes cluster).
"""

import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = ["*.json", "tokenizer*", "*.model", "vocab*", "merges.txt"]


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--tokenizer-only"]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    model_id, out = args[0], Path(args[1])
    patterns = TOKENIZER_FILES if "--tokenizer-only" in sys.argv else None
    from huggingface_hub import snapshot_download

    tmp = out.with_name(out.name + ".partial")
    try:
        snapshot_download(repo_id=model_id, local_dir=tmp, allow_patterns=patterns)
    except Exception as err:  # network, auth and not-found errors all end here
        print(f"error: cannot download {model_id}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"downloaded {model_id} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
