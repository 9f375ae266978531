"""The FFT long convolution against the direct sum, and the layers built on it: Hyena and BaseConv's long layer.

The layer tests compare against float64 on the CPU; with CUDA present they also run the layers on the GPU
(the FFT path there is torch.fft on CUDA), in float32 and under bf16 autocast, forward and every gradient.
"""

from __future__ import annotations

import pytest
import torch
from layer_checks import DEVICES, check_layer_on_device
from pydantic import ValidationError

from zoology import mixers
from zoology.config import TrainConfig
from zoology.mixers import SequenceTooLong
from zoology.mixers.base_conv_long import LongBaseConv
from zoology.mixers.hyena import Hyena
from zoology.model import LanguageModel
from zoology.ops.long_conv import causal_conv_last, direct_causal_conv, fft_causal_conv, fft_size


def conv_inputs(seq, filter_len=None, batch=2, channels=3, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, channels, seq, generator=gen, dtype=dtype)
    h = torch.randn(channels, filter_len or seq, generator=gen, dtype=dtype)
    return u.requires_grad_(), h.requires_grad_()


@pytest.mark.parametrize("seq,filter_len", [(1, 1), (2, 2), (7, 7), (64, 64), (257, 257), (33, 100)])
def test_fft_conv_equals_the_direct_sum_in_float64(seq, filter_len):
    u, h = conv_inputs(seq, filter_len)
    y, y_ref = fft_causal_conv(u, h), direct_causal_conv(u, h)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(y)
    for name, g, g_ref in zip("uh", torch.autograd.grad(y, (u, h), grad), torch.autograd.grad(y_ref, (u, h), grad)):
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12, msg=f"gradient of {name}")


def test_fft_conv_is_linear_not_circular():
    """An input at the last position reaches no earlier output (a circular FFT of too few points would wrap it
    onto position 0 and after)."""
    u = torch.zeros(1, 1, 50, dtype=torch.float64)
    u[..., -1] = 1.0
    h = torch.ones(1, 50, dtype=torch.float64)
    y = fft_causal_conv(u, h)
    assert y[..., :-1].abs().max() < 1e-12 and abs(float(y[..., -1]) - 1) < 1e-12
    assert [fft_size(L) for L in (1, 2, 3, 4, 5, 1024, 1025)] == [2, 4, 8, 8, 16, 2048, 4096]


def test_fft_conv_runs_in_float32_for_bf16_inputs_and_under_autocast():
    u, h = (t.detach().to(torch.bfloat16) for t in conv_inputs(300, seed=1))
    y_ref = direct_causal_conv(u.double(), h.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for y in (fft_causal_conv(u, h), fft_causal_conv(u.float(), h.float())):
            assert y.dtype == torch.float32
            assert (y.double() - y_ref).abs().max() <= 1e-5 * y_ref.abs().max()


def test_conv_at_the_last_position_is_the_direct_sum_there():
    u, h = (t.detach() for t in conv_inputs(9, 12))
    y = direct_causal_conv(u, h)
    for t in range(9):
        torch.testing.assert_close(causal_conv_last(u[..., : t + 1], h), y[..., t], rtol=1e-12, atol=1e-12)


def hyena_reference(layer: Hyena, x: torch.Tensor) -> torch.Tensor:
    """Hyena written out with the direct convolution: W_out(x0 ⊙ (h ∗ (v ⊙ x1) + b ⊙ v ⊙ x1))."""
    d, seq = layer.d_model, x.shape[1]
    z = torch.nn.functional.conv1d(
        layer.in_proj(x).transpose(1, 2),
        layer.short_conv.weight,
        layer.short_conv.bias,
        padding=layer.short_conv_size - 1,
        groups=3 * d,
    )[..., :seq]
    x0, x1, v = z[:, :d], z[:, d : 2 * d], z[:, 2 * d :]
    u = v * x1
    return layer.out_proj((x0 * (direct_causal_conv(u, layer.filter(seq)) + layer.bias[:, None] * u)).transpose(1, 2))


def long_base_conv_reference(layer: LongBaseConv, u: torch.Tensor) -> torch.Tensor:
    """(h ∗ u + c) ⊙ (W u + b) + u with the direct convolution."""
    conv = direct_causal_conv(u.transpose(1, 2), layer.filter(u.shape[1])).transpose(1, 2) + layer.conv_bias
    return conv * layer.projection(u) + u


@pytest.mark.parametrize("cls,reference", [(Hyena, hyena_reference), (LongBaseConv, long_base_conv_reference)])
def test_layers_compute_their_formula(cls, reference):
    torch.manual_seed(0)
    layer = cls(d_model=16, max_seq_len=200).double()
    x = torch.randn(2, 150, 16, dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference(layer, x), rtol=1e-10, atol=1e-10)


def test_hyena_state_is_every_u_so_far_plus_the_short_conv_cache():
    layer = Hyena(d_model=128, max_seq_len=1024)
    assert layer.state_size(0) == 3 * 128 * 2 == mixers.state_numel(layer.init_state(1))
    assert layer.state_size(1024) == 128 * 1024 + 3 * 128 * 2 == 131_840
    _, state = layer.prefill(torch.randn(3, 10, 128))
    assert state["u"].shape == (3, 128, 10) and state["conv"].shape == (3, 384, 2)
    assert LongBaseConv(d_model=128).state_size(1024) == 128 * 1024


@pytest.mark.parametrize("cls", [Hyena, LongBaseConv])
def test_sequences_longer_than_the_filter_are_refused(cls):
    layer = cls(d_model=8, max_seq_len=16).eval()
    with pytest.raises(SequenceTooLong, match="max_seq_len=16"):
        layer(torch.randn(1, 17, 8))
    with torch.no_grad():
        _, state = layer.prefill(torch.randn(1, 16, 8))
        with pytest.raises(SequenceTooLong, match="max_seq_len=16"):
            layer.step(torch.randn(1, 8), state)


def test_a_config_whose_data_outruns_the_filter_is_rejected_when_built():
    config = TrainConfig.from_yaml("hyena")
    assert mixers.max_seq_len("hyena", {}) == 2048 and mixers.max_seq_len("based", {}) is None
    message = r"max_seq_len=32.*64 tokens.*model\.mixers\.0\.kwargs\.max_seq_len >= 64"
    with pytest.raises(ValidationError, match=message):
        config.set({"model.mixers.0.kwargs.max_seq_len": 32})


@pytest.mark.parametrize(
    "cls,kwargs,field",
    [
        (Hyena, {"max_seq_len": 0}, "max_seq_len"),
        (Hyena, {"filter_order": 0}, "filter_order"),
        (Hyena, {"filter_emb_dim": 4}, "filter_emb_dim"),
        (Hyena, {"short_conv_size": 0}, "short_conv_size"),
        (LongBaseConv, {"max_seq_len": 0}, "max_seq_len"),
    ],
)
def test_bad_constructor_arguments_name_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=field):
        cls(d_model=8, **kwargs)


def test_the_model_keeps_the_filter_initialisation_and_does_not_decay_it():
    config = TrainConfig.from_yaml("hyena").model
    model = LanguageModel(config)
    filt = model.blocks[0].mixer.filter
    assert filt.out.weight.std() > 0.05  # PyTorch's default for 64 inputs (std 0.072), not the model's 0.02
    no_decay = {id(p) for p in model.param_groups(0.1)[1]["params"]}
    assert all(id(p) in no_decay for p in filt.parameters())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fft_conv_on_device_matches_the_direct_sum(device, dtype):
    u, h = (t.detach().to(device=device, dtype=getattr(torch, dtype)).requires_grad_() for t in conv_inputs(513, 600))
    y = fft_causal_conv(u, h)
    assert y.dtype == torch.float32
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(3)).to(device)
    grads = torch.autograd.grad(y, (u, h), grad)
    u_ref, h_ref = (t.detach().cpu().double().requires_grad_() for t in (u, h))
    y_ref = direct_causal_conv(u_ref, h_ref)
    grads_ref = torch.autograd.grad(y_ref, (u_ref, h_ref), grad.cpu().double())
    # float32 transforms of exactly representable inputs: 1e-5 of max |y| in either dtype; gradients come back in
    # the inputs' dtype, so bf16 ones carry its rounding (3.9e-3 relative).
    grad_tolerance = 1e-5 if dtype == "float32" else 1e-2
    assert (y.cpu().double() - y_ref).abs().max() <= 1e-5 * y_ref.abs().max()
    for name, g, g_ref in zip("uh", grads, grads_ref):
        assert g.dtype == u.dtype
        assert (g.cpu().double() - g_ref).abs().max() <= grad_tolerance * g_ref.abs().max(), f"gradient of {name}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", ["hyena", "base_conv_long"])
def test_layer_on_device_matches_float64(name, device, precision):
    check_layer_on_device(name, {"max_seq_len": 256}, device, precision)
