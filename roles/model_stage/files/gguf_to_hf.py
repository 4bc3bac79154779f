"""Convert a GGUF file to a Hugging Face model directory that vLLM loads.

Usage: gguf_to_hf.py GGUF_FILE OUT_DIR

Runs in the engine venv (transformers, torch, gguf, accelerate). The weights are
dequantized to bfloat16. OUT_DIR is written under a temporary name and renamed, so a
failed conversion never leaves a half-written model behind.
"""

import shutil
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
    if not gguf.is_file():
        print(f"error: GGUF file {gguf} does not exist", file=sys.stderr)
        return 2
    with gguf.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            print(f"error: {gguf} is not a GGUF file (bad magic)", file=sys.stderr)
            return 2
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
        )
    except Exception as err:  # transformers raises many kinds for a corrupt file
        print(f"error: cannot read {gguf} as a GGUF model: {err}", file=sys.stderr)
        return 1
    # Saved as plain bfloat16 weights: drop the GGUF quantizer so vLLM sees a normal model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"converted {gguf} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
