"""DeltaNet, Gated DeltaNet, GLA, Mamba-2 and RWKV-7: what their constructors refuse, the state they carry at
the preset sizes, and their CPU path (the conformance kit and the trained-model generate test run on them too,
as on every registered mixer)."""

from __future__ import annotations

import pytest
import torch

from zoology import mixers
from zoology.config import TrainConfig

NEW_MIXERS = ("delta_net", "gated_delta_net", "gla", "mamba2", "rwkv7")


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("delta_net", {"num_heads": 3}, r"num_heads=3 must be an integer >= 1 that divides d_model=128"),
        ("delta_net", {"expand_v": 0}, r"expand_v=0 must be > 0"),
        ("delta_net", {"conv_size": 0}, r"conv_size=0 must be an integer >= 1"),
        ("gated_delta_net", {"num_heads": 0}, r"num_heads=0 must be an integer >= 1"),
        ("gated_delta_net", {"backend": "triton"}, r"backend='triton' must be one of \['auto', 'torch', 'fla'\]"),
        ("gla", {"expand_k": 0}, r"expand_k=0 must be > 0"),
        ("gla", {"expand_v": 0.3}, r"expand_v=0.3 must be > 0 with expand_v·d_model/num_heads a whole number"),
        ("gla", {"gate_low_rank_dim": 0}, r"gate_low_rank_dim=0 must be an integer >= 1"),
        ("mamba2", {"d_state": 0}, r"d_state=0 must be an integer >= 1"),
        ("mamba2", {"expand": 0}, r"expand=0 must be an integer >= 1"),
        ("mamba2", {"head_dim": 48}, r"head_dim=48 must be None \(64\) or an integer >= 1 that divides d_inner"),
        ("rwkv7", {"head_dim": 48}, r"head_dim=48 must be None \(64\) or an integer >= 1 that divides d_model=128"),
        ("rwkv7", {"decay_low_rank_dim": 0}, r"decay_low_rank_dim=0 must be an integer >= 1"),
        ("rwkv7", {"chunk_size": 0}, r"chunk_size=0 must be None \(automatic\) or an integer >= 1"),
    ],
)
def test_bad_kwargs_are_refused_naming_the_field_and_allowed_values(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mixers.build(name, d_model=128, **kwargs)
    with pytest.raises(ValueError, match=message), torch.device("meta"):
        mixers.build(name, d_model=128, **kwargs)


@pytest.mark.parametrize("name", NEW_MIXERS)
def test_an_unknown_kwarg_is_refused_with_the_accepted_ones(name):
    with pytest.raises(ValueError, match=r"takes no argument \['heads'\]; it accepts \[.*'backend'.*\]"):
        mixers.check_kwargs(name, {"heads": 2})


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA refuses backend='fla'")
@pytest.mark.parametrize("name", NEW_MIXERS)
def test_fla_is_refused_on_a_machine_without_cuda(name):
    with pytest.raises(ValueError, match="backend='fla' needs a CUDA device and this machine has none"):
        mixers.build(name, d_model=128, backend="fla")


@pytest.mark.parametrize("name", NEW_MIXERS)
def test_the_cpu_runs_the_chunked_path_under_auto_and_torch_alike(name):
    x = torch.randn(2, 70, 32, requires_grad=True)
    outputs = []
    for backend in ("auto", "torch"):
        torch.manual_seed(0)
        mixer = mixers.build(name, d_model=32, backend=backend)
        outputs.append(mixer(x))
    assert torch.equal(*outputs)


def preset_mixer(name: str, d_model: int = 128) -> torch.nn.Module:
    spec = TrainConfig.from_yaml(name).model.mixers[-1]
    assert spec.name == name
    with torch.device("meta"):
        return mixers.build(name, d_model=d_model, **spec.kwargs)


def test_state_at_the_preset_sizes_is_what_the_formulas_in_the_docstrings_count():
    """d = 128, L = 1024 (the x-axis of the recall-memory plot): the element counts of each layer's state."""
    d, conv = 128, 3
    H, K = 2, 64
    expected = {
        "delta_net": H * K * K + conv * H * (2 * K + K),
        "gated_delta_net": H * K * (2 * K) + conv * H * (2 * K + 2 * K),
        "gla": H * (d // 2 // H) * (d // H),
        "mamba2": 2 * d * 16 + conv * (2 * d + 2 * 16),
        "rwkv7": d * 64 + d,
    }
    for name, count in expected.items():
        assert preset_mixer(name).state_size(1024) == count, name
