"""The model runs through its mixers' recurrent forms: prefill, step, generate, state accounting."""

from __future__ import annotations

import pytest
import torch

from zoology.config import ModelConfig
from zoology.data import DeviceSegment
from zoology.data.mqar import MQARConfig
from zoology.mixers import conformance, state_numel
from zoology.model import LanguageModel
from zoology.training.step import query_loss


def hybrid(mixer_spec: str, **overrides) -> ModelConfig:
    name, kwargs = conformance.parse(mixer_spec)
    fields = {"vocab_size": 64, "d_model": 32, "n_layers": 2, "mixers": ["base_conv", {"name": name, "kwargs": kwargs}]}
    return ModelConfig(**{**fields, **overrides})


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize(
    "overrides",
    [{}, {"position_embeddings": True, "mlp_expand": 2}],
    ids=["plain", "positions+mlp"],
)
def test_prefill_and_steps_reproduce_forward(mixer_spec, overrides):
    torch.manual_seed(0)
    model = LanguageModel(hybrid(mixer_spec, **overrides), max_seq_len=80).double().eval()
    ids = torch.randint(0, 64, (2, 80))
    with torch.no_grad():
        expected = model(ids)
        for prompt in (1, 33):
            logits, state = model.prefill(ids[:, :prompt])
            assert rel_error(logits, expected[:, prompt - 1]) < 1e-6
            assert state_numel(state) == model.state_size(prompt) * 2
            for t in range(prompt, 80):
                logits, state = model.step(ids[:, t], state)
                assert rel_error(logits, expected[:, t]) < 1e-6, f"position {t}"
            assert state["pos"] == 80
            assert state_numel(state) == model.state_size(80) * 2


def test_init_state_then_steps_reproduce_forward():
    torch.manual_seed(0)
    model = LanguageModel(hybrid("attention", position_embeddings=True), max_seq_len=20).double().eval()
    ids = torch.randint(0, 64, (3, 20))
    state = model.init_state(3)
    assert state_numel(state) == model.state_size(0) * 3
    with torch.no_grad():
        expected = model(ids)
        steps = []
        for t in range(20):
            logits, state = model.step(ids[:, t], state)
            steps.append(logits)
    assert rel_error(torch.stack(steps, 1), expected) < 1e-6


def test_stepping_past_the_position_embeddings_is_a_clear_error():
    model = LanguageModel(hybrid("attention", position_embeddings=True), max_seq_len=8).eval()
    _, state = model.prefill(torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="max_seq_len=8"):
        model.step(torch.zeros(1, dtype=torch.long), state)


def train_briefly(model: LanguageModel, segment: DeviceSegment, steps: int = 150, batch_size: int = 64) -> None:
    """Enough for a [base_conv, attention] model to reach ~99% on MQAR L=16, N=2."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(segment), (batch_size,), generator=gen)
        loss = query_loss(model(segment.inputs[idx], segment.positions[idx]), segment.targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


def confident(logits: torch.Tensor, margin: float = 1e-3) -> torch.Tensor:
    """Positions whose top-1 logit beats the runner-up by more than `margin` (ties are rounding)."""
    top2 = logits.topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1] > margin


def test_trained_model_generates_its_own_parallel_greedy_predictions(mixer_spec):
    check_trained_model_recurrence(hybrid(mixer_spec))


def test_trained_model_with_position_embeddings_generates_its_parallel_predictions():
    check_trained_model_recurrence(hybrid("attention", position_embeddings=True))


def check_trained_model_recurrence(config: ModelConfig) -> None:
    """Greedy predictions through the recurrent forms equal the parallel ones: teacher-forced on
    MQAR sequences (every position, and the labelled queries), and for `generate` continuations."""
    torch.manual_seed(0)
    data = MQARConfig(vocab_size=64, input_seq_len=16, num_kv_pairs=2, num_examples=2048)
    segment = DeviceSegment.from_segment(data.build(seed=0), torch.device("cpu"))
    model = LanguageModel(config, max_seq_len=32)
    train_briefly(model, segment)

    inputs, positions, targets = segment.inputs[:64], segment.positions[:64], segment.targets[:64]
    with torch.no_grad():
        parallel = model(inputs)
        state = model.init_state(len(inputs))
        recurrent = []
        for t in range(inputs.shape[1]):
            logits, state = model.step(inputs[:, t], state)
            recurrent.append(logits)
        recurrent = torch.stack(recurrent, 1)
    keep = confident(parallel)
    assert keep.float().mean() > 0.95
    assert torch.equal(recurrent.argmax(-1)[keep], parallel.argmax(-1)[keep])
    labelled = targets != -100
    query_logits = parallel.gather(1, positions[..., None].expand(-1, -1, parallel.shape[-1]))
    assert torch.equal(
        recurrent.gather(1, positions[..., None].expand_as(query_logits)).argmax(-1)[labelled],
        query_logits.argmax(-1)[labelled],
    )

    prompt, n = inputs[:, :9], 16
    generated = model.generate(prompt, n)
    assert generated.shape == (64, n) and not model.training
    with torch.no_grad():
        replay = model(torch.cat([prompt, generated[:, :-1]], dim=1))[:, prompt.shape[1] - 1 :]
    keep = confident(replay)
    assert keep.float().mean() > 0.95
    assert torch.equal(generated[keep], replay.argmax(-1)[keep])
