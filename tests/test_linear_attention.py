"""linear_attention: the chunked parallel form is the normalised ELU+1 linear attention."""

from __future__ import annotations

import pytest
import torch

from zoology.mixers import conformance
from zoology.mixers.linear_attention import EPS, LinearAttention
from zoology.ops.feature_maps import elu_feature_map


def reference(mixer: LinearAttention, x: torch.Tensor) -> torch.Tensor:
    """y_t = Σ_{j≤t} (φ(q_t)·φ(k_j)) v_j / (Σ_{j≤t} φ(q_t)·φ(k_j) + ε), quadratic and masked."""
    q, k, v, _ = mixer._features(x)
    l = x.shape[1]
    weights = (q @ k.transpose(-1, -2)) * torch.ones(l, l, dtype=x.dtype).tril()
    y = (weights @ v) / (weights.sum(-1, keepdim=True) + EPS)
    return mixer._merge(y, x.dtype)


@pytest.mark.parametrize("chunk_size", [1, 5, 64, 500])
@pytest.mark.parametrize("seq_len", [1, 63, 64, 200])
def test_chunked_form_matches_the_quadratic_form(chunk_size, seq_len):
    torch.manual_seed(0)
    mixer = LinearAttention(16, num_heads=2, chunk_size=chunk_size).double().eval()
    x = torch.randn(2, seq_len, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), reference(mixer, x), rtol=1e-10, atol=1e-12)


def test_feature_map_is_elu_plus_one():
    x = torch.tensor([-5.0, -1.0, 0.0, 2.0], dtype=torch.float64)
    expected = torch.cat([x[:2].exp(), x[2:] + 1])
    torch.testing.assert_close(elu_feature_map(x), expected)


def test_queries_far_below_zero_give_zero_not_nan():
    mixer = LinearAttention(8).eval()
    with torch.no_grad():
        mixer.qkv.weight.zero_()
        mixer.qkv.bias.fill_(-100.0)
        y = mixer(torch.randn(2, 10, 8))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("heads", [1, 4])
def test_state_is_d_times_head_dim_plus_one(heads):
    mixer = LinearAttention(32, num_heads=heads)
    assert mixer.state_size(1000) == 32 * (32 // heads + 1)


@pytest.mark.parametrize("kwargs", [{"num_heads": 4, "chunk_size": 7}, {"chunk_size": 1}, {"bias": False}])
def test_conformance_with_other_settings(kwargs):
    conformance.check_mixer(("linear_attention", kwargs))
