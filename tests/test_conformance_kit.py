"""The conformance kit catches the contract violations it is there for."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoology.mixers import conformance
from zoology.mixers.base_conv import BaseConv


class PeeksAhead(BaseConv):
    def forward(self, u):
        return super().forward(u) + 0.1 * u.roll(-1, dims=1)


class MixesBatch(BaseConv):
    def forward(self, u):
        return super().forward(u) + u.mean(0, keepdim=True)


class SteppedDiffers(BaseConv):
    def step(self, u_t, state):
        y, state = super().step(u_t, state)
        return y + 1e-4, state


class UndercountsState(BaseConv):
    def state_size(self, seq_len):
        return self.d_model * (self.kernel_size - 2)


class CarriesHistory(BaseConv):
    """Its step keeps every input although state_size counts only the last k−1."""

    def init_state(self, batch_size, device=None, dtype=None):
        return {"window": super().init_state(batch_size, device, dtype), "seen": torch.zeros(batch_size, 0)}

    def step(self, u_t, state):
        y, window = super().step(u_t, state["window"])
        return y, {"window": window, "seen": torch.cat([state["seen"], u_t[:, :1].float()], 1)}


class Bf16State(BaseConv):
    def prefill(self, u):
        y, state = super().prefill(u)
        return y, state.to(torch.bfloat16)


class UnusedParameter(BaseConv):
    def __init__(self, d_model, layer_idx=0):
        super().__init__(d_model, layer_idx)
        self.unused = nn.Parameter(torch.zeros(d_model))


def spec(cls) -> tuple[str, dict]:
    return f"{__name__}.{cls.__name__}", {}


@pytest.mark.parametrize(
    "cls, check, message",
    [
        (PeeksAhead, conformance.check_causality, "not causal"),
        (MixesBatch, conformance.check_causality, "one sequence of the batch"),
        (SteppedDiffers, conformance.check_recurrence, "stepping from init_state differs"),
        (UndercountsState, conformance.check_state_size, "state_size"),
        (CarriesHistory, conformance.check_state_size, "after 1 steps"),
        (Bf16State, conformance.check_state_dtype, "bfloat16.*state tensors"),
        (UnusedParameter, conformance.check_gradients, "unused"),
    ],
)
def test_kit_catches(cls, check, message):
    with pytest.raises(AssertionError, match=message):
        check(spec(cls))


def test_kit_passes_a_conforming_subclass_and_says_so(capsys):
    conformance.check_mixer(spec(BaseConv))
    lines = capsys.readouterr().out.splitlines()
    n = len(conformance.CHECKS)
    assert lines[0] == f"  1/{n} check_shapes: passed"
    assert lines[-1] == f"{__name__}.BaseConv: all {n} conformance checks passed"
    assert len(lines) == n + 1


def test_check_mixer_stops_at_the_first_failed_check_without_claiming_success(capsys):
    with pytest.raises(AssertionError, match="not causal"):
        conformance.check_mixer(spec(PeeksAhead))
    out = capsys.readouterr().out
    assert out.splitlines() == [f"  1/{len(conformance.CHECKS)} check_shapes: passed"], out


def test_check_mixer_names_the_spec_with_its_kwargs_and_can_be_quiet(capsys):
    conformance.check_mixer("base_conv:kernel_size=5")
    assert capsys.readouterr().out.splitlines()[-1].startswith("base_conv:kernel_size=5: all ")
    conformance.check_mixer("base_conv", verbose=False)
    assert capsys.readouterr().out == ""


def test_spec_kwargs_reach_the_mixer():
    mixer = conformance.builder("base_conv:kernel_size=5")()
    assert mixer.kernel_size == 5


def test_unknown_kwarg_in_spec_is_rejected():
    with pytest.raises(ValueError, match="takes no argument"):
        conformance.builder("base_conv:kernel=5")
