"""The mixer conformance kit: the checks every mixer must pass (the contract is in zoology.mixers).

Each check takes a mixer spec — a registry name, a dotted path, either with `:key=value` kwargs, or
a (name, kwargs) pair — builds the mixer at d_model = 32 with its defaults otherwise, and raises
AssertionError naming what failed:

1. check_shapes        output shape and dtype equal the input's, for l in {1, 7, 64, 257}, batch 2
                       (forward, prefill and step);
2. check_causality     perturbing inputs after t leaves outputs up to t exactly unchanged, and one
                       sequence of the batch never changes another (float64);
3. check_recurrence    prefill equals forward, and stepping from init_state — also after a parallel
                       prefill — reproduces forward (float64, max error / max |output| ≤ 1e-6);
4. check_state_size    state_size(t) · batch == state_numel(state) after t steps and after a
                       prefill of t tokens, for every t up to 130 and for t = 257;
   check_state_dtype   floating state tensors are float64 for float64 inputs and float32 under
                       bf16 autocast or for init_state(dtype=torch.bfloat16);
5. check_gradients     every parameter gets a finite gradient;
   check_bf16          no NaN/inf in outputs or gradients under bf16 autocast at l = 1024 with
                       inputs of std 1 and 4, and the output stays within 10% (relative L2) of
                       float32's.

`check_mixer(spec)` runs them all: `python -c "from zoology.mixers.conformance import check_mixer;
check_mixer('my_package.my_module.MyMixer')"`. tests/test_mixer_conformance.py runs every check on
every registered mixer and on those named in ZOOLOGY_MIXERS or `pytest --mixer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from zoology import mixers

D_MODEL = 32
BATCH = 2
SHAPE_LENGTHS = (1, 7, 64, 257)
STEP_LENGTH = 130
PREFILL_LENGTHS = (1, 70)
CAUSALITY_POSITIONS = (0, 1, 63, 64, 127)
GRADIENT_LENGTH = 64
BF16_LENGTH = 1024
BF16_STDS = (1.0, 4.0)
BF16_TOLERANCE = 0.1
RECURRENCE_TOLERANCE = 1e-6

Spec = str | tuple[str, dict[str, Any]]


def parse(spec: Spec) -> tuple[str, dict[str, Any]]:
    return mixers.parse_spec(spec) if isinstance(spec, str) else (spec[0], dict(spec[1]))


def builder(spec: Spec, d_model: int = D_MODEL, device: str | torch.device = "cpu") -> Callable[[], nn.Module]:
    """A function returning a fresh mixer with seeded initial weights, on `device`."""
    name, kwargs = parse(spec)
    mixers.check_kwargs(name, kwargs)

    def make() -> nn.Module:
        torch.manual_seed(0)
        return mixers.build(name, d_model=d_model, layer_idx=0, **kwargs).to(device)

    return make


def _rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.abs().max().clamp_min(torch.finfo(expected.dtype).tiny)
    return float((actual - expected).abs().max() / scale)


def _inputs(*shape: int, device, dtype=torch.float32, std: float = 1.0, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (std * torch.randn(*shape, generator=gen, dtype=torch.float64)).to(device=device, dtype=dtype)


def _steps(mixer: nn.Module, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any, list[int]]:
    """Run x (batch, seq, d) through `step`: outputs (batch, seq, d), final state, numel after each."""
    outputs, sizes = [], []
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t], state)
        outputs.append(y_t)
        sizes.append(mixers.state_numel(state))
    return torch.stack(outputs, dim=1), state, sizes


def check_shapes(spec: Spec, device: str | torch.device = "cpu") -> None:
    mixer = builder(spec, device=device)().eval()
    with torch.no_grad():
        for l in SHAPE_LENGTHS:
            x = _inputs(BATCH, l, D_MODEL, device=device)
            for form, y in (("forward", mixer(x)), ("prefill", mixer.prefill(x)[0])):
                assert y.shape == x.shape, f"{form}: input {tuple(x.shape)} gave output {tuple(y.shape)}"
                assert y.dtype == x.dtype, f"{form}: input dtype {x.dtype} gave output dtype {y.dtype}"
        y_t, _ = mixer.step(x[:, 0], mixer.init_state(BATCH, device=device, dtype=x.dtype))
        assert y_t.shape == x[:, 0].shape, f"step: input {tuple(x[:, 0].shape)} gave output {tuple(y_t.shape)}"
        assert y_t.dtype == x.dtype, f"step: input dtype {x.dtype} gave output dtype {y_t.dtype}"


def check_causality(spec: Spec, device: str | torch.device = "cpu") -> None:
    mixer = builder(spec, device=device)().double().eval()
    x = _inputs(BATCH, STEP_LENGTH, D_MODEL, device=device, dtype=torch.float64)
    with torch.no_grad():
        y = mixer(x)
        for t in CAUSALITY_POSITIONS:
            x2 = x.clone()
            x2[:, t + 1 :] = _inputs(BATCH, STEP_LENGTH - t - 1, D_MODEL, device=device, dtype=x.dtype, std=5, seed=t)
            changed = (mixer(x2)[:, : t + 1] != y[:, : t + 1]).any(-1).any(0).nonzero().flatten()
            assert changed.numel() == 0, (
                f"not causal: changing inputs after position {t} changed outputs at positions {changed.tolist()}"
            )
        x2 = x.clone()
        x2[1:] = _inputs(BATCH - 1, STEP_LENGTH, D_MODEL, device=device, dtype=x.dtype, std=5, seed=99)
        assert torch.equal(mixer(x2)[0], y[0]), "changing one sequence of the batch changed another's outputs"


def check_recurrence(spec: Spec, device: str | torch.device = "cpu") -> None:
    mixer = builder(spec, device=device)().double().eval()
    x = _inputs(BATCH, STEP_LENGTH, D_MODEL, device=device, dtype=torch.float64)
    with torch.no_grad():
        y = mixer(x)
        y_prefill, _ = mixer.prefill(x)
        err = _rel_error(y_prefill, y)
        assert err <= RECURRENCE_TOLERANCE, f"prefill(x)[0] differs from forward(x): relative error {err:.2e}"
        y_steps, _, _ = _steps(mixer, x, mixer.init_state(BATCH, device=device, dtype=torch.float64))
        errors = [_rel_error(y_steps[:, t], y[:, t]) for t in range(STEP_LENGTH)]
        bad = [t for t, e in enumerate(errors) if e > RECURRENCE_TOLERANCE]
        assert not bad, (
            f"stepping from init_state differs from forward at positions {bad[:10]}"
            f"{'…' if len(bad) > 10 else ''} (largest relative error {max(errors):.2e})"
        )
        for p in PREFILL_LENGTHS:
            y_p, state = mixer.prefill(x[:, :p])
            err = _rel_error(y_p, y[:, :p])
            assert err <= RECURRENCE_TOLERANCE, f"prefill of {p} tokens differs from forward: {err:.2e}"
            y_rest, _, _ = _steps(mixer, x[:, p:], state)
            err = _rel_error(y_rest, y[:, p:])
            assert err <= RECURRENCE_TOLERANCE, (
                f"stepping after a prefill of {p} tokens differs from forward: relative error {err:.2e}"
            )


def check_state_size(spec: Spec, device: str | torch.device = "cpu") -> None:
    mixer = builder(spec, device=device)().eval()

    def claimed(t: int) -> int:
        size = mixer.state_size(t)
        assert isinstance(size, int) and not isinstance(size, bool), (
            f"state_size({t}) returned {type(size).__name__}, expected int"
        )
        return size * BATCH

    x = _inputs(BATCH, max(STEP_LENGTH, *SHAPE_LENGTHS), D_MODEL, device=device)
    with torch.no_grad():
        initial = mixers.state_numel(mixer.init_state(BATCH, device=device))
        assert initial == claimed(0), (
            f"init_state holds {initial // BATCH} elements per sequence, state_size(0)={claimed(0) // BATCH}"
        )
        _, _, sizes = _steps(mixer, x[:, :STEP_LENGTH], mixer.init_state(BATCH, device=device))
        for t, numel in enumerate(sizes, start=1):
            assert numel == claimed(t), (
                f"after {t} steps the state holds {numel / BATCH:g} elements per sequence, "
                f"but state_size({t}) = {claimed(t) // BATCH}"
            )
        for l in sorted({*SHAPE_LENGTHS, *PREFILL_LENGTHS}):
            numel = mixers.state_numel(mixer.prefill(x[:, :l])[1])
            assert numel == claimed(l), (
                f"after a prefill of {l} tokens the state holds {numel / BATCH:g} elements per sequence, "
                f"but state_size({l}) = {claimed(l) // BATCH}"
            )


def _floating_dtypes(state: Any) -> set[torch.dtype]:
    if isinstance(state, torch.Tensor):
        return {state.dtype} if state.is_floating_point() else set()
    if isinstance(state, dict):
        state = list(state.values())
    if isinstance(state, (list, tuple)):
        return set().union(*(_floating_dtypes(s) for s in state))
    return set()


def check_state_dtype(spec: Spec, device: str | torch.device = "cpu") -> None:
    make = builder(spec, device=device)
    device_type = torch.device(device).type
    with torch.no_grad():
        mixer = make().double().eval()
        x = _inputs(BATCH, 9, D_MODEL, device=device, dtype=torch.float64)
        _, state = mixer.prefill(x)
        _, state = mixer.step(x[:, 0], state)
        init = mixer.init_state(BATCH, device=device, dtype=torch.float64)
        for where, s in (("init_state(dtype=float64)", init), ("prefill + step", state)):
            wrong = _floating_dtypes(s) - {torch.float64}
            assert not wrong, (
                f"{where} on float64 inputs holds {sorted(map(str, wrong))} state tensors, expected float64"
            )
        mixer = make().eval()
        x = _inputs(BATCH, 9, D_MODEL, device=device)
        with torch.autocast(device_type, dtype=torch.bfloat16):
            _, state = mixer.prefill(x)
            _, state = mixer.step(x[:, 0], state)
        init = mixer.init_state(BATCH, device=device, dtype=torch.bfloat16)
        for where, s in (("init_state(dtype=bfloat16)", init), ("prefill + step under bf16 autocast", state)):
            wrong = _floating_dtypes(s) - {torch.float32, torch.float64}
            assert not wrong, f"{where} holds {sorted(map(str, wrong))} state tensors: keep recurrent states in float32"


def check_gradients(spec: Spec, device: str | torch.device = "cpu") -> None:
    mixer = builder(spec, device=device)().train()
    x = _inputs(BATCH, GRADIENT_LENGTH, D_MODEL, device=device).requires_grad_()
    y = mixer(x)
    (y * _inputs(*y.shape, device=device, seed=2)).sum().backward()
    missing = [n for n, p in mixer.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"
    bad = [n for n, p in mixer.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"parameters with NaN/inf gradients: {bad}"
    assert x.grad is not None and torch.isfinite(x.grad).all(), "the input gradient is missing or not finite"


def check_bf16(spec: Spec, device: str | torch.device = "cpu") -> None:
    make = builder(spec, device=device)
    device_type = torch.device(device).type
    for std in BF16_STDS:
        x = _inputs(BATCH, BF16_LENGTH, D_MODEL, device=device, std=std)
        mixer = make().train()
        with torch.no_grad():
            reference = mixer.eval()(x).float()
        mixer.train()
        x.requires_grad_()
        with torch.autocast(device_type, dtype=torch.bfloat16):
            y = mixer(x)
        assert torch.isfinite(y).all(), f"NaN/inf outputs under bf16 autocast (input std {std})"
        (y.float() * _inputs(*y.shape, device=device, seed=2)).sum().backward()
        bad = [n for n, p in mixer.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, f"NaN/inf gradients under bf16 autocast (input std {std}): {bad}"
        assert torch.isfinite(x.grad).all(), f"NaN/inf input gradient under bf16 autocast (input std {std})"
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16):
            low = mixer.eval()(x.detach()).float()
        err = float((low - reference).norm() / reference.norm().clamp_min(1e-30))
        assert err <= BF16_TOLERANCE, (
            f"bf16 autocast output is {err:.1%} off float32 (relative L2, input std {std}, l={BF16_LENGTH}): "
            "keep sums, normalisers and states in float32"
        )


CHECKS: tuple[Callable[..., None], ...] = (
    check_shapes,
    check_causality,
    check_recurrence,
    check_state_size,
    check_state_dtype,
    check_gradients,
    check_bf16,
)


def check_mixer(spec: Spec, device: str | torch.device = "cpu") -> None:
    """Run every check on one mixer; raises AssertionError on the first failure."""
    for check in CHECKS:
        check(spec, device=device)
