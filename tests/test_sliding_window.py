"""sliding_window: query t attends to exactly keys t−w+1 … t, whichever path the parallel form takes."""

from __future__ import annotations

import math

import pytest
import torch

from zoology.mixers import conformance, state_numel
from zoology.mixers.sliding_window import SlidingWindowAttention


def reference(mixer: SlidingWindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Softmax over keys max(0, t−w+1) … t, one query at a time."""
    q, k, v = mixer._qkv(x)
    w, dh = mixer.window_size, mixer.head_dim
    out = torch.empty_like(q)
    for t in range(x.shape[1]):
        lo = max(0, t - w + 1)
        scores = q[:, :, t : t + 1] @ k[:, :, lo : t + 1].transpose(-1, -2) / math.sqrt(dh)
        out[:, :, t] = (scores.softmax(-1) @ v[:, :, lo : t + 1])[:, :, 0]
    return mixer._merge(out)


@pytest.mark.parametrize("window", [1, 2, 5, 64, 100, 300])
@pytest.mark.parametrize("seq_len", [1, 37, 64, 128, 200])
def test_parallel_form_matches_the_window_convention(window, seq_len):
    torch.manual_seed(0)
    mixer = SlidingWindowAttention(16, window_size=window, num_heads=2).double().eval()
    x = torch.randn(2, seq_len, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), reference(mixer, x), rtol=1e-10, atol=1e-12)


def test_window_of_one_returns_each_tokens_own_value():
    torch.manual_seed(0)
    mixer = SlidingWindowAttention(8, window_size=1).double().eval()
    x = torch.randn(3, 50, 8, dtype=torch.float64)
    q, k, v = mixer._qkv(x)
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), mixer._merge(v))


@pytest.mark.parametrize("window", [3, 64])
def test_state_grows_to_the_window_then_stays(window):
    mixer = SlidingWindowAttention(16, window_size=window, num_heads=2).eval()
    x = torch.randn(2, 100, 16)
    sizes = [state_numel(mixer.prefill(x[:, :t])[1]) // 2 for t in (1, window, window + 1, 100)]
    assert sizes == [2 * 16 * 1, 2 * 16 * window, 2 * 16 * window, 2 * 16 * window]


@pytest.mark.parametrize("kwargs", [{"window_size": 1}, {"window_size": 7, "num_heads": 4}, {"window_size": 200}])
def test_conformance_with_other_windows(kwargs):
    conformance.check_mixer(("sliding_window", kwargs))


def test_bad_window_is_rejected():
    with pytest.raises(ValueError, match="window_size=0"):
        SlidingWindowAttention(16, window_size=0)
