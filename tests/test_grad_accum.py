"""Gradient accumulation: k micro-batches give the update of the whole batch, on the host-fed and the
resident step, even when micro-batches hold different numbers of labelled positions."""

import pytest
import torch
from conftest import tiny_config

from zoology.data import IGNORE_INDEX, Batches, DeviceSegment, Segment
from zoology.model import LanguageModel
from zoology.training import Callbacks, train
from zoology.training.step import TrainStep, query_loss


def uneven_segment(n: int = 40, L: int = 16, V: int = 64) -> DeviceSegment:
    """Examples whose labelled positions number 1 … 13 (so micro-batches of one batch hold very
    different numbers of labels), at random positions."""
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, V, (n, L), generator=gen)
    labels = torch.full((n, L), IGNORE_INDEX)
    for i in range(n):
        where = torch.randperm(L, generator=gen)[: (i * 7) % 13 + 1]
        labels[i, where] = torch.randint(0, V, (len(where),), generator=gen)
    return DeviceSegment.from_segment(Segment(inputs, labels, {"task": "uneven"}), torch.device("cpu"))


def train_steps(segment: DeviceSegment, accum: int, resident: bool, epochs: int = 2) -> tuple[list, list]:
    """SGD (parameter change = lr · gradient, so equal parameters mean equal gradients) with clipping."""
    config = tiny_config()
    batches = Batches([segment], 16, shuffle=True, seed=1)  # 40 rows: batches of 16, 16 and a short 8
    torch.manual_seed(0)
    model = LanguageModel(config.model)
    optimizer = torch.optim.SGD(model.param_groups(0.0), lr=torch.tensor(0.5))
    total = epochs * len(batches)
    extra = {"segments": [segment], "total_steps": total} if resident else {}
    settings = {"batch_size": 16, "grad_accum_steps": accum, **extra}
    step = TrainStep(model, optimizer, lambda s: 0.5, "fp32", 1.0, False, **settings)
    losses = []
    for epoch in range(epochs):
        step.run_epoch(batches, epoch, epoch * len(batches))
        losses.append(float(step.loss_sum))
    return losses, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("resident", [False, True], ids=["host", "resident"])
def test_accumulated_micro_batches_update_as_the_whole_batch(resident):
    segment = uneven_segment()
    whole_losses, whole = train_steps(segment, 1, resident)
    for accum in (2, 4):
        losses, params = train_steps(segment, accum, resident)
        assert losses == pytest.approx(whole_losses, rel=1e-5)
        for a, b in zip(whole, params):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_averaging_micro_batch_means_would_not_be_the_whole_batch():
    """What the test above rules out: each micro-batch's own mean, averaged, weights the labels of
    sparse micro-batches up; its gradient is far from the whole batch's (the tolerance above is 1e-5)."""
    segment = uneven_segment()
    model = LanguageModel(tiny_config().model)
    inputs, positions, targets = segment.inputs[:16], segment.positions[:16], segment.targets[:16]

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    whole = grads(query_loss(model(inputs, positions), targets))
    parts = zip(inputs.split(4), positions.split(4), targets.split(4))
    naive = grads(sum(query_loss(model(i, p), t) for i, p, t in parts) / 4)
    assert ((naive - whole).norm() / whole.norm()) > 0.05


def test_a_run_with_accumulation_trains_as_one_without():
    config = tiny_config({"max_epochs": 2, "early_stopping_threshold": None})
    records = {}
    for accum in (1, 4):
        records[accum] = []
        train(config.set({"grad_accum_steps": accum}), Callbacks(on_epoch=records[accum].append))
    assert config.set({"grad_accum_steps": 4}).run_id == config.run_id
    for one, four in zip(records[1], records[4], strict=True):
        assert four["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
        assert four["valid_loss"] == pytest.approx(one["valid_loss"], rel=1e-4)


def test_grad_accum_steps_must_divide_the_batch():
    with pytest.raises(ValueError, match=r"grad_accum_steps=3 must divide data.batch_size=64"):
        tiny_config({"grad_accum_steps": 3})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_captured_accumulated_steps_match_the_whole_batch_on_cuda():
    config = tiny_config({"device": "cuda", "max_epochs": 2, "early_stopping_threshold": None, "precision": "fp32"})
    config = config.set({"data.train.0.num_examples": 1000})  # 15 full batches and a short one
    records = {}
    for accum, graphs in ((1, False), (4, True)):
        records[accum] = []
        result = train(config.set({"grad_accum_steps": accum, "cuda_graphs": graphs}), Callbacks(records[accum].append))
        assert result["cuda_graphs"] is graphs
    for one, four in zip(records[1], records[4], strict=True):
        assert four["train_loss"] == pytest.approx(one["train_loss"], rel=1e-3)
        assert four["valid_loss"] == pytest.approx(one["valid_loss"], rel=1e-3)
