"""Mamba-lite: the chunked selective scan against the sequential reference, the recurrent form, the
Mamba-1 initialisation and how the model treats the block's special parameters."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zoology import mixers
from zoology.config import ModelConfig
from zoology.mixers.mamba import Mamba
from zoology.model import LanguageModel
from zoology.ops.causal_conv import causal_depthwise_conv, reference_causal_conv
from zoology.ops.selective_scan import reference_scan, selective_scan


def scan_inputs(seq, batch=2, d_in=5, N=3, dtype=torch.float64, delta_scale=2.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(seq, batch, d_in, generator=gen, dtype=dtype)
    delta = delta_scale * torch.rand(seq, batch, d_in, generator=gen, dtype=dtype)
    A = -torch.exp(torch.randn(d_in, N, generator=gen, dtype=dtype))
    B = torch.randn(seq, batch, N, generator=gen, dtype=dtype)
    C = torch.randn(seq, batch, N, generator=gen, dtype=dtype)
    return [t.requires_grad_() for t in (x, delta, A, B, C)]


@pytest.mark.parametrize("seq,chunk", [(1, None), (2, 1), (7, 3), (13, 4), (16, 16), (33, 8), (37, 64), (50, None)])
def test_scan_matches_sequential_reference_in_float64(seq, chunk):
    inputs = scan_inputs(seq)
    y, h = selective_scan(*inputs, chunk_size=chunk)
    y_ref, h_ref = reference_scan(*inputs)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-12, atol=1e-12)
    grad_y = torch.randn_like(y)
    grads = torch.autograd.grad(y, inputs, grad_y)
    grads_ref = torch.autograd.grad(y_ref, inputs, grad_y)
    for name, g, g_ref in zip("x delta A B C".split(), grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10, msg=f"gradient of {name}")


def test_scan_backward_passes_gradcheck():
    inputs = scan_inputs(11, d_in=3, N=2)
    assert torch.autograd.gradcheck(lambda *a: selective_scan(*a, chunk_size=4)[0], inputs)


def test_scan_in_float32_matches_float64_reference():
    inputs = scan_inputs(300, batch=3, d_in=8, N=4, delta_scale=0.5)
    y_ref, h_ref = reference_scan(*inputs)
    y, h = selective_scan(*(t.detach().float() for t in inputs))
    assert y.dtype == h.dtype == torch.float32
    assert (y.double() - y_ref).abs().max() <= 1e-5 * y_ref.abs().max()
    assert (h.double() - h_ref).abs().max() <= 1e-5 * h_ref.abs().max()


def test_scan_stays_finite_when_decays_underflow_or_barely_decay():
    """δA from −1e4 (decay exactly 0) to −1e-6 (decay ≈ 1 over 4096 steps): no inf/NaN anywhere."""
    x, delta, A, B, C = (t.detach().float() for t in scan_inputs(4096, batch=1, d_in=4, N=2))
    A = torch.tensor([[-1e4, -1e-6]] * 4)
    delta = delta.requires_grad_()
    y, h = selective_scan(x, delta, A, B, C, chunk_size=256)
    y.square().sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(h).all() and torch.isfinite(delta.grad).all()
    y_ref, _ = reference_scan(x.double(), delta.detach().double(), A.double(), B.double(), C.double())
    assert (y.double() - y_ref).abs().max() <= 1e-4 * y_ref.abs().max()


@pytest.mark.parametrize("seq,kernel", [(9, 4), (2, 4), (1, 4), (6, 1)])
def test_causal_conv_matches_conv1d_with_left_padding(seq, kernel):
    gen = torch.Generator().manual_seed(0)
    x, weight, bias = (torch.randn(*s, generator=gen, dtype=torch.float64) for s in ((seq, 2, 5), (5, kernel), (5,)))
    x, weight, bias = (t.requires_grad_() for t in (x, weight, bias))
    torch.testing.assert_close(causal_depthwise_conv(x, weight, bias), reference_causal_conv(x, weight, bias))
    assert torch.autograd.gradcheck(causal_depthwise_conv, (x, weight, bias))


def test_results_do_not_depend_on_chunk_size():
    torch.manual_seed(0)
    mixer = Mamba(16, d_state=4, chunk_size=1).double()
    u = torch.randn(2, 45, 16, dtype=torch.float64)
    y1 = mixer(u)
    for chunk in (4, 7, 64, None):
        mixer.chunk_size = chunk
        torch.testing.assert_close(mixer(u), y1, rtol=1e-12, atol=1e-12)


def test_prefill_then_steps_reproduce_forward_across_chunk_boundaries():
    torch.manual_seed(0)
    mixer = Mamba(16, d_state=4, chunk_size=5).double().eval()
    u = torch.randn(3, 23, 16, dtype=torch.float64)
    with torch.no_grad():
        y = mixer(u)
        y_pre, state = mixer.prefill(u[:, :12])
        steps = []
        for t in range(12, 23):
            y_t, state = mixer.step(u[:, t], state)
            steps.append(y_t)
    torch.testing.assert_close(y_pre, y[:, :12], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.stack(steps, 1), y[:, 12:], rtol=1e-10, atol=1e-12)


def test_state_is_conv_window_and_ssm_state():
    mixer = Mamba(32, d_state=16, d_conv=4, expand=2)
    state = mixer.init_state(2)
    assert state["conv"].shape == (2, 64, 3) and state["ssm"].shape == (2, 64, 16)
    assert mixer.state_size(1000) == 64 * (16 + 4 - 1) == mixers.state_numel(state) // 2


def test_mamba1_initialisation():
    torch.manual_seed(0)
    d, N, dt_min, dt_max = 64, 8, 1e-3, 1e-1
    mixer = Mamba(d, d_state=N, dt_min=dt_min, dt_max=dt_max)
    d_in, r = 2 * d, math.ceil(d / 16)
    assert mixer.dt_rank == r and mixer.x_proj.out_features == r + 2 * N and mixer.in_proj.out_features == 2 * d_in
    assert torch.equal(mixer.A_log, torch.log(torch.arange(1, N + 1, dtype=torch.float32)).expand(d_in, N))
    assert torch.equal(mixer.D, torch.ones(d_in))
    dt = F.softplus(mixer.dt_bias)
    assert dt.min() >= dt_min * (1 - 1e-5) and dt.max() <= dt_max * (1 + 1e-5)
    assert dt.log().std() > 0.5, "dt should be spread log-uniformly over [dt_min, dt_max]"
    bound = r**-0.5
    assert mixer.dt_proj.weight.abs().max() <= bound and mixer.dt_proj.weight.abs().max() > 0.9 * bound
    assert Mamba(d, dt_rank=3).dt_rank == 3


def test_model_keeps_special_init_and_excludes_it_from_weight_decay():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=32, d_model=64, n_layers=2, mixers=[{"name": "mamba", "kwargs": {"d_state": 8}}])
    model = LanguageModel(config)
    for block in model.blocks:
        m = block.mixer
        assert torch.equal(m.A_log, torch.log(torch.arange(1, 9, dtype=torch.float32)).expand(128, 8))
        assert torch.equal(m.D, torch.ones(128))
        assert F.softplus(m.dt_bias).min() >= 1e-3 * (1 - 1e-5)
        assert m.dt_proj.weight.std() > 0.2, "W_dt was re-initialised by the model's generic N(0, 0.02)"
        assert m.in_proj.weight.std() < 0.03, "the model's generic init should still apply to the projections"
    decay, no_decay = model.param_groups(weight_decay=0.1)
    decayed, not_decayed = {id(p) for p in decay["params"]}, {id(p) for p in no_decay["params"]}
    for block in model.blocks:
        m = block.mixer
        assert {id(m.A_log), id(m.D), id(m.dt_bias)} <= not_decayed
        assert {id(m.in_proj.weight), id(m.dt_proj.weight), id(m.out_proj.weight)} <= decayed


def test_special_parameters_stay_float32_when_the_module_is_cast():
    mixer = Mamba(16, d_state=4).to(torch.bfloat16)
    assert mixer.in_proj.weight.dtype == torch.bfloat16
    assert mixer.A_log.dtype == mixer.D.dtype == mixer.dt_bias.dtype == torch.float32
    assert mixer.A_log._no_weight_decay and mixer.A_log._no_reinit
    assert Mamba(16, d_state=4).double().A_log.dtype == torch.float64
    u = torch.randn(2, 9, 16, dtype=torch.bfloat16)
    y, state = mixer.prefill(u)
    assert y.dtype == torch.bfloat16 and state["ssm"].dtype == torch.float32
    y_t, state = mixer.step(u[:, 0], state)
    assert y_t.dtype == torch.bfloat16 and torch.isfinite(y_t).all()


def test_bf16_autocast_keeps_the_scan_in_float32_and_finite():
    torch.manual_seed(0)
    mixer = Mamba(32, d_state=16)
    u = 4 * torch.randn(2, 2048, 32)
    with torch.no_grad():
        reference = mixer(u)
    u.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = mixer.prefill(u)
    assert state["ssm"].dtype == state["conv"].dtype == torch.float32
    assert torch.isfinite(y).all()
    y.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in mixer.parameters())
    err = (y.float() - reference).norm() / reference.norm()
    assert err < 0.05, f"bf16 autocast output is {err:.1%} off float32"


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"d_state": 0}, "d_state"),
        ({"d_conv": 0}, "d_conv"),
        ({"expand": 1.5}, "expand"),
        ({"dt_rank": "big"}, "dt_rank"),
        ({"dt_min": 0.2, "dt_max": 0.1}, "dt_min"),
        ({"dt_init_floor": 0}, "dt_init_floor"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Mamba(16, **kwargs)


def test_mamba_vs_based_bench_reports_both_times_and_the_ratio(capsys):
    from zoology.bench import mamba_vs_based

    argv = "--based attention --d-model 16 --batch 2 --seq-len 8 --rounds 1 --repeats 1 --warmup 0 --device cpu"
    assert mamba_vs_based.main(argv.split()) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("mamba:") and "attention:" in last and "ratio" in last
