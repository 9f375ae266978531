"""The chunked diagonal-plus-low-rank recurrence against the loop over positions, and the recurrences of the
delta rule, gated linear attention and RWKV-7 written out as their papers state them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoology.ops.dplr import chunked_dplr, dplr_step, reference_dplr


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def inputs(seq, per_channel: bool, low_rank: bool, decay_scale=1.0, batch=2, heads=3, dk=8, dv=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    q, k = randn(batch, seq, heads, dk), randn(batch, seq, heads, dk)
    v = randn(batch, seq, heads, dv)
    g = decay_scale * F.logsigmoid(randn(batch, seq, heads, dk if per_channel else 1))
    if not low_rank:
        return q, k, v, g, None, None
    kappa = F.normalize(randn(batch, seq, heads, dk), dim=-1)
    rate = torch.rand(batch, seq, heads, dk, generator=gen, dtype=torch.float64)
    return q, k, v, g, -kappa, kappa * rate


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-head"])
@pytest.mark.parametrize("low_rank", [False, True], ids=["gla", "dplr"])
@pytest.mark.parametrize("seq, chunk_size", [(1, None), (77, None), (64, 16), (50, 7)])
def test_chunked_equals_the_loop_with_gradients(per_channel, low_rank, seq, chunk_size):
    args = [t if t is None else t.requires_grad_() for t in inputs(seq, per_channel, low_rank)]
    o, S = chunked_dplr(*args, scale=0.3, chunk_size=chunk_size)
    o_ref, S_ref = reference_dplr(*args, scale=0.3)
    assert o.shape == o_ref.shape and S.shape == S_ref.shape
    assert rel(o, o_ref) < 1e-12 and rel(S, S_ref) < 1e-12
    grad_o = torch.randn_like(o)
    present = [t for t in args if t is not None]
    grads = torch.autograd.grad((o * grad_o).sum() + S.sum(), present)
    grads_ref = torch.autograd.grad((o_ref * grad_o).sum() + S_ref.sum(), present)
    for name, got, want in zip("qkvgab", grads, grads_ref):
        assert rel(got, want) < 1e-10, name


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-head"])
def test_strong_decays_neither_overflow_nor_lose_the_recent_past(per_channel):
    """Log-decays near −40 per position: a cumulative product over one chunk (e^{−640} and beyond) underflows,
    so a form that divides by it gives inf/NaN; differences of cumulative log-decays stay accurate (in float32
    to about u·|W| ≈ 6e-8 · 1e3 relative, the rounding of a cumulative sum of that size)."""
    args = inputs(200, per_channel, low_rank=True, decay_scale=40.0)
    o_ref, _ = reference_dplr(*args)
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
        o, S = chunked_dplr(*(t.to(dtype) for t in args))
        assert torch.isfinite(o).all() and torch.isfinite(S).all()
        assert rel(o, o_ref) < tolerance


def test_float32_stays_float32_under_bf16_autocast():
    args = [t if t is None else t.float() for t in inputs(70, True, True)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o, S = chunked_dplr(*args)
    assert o.dtype == S.dtype == torch.float32
    assert rel(o, reference_dplr(*args)[0]) < 1e-5


def test_the_delta_rule_is_a_dplr_recurrence():
    """S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ with a = k, b = −α β k and key β k (the mapping
    DeltaNet and Gated DeltaNet use), against the formula applied directly."""
    q, k, v, g, _, _ = inputs(40, per_channel=False, low_rank=False)
    k = F.normalize(k, dim=-1)
    beta = torch.rand(*g.shape, dtype=torch.float64)
    alpha = g.exp()
    o, S = chunked_dplr(q, beta * k, v, g, k, -alpha * beta * k, scale=0.5)
    S_direct = torch.zeros_like(S)
    eye = torch.eye(k.shape[-1], dtype=torch.float64)
    for t in range(q.shape[1]):
        kt, bt, at = k[:, t], beta[:, t, :, :, None], alpha[:, t, :, :, None]
        transition = at * (eye - bt * kt[..., :, None] * kt[..., None, :])
        S_direct = transition @ S_direct + bt * kt[..., :, None] * v[:, t, :, None, :]
        o_t = 0.5 * (S_direct.transpose(-1, -2) @ q[:, t, ..., None])[..., 0]
        assert rel(o[:, t], o_t) < 1e-12
    assert rel(S, S_direct) < 1e-12


def test_rwkv7_transition_is_the_dplr_recurrence_with_a_minus_kappa():
    """S_t = diag(e^{w_t}) S_{t−1} − (κ̂ ⊙ a)(κ̂ᵀ S_{t−1}) + k̃ v_tᵀ is one dplr_step with a = −κ̂, b = κ̂ ⊙ a."""
    _, k, v, w, minus_kappa, kappa_a = inputs(1, per_channel=True, low_rank=True)
    S = torch.randn(2, 3, 8, 5, dtype=torch.float64)
    r = torch.randn_like(k)
    o, S_new = dplr_step(r[:, 0], k[:, 0], v[:, 0], w[:, 0], minus_kappa[:, 0], kappa_a[:, 0], 1.0, S)
    kappa = -minus_kappa[:, 0]
    expected = (
        w[:, 0].exp()[..., None] * S
        - kappa_a[:, 0, ..., None] * (kappa[..., None, :] @ S)
        + k[:, 0, ..., None] * v[:, 0, ..., None, :]
    )
    assert rel(S_new, expected) < 1e-14
    assert rel(o, (expected.transpose(-1, -2) @ r[:, 0, ..., None])[..., 0]) < 1e-14
