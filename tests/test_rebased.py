import math

import pytest
import torch
import torch.nn.functional as F

from zoology import mixers
from zoology.config import TrainConfig
from zoology.mixers import conformance
from zoology.mixers.rebased import ReBased
from zoology.model import LanguageModel
from zoology.ops import linear_attention
from zoology.ops.feature_maps import square_feature_map, square_kernel


def reference(mixer: ReBased, x: torch.Tensor) -> torch.Tensor:
    """The spec formula in float64, written independently of the mixer's own code paths."""
    m = mixer.double()
    x = x.double()
    hf = m.num_heads * m.feature_dim
    q = F.layer_norm(x @ m.q_proj.weight.T, (hf,), m.q_norm.weight, m.q_norm.bias, 1e-5)
    k = F.layer_norm(x @ m.k_proj.weight.T, (hf,), m.k_norm.weight, m.k_norm.bias, 1e-5)
    v = x @ m.v_proj.weight.T
    b, seq_len, _ = x.shape
    q = q.view(b, seq_len, m.num_heads, -1).transpose(1, 2)
    k = k.view(b, seq_len, m.num_heads, -1).transpose(1, 2)
    v = v.view(b, seq_len, m.num_heads, -1).transpose(1, 2)
    kernel = torch.einsum("bhtf,bhsf->bhts", q, k).div(math.sqrt(m.feature_dim)).square().tril()
    y = kernel @ v / (kernel.sum(-1, keepdim=True) + m.eps)
    return y.transpose(1, 2).reshape(b, seq_len, -1) @ m.out_proj.weight.T


def test_compact_square_feature_map_gives_the_squared_kernel():
    q, k = torch.randn(5, 16, dtype=torch.float64), torch.randn(7, 16, dtype=torch.float64)
    phi_q, phi_k = square_feature_map(q), square_feature_map(k)
    assert phi_q.shape == (5, 136)
    torch.testing.assert_close(phi_q @ phi_k.T, (q @ k.T / 4.0) ** 2)
    torch.testing.assert_close(phi_q @ phi_k.T, square_kernel(q, k))


@pytest.mark.parametrize("num_heads,feature_dim,chunk_size,seq_len", [(1, 16, 64, 150), (4, 8, 7, 45), (2, 4, 1, 9)])
def test_matches_the_spec_formula_with_layer_norm_over_all_heads(num_heads, feature_dim, chunk_size, seq_len):
    torch.manual_seed(0)
    mixer = ReBased(32, num_heads=num_heads, feature_dim=feature_dim, chunk_size=chunk_size).double()
    with torch.no_grad():
        for norm in (mixer.q_norm, mixer.k_norm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_()
    x = torch.randn(2, seq_len, 32, dtype=torch.float64)
    torch.testing.assert_close(mixer(x), reference(mixer, x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_chunked_and_quadratic_views_agree(dtype, tol):
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 200, 8, dtype=dtype), torch.randn(2, 3, 200, 8, dtype=dtype)
    v = torch.randn(2, 3, 200, 5, dtype=dtype)
    quadratic = linear_attention.quadratic(q, k, v, square_kernel, square_feature_map, 1e-12)
    for chunk_size in (1, 16, 64, 256):
        y, (states, normalisers) = linear_attention.chunked(
            q, k, v, square_kernel, square_feature_map, 1e-12, chunk_size
        )
        torch.testing.assert_close(y, quadratic, rtol=tol, atol=tol)
        torch.testing.assert_close(states, torch.einsum("bhle,bhlD->bheD", v, square_feature_map(k)))
        torch.testing.assert_close(normalisers, square_feature_map(k).sum(-2))


def orthogonal_mixer(num_heads: int, feature_dim: int = 16) -> ReBased:
    """A ReBased whose q̃ and k̃ are fixed dense vectors orthogonal per head: every kernel value is ~0."""
    mixer = ReBased(48, num_heads=num_heads, feature_dim=feature_dim, eps=1e-12)
    a, b = torch.randn(num_heads, feature_dim), torch.randn(num_heads, feature_dim)
    b = b - (a * b).sum(-1, keepdim=True) / (a * a).sum(-1, keepdim=True) * a
    with torch.no_grad():
        mixer.q_norm.weight.zero_()
        mixer.q_norm.bias.copy_(3 * a.flatten())
        mixer.k_norm.weight.zero_()
        mixer.k_norm.bias.copy_(3 * b.flatten())
    return mixer


@pytest.mark.parametrize("num_heads", [1, 3])
def test_outputs_stay_finite_and_bounded_when_every_kernel_value_is_zero(num_heads):
    torch.manual_seed(0)
    mixer = orthogonal_mixer(num_heads)
    x = torch.randn(2, 80, 48)
    largest_value = mixer.out_proj(mixer.v_proj(x)).abs().max()
    q, k, _ = mixer._qkv(x)
    assert square_kernel(q.transpose(1, 2), k.transpose(1, 2)).max() < 1e-10

    outputs = {"forward": mixer(x), "first token": mixer(x[:, :1]), "prefill": mixer.prefill(x)[0]}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs["bf16 autocast"] = mixer(x)
    state = mixer.init_state(2)
    steps = []
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t], state)
        steps.append(y_t)
    outputs["step"] = torch.stack(steps, 1)
    for name, y in outputs.items():
        assert torch.isfinite(y).all(), name
        assert y.abs().max() <= largest_value, name


def test_state_is_float32_under_bf16_autocast_and_sized_d_plus_h_times_D():
    mixer = ReBased(128, num_heads=1, feature_dim=16)
    x = torch.randn(2, 10, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = mixer.prefill(x)
        y_t, state = mixer.step(x[:, 0], state)
    assert state["S"].dtype == state["z"].dtype == torch.float32
    assert state["S"].shape == (2, 1, 128, 136) and state["z"].shape == (2, 1, 136)
    assert mixer.state_size(1024) == (128 + 1) * 136 == mixers.state_numel(state) // 2
    assert ReBased(96, num_heads=12, feature_dim=16).state_size(1024) == (96 + 12) * 136


@pytest.mark.parametrize(
    "kwargs,field",
    [({"num_heads": 5}, "num_heads"), ({"feature_dim": 0}, "feature_dim"), ({"chunk_size": 0}, "chunk_size")],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ReBased(64, **kwargs)


def test_preset_is_the_base_conv_rebased_hybrid():
    config = TrainConfig.from_yaml("rebased")
    model = LanguageModel(config.model)
    assert [type(block.mixer).__name__ for block in model.blocks] == ["BaseConv", "ReBased"]
    rebased = model.blocks[1].mixer
    assert torch.equal(rebased.q_norm.weight, torch.ones(16)) and torch.equal(rebased.k_norm.bias, torch.zeros(16))


def test_multi_head_rebased_passes_the_conformance_kit():
    conformance.check_mixer("rebased:num_heads=4:feature_dim=8:chunk_size=16")
