"""The mixer conformance kit: the checks every mixer must pass (the contract is in zoology.mixers).

Each check takes a mixer spec — a registry name, a dotted path, either with `:key=value` kwargs, or
a (name, kwargs) pair — builds the mixer at d_model = 32 with its defaults otherwise, and raises
AssertionError naming what failed:

1. check_shapes        output shape and dtype equal the input's, for l in {1, 7, 64, 257}, batch 2
                       (forward, prefill and step);
2. check_causality     perturbing inputs after t leaves outputs up to t unchanged up to float64
                       rounding (at most 1e-12 of max |output|: an FFT convolution spreads the rounding
                       of every position over all of them), and one sequence of the batch never
                       changes another (exactly; float64);
3. check_recurrence    prefill equals forward, and stepping from init_state — also after a parallel
                       prefill — reproduces forward (float64, max error / max |output| ≤ 1e-6), and
                       the states they leave hold state_size(t) elements (`check_recurrent_form`,
                       the same check on a mixer as built, is what the throughput bench runs on
                       every layer of a model);
4. check_state_size    state_size(t) · batch == state_numel(state) after t steps and after a
                       prefill of t tokens, for every t up to 130 and for t = 257;
   check_state_dtype   floating state tensors are float64 for float64 inputs and float32 under
                       bf16 autocast or for init_state(dtype=torch.bfloat16);
5. check_gradients     every parameter gets a finite gradient;
   check_bf16          no NaN/inf in outputs or gradients under bf16 autocast at l = 1024 with
                       inputs of std 1 and 4, and the output stays within 10% (relative L2) of
                       float32's.

A failed recurrence or state size raises RecurrenceError (an AssertionError) that also says where.
`check_mixer(spec)` runs them all and prints each as it passes, then `<mixer>: all 7 conformance checks
passed`: `python -c "from zoology.mixers.conformance import check_mixer;
check_mixer('my_package.my_module.MyMixer')"`. tests/test_mixer_conformance.py runs every check on
every registered mixer and on those named in ZOOLOGY_MIXERS or `pytest --mixer`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
CAUSALITY_TOLERANCE = 1e-12

Spec = str | tuple[str, dict[str, Any]]


class RecurrenceError(AssertionError):
    """A recurrent form that does not compute forward, or a state that is not the size state_size claims.

    `form` names what was run ("prefill", "step from init_state", "prefill of 70 tokens", "step after a
    prefill of 70 tokens", "state after 130 steps", …); `positions` are the sequence positions whose
    outputs disagree with forward and `error` the largest relative error there (none for a state size).
    """

    def __init__(self, message: str, form: str, positions: Iterable[int] = (), error: float | None = None):
        super().__init__(message)
        self.form, self.positions, self.error = form, list(positions), error


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
        allowed = CAUSALITY_TOLERANCE * y.abs().max()
        for t in CAUSALITY_POSITIONS:
            x2 = x.clone()
            x2[:, t + 1 :] = _inputs(BATCH, STEP_LENGTH - t - 1, D_MODEL, device=device, dtype=x.dtype, std=5, seed=t)
            change = (mixer(x2)[:, : t + 1] - y[:, : t + 1]).abs().amax(dim=(0, 2))
            changed = (~(change <= allowed)).nonzero().flatten()
            assert changed.numel() == 0, (
                f"not causal: changing inputs after position {t} changed outputs at positions {changed.tolist()} "
                f"(by up to {float(change.max() / y.abs().max()):.1e} of max |output|)"
            )
        x2 = x.clone()
        x2[1:] = _inputs(BATCH - 1, STEP_LENGTH, D_MODEL, device=device, dtype=x.dtype, std=5, seed=99)
        assert torch.equal(mixer(x2)[0], y[0]), "changing one sequence of the batch changed another's outputs"


def _disagreements(actual: torch.Tensor, expected: torch.Tensor, per_position: bool = False) -> tuple[list[int], float]:
    """Positions t where max |actual − expected| at t, over max |expected| (over all positions, or at t), is
    not within RECURRENCE_TOLERANCE, and the largest such relative error at any t; tensors (batch, seq, d)."""
    scale = expected.abs().amax(dim=(0, 2) if per_position else (0, 1, 2))
    errors = (actual - expected).abs().amax(dim=(0, 2)) / scale.clamp_min(torch.finfo(expected.dtype).tiny)
    return (~(errors <= RECURRENCE_TOLERANCE)).nonzero().flatten().tolist(), float(errors.max())


def _state_size(mixer: nn.Module, t: int) -> int:
    size = mixer.state_size(t)
    if not isinstance(size, int) or isinstance(size, bool):
        raise RecurrenceError(f"state_size({t}) returned {type(size).__name__}, expected int", f"state_size({t})")
    return size


def _check_state_numel(mixer: nn.Module, numel: int, batch: int, t: int, after: str) -> None:
    """Raise RecurrenceError unless the state after `after` (t tokens), `numel` elements, is state_size(t) each."""
    size = _state_size(mixer, t)
    if numel != size * batch:
        raise RecurrenceError(
            f"after {after} the state holds {numel / batch:g} elements per sequence, but state_size({t}) = {size}",
            f"state after {after}",
        )


def check_recurrent_form(mixer: nn.Module, x: torch.Tensor, prefill_lengths: Iterable[int] = PREFILL_LENGTHS) -> None:
    """Check a mixer's recurrent forms against forward(x), x (batch, seq, d_model); run it on a float64 mixer in
    eval mode. In order: prefill(x)[0]; stepping from init_state through x; for each p in prefill_lengths a
    prefill of x[:, :p], then stepping on from its state. Outputs agree within RECURRENCE_TOLERANCE of max |output|
    (over the prefill, at each position for the steps from init_state, over the rest after a prefill), and the
    state after each prefill and after the last step holds state_size(t) elements per sequence. Raises
    RecurrenceError for the first form that fails."""
    batch, seq_len = x.shape[:2]
    with torch.no_grad():
        y = mixer(x)
        bad, error = _disagreements(mixer.prefill(x)[0], y)
        if bad:
            raise RecurrenceError(
                f"prefill(x)[0] differs from forward(x): relative error {error:.2e}", "prefill", bad, error
            )
        y_steps, state, _ = _steps(mixer, x, mixer.init_state(batch, device=x.device, dtype=x.dtype))
        bad, error = _disagreements(y_steps, y, per_position=True)
        if bad:
            raise RecurrenceError(
                f"stepping from init_state differs from forward at positions {bad[:10]}"
                f"{'…' if len(bad) > 10 else ''} (largest relative error {error:.2e})",
                "step from init_state",
                bad,
                error,
            )
        _check_state_numel(mixer, mixers.state_numel(state), batch, seq_len, f"{seq_len} steps")
        for p in prefill_lengths:
            y_p, state = mixer.prefill(x[:, :p])
            bad, error = _disagreements(y_p, y[:, :p])
            if bad:
                raise RecurrenceError(
                    f"prefill of {p} tokens differs from forward: {error:.2e}", f"prefill of {p} tokens", bad, error
                )
            _check_state_numel(mixer, mixers.state_numel(state), batch, p, f"a prefill of {p} tokens")
            y_rest, state, _ = _steps(mixer, x[:, p:], state)
            bad, error = _disagreements(y_rest, y[:, p:])
            if bad:
                raise RecurrenceError(
                    f"stepping after a prefill of {p} tokens differs from forward: relative error {error:.2e}",
                    f"step after a prefill of {p} tokens",
                    [p + t for t in bad],
                    error,
                )
            after = f"a prefill of {p} tokens and {seq_len - p} steps"
            _check_state_numel(mixer, mixers.state_numel(state), batch, seq_len, after)


def check_recurrence(spec: Spec, device: str | torch.device = "cpu") -> None:
    mixer = builder(spec, device=device)().double().eval()
    check_recurrent_form(mixer, _inputs(BATCH, STEP_LENGTH, D_MODEL, device=device, dtype=torch.float64))


def check_state_size(spec: Spec, device: str | torch.device = "cpu") -> None:
    mixer = builder(spec, device=device)().eval()
    x = _inputs(BATCH, max(STEP_LENGTH, *SHAPE_LENGTHS), D_MODEL, device=device)
    with torch.no_grad():
        initial = mixers.state_numel(mixer.init_state(BATCH, device=device))
        claimed = _state_size(mixer, 0)
        assert initial == claimed * BATCH, (
            f"init_state holds {initial // BATCH} elements per sequence, state_size(0)={claimed}"
        )
        _, _, sizes = _steps(mixer, x[:, :STEP_LENGTH], mixer.init_state(BATCH, device=device))
        for t, numel in enumerate(sizes, start=1):
            _check_state_numel(mixer, numel, BATCH, t, f"{t} steps")
        for l in sorted({*SHAPE_LENGTHS, *PREFILL_LENGTHS}):
            numel = mixers.state_numel(mixer.prefill(x[:, :l])[1])
            _check_state_numel(mixer, numel, BATCH, l, f"a prefill of {l} tokens")


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


def check_mixer(spec: Spec, device: str | torch.device = "cpu", verbose: bool = True) -> None:
    """Run every check on one mixer; raises AssertionError on the first failure. With `verbose`, says
    each check as it passes and, at the end, that all of them did (so success is never silent)."""
    name, kwargs = parse(spec)
    shown = name + "".join(f":{k}={v}" for k, v in kwargs.items())
    for i, check in enumerate(CHECKS, 1):
        check(spec, device=device)
        if verbose:
            print(f"  {i}/{len(CHECKS)} {check.__name__}: passed", flush=True)
    if verbose:
        print(f"{shown}: all {len(CHECKS)} conformance checks passed", flush=True)
