"""Accuracy and loss on the test segments, on the device with one host sync per evaluation; the
whole evaluation captured once as a CUDA graph on the fast path.

Accuracy of an example is the fraction of its labelled positions predicted exactly; a segment's
accuracy is the mean over its examples, and the overall accuracy the mean over all examples. Token
accuracy is the fraction of all labelled positions predicted exactly (the same when every example
has as many labels); macro accuracy is class-balanced: the token accuracy of each label value that
occurs, averaged over those values. Perplexity (of language-modelling slices) is exp of the mean loss
over their labelled positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zoology.data import IGNORE_INDEX, DeviceSegment
from zoology.training.capture import CAPTURE_LOCK, capture
from zoology.training.step import autocast

SUMS = ("acc", "loss", "labels", "correct")
"""The columns of `evaluation_sums`' first tensor."""


@torch.no_grad()
def evaluation_sums(model, segments: list[DeviceSegment], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """On the device, float64: (segments, 4) per segment the summed per-example accuracy (fraction
    of its queries predicted exactly), the summed loss, the number of labelled positions and of those
    predicted exactly; and (segments, 2, vocab) per label value its labelled and correct positions."""
    was_training = model.training
    model.eval()
    device = segments[0].inputs.device
    vocab = model.config.vocab_size
    sums = torch.zeros(len(segments), len(SUMS), device=device, dtype=torch.float64)
    classes = torch.zeros(len(segments), 2, vocab, device=device, dtype=torch.float64)
    for i, seg in enumerate(segments):
        for start in range(0, len(seg), batch_size):
            stop = start + batch_size
            targets = seg.targets[start:stop]
            logits = model(seg.inputs[start:stop], seg.positions[start:stop])
            labelled = targets != IGNORE_INDEX
            correct = (logits.argmax(-1) == targets) & labelled
            per_example = correct.sum(1) / labelled.sum(1).clamp_min(1)
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            sums[i] += torch.stack([per_example.sum(), loss, labelled.sum(), correct.sum()])
            label = targets.clamp_min(0).flatten()
            classes[i].index_add_(1, label, torch.stack([labelled.flatten(), correct.flatten()]).double())
    model.train(was_training)
    return sums, classes


def macro_accuracy(classes: torch.Tensor) -> float:
    """Mean over the label values that occur of their token accuracy; classes (2, vocab)."""
    labelled, correct = classes
    present = labelled > 0
    return float((correct[present] / labelled[present]).mean()) if present.any() else float("nan")


def summarize_evaluation(sums: torch.Tensor, classes: torch.Tensor, segments: list[DeviceSegment]) -> dict:
    """Overall accuracy (mean over examples), loss (mean over labelled positions), token and macro
    accuracy (over every labelled position of every segment), per-slice accuracy, and per slice the loss
    and the number of labelled positions."""
    acc_sum, loss_sum, n_labels, n_correct = sums.cpu().unbind(1)
    n_examples = torch.tensor([float(len(seg)) for seg in segments], dtype=torch.float64)
    return {
        "acc": float(acc_sum.sum() / n_examples.sum()),
        "loss": float(loss_sum.sum() / n_labels.sum().clamp_min(1)),
        "token_acc": float(n_correct.sum() / n_labels.sum().clamp_min(1)),
        "macro_acc": macro_accuracy(classes.cpu().sum(0)),
        "slices": {seg.name: float(a / n) for seg, a, n in zip(segments, acc_sum, n_examples)},
        "slice_losses": {seg.name: float(s / n.clamp_min(1)) for seg, s, n in zip(segments, loss_sum, n_labels)},
        "slice_labels": {seg.name: int(n) for seg, n in zip(segments, n_labels)},
    }


def perplexity(loss: float) -> float:
    """exp(mean loss per token), inf past what a float holds."""
    return math.exp(loss) if loss < 700 else math.inf


def perplexities(summary: dict, names: list[str]) -> dict:
    """{"perplexity": over all the slices `names` together (their labelled positions pooled),
    "perplexity_slices": {name: of that slice}}; {} when `names` is empty."""
    if not names:
        return {}
    losses, labels = summary["slice_losses"], summary["slice_labels"]
    pooled = sum(losses[n] * labels[n] for n in names) / max(1, sum(labels[n] for n in names))
    return {"perplexity": perplexity(pooled), "perplexity_slices": {n: perplexity(losses[n]) for n in names}}


def evaluate(model, segments: list[DeviceSegment], batch_size: int) -> dict:
    """Per-segment and overall accuracy and loss of `model` on `segments`; one host sync at the end."""
    return summarize_evaluation(*evaluation_sums(model, segments, batch_size), segments)


class Evaluation:
    """`evaluate` on fixed test segments, once per epoch. With CUDA graphs the whole evaluation
    (every slice, every batch) is captured once, after one eager pass, and replayed: the segments
    stay on the device and the optimiser changes the weights in place, so a replay computes exactly
    what an eager pass would, in one launch instead of hundreds."""

    def __init__(self, model, segments: list[DeviceSegment], batch_size: int, precision: str, cuda_graphs: bool):
        self.model, self.segments, self.batch_size, self.precision = model, segments, batch_size, precision
        self.device = segments[0].inputs.device
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.sums: tuple[torch.Tensor, torch.Tensor] | None = None

    def _sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.precision):
            return evaluation_sums(self.model, self.segments, self.batch_size)

    def __call__(self) -> dict:
        if self.graph is not None:
            self.graph.replay()
            with CAPTURE_LOCK.eager(self.device):
                sums = [t.cpu() for t in self.sums]
            return summarize_evaluation(*sums, self.segments)
        if not self.cuda_graphs or self.sums is None:
            with CAPTURE_LOCK.eager(self.device):
                self.sums = self._sums()
            return summarize_evaluation(*self.sums, self.segments)
        self.graph, self.sums = capture(self._sums, self.device)
        return self()

    def release(self) -> None:
        with CAPTURE_LOCK.eager(self.device):
            self.graph = None
            self.sums = None
