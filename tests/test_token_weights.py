"""Every mixer's token_weights: the causal matrix W with y = W·v reproduces the layer's own output (CPU, float32)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from zoology import mixers
from zoology.ops import dplr
from zoology.ops.causal_conv import causal_depthwise_conv
from zoology.ops.norms import rms_norm

D_MODEL, BATCH, SEQ = 16, 2, 72  # 72 > 64: the chunked and blocked parallel forms cross a chunk boundary


def apply(W: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """y_t = Σ_s W[b, h, t, s] v_s: W (b, H, L, L), v (b, H, L, d) -> (b, H, L, d)."""
    return W @ v


def per_channel(W: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """W (b, C, L, L), v (b, C, L) -> (b, C, L)."""
    return (W @ v[..., None])[..., 0]


def attention(m, x, W):
    _, _, v = m._qkv(x)
    return m._merge(apply(W, v))


def based(m, x, W):
    _, _, v = m._qkv(x)
    return m._merge(apply(W, v))


def rebased(m, x, W):
    _, _, v = m._project(x)
    return m._merge(apply(W, v.transpose(1, 2)))


def linear_attention(m, x, W):
    _, _, v, dtype = m._features(x)
    return m._merge(apply(W, v), dtype)


def leap(m, x, W):
    q, k, v = m._qkv(x)
    q_bar, _ = m._pool(q, m.q_pool)
    k_bar = apply(W, (q_bar * k).transpose(1, 2)).transpose(1, 2)
    return m.out_proj((k_bar * v).flatten(2))


def mamba(m, u, W):
    x_in, z = m.in_proj(u.transpose(0, 1)).chunk(2, dim=-1)
    x = F.silu(causal_depthwise_conv(x_in, m.conv_weight, m.conv_bias))  # (L, b, d_in)
    y = per_channel(W, x.permute(1, 2, 0)).permute(2, 0, 1)
    return m.out_proj(y * F.silu(z)).transpose(0, 1)


def mamba2(m, u, W):
    z, xBC_in, dt = m._split(m.in_proj(u))
    xBC = causal_depthwise_conv(xBC_in.transpose(0, 1), m.conv_weight, m.conv_bias).transpose(0, 1)
    x, *_ = m._ssm(xBC, dt)  # (b, L, H, P)
    y = apply(W, x.transpose(1, 2)).transpose(1, 2)  # D·x included in W
    y = y.flatten(-2) * F.silu(z)
    return m.out_proj(rms_norm(y, m.norm_weight, m.norm_eps))


def gla(m, x, W):
    *_, v, _ = m._heads(x)
    return m._output(apply(W, v.transpose(1, 2)).transpose(1, 2), x)


def delta_net(m, x, W):
    qkv = causal_depthwise_conv(m.qkv_proj(x).transpose(0, 1), m.conv_weight, m.conv_bias).transpose(0, 1)
    _, _, v, _, _ = m._heads(qkv, x)
    return m._output(apply(W, v.transpose(1, 2)).transpose(1, 2), x.dtype)


def rwkv7(m, x, W):
    r, _, k, v, _, _, gate, dtype = m._heads(x, F.pad(x, (0, 0, 1, 0))[:, :-1])
    return m._output(apply(W, v.transpose(1, 2)).transpose(1, 2), r, k, v, gate, dtype)


def hyena(m, x, W):
    x0, x1, v = m.short_conv(m.in_proj(x).transpose(1, 2))[..., : x.shape[1]].split(m.d_model, dim=1)
    return m.out_proj(per_channel(W, v * x1).transpose(1, 2))


def h3(m, x, W):
    _, _, v = m.qkv_proj(x).chunk(3, dim=-1)
    return m.out_proj(per_channel(W, v.transpose(1, 2)).transpose(1, 2))


def base_conv_long(m, u, W):
    return per_channel(W, u.transpose(1, 2)).transpose(1, 2) + m.conv_bias * m.projection(u)


# spec -> what the layer does with y = W·v to give its output
RECONSTRUCT: dict[str, Callable] = {
    "attention:num_heads=2": attention,
    "sliding_window:window_size=8:num_heads=2": attention,
    "sliding_window:window_size=100": attention,
    "based:feature_dim=4:num_heads=2": based,
    "based:feature_dim=4:view=quadratic": based,
    "rebased:feature_dim=4:num_heads=2": rebased,
    "linear_attention:num_heads=2": linear_attention,
    "leap:num_heads=2": leap,
    "leap:window_size=8": leap,
    "mamba:d_state=4": mamba,
    "mamba2:d_state=8:head_dim=8": mamba2,
    "gla": gla,
    "delta_net": delta_net,
    "gated_delta_net": delta_net,
    "rwkv7:head_dim=8": rwkv7,
    "hyena:max_seq_len=128": hyena,
    "h3:d_state=8": h3,
    "base_conv_long:max_seq_len=128": base_conv_long,
}
NO_TOKEN_WEIGHTS = {"base_conv": "3 convolution taps (conv.weight"}


def build(spec: str) -> torch.nn.Module:
    name, kwargs = mixers.parse_spec(spec)
    torch.manual_seed(0)
    mixer = mixers.build(name, d_model=D_MODEL, layer_idx=0, **kwargs).eval()
    with torch.no_grad():  # away from the initialisation (zero biases, unit gates) so every term counts
        for p in mixer.parameters():
            if p.dim() == 1 and not getattr(p, "_no_reinit", False):
                p.add_(0.1 * torch.randn_like(p))
        for name in ("q_pool", "k_pool"):  # LEAP's pooling vectors start near 0 (uniform pooling)
            if hasattr(mixer, name):
                getattr(mixer, name).mul_(50)
    return mixer


def test_every_registered_mixer_is_covered():
    covered = {mixers.parse_spec(spec)[0] for spec in RECONSTRUCT} | set(NO_TOKEN_WEIGHTS)
    assert covered == set(mixers.names())


@pytest.mark.parametrize("spec", sorted(RECONSTRUCT))
def test_token_weights_reproduce_the_layer_output(spec):
    mixer = build(spec)
    x = torch.randn(BATCH, SEQ, D_MODEL, generator=torch.Generator().manual_seed(1))
    W = mixer.token_weights(x)
    assert W.dim() == 4 and W.shape[0] == BATCH and W.shape[2:] == (SEQ, SEQ) and W.dtype == torch.float32
    assert not W.requires_grad
    assert torch.equal(W.triu(1), torch.zeros_like(W)), "W must be causal"
    with torch.no_grad():
        expected = mixer(x)
        got = RECONSTRUCT[spec](mixer, x, W)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("spec", ["attention:num_heads=2", "sliding_window:window_size=8", "leap:window_size=8"])
def test_softmax_and_pooling_weights_are_shares_within_the_window(spec):
    mixer = build(spec)
    W = mixer.token_weights(torch.randn(BATCH, SEQ, D_MODEL))
    torch.testing.assert_close(W.sum(-1), torch.ones(W.shape[:-1]))
    window = getattr(mixer, "window_size", None)
    if window is not None:
        assert torch.equal(W.tril(-window), torch.zeros_like(W)), "no weight outside the window"


def test_the_gated_kernel_of_the_recurrence_matches_its_closed_form():
    gen = torch.Generator().manual_seed(0)
    batch, seq, heads, dk = 2, 40, 3, 4
    q, k = (torch.randn(batch, seq, heads, dk, generator=gen, dtype=torch.float64) for _ in range(2))
    for g in (-torch.rand(batch, seq, heads, dk, generator=gen, dtype=torch.float64) * 0.3,
              -torch.rand(batch, seq, heads, 1, generator=gen, dtype=torch.float64) * 0.3):  # fmt: skip
        G = g.cumsum(1).expand(batch, seq, heads, dk)  # (b, T, H, K)
        closed = torch.einsum("bthj,bshj,btshj->bhts", q, k, (G[:, :, None] - G[:, None, :]).exp()) * 0.5
        closed = closed * torch.ones(seq, seq, dtype=torch.bool).tril()
        torch.testing.assert_close(dplr.token_weights(q, k, g, scale=0.5), closed)


@pytest.mark.parametrize("name", sorted(NO_TOKEN_WEIGHTS))
def test_a_mixer_without_token_weights_says_what_mixes_its_tokens(name):
    mixer = build(name)
    with pytest.raises(mixers.NoTokenWeights, match=NO_TOKEN_WEIGHTS[name].replace("(", r"\(")):
        mixer.token_weights(torch.randn(1, 8, D_MODEL))
