"""H3: the diagonal SSM's kernel convolution against its recurrence, the shift SSM, the S4D-Lin initialisation,
the state it carries, and (with CUDA) the layer on the GPU against float64."""

from __future__ import annotations

import math

import pytest
import torch
from layer_checks import DEVICES, check_layer_on_device

from zoology import mixers
from zoology.config import TrainConfig
from zoology.mixers.h3 import H3
from zoology.model import LanguageModel
from zoology.ops import diagonal_ssm
from zoology.ops.long_conv import direct_causal_conv, fft_causal_conv


def ssm_leaves(channels=3, modes=4, seed=0):
    """Real leaves (A's log real part, A's imaginary part, log Δ, C's real and imaginary parts) -> their gradients."""
    gen = torch.Generator().manual_seed(seed)
    leaves = [
        torch.randn(channels, modes, generator=gen, dtype=torch.float64) * 0.5 + math.log(0.5),
        math.pi * torch.arange(modes, dtype=torch.float64).repeat(channels, 1),
        torch.rand(channels, generator=gen, dtype=torch.float64) * 3 - 4,
        torch.randn(channels, modes, generator=gen, dtype=torch.float64),
        torch.randn(channels, modes, generator=gen, dtype=torch.float64),
    ]
    return [t.requires_grad_() for t in leaves]


def discretise(A_real_log, A_imag, log_dt, C_re, C_im):
    A = torch.complex(-torch.exp(A_real_log), A_imag)
    log_decay = torch.exp(log_dt)[:, None] * A
    return log_decay, torch.expm1(log_decay) / A, torch.complex(C_re, C_im)


@pytest.mark.parametrize("seq", [1, 7, 130])
def test_kernel_convolution_equals_the_recurrence(seq):
    """y = K ∗ u (materialised kernel, FFT) and the step-by-step recurrence agree, with every gradient, and the
    parallel final state equals the recurrence's."""
    leaves = ssm_leaves()
    u = torch.randn(2, 3, seq, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_()
    log_decay, B_bar, C = discretise(*leaves)
    y = fft_causal_conv(u, diagonal_ssm.ssm_kernel(log_decay, C * B_bar, seq))
    state = diagonal_ssm.final_state(u, log_decay, B_bar)
    y_ref, state_ref = diagonal_ssm.reference_ssm(u, log_decay, B_bar, C)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, state_ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(y)
    grads = torch.autograd.grad(y, [u, *leaves], grad, retain_graph=True)
    grads_ref = torch.autograd.grad(y_ref, [u, *leaves], grad)
    for name, g, g_ref in zip(["u", "A_real_log", "A_imag", "log_dt", "C_re", "C_im"], grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")


def test_shift_ssm_is_a_fir_over_the_last_n_keys():
    """k'_t = D_k k_t + Σ_{j=1..N} c_j k_{t−j}: with D_k = 0 and c one-hot at lag j the keys come out j late."""
    layer = H3(d_model=4, d_state=6).double()
    k = torch.randn(2, 4, 20, dtype=torch.float64)
    with torch.no_grad():
        for lag in range(1, 7):
            layer.shift_skip.zero_()
            layer.shift_taps.zero_()
            layer.shift_taps[:, lag - 1] = 1.0
            shifted = fft_causal_conv(k, layer._shift_kernel())
            torch.testing.assert_close(shifted[..., lag:], k[..., :-lag], rtol=0, atol=1e-12)
            assert shifted[..., :lag].abs().max() < 1e-12
        layer.shift_skip.normal_()
        layer.shift_taps.normal_()
        torch.testing.assert_close(
            fft_causal_conv(k, layer._shift_kernel()), direct_causal_conv(k, layer._shift_kernel()), rtol=0, atol=1e-12
        )


def test_s4d_lin_initialisation():
    layer = H3(d_model=8, d_state=16, dt_min=1e-3, dt_max=1e-1)
    modes = torch.arange(8, dtype=torch.float32)
    torch.testing.assert_close(-torch.exp(layer.A_real_log), torch.full((16, 8), -0.5))
    torch.testing.assert_close(layer.A_imag, math.pi * modes.repeat(16, 1))
    dt = torch.exp(layer.log_dt)
    assert dt.shape == (16,) and dt.min() >= 1e-3 and dt.max() <= 1e-1


def test_state_is_the_shift_register_and_the_ssm_states():
    """3·d·N at head dim 2 (a published count gave d·N), d·N·(1 + head_dim) in general, the same at every t."""
    layer = H3(d_model=128, d_state=32)
    assert layer.state_size(0) == layer.state_size(1024) == 3 * 128 * 32 == 12_288
    state = layer.init_state(2)
    assert state["shift"].shape == (2, 128, 32) and state["ssm"].shape == (2, 256, 16, 2)
    assert mixers.state_numel(state) == 2 * 12_288
    assert H3(d_model=12, d_state=8, head_dim=3).state_size(5) == 12 * 8 * 4
    model = LanguageModel(TrainConfig.from_yaml("h3").model.model_copy(update={"d_model": 128}))
    assert model.state_size(1024) == 2 * 3 * 128 * 16


def test_the_model_keeps_the_ssm_initialisation_and_does_not_decay_a_or_dt():
    model = LanguageModel(TrainConfig.from_yaml("h3").model)
    layer = model.blocks[0].mixer
    torch.testing.assert_close(-torch.exp(layer.A_real_log), torch.full_like(layer.A_real_log, -0.5))
    no_decay = {id(p) for p in model.param_groups(0.1)[1]["params"]}
    assert all(id(p) in no_decay for p in (layer.log_dt, layer.A_real_log, layer.A_imag))


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"d_state": 0}, "d_state"),
        ({"d_state": 5}, "d_state"),
        ({"head_dim": 3}, "head_dim"),
        ({"head_dim": 0}, "head_dim"),
        ({"dt_min": 0.2}, "dt_min"),
    ],
)
def test_bad_constructor_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        H3(d_model=8, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_layer_on_device_matches_float64(device, precision):
    check_layer_on_device("h3", {"d_state": 16}, device, precision)
