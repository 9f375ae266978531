import math

import pytest
import torch
import torch.nn.functional as F

from zoology import mixers
from zoology.config import TrainConfig
from zoology.mixers import conformance
from zoology.mixers.leap import Leap
from zoology.model import LanguageModel
from zoology.ops.additive_pooling import pool_global, pool_window


def direct_pool(u: torch.Tensor, scores: torch.Tensor, window: int | None) -> torch.Tensor:
    """Σ_{j∈W(t)} softmax(s)_j u_j in float64: each window gathered explicitly (unfold), or for the
    global pool float64 prefix sums of exp(s − max s) (moderate scores only)."""
    u, scores = u.double(), scores.double()
    if window is None:
        weights = (scores - scores.amax(-1, keepdim=True)).exp()
        return (weights[..., None] * u).cumsum(-2) / weights.cumsum(-1)[..., None]
    w = window
    u_windows = F.pad(u, (0, 0, w - 1, 0)).unfold(-2, w, 1)
    score_windows = F.pad(scores, (w - 1, 0), value=-math.inf).unfold(-1, w, 1)
    return (u_windows * score_windows.softmax(-1)[..., None, :]).sum(-1)


def pooled(u: torch.Tensor, scores: torch.Tensor, window: int | None, chunk_size: int = 64) -> torch.Tensor:
    if window is not None:
        return pool_window(u, scores, window, chunk_size)
    numerator, denominator, _ = pool_global(u, scores, chunk_size)
    return numerator / denominator[..., None]


@pytest.mark.parametrize("window", [1, 2, 4, 7, 16, 64, 100, None])
@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_pooling_matches_direct_windows(window, chunk_size):
    torch.manual_seed(0)
    u = torch.randn(2, 3, 150, 4, dtype=torch.float64)
    scores = 4 * torch.randn(2, 3, 150, dtype=torch.float64)
    torch.testing.assert_close(pooled(u, scores, window, chunk_size), direct_pool(u, scores, window))


@pytest.mark.parametrize("window", [4, 64, None])
def test_long_sequences_stay_accurate_in_float32_and_bfloat16(window):
    """A window is summed directly: a difference of cumulative sums at l = 8192, w = 4 is off by 4e-4
    relative in float32 and by 13 in bfloat16. Errors are relative to the pooled magnitudes Σα|u|/Σα."""
    torch.manual_seed(0)
    u = 1 + torch.randn(2, 1, 8192, 16)
    scores = torch.randn(2, 1, 8192)
    for dtype in (torch.float32, torch.bfloat16):
        u_in, scores_in = u.to(dtype), scores.to(dtype)
        expected = direct_pool(u_in, scores_in, window)
        magnitude = direct_pool(u_in.abs(), scores_in, window)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            got = pooled(u_in.float(), scores_in.float(), window)
        assert got.dtype == torch.float32
        assert ((got - expected).abs() / magnitude).max() < 1e-6, dtype


@pytest.mark.parametrize("window", [4, None])
def test_exp_never_overflows_or_underflows_to_nan(window):
    """Scores that climb (head 0) or fall (head 1) by 50 per token reach ±4e5: any fixed offset
    overflows or leaves early windows 0/0. Each pool then picks the newest or the oldest token.
    (The mixer computes scores in float32 also under bf16 autocast; bf16 could not even tell them apart.)"""
    seq_len = 8192
    u = torch.randn(1, 2, seq_len, 8)
    ramp = 50.0 * torch.arange(seq_len, dtype=torch.float32)
    scores = torch.stack([ramp, -ramp])[None]
    oldest = torch.arange(seq_len) - (seq_len if window is None else window) + 1
    expected = torch.stack([u[0, 0], u[0, 1, oldest.clamp_min(0)]])[None]
    for dtype in (torch.float32, torch.bfloat16):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            got = pooled(u.to(dtype).float(), scores, window)
        torch.testing.assert_close(got, expected.to(dtype).float(), rtol=1e-6, atol=1e-6)


def reference(mixer: Leap, x: torch.Tensor) -> torch.Tensor:
    m = mixer.double()
    x = x.double()
    b, seq_len, d = x.shape
    heads = (b, seq_len, m.num_heads, m.head_dim)

    def pool(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scores = (u.view(heads) * w).sum(-1).transpose(1, 2) / math.sqrt(m.head_dim)
        return direct_pool(u.view(heads).transpose(1, 2), scores, m.window_size).transpose(1, 2).reshape(b, seq_len, d)

    q, k, v = x @ m.q_proj.weight.T, x @ m.k_proj.weight.T, x @ m.v_proj.weight.T
    k_bar = pool(pool(q, m.q_pool) * k, m.k_pool)
    return (k_bar * v) @ m.out_proj.weight.T


@pytest.mark.parametrize(
    "kwargs", [{}, {"window_size": 4, "num_heads": 2}, {"window_size": 70, "chunk_size": 16}, {"window_size": 1}]
)
def test_layer_matches_the_spec_formula(kwargs):
    torch.manual_seed(0)
    mixer = Leap(32, **kwargs).double()
    with torch.no_grad():
        mixer.q_pool.normal_(std=3.0)
        mixer.k_pool.normal_(std=3.0)
    x = torch.randn(2, 150, 32, dtype=torch.float64)
    torch.testing.assert_close(mixer(x), reference(mixer, x))


@pytest.mark.parametrize("kwargs", [{"window_size": 4, "num_heads": 2}, {"window_size": 70, "chunk_size": 16}, {}])
def test_recurrent_form_reproduces_forward_with_honest_state(kwargs):
    torch.manual_seed(0)
    mixer = Leap(16, **kwargs).double()
    x = torch.randn(2, 90, 16, dtype=torch.float64)
    y = mixer(x)
    prefix, state = mixer.prefill(x[:, :30])
    assert mixers.state_numel(state) == 2 * mixer.state_size(30)
    steps = []
    for t in range(30, 90):
        y_t, state = mixer.step(x[:, t], state)
        steps.append(y_t)
    assert mixers.state_numel(state) == 2 * mixer.state_size(90)
    torch.testing.assert_close(torch.cat([prefix, torch.stack(steps, 1)], 1), y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kwargs", [{"window_size": 4}, {"window_size": 70, "chunk_size": 16}, {"chunk_size": 8}])
def test_outputs_do_not_depend_on_later_tokens_bit_for_bit(kwargs):
    torch.manual_seed(0)
    mixer = Leap(16, **kwargs).double()
    x = torch.randn(2, 100, 16, dtype=torch.float64)
    perturbed = x.clone()
    perturbed[:, 41:] = 100 * torch.randn_like(perturbed[:, 41:])
    assert torch.equal(mixer(x)[:, :41], mixer(perturbed)[:, :41])


def test_state_sizes():
    assert Leap(128, window_size=None).state_size(1024) == 2 * (128 + 2)
    assert Leap(128, window_size=64).state_size(1024) == 2 * 63 * 128
    assert Leap(128, window_size=64).state_size(10) == 2 * 10 * 128
    assert Leap(128, num_heads=4, window_size=None).state_size(5) == 2 * (128 + 8)


def test_state_is_float32_under_bf16_autocast():
    for window in (4, None):
        mixer = Leap(32, window_size=window)
        x = torch.randn(2, 10, 32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, state = mixer.prefill(x)
            _, state = mixer.step(x[:, 0], state)
        assert all(t.dtype == torch.float32 for s in state.values() for t in s.values())


def test_window_schedule():
    windows = [Leap(32, layer_idx=i, schedule_layers=4).window_size for i in range(4)]
    assert windows == [4, 8, 16, None]
    model = LanguageModel(TrainConfig.from_yaml("leap").model)
    assert [block.mixer.window_size for block in model.blocks] == [4, None]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"window_size": 0}, "window_size"),
        ({"layer_idx": 3, "schedule_layers": 3}, "schedule_layers"),
        ({"window_size": 4, "schedule_layers": 2}, "schedule_layers"),
        ({"num_heads": 3}, "num_heads"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Leap(32, **kwargs)


@pytest.mark.parametrize("spec", ["leap:window_size=4", "leap:window_size=70:chunk_size=16:num_heads=2"])
def test_windowed_leap_passes_the_conformance_kit(spec):
    conformance.check_mixer(spec)
