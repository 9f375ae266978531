"""Sequence mixers, their registry, and the contract every mixer follows.

A mixer is an `nn.Module` built as `Cls(d_model=…, layer_idx=…, **named kwargs)` (no `**kwargs`
catch-all: configs check kwargs against the signature). It maps (batch, seq, d_model) to the same
shape causally, in two forms of one function:

- parallel: `forward(x)`, and `prefill(x) -> (y, state)` with y equal to forward(x) and `state`
  the recurrent state after those tokens;
- recurrent: `init_state(batch_size, device=None, dtype=None)` (the state before any token) and
  `step(x_t, state) -> (y_t, state)` with x_t of shape (batch, d_model).

The state is a tensor or a (nested) dict/list/tuple of tensors; callers treat a state they pass in
as consumed, so `step` may update it in place. `state_size(seq_len) -> int` is the number of state
elements PER SEQUENCE after `seq_len` tokens, equal to `state_numel(state) / batch` — it is what the
recall-against-memory plots use, so it counts what the state really holds. Running sums,
normalisers and recurrent states accumulate in `torch.promote_types(x.dtype, torch.float32)`, also
under bf16 autocast. Parameters with their own init set `p._no_reinit = True`; parameters that
must not decay set `p._no_weight_decay = True`. A mixer that accepts sequences only up to a length
takes it as the kwarg `max_seq_len` and raises `SequenceTooLong` (a ValueError) beyond it; configs
check their data against it (`max_seq_len(name, kwargs)`).

Optionally, `token_weights(x) -> W` (batch, heads, seq, seq), computed without gradient from the
parallel form in float32 (float64 for float64 inputs), autocast off: the causal token-to-token
weights with y_t = Σ_{s≤t} W[:, h, t, s] v_s for each head h (the docstring says which v and y,
and what "head" is: a head, or a channel). `python -m zoology.explain` and
`zoology.analysis.retrieval_mass` read them. A mixer whose tokens do not mix that way raises
`NoTokenWeights`, saying what mixes them instead.

`zoology.mixers.conformance` checks all of this; tests/test_mixer_conformance.py runs it on every
registered mixer and on any mixer named in ZOOLOGY_MIXERS or `pytest --mixer`.

A mixer is named by its short registry name (`names()` lists them; register one with a line in
`REGISTRY`) or by any importable dotted path such as `my_package.my_module.MyMixer`. A "spec"
adds constructor kwargs after colons: `sliding_window:window_size=16:num_heads=2`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import traceback
from collections.abc import Callable
from typing import Any

import torch
import yaml
from torch import nn

REGISTRY: dict[str, str] = {
    "attention": "zoology.mixers.attention.Attention",
    "base_conv": "zoology.mixers.base_conv.BaseConv",
    "base_conv_long": "zoology.mixers.base_conv_long.LongBaseConv",
    "based": "zoology.mixers.based.Based",
    "delta_net": "zoology.mixers.delta_net.DeltaNet",
    "gated_delta_net": "zoology.mixers.gated_delta_net.GatedDeltaNet",
    "gla": "zoology.mixers.gla.GLA",
    "h3": "zoology.mixers.h3.H3",
    "hyena": "zoology.mixers.hyena.Hyena",
    "leap": "zoology.mixers.leap.Leap",
    "linear_attention": "zoology.mixers.linear_attention.LinearAttention",
    "mamba": "zoology.mixers.mamba.Mamba",
    "mamba2": "zoology.mixers.mamba2.Mamba2",
    "rebased": "zoology.mixers.rebased.ReBased",
    "rwkv7": "zoology.mixers.rwkv7.RWKV7",
    "sliding_window": "zoology.mixers.sliding_window.SlidingWindowAttention",
}

RESERVED_KWARGS = ("d_model", "layer_idx")


class SequenceTooLong(ValueError):
    """A sequence (or a step past the position) longer than a mixer's `max_seq_len`."""


class NoTokenWeights(NotImplementedError):
    """`token_weights` of a mixer whose output is not y = W·v with token-to-token weights; the message says
    what mixes its tokens instead."""


WeightsMethod = Callable[[Any, torch.Tensor], torch.Tensor]


def token_weights_method(method: WeightsMethod) -> WeightsMethod:
    """For a mixer's `token_weights(self, x)`: run it without gradient, autocast off, on x in float32 (float64
    stays float64)."""

    @functools.wraps(method)
    def wrapped(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            return method(self, x.to(torch.promote_types(x.dtype, torch.float32)))

    return wrapped


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
    except Exception as e:  # the module exists but fails as it runs: the user's code, named with its error
        raise ValueError(f"mixer {name!r}: importing module {module_name!r} raised {_located(e)}") from e
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"mixer {name!r}: {path!r} is not an nn.Module class")
    return cls


@functools.cache
def _signature(cls: type) -> inspect.Signature:
    """The constructor's signature (looked up once per class: configs check it on every build)."""
    return inspect.signature(cls.__init__)


def _located(error: Exception) -> str:
    """'SyntaxError: invalid syntax (my_mixer.py, line 3)', or 'RuntimeError: boom (my_mixer.py, line 9)'."""
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error}"
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" ({frame.filename}, line {frame.lineno})" if frame else ""
    return f"{type(error).__name__}: {error}{where}"


def check_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Raise ValueError if `kwargs` cannot be passed to the mixer's constructor."""
    cls = resolve(name)
    sig = _signature(cls)
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


def check_args(name: str, d_model: int, layer_idx: int, kwargs: dict[str, Any]) -> None:
    """Raise ValueError if the mixer's own `check_args` (a static method, when it has one) rejects its
    constructor arguments with these kwargs and their defaults: a head count that does not divide
    d_model and the like, found when a config is built rather than when the run starts."""
    cls = resolve(name)
    check = getattr(cls, "check_args", None)
    if check is None:
        return
    bound = _signature(cls).bind(None, d_model=d_model, layer_idx=layer_idx, **kwargs)
    bound.apply_defaults()
    arguments = dict(list(bound.arguments.items())[1:])
    for key, param in bound.signature.parameters.items():
        if param.kind is param.VAR_KEYWORD:
            arguments.update(arguments.pop(key, {}))
    check(**arguments)


def max_seq_len(name: str, kwargs: dict[str, Any]) -> int | None:
    """The longest sequence the mixer accepts: its `max_seq_len` kwarg, else that parameter's default; None
    for a mixer without one (any length)."""
    if "max_seq_len" in kwargs:
        return kwargs["max_seq_len"]
    param = _signature(resolve(name)).parameters.get("max_seq_len")
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def _takes_var_kwargs(params: dict[str, inspect.Parameter]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """'name' or 'name:key=value:key=value' (values parsed as YAML) -> (name, kwargs)."""
    name, *items = spec.strip().split(":")
    if not name:
        raise ValueError(f"mixer spec {spec!r}: missing the mixer name before ':'")
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"mixer spec {spec!r}: {item!r} must look like key=value")
        kwargs[key.strip()] = yaml.safe_load(value)
    return name, kwargs


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
