"""Based linear attention: feature map, agreement of the training views, recurrent form, precision."""

from __future__ import annotations

import math

import pytest
import torch

from zoology import mixers
from zoology.config import TrainConfig
from zoology.mixers.based import Based
from zoology.model import LanguageModel
from zoology.ops.feature_maps import TaylorFeatureMap, taylor_dim


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b|."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def make(d_model=32, dtype=torch.float64, seed=0, **kwargs) -> Based:
    torch.manual_seed(seed)
    return mixers.build("based", d_model=d_model, **kwargs).to(dtype)


@pytest.mark.parametrize("f", [1, 2, 8, 16])
def test_feature_map_is_the_compact_taylor_kernel(f):
    phi = TaylorFeatureMap(f)
    q, k = torch.randn(2, 50, f, dtype=torch.float64).unbind(0)
    s = (q * k).sum(-1) / math.sqrt(f)
    assert phi(q).shape == (50, taylor_dim(f)) == (50, 1 + f + f * (f + 1) // 2)
    torch.testing.assert_close((phi(q) * phi(k)).sum(-1), 1 + s + s * s / 2, rtol=1e-12, atol=1e-12)
    assert taylor_dim(16) == 153


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("seq_len, chunk_size, num_heads", [(200, 64, 1), (256, 32, 2), (97, 8, 4)])
def test_chunked_and_quadratic_views_agree(dtype, tol, seq_len, chunk_size, num_heads):
    m = make(feature_dim=8, num_heads=num_heads, chunk_size=chunk_size, dtype=dtype)
    x = 2 * torch.randn(3, seq_len, 32, dtype=dtype)
    with torch.no_grad():
        chunked = m(x)
        m.view = "quadratic"
        quadratic = m(x)
    assert chunked.dtype == dtype
    assert rel_diff(chunked, quadratic) < tol


@pytest.mark.parametrize("view", ["chunked", "quadratic"])
def test_causal(view):
    m = make(feature_dim=4, num_heads=2, chunk_size=8, view=view)
    x = torch.randn(2, 40, 32, dtype=torch.float64)
    y = m(x)
    x2 = x.clone()
    x2[:, 21:] = torch.randn_like(x2[:, 21:])
    y2 = m(x2)
    assert torch.equal(y[:, :21], y2[:, :21])
    assert not torch.allclose(y[:, 21:], y2[:, 21:])


@pytest.mark.parametrize("view", ["chunked", "quadratic"])
def test_recurrence_matches_parallel_from_scratch_and_after_prefill(view):
    m = make(feature_dim=4, num_heads=2, chunk_size=6, view=view)
    x = 2 * torch.randn(3, 29, 32, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
        state = m.init_state(3, dtype=torch.float64)
        steps = []
        for t in range(x.shape[1]):
            y_t, state = m.step(x[:, t], state)
            steps.append(y_t)
        assert rel_diff(torch.stack(steps, 1), y) < 1e-10

        y_prefix, state = m.prefill(x[:, :13])
        assert torch.equal(y_prefix, m(x[:, :13]))
        steps = []
        for t in range(13, x.shape[1]):
            y_t, state = m.step(x[:, t], state)
            steps.append(y_t)
        assert rel_diff(torch.stack(steps, 1), y[:, 13:]) < 1e-10


@pytest.mark.parametrize("d_model, feature_dim, num_heads", [(32, 4, 2), (128, 16, 1), (48, 8, 3)])
def test_state_size_is_what_the_state_carries(d_model, feature_dim, num_heads):
    m = make(d_model=d_model, feature_dim=feature_dim, num_heads=num_heads, dtype=torch.float32)
    x = torch.randn(2, 11, d_model)
    with torch.no_grad():
        _, state = m.prefill(x)
        _, state = m.step(x[:, 0], state)
    D = taylor_dim(feature_dim)
    assert state["S"].shape == (2, num_heads, d_model // num_heads, D)
    assert state["z"].shape == (2, num_heads, D)
    assert m.state_size(12) == mixers.state_numel(state) // 2 == (d_model + num_heads) * D


def test_state_stays_float32_for_bf16_modules_and_float64_for_float64_inputs():
    m = make(feature_dim=4, dtype=torch.bfloat16)
    x = torch.randn(2, 9, 32, dtype=torch.bfloat16)
    y, state = m.prefill(x)
    assert y.dtype == torch.bfloat16 and state["S"].dtype == state["z"].dtype == torch.float32
    _, state = m.step(x[:, 0], state)
    assert state["S"].dtype == state["z"].dtype == torch.float32
    assert m.init_state(2, dtype=torch.bfloat16)["S"].dtype == torch.float32
    assert m.double().init_state(2, dtype=torch.float64)["z"].dtype == torch.float64


def test_bf16_autocast_keeps_fp32_accuracy_where_all_bf16_drifts():
    m = make(d_model=16, feature_dim=8, num_heads=2, dtype=torch.float32)
    x = torch.randn(1, 2048, 16)
    with torch.no_grad():
        reference = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = m(x)
            _, state = m.prefill(x)
            all_bf16_state = {name: t.bfloat16() for name, t in m.init_state(1).items()}
            steps = []
            for t in range(x.shape[1]):
                y_t, all_bf16_state = m.step(x[:, t], all_bf16_state)
                steps.append(y_t)
    assert state["S"].dtype == torch.float32
    mixed_error = rel_diff(mixed, reference)
    all_bf16_error = rel_diff(torch.stack(steps, 1), reference)
    assert mixed_error < 2e-2
    assert all_bf16_error > 10 * mixed_error


@pytest.mark.parametrize("view", ["chunked", "quadratic"])
def test_every_parameter_gets_a_gradient_and_bf16_stays_finite(view):
    m = make(d_model=32, feature_dim=8, num_heads=2, chunk_size=64, view=view, dtype=torch.float32)
    for std in (1.0, 4.0):
        x = std * torch.randn(2, 1024, 32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
        assert torch.isfinite(y).all()
    m.zero_grad()
    m(torch.randn(2, 100, 32)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"feature_dim": 0}, "feature_dim"),
        ({"num_heads": 3}, "num_heads"),
        ({"eps": -1.0}, "eps"),
        ({"view": "recurrent"}, "view"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_kwargs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        mixers.build("based", d_model=32, **kwargs)


def test_based_preset_is_the_hybrid_and_counts_its_state():
    config = TrainConfig.from_yaml("based")
    assert [m.name for m in config.model.mixers] == ["base_conv", "based"] and config.model.n_layers == 2
    model = LanguageModel(config.model)
    based = model.blocks[1].mixer
    D = taylor_dim(based.feature_dim)
    d = config.model.d_model
    assert model.state_size(64) == d * 2 + (d + based.num_heads) * D


def test_full_based_preset_cycles_three_mixers_and_counts_their_state():
    if "sliding_window" not in mixers.REGISTRY:
        pytest.skip("sliding_window is not registered in this checkout")
    config = TrainConfig.from_yaml("based_full")
    assert [m.name for m in config.model.mixers] == ["base_conv", "based", "sliding_window"]
    assert config.model.n_layers == 3
    model = LanguageModel(config.model)
    based, window = model.blocks[1].mixer, model.blocks[2].mixer.window_size
    d = config.model.d_model
    based_state = (d + based.num_heads) * taylor_dim(based.feature_dim)
    for seq_len in (1, window, 64):
        assert model.state_size(seq_len) == d * 2 + based_state + 2 * d * min(window, seq_len)
