"""The training loop: `train(config, callbacks) -> result`, one TrainConfig to one result dict.

Data live on the device; the step has no host synchronisation (losses and accuracies accumulate on
the device and are read once per epoch); logits are computed only at labelled positions. The loop
reports each epoch's record (and, every `checkpoint_every` seconds, a checkpoint; at the end, the
weights) to its callbacks and returns the result; where those go is the caller's business (zoology.runner writes them).

An epoch's record holds the test segments' loss and accuracy as `valid_loss`, `valid_acc` and
`slices` (their names from before validation segments existed), and their `token_acc` and
`macro_acc`; with `data.valid`, `validation` holds the validation segments' acc, token_acc, macro_acc
and loss. The result's `last` and `best` (the epoch of the highest test accuracy) are test numbers;
with `data.valid`, `selected` holds the test numbers of the epoch with the highest validation token
accuracy (the checkpoint a run reports), and early stopping watches that validation token accuracy.

A run whose loss is not finite (NaN or infinite) diverged: the epoch's summed training loss, read
once per epoch as it is anyway, and the test (and validation) loss are checked when the epoch ends,
so the step keeps no host synchronisation. The epoch's record, with `status: "diverged"`, goes to
the callbacks, and `train` raises `Diverged("diverged at epoch N (loss nan)")`, N counted from 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import zoology
from zoology.config import TrainConfig
from zoology.data import DeviceSegment, load_segment, segment_seed
from zoology.errors import UserError
from zoology.training import checkpoint
from zoology.training.build import build_training
from zoology.training.capture import CAPTURE_LOCK, run_stream
from zoology.training.evaluation import Evaluation, perplexities
from zoology.utils import pick_device


class Diverged(UserError):
    """Training stopped because a loss was not finite at the end of an epoch; the message is the reason,
    e.g. 'diverged at epoch 3 (loss nan)'."""


def non_finite_loss(record: dict) -> str | None:
    """Which loss of an epoch's record is NaN or infinite, with its value ('loss nan', 'test loss inf',
    'validation loss nan'; the training loss first), or None if all are finite."""
    losses = [("loss", record["train_loss"]), ("test loss", record["valid_loss"])]
    if "validation" in record:
        losses.append(("validation loss", record["validation"]["loss"]))
    return next((f"{what} {value}" for what, value in losses if not math.isfinite(value)), None)


@dataclass
class Callbacks:
    """What a run reports as it trains. `on_epoch(record)` gets each epoch's metrics record (a resumed
    run first replays the records of its checkpoint); `on_checkpoint(data)` gets a checkpoint's bytes,
    which `train(config, resume=data)` continues from; `on_weights(which, epoch, state)` gets the
    model's state dict on the CPU: 'final' once, before `train` returns, and 'best' at each new best
    epoch when the config has `keep_best_weights`."""

    on_epoch: Callable[[dict], None] | None = None
    on_checkpoint: Callable[[bytes], None] | None = None
    on_weights: Callable[[str, int, dict[str, torch.Tensor]], None] | None = None

    def epoch(self, record: dict) -> None:
        if self.on_epoch is not None:
            self.on_epoch(record)

    def weights(self, which: str, epoch: int, model: torch.nn.Module) -> None:
        if self.on_weights is not None:
            with CAPTURE_LOCK.eager(next(model.parameters()).device):
                state = checkpoint.model_weights(model)
            self.on_weights(which, epoch, state)


def load_segments(config: TrainConfig, split: str, device: torch.device) -> list[DeviceSegment]:
    """The config's `split` ('train', 'test' or 'valid') segments, built (or read from the cache) and on `device`;
    a segment that cannot be built fails naming it (data.train[0]: …)."""
    data = config.data
    segments = []
    for i, seg in enumerate(getattr(data, split)):
        try:
            segment = load_segment(seg, segment_seed(data.seed, split, i), data.cache_dir)
        except (ValueError, FileNotFoundError) as e:
            raise type(e)(f"data.{split}[{i}]: {e}") from e
        segments.append(DeviceSegment.from_segment(segment, device))
    return segments


def _perplexity(record: dict) -> dict:
    return {k: record[k] for k in ("perplexity", "perplexity_slices") if k in record}


def selection_key(record: dict) -> tuple[float, float]:
    """What picks the selected epoch: the highest validation token accuracy, ties to the lower
    validation loss (then the earlier epoch)."""
    return record["validation"]["token_acc"], -record["validation"]["loss"]


def token_metrics(record: dict) -> dict:
    """The test token and macro accuracy of an epoch's record (records from before they existed: none)."""
    return {k: record[k] for k in ("token_acc", "macro_acc") if k in record}


def selected_result(record: dict) -> dict:
    """The test numbers of the epoch chosen on the validation segments, with its validation numbers."""
    return {
        "epoch": record["epoch"],
        "acc": record["valid_acc"],
        "loss": record["valid_loss"],
        "slices": record["slices"],
        **token_metrics(record),
        "validation": record["validation"],
    }


def train(config: TrainConfig, callbacks: Callbacks | None = None, resume: bytes | None = None) -> dict:
    """Train `config` from scratch, or from the checkpoint `resume`; returns the result (accuracy last
    and best, overall and per test slice, parameters, state size, times, device)."""
    device = pick_device(config.device)
    with run_stream(device):
        return _train(config, device, callbacks or Callbacks(), resume)


def _train(config: TrainConfig, device: torch.device, callbacks: Callbacks, resume: bytes | None) -> dict:
    started = time.perf_counter()
    with CAPTURE_LOCK.eager(device):
        train_segments = load_segments(config, "train", device)
        test_segments = load_segments(config, "test", device)
        valid_segments = load_segments(config, "valid", device)
        for split, segments in (("test", test_segments), ("valid", valid_segments)):
            if len({s.name for s in segments}) != len(segments):
                raise ValueError(f"data.{split}: two {split} segments have the same slice; make each distinct")
        training = build_training(config, device, train_segments)
        model, optimizer, step, batches = training.model, training.optimizer, training.step, training.batches
        lr_at, precision, use_graphs = training.lr_at, training.precision, training.use_graphs
        evaluation = Evaluation(model, test_segments, config.data.test_batch_size, precision, use_graphs)
        text_slices = [s.name for s, c in zip(test_segments, config.data.test) if c.language_modelling]
        validation = (
            Evaluation(model, valid_segments, config.data.test_batch_size, precision, use_graphs)
            if valid_segments
            else None
        )
        longest_test = max(s.inputs.shape[1] for s in test_segments)
        state_size = model.state_size(longest_test)
        tokens_per_epoch = sum(s.inputs.numel() for s in train_segments)

        progress = {"history": [], "best": None, "selected": None, "train_time": 0.0, "step": 0}
        if resume is not None:
            progress = checkpoint.restore(resume, model, optimizer, device)
    history = progress["history"]
    for record in history:
        callbacks.epoch(record)
    last_checkpoint = time.perf_counter()
    for epoch in range(len(history), config.max_epochs):
        model.train()
        epoch_start = time.perf_counter()
        step.run_epoch(batches, epoch, progress["step"])
        progress["step"] += len(batches)
        if device.type == "cuda":
            torch.cuda.current_stream(device).synchronize()
        epoch_time = time.perf_counter() - epoch_start
        progress["train_time"] += epoch_time
        valid = evaluation()
        record = {
            "epoch": epoch,
            "train_loss": float(step.loss_sum) / len(batches),
            "valid_loss": valid["loss"],
            "valid_acc": valid["acc"],
            "slices": valid["slices"],
            **perplexities(valid, text_slices),
            "token_acc": valid["token_acc"],
            "macro_acc": valid["macro_acc"],
            "lr": lr_at(progress["step"] - 1),
            "epoch_time": epoch_time,
            "eval_time": time.perf_counter() - epoch_start - epoch_time,
            "tokens_per_s": tokens_per_epoch / epoch_time,
        }
        if validation is not None:
            held_out = validation()
            record["validation"] = {k: held_out[k] for k in ("acc", "token_acc", "macro_acc", "loss")}
            record["eval_time"] = time.perf_counter() - epoch_start - epoch_time
        diverged = non_finite_loss(record)
        if diverged is not None:
            callbacks.epoch({**record, "status": "diverged"})
            for part in (step, evaluation, validation):
                if part is not None:
                    part.release()
            raise Diverged(f"diverged at epoch {epoch + 1} ({diverged})")
        history.append(record)
        if progress["best"] is None or record["valid_acc"] > progress["best"]["valid_acc"]:
            progress["best"] = record
            if config.keep_best_weights:
                callbacks.weights("best", epoch, model)
        if validation is not None and (
            progress["selected"] is None or selection_key(record) > selection_key(progress["selected"])
        ):
            progress["selected"] = record
        threshold = config.early_stopping_threshold
        stopping_acc = record["valid_acc"] if validation is None else record["validation"]["token_acc"]
        stop = threshold is not None and stopping_acc > threshold
        due = config.checkpoint_every is not None and time.perf_counter() - last_checkpoint >= config.checkpoint_every
        if callbacks.on_checkpoint and due and not stop and epoch + 1 < config.max_epochs:
            callbacks.on_checkpoint(checkpoint.pack(model, optimizer, device, progress))
            last_checkpoint = time.perf_counter()
        callbacks.epoch(record)
        if stop:
            break
    step.release()
    evaluation.release()
    callbacks.weights("final", history[-1]["epoch"], model)
    if validation is not None:
        validation.release()

    last, best, selected = history[-1], progress["best"], progress["selected"]
    return {
        "run_id": config.run_id,
        "name": config.name,
        "params": model.num_parameters(),
        "state_size": state_size,
        "state_seq_len": longest_test,
        "epochs": len(history),
        "stopped_early": len(history) < config.max_epochs,
        "last": {
            "acc": last["valid_acc"],
            "loss": last["valid_loss"],
            "slices": last["slices"],
            **token_metrics(last),
            **_perplexity(last),
        },
        "best": {
            "acc": best["valid_acc"],
            "epoch": best["epoch"],
            "slices": best["slices"],
            **token_metrics(best),
            **_perplexity(best),
        },
        **({} if selected is None else {"selected": selected_result(selected)}),
        "slices": [{"slice": s.name, **s.slice, "num_examples": len(s)} for s in test_segments],
        "wall_time": time.perf_counter() - started,
        "train_tokens_per_s": tokens_per_epoch * len(history) / progress["train_time"],
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "threads": torch.get_num_threads(),
        "precision": precision,
        "cuda_graphs": use_graphs,
        "compiled": training.use_compile,
        "version": zoology.__version__,
        "torch": torch.__version__,
    }
