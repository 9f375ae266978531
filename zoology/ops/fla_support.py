"""Optional fla-core (the `fla` extra: `pip install -e ".[fla]"`, fla-core==0.6.0) for the CUDA fast paths of
the delta-rule, GLA, Mamba-2 and RWKV-7 mixers.

Nothing imports fla until a fast path runs: `installed()` only looks for the package, so the CPU never
imports it. `load(name)` imports `fla.ops.<name>` once and puts every Triton autotuner of fla under the
autotuning policy, ZOOLOGY_FLA_AUTOTUNE:

- "pinned" (default): each kernel runs one configuration, picked from those fla's own pruning keeps for the
  call (num_warps nearest 4, num_stages nearest 2, block sizes nearest 64, then fla's order): no
  benchmarking, one compile per kernel and shape key, and compiled kernels are cached on disk by Triton;
- "tune": fla's full Triton autotuning, its results cached on disk by Triton (fla passes cache_results),
  so a process pays it once per kernel and key on a machine whose TRITON_CACHE_DIR persists. Measured on an
  H200 with an empty cache: 68 s for chunk_delta_rule's first fwd+bwd, 218 s for chunk_gla's.

A mixer's `backend` kwarg is one of BACKENDS: "torch" (the chunked PyTorch path), "fla" (fla's kernel; needs
CUDA and fla-core), "auto" (fla for CUDA tensors when fla-core is installed and the kernel is usable on the
device and for the head widths, else torch). `check_backend` is the constructor's check, `use_fla` the forward's choice.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import os
import re
import sys

import torch

BACKENDS = ("auto", "torch", "fla")
AUTOTUNE_MODES = ("pinned", "tune")
AUTOTUNE_ENV = "ZOOLOGY_FLA_AUTOTUNE"
FLA_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MIN_HEAD_DIM = 16
"""fla's kernels multiply head-sized tiles with tl.dot, which needs at least 16 along each side."""
DELTA_RULE_KEY_WIDTHS = (64,)
"""Key widths per head at which chunk_delta_rule's bf16 outputs were measured right on an H200 (Triton 3.6,
fla-core 0.6.0): at 64 the delta_net mixer matched its torch path to 7.5e-3 (T = 256) and the op matched the
reference to 3.8e-3–5.0e-3 (outputs and final state; value widths 48 and 64, T = 100 and 300, pinned
configuration); at key width 32 the op's outputs were 0.47–0.70 off (relative) at positions
80–99 of a 100-token sequence, with fla's autotuning and with the pinned configuration. The delta rules take
fla only at these widths ("auto" runs the torch path elsewhere)."""


@functools.cache
def installed() -> bool:
    """Whether fla-core can be imported (found, not imported)."""
    return importlib.util.find_spec("fla") is not None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


@functools.cache
def gated_backward_refused() -> bool:
    """Whether fla refuses the backward of its chunked kernels with a per-head gate (chunk_gated_delta_rule,
    chunk_simple_gla) here: on Hopper with 3.4 <= Triton < 3.7.1 that backward gives wrong results, and fla
    0.6.0 raises instead (it asks for Triton >= 3.7.1 or tilelang)."""
    if not torch.cuda.is_available():
        return False
    import triton

    hopper = torch.cuda.get_device_capability()[0] == 9
    return hopper and (3, 4) <= _version(triton.__version__) < (3, 7, 1)


def check_backend(
    backend: str, head_dims: dict[str, int], gated: bool = False, key_widths: tuple[int, ...] | None = None
) -> None:
    """The constructor's check of a mixer's `backend` kwarg: ValueError naming the allowed values, or why
    "fla" cannot run here. head_dims: the key and value widths per head, by name; gated: the mixer's fla
    kernel is one that `gated_backward_refused` covers; key_widths: the only key widths its kernel takes."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} must be one of {list(BACKENDS)}")
    if backend != "torch" and torch.cuda.is_available() and installed():
        importlib.import_module("fla.ops")  # eagerly, never first inside a compiled trace (dynamo fails on its setup)
    if backend != "fla":
        return
    if not torch.cuda.is_available():
        raise ValueError("backend='fla' needs a CUDA device and this machine has none: use 'auto' or 'torch'")
    if not installed():
        raise ValueError("backend='fla' needs fla-core: pip install -e '.[fla]' (or use 'auto' or 'torch')")
    small = {name: width for name, width in head_dims.items() if width < MIN_HEAD_DIM}
    if small:
        raise ValueError(f"backend='fla' needs head widths >= {MIN_HEAD_DIM}, got {small}: use 'auto' or 'torch'")
    if key_widths is not None and head_dims["key"] not in key_widths:
        raise ValueError(
            f"backend='fla' takes key widths per head {list(key_widths)} for this mixer (others measured wrong), "
            f"got {head_dims['key']}: use 'auto' or 'torch'"
        )
    if gated and gated_backward_refused():
        raise ValueError(
            "backend='fla': fla-core refuses this mixer's kernel on Hopper GPUs with Triton < 3.7.1 (its backward "
            "is wrong there); use 'auto' or 'torch' (the chunked PyTorch path, compiled with the model)"
        )


def use_fla(
    backend: str,
    x: torch.Tensor,
    head_dims: dict[str, int],
    gated: bool = False,
    key_widths: tuple[int, ...] | None = None,
) -> bool:
    """Whether a forward on x runs fla's kernel: "fla" always (ValueError for tensors it cannot take), "auto"
    for CUDA tensors of float32/bfloat16/float16 when fla-core is installed, the kernel is usable, every
    head width is at least MIN_HEAD_DIM and the key width is one of `key_widths` (if given)."""
    fits = x.is_cuda and x.dtype in FLA_DTYPES and min(head_dims.values()) >= MIN_HEAD_DIM
    fits = fits and (key_widths is None or head_dims["key"] in key_widths)
    if backend == "fla":
        if not fits:
            raise ValueError(
                f"backend='fla' runs on CUDA tensors of {list(map(str, FLA_DTYPES))}, got {x.dtype} on {x.device}"
            )
        return True
    return backend == "auto" and fits and installed() and not (gated and gated_backward_refused())


_mode: str | None = None
_autotuners: list = []
_modules_walked = 0


def autotune_mode() -> str:
    mode = os.environ.get(AUTOTUNE_ENV, "pinned")
    if mode not in AUTOTUNE_MODES:
        raise ValueError(f"{AUTOTUNE_ENV}={mode!r} must be one of {list(AUTOTUNE_MODES)}")
    return mode


def load(name: str):
    """fla.ops.<name>, with every fla autotuner imported so far under the autotuning policy (modules are walked
    again whenever the import count changed, so kernels fla imports on a first call are adopted at the next)."""
    global _mode, _modules_walked
    module = importlib.import_module(f"fla.ops.{name}")
    if _mode is None:
        _mode = autotune_mode()
    if len(sys.modules) != _modules_walked:
        _adopt_autotuners()
        _modules_walked = len(sys.modules)
    return module


def set_autotune(mode: str) -> None:
    """Switch the policy in this process (for benchmarks); forgets the configurations chosen so far."""
    global _mode
    if mode not in AUTOTUNE_MODES:
        raise ValueError(f"autotune mode {mode!r} must be one of {list(AUTOTUNE_MODES)}")
    _mode = mode
    for tuner in _autotuners:
        tuner.cache.clear()


def pinned_config(configs: list) -> list:
    """The one configuration "pinned" runs: num_warps nearest 4, num_stages nearest 2, integer block sizes
    nearest 64 (all in log2 steps but num_stages), then the first in fla's order."""

    def distance(item):
        index, config = item
        blocks = [v for v in config.kwargs.values() if isinstance(v, int) and not isinstance(v, bool) and v > 0]
        return (
            abs(math.log2(config.num_warps / 4)),
            abs(config.num_stages - 2),
            sum(abs(math.log2(v / 64)) for v in blocks),
            index,
        )

    return [min(enumerate(configs), key=distance)[1]]


def imported_autotuners() -> list:
    """Every Triton Autotuner in the fla modules imported so far (through triton.heuristics wrappers too)."""
    from triton.runtime.autotuner import Autotuner

    found = {}
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("fla.") or module is None:
            continue
        for value in list(vars(module).values()):
            while value is not None and not isinstance(value, Autotuner) and hasattr(value, "fn"):
                value = value.fn
            if isinstance(value, Autotuner):
                found[id(value)] = value
    return list(found.values())


def _adopt_autotuners() -> None:
    """Wrap prune_configs of every fla autotuner not yet adopted, so that under "pinned" only `pinned_config` of
    what fla's pruning keeps remains: Triton then runs it without benchmarking."""
    adopted = {id(t) for t in _autotuners}
    for tuner in imported_autotuners():
        if id(tuner) not in adopted:
            _autotuners.append(tuner)
            tuner.prune_configs = _pinned_pruning(tuner.prune_configs)


def _pinned_pruning(prune):
    def prune_configs(kwargs):
        configs = prune(kwargs)
        return pinned_config(configs) if _mode == "pinned" and len(configs) > 1 else configs

    return prune_configs
