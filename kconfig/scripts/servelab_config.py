#!/usr/bin/env python3
"""Kconfig glue: defconfigs, strict .config loading, typed extra_vars.yaml and inventory.

Usage: servelab_config.py {defconfig NAME|olddefconfig|savedefconfig|list-defconfigs|
                            generate|generate-calibration|diff-groups}

Every value is checked before anything is written; the generated files are written to a
temporary file and renamed, so a bad .config leaves the previous files untouched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kconfiglib
import yaml

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "collections"))
from ansible_collections.servelab.vllm.plugins.module_utils import atomic  # noqa: E402

KCONFIG = "kconfig/Kconfig"
DEFCONFIG_DIR = TOP / "kconfig" / "defconfigs"
GROUPS = ("baseline", "dev")

# Settings that the dev group may override and that each group carries on its own:
# everything defined in these Kconfig files, plus the GPU-sharing symbols. Every other
# setting is one per run and shared by both groups; RUN_LEVEL_FILES names the files whose
# settings a user may take for a group's but which are the run's: both groups are offered
# the same benchmark (workload, load, repetitions, sweep), or the comparison means nothing.
PER_GROUP_FILES = ("Kconfig.engine", "Kconfig.model", "Kconfig.router")
PER_GROUP_PREFIXES = ("VLLM_GPU_", "VLLM_MPS_", "VLLM_TIME_SLICING_", "VLLM_REQUEST_")
RUN_LEVEL_FILES = ("Kconfig.benchmark", "Kconfig.results")
# Secrets go to extra_vars.yaml (mode 0600) only, never to the inventory or the diff.
SECRETS = ("VLLM_HF_TOKEN", "VLLM_API_KEY")
PORT_SYMBOLS = ("VLLM_ROUTER_PORT", "VLLM_ROUTER_METRICS_PORT")
# Platforms where both groups' local ports live on one host: the local stacks, or the
# Kubernetes platforms' port-forwards on the controller.
SHARED_HOST_PLATFORMS = ("local", "kind", "minikube", "existing_cluster")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")


class ConfigError(Exception):
    """A problem in the configuration, worded for the user."""


@dataclass(frozen=True)
class Number:
    """A string symbol that holds a number, with bounds."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allow_inf: bool = False
    integer: bool = False
    allow_auto: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        hi = "" if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        tail = (" or inf" if self.allow_inf else "") + (" or auto" if self.allow_auto else "")
        return f"{kind}{' ' + bounds if bounds else ''}{tail}"

    def parse(self, text: str) -> float | int | str:
        if self.allow_auto and text == "auto":
            return text
        try:
            value = float(text)
        except ValueError:
            raise ValueError(self.describe()) from None
        if math.isinf(value) and value > 0 and self.allow_inf:
            return value
        if math.isnan(value) or math.isinf(value):
            raise ValueError(self.describe())
        if self.integer and not value.is_integer():
            raise ValueError(self.describe())
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise ValueError(self.describe())
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise ValueError(self.describe())
        return int(value) if self.integer or value.is_integer() else value


@dataclass(frozen=True)
class Enum:
    choices: tuple[str, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(self.choices)

    def parse(self, text: str) -> str:
        if text not in self.choices:
            raise ValueError(self.describe())
        return text


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern
    what: str
    optional: bool = False

    def describe(self) -> str:
        return self.what + (" (or empty)" if self.optional else "")

    def parse(self, text: str) -> str:
        if (text == "" and self.optional) or self.regex.match(text):
            return text
        raise ValueError(self.describe())


@dataclass(frozen=True)
class ListOf:
    item: Number | Enum | Pattern | None = None
    nonempty: bool = False

    def describe(self) -> str:
        inner = self.item.describe() if self.item else "words"
        return f"a space separated list of {inner}" + (" (at least one)" if self.nonempty else "")

    def parse(self, text: str) -> list:
        words = text.split()
        if self.nonempty and not words:
            raise ValueError(self.describe())
        if self.item is None:
            return words
        try:
            return [self.item.parse(w) for w in words]
        except ValueError:
            raise ValueError(self.describe()) from None


PATH = Pattern(re.compile(r"^(/|~/)\S*$"), "an absolute path or one starting with ~/")
HOST = Pattern(re.compile(r"^([A-Za-z0-9_.-]+@)?[A-Za-z0-9_.:\[\]-]+$"), "host names")
METRIC = Pattern(re.compile(r"^[a-z0-9_]+$"), "metric names such as median_ttft_ms")

# String symbols with a stricter type than Kconfig can say. Names ending in _EXTRA_ARGS
# are shell-quoted argument lists; other names ending in _LIST are lists of words.
TYPED_STRINGS: dict[str, Any] = {
    "VLLM_GPU_MEMORY_UTILIZATION": Number(0, 1, low_open=True),
    "VLLM_BENCHMARK_REQUEST_RATE": Number(0, None, low_open=True, allow_inf=True, allow_auto=True),
    "VLLM_BENCHMARK_LOAD_FRACTION": Number(0, 1, low_open=True),
    "VLLM_BENCHMARK_WARMUP_TOLERANCE": Number(0, 1, low_open=True),
    "VLLM_CPU_ENGINE_CPUS": Pattern(
        re.compile(r"^[0-9][0-9,-]*$"), "a CPU list such as 1-3,5", optional=True
    ),
    "VLLM_CPU_FRONTEND_CPUS": Pattern(
        re.compile(r"^[0-9][0-9,-]*$"), "a CPU list such as 0", optional=True
    ),
    "VLLM_BENCHMARK_BURSTINESS": Number(0, None, low_open=True, allow_inf=True),
    "VLLM_RESULTS_CONFIDENCE": Number(0, 1, low_open=True, high_open=True),
    "VLLM_RESULTS_MARGIN_PCT": Number(0, 100, low_open=True, high_open=True),
    "VLLM_LMCACHE_CPU_BUFFER_SIZE": Number(0, None, low_open=True),
    "VLLM_DTYPE": Enum(("auto", "half", "float16", "bfloat16", "float", "float32")),
    "VLLM_TIME_SLICING_INTERVAL": Enum(("Default", "Short", "Medium", "Long")),
    "VLLM_REQUEST_MEMORY": Pattern(QUANTITY, "a Kubernetes memory quantity such as 16Gi"),
    "VLLM_MPS_PINNED_DEVICE_MEMORY_LIMIT": Pattern(
        QUANTITY, "a Kubernetes memory quantity such as 10Gi", optional=True
    ),
    "VLLM_WORK_DIR": PATH,
    "VLLM_ENGINE_INHERIT_SITE": Pattern(PATH.regex, PATH.what, optional=True),
    "VLLM_ENGINE_ENV_LIST": ListOf(
        Pattern(re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$"), "NAME=VALUE pairs")
    ),
    "VLLM_CACHE_DIR": PATH,
    "VLLM_BENCHMARK_RESULTS_DIR": PATH,
    "VLLM_MODEL_NAME": Pattern(re.compile(r"^\S+$"), "a name without spaces"),
    "VLLM_BENCHMARK_PERCENTILES": ListOf(Number(0, 100, low_open=True), nonempty=True),
    "VLLM_BENCHMARK_SWEEP_CONCURRENCY_LIST": ListOf(Number(1, None, integer=True), True),
    "VLLM_BENCHMARK_SWEEP_RATE_LIST": ListOf(Number(0, None, low_open=True, allow_inf=True), True),
    "VLLM_BENCHMARK_SWEEP_KNOB_VALUES_LIST": ListOf(None, nonempty=True),
    "VLLM_DECLARED_HOSTS_BASELINE_LIST": ListOf(HOST),
    "VLLM_DECLARED_HOSTS_DEV_LIST": ListOf(HOST),
    "VLLM_DECLARED_HOSTS_BIND_ADDRESS_LIST": ListOf(
        Pattern(re.compile(r"^[A-Za-z0-9_.:-]+=[0-9A-Fa-f.:]+$"), "HOST=ADDRESS pairs")
    ),
    "VLLM_RESULTS_GATE_METRICS_LIST": ListOf(METRIC),
    "VLLM_RESULTS_PRIMARY_METRICS_LIST": ListOf(METRIC, nonempty=True),
}


# Symbols renamed to the benchmark's option names (bench/spec.py), and removed ones: a
# .config that still sets one is told what to do instead.
RENAMED = {
    "VLLM_BENCHMARK_CONCURRENT_USERS": "VLLM_BENCHMARK_MAX_CONCURRENCY",
    "VLLM_BENCHMARK_SHAREGPT_PATH": "VLLM_BENCHMARK_DATASET_PATH",
    "VLLM_BENCHMARK_PERCENTILES_LIST": "VLLM_BENCHMARK_PERCENTILES",
    "VLLM_METRICS_SAMPLE_INTERVAL": "VLLM_BENCHMARK_METRICS_INTERVAL",
    "VLLM_ENGINE_WHEELHOUSE": "VLLM_WHEELHOUSE",  # it feeds every install, not the engine's
    # The smallest change that matters is now the equivalence margin of the verdict.
    "VLLM_RESULTS_THRESHOLD_PCT": "VLLM_RESULTS_MARGIN_PCT",
}
REMOVED = {
    "VLLM_BENCHMARK_ENABLED": "it was read nowhere: `make vllm` always benchmarks",
    "VLLM_PROD_STACK_RAY_ENABLED": "the chart's Ray path cannot run an A/B: no DRA claim for "
    "Ray pods, the groups' ConfigMaps collide, no KubeRay operator (docs/kubernetes.md)",
}


def setting_name(name: str) -> str:
    """The extra_vars name of a symbol or named choice."""
    return name.lower()


def expected_form(sym: kconfiglib.Symbol) -> str:
    if sym.name in TYPED_STRINGS:
        return TYPED_STRINGS[sym.name].describe()
    if sym.orig_type == kconfiglib.BOOL:
        return "y or n"
    if sym.orig_type in (kconfiglib.INT, kconfiglib.HEX):
        for low, high, cond in sym.ranges:
            if kconfiglib.expr_value(cond):
                return f"an integer from {low.str_value} to {high.str_value}"
        return "an integer"
    if sym.name.endswith("_EXTRA_ARGS"):
        return "arguments with shell quoting"
    return 'a double-quoted string ("...")'


def load(config: Path, strict: bool = True) -> kconfiglib.Kconfig:
    """Load the Kconfig tree and a config file; in strict mode any warning is an error."""
    os.environ["SRCTREE"] = str(TOP)
    kconf = kconfiglib.Kconfig(str(TOP / KCONFIG), warn_to_stderr=False)
    kconf.warn_assign_undef = True
    kconf.warn_assign_override = False
    kconf.warn_assign_redun = False
    tree_warnings = list(kconf.warnings)
    if tree_warnings:  # a broken Kconfig tree is our bug, not the user's
        raise ConfigError("Kconfig tree has warnings:\n  " + "\n  ".join(tree_warnings))
    if not config.is_file():
        raise ConfigError(f"{config}: not found; run `make defconfig-NAME` or `make menuconfig`")
    if strict:
        kconf.load_config(str(config))
    else:  # olddefconfig: carry renamed settings over under their new names
        with tempfile.TemporaryDirectory() as tmp:
            renamed = Path(tmp) / ".config"
            renamed.write_text(rename_symbols(config.read_text()))
            kconf.load_config(str(renamed))
            kconf.warnings = [w.replace(str(renamed), str(config)) for w in kconf.warnings]
    # Evaluating every value records out-of-range values as warnings.
    _ = [sym.str_value for sym in kconf.unique_defined_syms]
    if strict and kconf.warnings:
        raise ConfigError(explain_warnings(kconf, config))
    if not strict:
        for warning in kconf.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return kconf


def rename_symbols(text: str) -> str:
    """A .config's text with every RENAMED symbol under its new name."""
    for old, new in RENAMED.items():
        text = re.sub(rf"^(# )?CONFIG_{old}([= ])", rf"\1CONFIG_{new}\2", text, flags=re.M)
    return text


def explain_warnings(kconf: kconfiglib.Kconfig, config: Path) -> str:
    lines = [f"{config} has invalid settings (nothing was written):"]
    for warning in kconf.warnings:
        text = warning.replace("warning: ", "")
        match = re.search(r"\b(?:to|symbol|for) (?:the undefined symbol )?(\w+) \(defined", text)
        match = match or re.search(r"symbol (\w+) ", text)
        sym = kconf.syms.get(match.group(1)) if match else None
        undefined = re.search(r"undefined symbol (\w+)", text)
        if undefined and undefined.group(1) in RENAMED:
            hint = (
                f"renamed: set CONFIG_{RENAMED[undefined.group(1)]} instead "
                "(`make olddefconfig` renames it for you)"
            )
        elif undefined and undefined.group(1) in REMOVED:
            hint = f"removed ({REMOVED[undefined.group(1)]}): delete the line"
        elif "undefined symbol" in text:
            hint = "no such setting: check its spelling, or run `make olddefconfig` to drop it"
        elif "malformed string literal" in text and sym is not None:
            hint = f'CONFIG_{sym.name} expects a double-quoted string ("..."): {expected_form(sym)}'
        elif "malformed line" in text:
            hint = 'expected CONFIG_NAME=value or "# CONFIG_NAME is not set"'
        elif sym is not None and sym.nodes:
            hint = f"CONFIG_{sym.name} expects {expected_form(sym)}"
        else:
            hint = ""
        lines.append(f"  {text}" + (f"\n    -> {hint}" if hint else ""))
    return "\n".join(lines)


def is_per_group(sym: kconfiglib.Symbol) -> bool:
    filename = Path(sym.nodes[0].filename).name
    return filename in PER_GROUP_FILES or sym.name.startswith(PER_GROUP_PREFIXES)


def not_per_group(where: str, item: kconfiglib.Symbol | kconfiglib.Choice) -> ConfigError:
    """The error for a dev override of a shared setting, naming where to set it instead."""
    if Path(item.nodes[0].filename).name in RUN_LEVEL_FILES:
        name = f"{item.name}_<OPTION>=y" if isinstance(item, kconfiglib.Choice) else item.name
        return ConfigError(
            f"{where}: a run-level setting, shared by both groups (they are offered the same "
            f"benchmark: workload, load, repetitions, sweep, verdict); set CONFIG_{name} "
            "for the run (make menuconfig) instead"
        )
    return ConfigError(
        f"{where}: not a per-group setting; dev may override engine, model, router "
        "and GPU sharing settings"
    )


def choice_value(choice: kconfiglib.Choice, option: kconfiglib.Symbol | None = None) -> str:
    """A choice's value: the option's name less the options' common prefix, lower case."""
    prefix = os.path.commonprefix([s.name for s in choice.syms])  # noqa: RUF071 (names, not paths)
    option = option or choice.selection
    return option.name[prefix.rfind("_") + 1 :].lower()


def typed_value(sym: kconfiglib.Symbol) -> Any:
    """The typed value of a symbol that .config carries; raises ConfigError if invalid."""
    text = sym.str_value
    if sym.orig_type == kconfiglib.BOOL:
        return text == "y"
    if sym.orig_type == kconfiglib.INT:
        return int(text)
    if sym.orig_type == kconfiglib.HEX:
        return int(text, 16)
    try:
        if sym.name in TYPED_STRINGS:
            return TYPED_STRINGS[sym.name].parse(text)
        if sym.name.endswith("_EXTRA_ARGS"):
            return shlex.split(text)
    except ValueError as err:
        raise ConfigError(f"CONFIG_{sym.name}={text!r}: expected {err}") from None
    if sym.name.endswith("_LIST"):
        return text.split()
    return text


def settings(kconf: kconfiglib.Kconfig) -> dict[str, Any]:
    """All settings that .config would carry, typed, by their extra_vars names."""
    out: dict[str, Any] = {}
    for sym in kconf.unique_defined_syms:
        if sym.choice is not None or sym.orig_type == kconfiglib.UNKNOWN:
            continue
        derived = sym.orig_type == kconfiglib.BOOL and not any(n.prompt for n in sym.nodes)
        if sym.config_string or derived:
            out[setting_name(sym.name)] = typed_value(sym)
    for choice in kconf.unique_choices:
        if choice.name and choice.selection is not None and choice.visibility:
            out[setting_name(choice.name)] = choice_value(choice)
    return out


def per_group_names(kconf: kconfiglib.Kconfig) -> set[str]:
    names = {
        setting_name(s.name)
        for s in kconf.unique_defined_syms
        if s.nodes and is_per_group(s) and s.name not in SECRETS
    }
    for choice in kconf.unique_choices:
        if choice.name and is_per_group(choice.syms[0]):
            names.add(setting_name(choice.name))
    return names


def apply_override(kconf: kconfiglib.Kconfig, key: str, value: str) -> None:
    """Set one dev override on the Kconfig model, with the setting's own type checks."""
    where = f"CONFIG_VLLM_DEV_OVERRIDES: {key}={value!r}"
    name = key.upper()
    if name in kconf.named_choices:
        choice = kconf.named_choices[name]
        if not is_per_group(choice.syms[0]):
            raise not_per_group(where, choice)
        options = {choice_value(choice, s): s for s in choice.syms}
        if value not in options:
            raise ConfigError(f"{where}: expected one of {', '.join(sorted(options))}")
        options[value].set_value(2)
        return
    sym = kconf.syms.get(name)
    if sym is None or not sym.nodes:
        raise ConfigError(f"{where}: no such setting (use a lower case name from extra_vars.yaml)")
    if not is_per_group(sym):
        raise not_per_group(where, sym)
    if sym.name in SECRETS:
        raise ConfigError(f"{where}: secrets are shared by both groups and cannot be overridden")
    if sym.orig_type == kconfiglib.BOOL:
        value = {"true": "y", "yes": "y", "false": "n", "no": "n"}.get(value.lower(), value)
    before = len(kconf.warnings)
    # set_value rejects a mistyped value; str_value falls back on defaults when out of range.
    if not sym.set_value(value) or sym.str_value != value or len(kconf.warnings) > before:
        raise ConfigError(f"{where}: expected {expected_form(sym)}")
    if not sym.visibility:
        raise ConfigError(f"{where}: the setting is not in effect in this configuration")


def parse_overrides(text: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise ConfigError(f"CONFIG_VLLM_DEV_OVERRIDES: {err}; expected SETTING=VALUE ...") from None
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise ConfigError(
                f"CONFIG_VLLM_DEV_OVERRIDES: {word!r}: expected SETTING=VALUE with a lower case "
                "setting name, e.g. vllm_mps_active_thread_percentage=50"
            )
        pairs.append((key, value))
    return pairs


def build(config: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Shared settings and each group's per-group settings from a config file."""
    kconf = load(config)
    base = settings(kconf)
    group_names = per_group_names(kconf)
    groups = {"baseline": {k: v for k, v in base.items() if k in group_names}}
    if base.get("vllm_baseline_and_dev"):
        for key, value in parse_overrides(base.get("vllm_dev_overrides", "")):
            apply_override(kconf, key, value)
        dev_all = settings(kconf)
        groups["dev"] = {k: v for k, v in dev_all.items() if k in group_names}
    shared = {k: v for k, v in base.items() if k not in group_names}
    check(shared, groups)
    if shared.get("vllm_benchmark_sweep") == "knob":
        knob = shared["vllm_benchmark_sweep_knob_name"]
        shared["vllm_benchmark_sweep_knob_values_list"] = [
            knob_value(kconf, knob, text)
            for text in shared["vllm_benchmark_sweep_knob_values_list"]
        ]
    return shared, groups


def knob_value(kconf: kconfiglib.Kconfig, knob: str, text: str) -> Any:
    """One value of a configuration sweep, typed and checked as the swept setting."""
    where = f"CONFIG_VLLM_BENCHMARK_SWEEP_KNOB_VALUES_LIST: {knob}={text!r}"
    if knob.upper() in kconf.named_choices:
        choice = kconf.named_choices[knob.upper()]
        options = sorted(choice_value(choice, s) for s in choice.syms)
        if text not in options:
            raise ConfigError(f"{where}: expected one of {', '.join(options)}")
        return text
    sym = kconf.syms[knob.upper()]
    if sym.orig_type == kconfiglib.BOOL:
        if text not in ("y", "n"):
            raise ConfigError(f"{where}: expected y or n")
        return text == "y"
    if sym.orig_type == kconfiglib.INT:
        for low, high, cond in sym.ranges:
            if kconfiglib.expr_value(cond) and not (
                text.lstrip("-").isdigit()
                and int(low.str_value) <= int(text) <= int(high.str_value)
            ):
                raise ConfigError(f"{where}: expected {expected_form(sym)}")
        if not text.lstrip("-").isdigit():
            raise ConfigError(f"{where}: expected an integer")
        return int(text)
    if sym.name in TYPED_STRINGS:
        try:
            return TYPED_STRINGS[sym.name].parse(text)
        except ValueError as err:
            raise ConfigError(f"{where}: expected {err}") from None
    return text


def ports(cfg: dict[str, Any]) -> dict[str, int]:
    out = {
        f"engine replica {i}": cfg["vllm_engine_base_port"] + i
        for i in range(cfg["vllm_replica_count"])
    }
    for name in PORT_SYMBOLS:
        if setting_name(name) in cfg:
            out[setting_name(name)] = cfg[setting_name(name)]
    return out


def check(shared: dict[str, Any], groups: dict[str, dict[str, Any]]) -> None:
    """Checks across settings that Kconfig cannot express."""
    platform = shared["vllm_platform"]
    if platform == "declared_hosts":
        for group in groups:
            key = f"vllm_declared_hosts_{group}_list"
            if not shared.get(key):
                raise ConfigError(
                    f"CONFIG_{key.upper()} is empty: the declared-hosts platform needs at least "
                    f"one host for the {group} group (space separated host names)"
                )
        bound = set(bind_addresses(shared))
        declared = {
            e.rpartition("@")[2] for g in groups for e in shared[f"vllm_declared_hosts_{g}_list"]
        }
        if bound - declared:
            raise ConfigError(
                "CONFIG_VLLM_DECLARED_HOSTS_BIND_ADDRESS_LIST names "
                f"{', '.join(sorted(bound - declared))}: not a declared host "
                f"(the hosts are {', '.join(sorted(declared))})"
            )
    first_look = shared.get("vllm_benchmark_min_repetitions", 2)
    budget = shared.get("vllm_benchmark_repetitions", first_look)
    if budget < first_look:
        raise ConfigError(
            f"CONFIG_VLLM_BENCHMARK_REPETITIONS={budget} is below "
            f"CONFIG_VLLM_BENCHMARK_MIN_REPETITIONS={first_look}: the budget must "
            "allow the first look (raise the one or lower the other)"
        )
    if shared.get("vllm_benchmark_crossover"):
        sizes = {g: len(shared[f"vllm_declared_hosts_{g}_list"]) for g in groups}
        why = (
            "a sweep" if shared.get("vllm_benchmark_sweep", "none") != "none"
            else "VLLM_BENCHMARK_REDEPLOY_EVERY" if shared.get("vllm_benchmark_redeploy_every")
            else f"{budget} repetitions (at least 4: two legs of whole ABBA cycles)" if budget < 4
            else "unequal host lists (each baseline host swaps with one dev host)"
            if len(set(sizes.values())) > 1 else ""
        )  # fmt: skip
        if why:
            raise ConfigError(f"CONFIG_VLLM_BENCHMARK_CROSSOVER cannot run with {why}")
    dev_hosts = shared.get("vllm_declared_hosts_dev_list") or []
    if (
        shared.get("vllm_benchmark_sweep_knob_dev")
        and platform == "declared_hosts"
        and len(dev_hosts) > 1
    ):
        raise ConfigError(
            f"CONFIG_VLLM_BENCHMARK_SWEEP_KNOB_DEV: dev has {len(dev_hosts)} declared hosts "
            f"({' '.join(dev_hosts)}); a sweep of dev's setting redeploys one dev host at each "
            "value: declare one (CONFIG_VLLM_DECLARED_HOSTS_DEV_LIST)"
        )
    every = shared.get("vllm_benchmark_redeploy_every", 0)
    if every:
        where = (
            "on Kubernetes" if platform in ("kind", "minikube", "existing_cluster")
            else "with a configuration sweep" if shared.get("vllm_benchmark_sweep") == "knob"
            else ""
        )  # fmt: skip
        if where:
            raise ConfigError(
                f"CONFIG_VLLM_BENCHMARK_REDEPLOY_EVERY={every}: restarting the engines between "
                f"rounds is not supported {where}: set it to 0"
            )
        if every % 2 or every >= budget:
            raise ConfigError(
                f"CONFIG_VLLM_BENCHMARK_REDEPLOY_EVERY={every}: expected an even number below "
                f"CONFIG_VLLM_BENCHMARK_REPETITIONS={budget} (a deployment holds whole ABBA "
                "rounds, and the verdict needs two deployments), or 0"
            )
    if platform in SHARED_HOST_PLATFORMS and "dev" in groups:
        offset = shared["vllm_local_dev_port_offset"]
        for key, port in ports(groups["dev"]).items():
            if port + offset > 65535:
                raise ConfigError(
                    f"{key} port {port} + CONFIG_VLLM_LOCAL_DEV_PORT_OFFSET={offset} exceeds "
                    "65535: lower the port or the offset"
                )
    for group, cfg in groups.items():
        seen: dict[int, str] = {}
        for key, port in ports(cfg).items():
            if port > 65535:
                raise ConfigError(
                    f"{group}: {key} port {port} exceeds 65535 "
                    "(CONFIG_VLLM_ENGINE_BASE_PORT + CONFIG_VLLM_REPLICA_COUNT)"
                )
            if port in seen:
                raise ConfigError(
                    f"{group}: port {port} is used by both {seen[port]} and {key}; "
                    "give each a distinct port"
                )
            seen[port] = key
        if (
            cfg.get("vllm_router_enabled")
            and cfg.get("vllm_router_policy") == "power_of_two"
            and cfg["vllm_replica_count"] < 2
        ):
            raise ConfigError(
                f"{group}: vllm_router_policy=power_of_two needs at least 2 engines "
                "(CONFIG_VLLM_REPLICA_COUNT >= 2); vllm-router refuses it with one"
            )
        knob = shared.get("vllm_benchmark_sweep_knob_name")
        if knob is not None and knob not in cfg:
            raise ConfigError(
                f"CONFIG_VLLM_BENCHMARK_SWEEP_KNOB_NAME={knob!r}: expected a per-group setting "
                "that is in effect, e.g. vllm_mps_active_thread_percentage"
            )
    if platform in SHARED_HOST_PLATFORMS and "dev" in groups:
        dev = {p + shared["vllm_local_dev_port_offset"] for p in ports(groups["dev"]).values()}
        clash = dev & set(ports(groups["baseline"]).values())
        if clash:
            raise ConfigError(
                f"baseline and dev would share port(s) {sorted(clash)} on this host: "
                "raise CONFIG_VLLM_LOCAL_DEV_PORT_OFFSET"
            )


def effective_group(shared: dict[str, Any], cfg: dict[str, Any], group: str) -> dict[str, Any]:
    """The per-group settings as the group's hosts see them (ports moved on a shared host)."""
    cfg = dict(cfg)
    if group == "dev" and shared["vllm_platform"] in SHARED_HOST_PLATFORMS:
        offset = shared["vllm_local_dev_port_offset"]
        cfg["vllm_engine_base_port"] += offset
        for name in PORT_SYMBOLS:
            if setting_name(name) in cfg:
                cfg[setting_name(name)] += offset
    return cfg


def bind_addresses(shared: dict[str, Any]) -> dict[str, str]:
    """host -> the address its servers bind to (CONFIG_VLLM_DECLARED_HOSTS_BIND_ADDRESS_LIST)."""
    pairs = (w.partition("=") for w in shared.get("vllm_declared_hosts_bind_address_list", []))
    return {host: address for host, _, address in pairs}


def inventory(shared: dict[str, Any], groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    children = {}
    for group, cfg in groups.items():
        if shared["vllm_platform"] == "declared_hosts":
            hosts = {}
            for entry in shared[f"vllm_declared_hosts_{group}_list"]:
                user, _, host = entry.rpartition("@")
                user = user or shared.get("vllm_declared_hosts_ssh_user", "")
                hosts[host] = {"ansible_python_interpreter": shared["vllm_declared_hosts_python"]}
                if user:
                    hosts[host]["ansible_user"] = user
                ssh_config = shared.get("vllm_declared_hosts_ssh_config", "")
                if ssh_config:
                    path = Path(ssh_config).expanduser()
                    if not path.is_absolute():  # relative to the checkout, as make runs
                        path = TOP / path
                    # Not checked here: the file may come later (`make ssh-lab` writes
                    # .ssh-lab/ssh_config); a missing one fails the reach play, where ssh
                    # says "Can't open user config file <path>" for the host.
                    hosts[host]["ansible_ssh_common_args"] = f"-F {path}"
                address = bind_addresses(shared).get(host)
                if address:  # host vars: they win over the group's settings
                    hosts[host].update(
                        vllm_engine_bind_address=address, vllm_router_bind_address=address
                    )
        else:  # local and Kubernetes platforms: this machine (it drives the cluster)
            hosts = {
                f"{group}-local": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                }
            }
        group_vars = {"servelab_group": group, **effective_group(shared, cfg, group)}
        children[group] = {"hosts": hosts, "vars": group_vars}
    return {"all": {"children": children}}


def config_hash(shared: dict[str, Any], groups: dict[str, dict[str, Any]]) -> str:
    public = {k: v for k, v in shared.items() if k.upper() not in SECRETS}
    blob = json.dumps({"shared": public, "groups": groups}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


HEADER = "# Generated from .config by kconfig/scripts/servelab_config.py: do not edit.\n"


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """The collection's one atomic writer (module_utils/atomic.py), into a new directory
    if need be; mode is set even on a file that existed (a secret's 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_atomic(path, text, mode)
    os.chmod(path, mode)


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as yamllint (ansible-lint) expects."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


def dump(data: dict[str, Any], header: str = HEADER) -> str:
    return header + yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100
    )


def generate(config: Path, extra_vars: Path, hosts: Path) -> None:
    extra, inv = generated(*build(config))
    # extra_vars.yaml carries the secrets: readable by its owner only. The same settings
    # go beside the inventory as group_vars/all.yml, so that a plain `ansible-playbook
    # playbooks/NAME.yml` (inventory from ansible.cfg) sees them without -e.
    write_atomic(extra_vars, dump(extra), mode=0o600)
    write_atomic(hosts.parent / "group_vars" / "all.yml", dump(extra), mode=0o600)
    write_atomic(hosts, dump(inv))
    groups = ", ".join(inv["all"]["children"])
    print(f"wrote {extra_vars.name} ({len(extra)} settings) and {hosts} (groups: {groups})")


def generated(shared: dict[str, Any], groups: dict[str, dict[str, Any]]) -> tuple[dict, dict]:
    """The shared settings (extra_vars.yaml, group_vars/all.yml) and the inventory."""
    extra = {
        **shared,
        "servelab_config_hash": config_hash(shared, groups),
        "servelab_groups": list(groups),
        # What a run records as its configuration: these settings, never the facts that
        # roles register under the same prefixes, never the secrets.
        "servelab_setting_names": sorted(
            {k for k in shared if k.upper() not in SECRETS}
            | {k for cfg in groups.values() for k in cfg if k.upper() not in SECRETS}
            | {"servelab_group"}
        ),
    }
    return extra, inventory(shared, groups)


# inventories/examples/<name>/: static inventories for driving the playbooks without make
# (`ansible-playbook -i inventories/examples/<name> playbooks/vllm.yml`), each generated
# from a defconfig so that it never drifts from what the roles expect.
EXAMPLES = {
    "declared-hosts": (
        "vllm-declared-hosts",
        "Existing machines over SSH, one group per host list: use it when the nodes are\n"
        "# already installed and reachable by ssh; replace baseline-node and dev-node with\n"
        "# your hosts (and set ansible_user where ssh needs one); keep each group's settings.",
    ),
    "existing-cluster": (
        "vllm-production-stack-cpu",
        "A Kubernetes cluster you already have, reached through vllm_kubeconfig in\n"
        "# group_vars/all.yml: the playbooks run on this machine and drive the cluster with\n"
        "# helm and kubernetes.core; each group is one Helm release of the vllm-stack chart.",
    ),
}


def example_files(name: str) -> dict[str, str]:
    """The files of one example inventory, relative to its directory."""
    source, when = EXAMPLES[name]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / ".config"
        write_config(load(DEFCONFIG_DIR / source), config, quiet=True)
        extra, inv = generated(*build(config))
    header = (
        f"# Example inventory, generated from kconfig/defconfigs/{source} by\n"
        f"# `make inventory-examples`: do not edit here, copy the directory.\n# {when}\n"
    )
    return {
        "hosts.yml": header + dump(inv, header=""),
        "group_vars/all.yml": header + dump(extra, header=""),
    }


def write_examples(top: Path) -> None:
    for name in EXAMPLES:
        for rel, text in example_files(name).items():
            write_atomic(top / name / rel, text)
        print(f"wrote {top / name}")


def generate_calibration(config: Path, hosts: Path) -> None:
    """An inventory beside hosts.yml in which dev carries baseline's settings: the A/A run
    of `make vllm-calibrate` (same hosts and ports, same config hash as the real run)."""
    shared, groups = build(config)
    if "dev" not in groups:
        raise ConfigError(
            "calibration compares dev with baseline's own configuration: enable "
            "CONFIG_VLLM_BASELINE_AND_DEV"
        )
    groups = {"baseline": groups["baseline"], "dev": dict(groups["baseline"])}
    path = hosts.with_name("calibration.yml")
    write_atomic(path, dump(inventory(shared, groups)))
    print(f"wrote {path} (dev with baseline's settings)")


def diff_groups(config: Path) -> int:
    _, groups = build(config)
    if "dev" not in groups:
        print("only the baseline group is enabled (CONFIG_VLLM_BASELINE_AND_DEV is not set)")
        return 0
    # The settings as configured: dev's ports moved by the shared-host offset are not a
    # difference anyone chose.
    base, dev = groups["baseline"], groups["dev"]
    keys = sorted(k for k in base.keys() | dev.keys() if base.get(k) != dev.get(k))
    if not keys:
        print("baseline and dev have the same configuration")
        return 0
    width = max(len(k) for k in keys)
    print(f"{'setting':<{width}}  {'baseline':<24}  dev")
    for key in keys:
        print(f"{key:<{width}}  {json.dumps(base.get(key)):<24}  {json.dumps(dev.get(key))}")
    return 0


def list_defconfigs() -> list[str]:
    return sorted(p.name for p in DEFCONFIG_DIR.iterdir() if p.is_file())


def defconfig(name: str, config: Path) -> None:
    source = DEFCONFIG_DIR / name
    if not source.is_file():
        raise ConfigError(f"unknown defconfig {name!r}; available: {', '.join(list_defconfigs())}")
    kconf = load(source)
    write_config(kconf, config)
    build(config)  # the defconfig must also pass the cross-setting checks


def write_config(kconf: kconfiglib.Kconfig, config: Path, quiet: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:  # kconfiglib writes to a file name
        kconf.write_config(os.path.join(tmp, ".config"), save_old=False)
        # Owner-only, as before: .config may hold the HF token and the API key.
        atomic.write_atomic(config, Path(tmp, ".config").read_text(), mode=0o600)
    if not quiet:
        print(f"wrote {config}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=TOP / ".config")
    parser.add_argument("--extra-vars", type=Path, default=TOP / "extra_vars.yaml")
    parser.add_argument("--hosts", type=Path, default=TOP / "inventories/generated/hosts.yml")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("defconfig").add_argument("name")
    for name in (
        "olddefconfig",
        "savedefconfig",
        "list-defconfigs",
        "generate",
        "generate-calibration",
        "diff-groups",
        "inventory-examples",
    ):
        sub.add_parser(name)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "defconfig":
            defconfig(args.name, args.config)
        elif args.cmd == "olddefconfig":
            write_config(load(args.config, strict=False), args.config)
        elif args.cmd == "savedefconfig":
            out = args.config.parent / "defconfig"
            load(args.config).write_min_config(str(out))
            print(f"wrote {out}")
        elif args.cmd == "list-defconfigs":
            print("\n".join(list_defconfigs()))
        elif args.cmd == "generate":
            generate(args.config, args.extra_vars, args.hosts)
        elif args.cmd == "generate-calibration":
            generate_calibration(args.config, args.hosts)
        elif args.cmd == "inventory-examples":
            write_examples(TOP / "inventories" / "examples")
        elif args.cmd == "diff-groups":
            return diff_groups(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
