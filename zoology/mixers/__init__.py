"""Sequence mixers and their registry.

A mixer is an `nn.Module` built as `Cls(d_model=…, layer_idx=…, **kwargs)` that maps
(batch, seq, d_model) to the same shape causally. Besides the parallel `forward(x)` it carries a
recurrent form: `init_state(batch_size, device=None, dtype=None)`, `step(x_t, state) -> (y_t, state)`
with x_t of shape (batch, d_model), `prefill(x) -> (y, state)`, and `state_size(seq_len) -> int`,
the element count of that state after `seq_len` tokens.

A mixer is named by its short registry name (`names()` lists them) or by any importable dotted
path such as `my_package.my_module.MyMixer`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import nn

REGISTRY: dict[str, str] = {
    "attention": "zoology.mixers.attention.Attention",
    "base_conv": "zoology.mixers.base_conv.BaseConv",
    "mamba": "zoology.mixers.mamba.Mamba",
}

RESERVED_KWARGS = ("d_model", "layer_idx")


def names() -> list[str]:
    return sorted(REGISTRY)


def resolve(name: str) -> type[nn.Module]:
    """The mixer class for a registry name or a dotted import path."""
    path = REGISTRY.get(name, name)
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError(f"unknown mixer {name!r}: use one of {names()} or a dotted import path")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"unknown mixer {name!r}: cannot import module {module_name!r} ({e}); registered mixers are {names()}"
        ) from e
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"mixer {name!r}: {path!r} is not an nn.Module class")
    return cls


def check_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Raise ValueError if `kwargs` cannot be passed to the mixer's constructor."""
    cls = resolve(name)
    sig = inspect.signature(cls.__init__)
    params = dict(list(sig.parameters.items())[1:])
    for reserved in RESERVED_KWARGS:
        if reserved in kwargs:
            raise ValueError(f"mixer {name!r}: {reserved!r} is set by the model, not in kwargs")
        if reserved not in params and not _takes_var_kwargs(params):
            raise ValueError(f"mixer {name!r}: constructor must accept {reserved!r}")
    if not _takes_var_kwargs(params):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            allowed = sorted(set(params) - set(RESERVED_KWARGS))
            raise ValueError(f"mixer {name!r} takes no argument {unknown}; it accepts {allowed}")
    try:
        sig.bind(None, d_model=1, layer_idx=0, **kwargs)
    except TypeError as e:
        raise ValueError(f"mixer {name!r}: {e}") from e


def _takes_var_kwargs(params: dict[str, inspect.Parameter]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def build(name: str, d_model: int, layer_idx: int = 0, **kwargs: Any) -> nn.Module:
    check_kwargs(name, kwargs)
    return resolve(name)(d_model=d_model, layer_idx=layer_idx, **kwargs)


def state_numel(state: Any) -> int:
    """Elements in a recurrent state: a tensor, or a dict/list/tuple of them (nested)."""
    if isinstance(state, torch.Tensor):
        return state.numel()
    if isinstance(state, dict):
        return sum(state_numel(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_numel(v) for v in state)
    if state is None or isinstance(state, (int, float)):
        return 0
    raise TypeError(f"unsupported state element of type {type(state).__name__}")
