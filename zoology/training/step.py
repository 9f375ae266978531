"""One optimisation step: bf16 autocast, cross-entropy at labelled positions, backward, optional
clipping, AdamW; fed batches from the host, or resident (gathering its own batch on the device) and
captured as a CUDA graph."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoology.data import IGNORE_INDEX, Batches, DeviceSegment
from zoology.training.capture import CAPTURE_LOCK, capture, compiled_calls
from zoology.training.schedule import LearningRate

COMPILED_GRAPHS_PER_PROCESS = 4096
"""Every run in a process shares the compiled loss's cache (one entry per model and batch shape);
past dynamo's default of 8 entries, later runs of a worker would silently train eagerly."""


def autocast(device: torch.device, precision: str):
    """bf16 autocast when precision is 'bf16' (mixers keep their sums and states in fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def query_loss(logits: torch.Tensor, targets: torch.Tensor, n_labelled: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over labelled positions only: logits (B, K, V), targets (B, K). Given
    `n_labelled` (a device scalar), the sum over this batch divided by it: micro-batches of one
    optimiser step divided by the labels of the whole step add up to that step's mean exactly."""
    logits, targets = logits.flatten(0, 1).float(), targets.flatten()
    if n_labelled is None:
        return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum") / n_labelled


def pad_batch(inputs, positions, targets, batch_size: int):
    """A short (last) batch padded to `batch_size` with rows whose labels are all ignored: the loss
    and gradients are unchanged, and every batch of a segment has one shape (one graph)."""
    short = batch_size - inputs.shape[0]
    if short <= 0:
        return inputs, positions, targets
    return (
        torch.cat([inputs, inputs.new_zeros(short, inputs.shape[1])]),
        torch.cat([positions, positions.new_zeros(short, positions.shape[1])]),
        torch.cat([targets, targets.new_full((short, targets.shape[1]), IGNORE_INDEX)]),
    )


def adamw(model, lr: float, weight_decay: float, betas: tuple[float, float], device: torch.device, resident: bool):
    """AdamW over the model's decay / no-decay groups; fused on CUDA, with a device-tensor lr (and
    capturable) for a resident step, which sets the lr inside its graph."""
    return torch.optim.AdamW(
        model.param_groups(weight_decay),
        lr=torch.tensor(lr, device=device) if resident else lr,
        betas=betas,
        **({"fused": True, "capturable": resident} if device.type == "cuda" else {}),
    )


class TrainStep:
    """Optimisation steps over an epoch's batches (`run_epoch`), the learning rate of step s being `lr_at(s)`.

    Two ways to feed it. Without `segments`, batches come from the host (`batches.epoch`) and each
    step runs eagerly, or compiled (short batches then padded to the batch size by `pad_batch`, so
    a segment gives one shape). Given the training segments, it is *resident*: each epoch it loads
    the table of example indices (`Batches.index_table`) onto the device, and each step takes the
    next row, gathers that batch from the segment (rows of -1 become ignored labels) and reads its
    learning rate from a device table, both through device counters it advances. A resident step
    takes no input from the host, so with CUDA graphs it is captured on the current stream (not the
    default one: see `capture.run_stream`) once per segment, after one eager step, and each later
    step is a single replay. The graphs share one memory pool and gradients live in persistent
    buffers. The summed training loss stays on the device (`loss_sum`) and is read once per epoch.

    With `grad_accum_steps` k > 1 each step's batch is split into k micro-batches of batch_size / k
    rows, run forward and backward one after another (the memory of one micro-batch), and each
    micro-batch's summed loss is divided by the labelled positions of the whole batch (counted on the
    device first), so the accumulated gradient is the whole batch's, however the labels fall.
    """

    def __init__(
        self,
        model,
        optimizer,
        lr_at: LearningRate,
        precision: str,
        grad_clip: float | None,
        cuda_graphs: bool,
        compile: bool = False,
        batch_size: int | None = None,
        segments: list[DeviceSegment] | None = None,
        total_steps: int = 0,
        grad_accum_steps: int = 1,
    ):
        self.model, self.optimizer, self.precision, self.grad_clip = model, optimizer, precision, grad_clip
        if grad_accum_steps > 1 and (batch_size is None or batch_size % grad_accum_steps):
            raise ValueError(f"grad_accum_steps={grad_accum_steps} must divide batch_size={batch_size}")
        self.micro_batch = batch_size // grad_accum_steps if grad_accum_steps > 1 else None
        self.lr_at = lr_at
        if compile:
            limits = torch._dynamo.config
            limits.recompile_limit = max(limits.recompile_limit, COMPILED_GRAPHS_PER_PROCESS)
            limits.accumulated_recompile_limit = max(limits.accumulated_recompile_limit, COMPILED_GRAPHS_PER_PROCESS)
        self.compiled = compile
        self.loss = torch.compile(self._loss, dynamic=False) if compile else self._loss
        self.pad_to = batch_size if compile else None
        self.device = next(model.parameters()).device
        self.loss_sum = torch.zeros((), device=self.device)
        self.segments = segments
        if cuda_graphs and segments is None:
            raise ValueError("CUDA graphs need a resident step: give the training segments")
        if segments is not None:
            if batch_size is None:
                raise ValueError("a resident step needs batch_size and total_steps")
            if not all(isinstance(group["lr"], torch.Tensor) for group in optimizer.param_groups):
                raise ValueError("a resident step sets the learning rate on the device: give the optimiser a tensor lr")
            self.lrs = torch.tensor([lr_at(s) for s in range(total_steps)], dtype=torch.float32, device=self.device)
            self.table = torch.full((0, batch_size), -1, dtype=torch.long, device=self.device)
            self.row = torch.zeros(1, dtype=torch.long, device=self.device)
            self.step_index = torch.zeros(1, dtype=torch.long, device=self.device)
        self.cuda_graphs = cuda_graphs
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.warmed: set[int] = set()
        self.pool = torch.cuda.graph_pool_handle() if cuda_graphs else None

    def run_epoch(self, batches: Batches, epoch: int, first_step: int) -> None:
        """Train on epoch `epoch` of `batches`, its first step being optimiser step `first_step`; the
        summed loss of its steps is left in `loss_sum` (on the device)."""
        self.loss_sum.zero_()
        if self.segments is not None:
            for segment in self._begin_epoch(batches, epoch, first_step):
                self._resident_step(segment)
            return
        for i, (_, inputs, positions, targets) in enumerate(batches.epoch(epoch)):
            for group in self.optimizer.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(self.lr_at(first_step + i))
                else:
                    group["lr"] = self.lr_at(first_step + i)
            if self.pad_to is not None:
                inputs, positions, targets = pad_batch(inputs, positions, targets, self.pad_to)
            with CAPTURE_LOCK.eager(self.device), compiled_calls(self.compiled):
                self._step(inputs, positions, targets)

    def _loss(self, inputs, positions, targets, n_labelled=None) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return query_loss(self.model(inputs, positions), targets, n_labelled)

    def _step(self, inputs, positions, targets) -> None:
        if self.micro_batch is None:
            loss = self.loss(inputs, positions, targets)
            loss.backward()
        else:
            n_labelled = (targets != IGNORE_INDEX).sum().clamp_min(1).float()
            loss = torch.zeros((), device=self.device)
            micro_batches = zip(*(t.split(self.micro_batch) for t in (inputs, positions, targets)))
            for micro in micro_batches:
                part = self.loss(*micro, n_labelled)
                part.backward()
                loss += part.detach()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=not self.cuda_graphs)
        self.loss_sum += loss.detach()

    def _begin_epoch(self, batches: Batches, epoch: int, first_step: int) -> list[int]:
        """Load epoch `epoch`'s index table; the segment of each of its steps, in order."""
        segment_of_step, table = batches.index_table(epoch)
        with CAPTURE_LOCK.eager(self.device):
            if self.table.shape != table.shape:
                self.graphs.clear()
                self.table = torch.empty_like(table, device=self.device)
            self.table.copy_(table)
            self.row.zero_()
            self.step_index.fill_(first_step)
        return segment_of_step

    def _gather_and_step(self, segment: int) -> None:
        idx = self.table.index_select(0, self.row)[0]
        seg = self.segments[segment]
        rows = idx.clamp_min(0)
        targets = seg.targets.index_select(0, rows).masked_fill((idx < 0)[:, None], IGNORE_INDEX)
        lr = self.lrs.index_select(0, self.step_index)[0]
        for group in self.optimizer.param_groups:
            group["lr"].copy_(lr)
        self.row += 1
        self.step_index += 1
        self._step(seg.inputs.index_select(0, rows), seg.positions.index_select(0, rows), targets)

    def _resident_step(self, segment: int) -> None:
        if segment in self.graphs:
            self.graphs[segment].replay()
            return
        if not self.cuda_graphs or segment not in self.warmed:
            with CAPTURE_LOCK.eager(self.device), compiled_calls(self.compiled):
                self._gather_and_step(segment)
            self.warmed.add(segment)
            return
        self.graphs[segment], _ = capture(lambda: self._gather_and_step(segment), self.device, self.pool)
        self.graphs[segment].replay()

    def release(self) -> None:
        """Free the captured graphs (while no other thread captures)."""
        with CAPTURE_LOCK.eager(self.device):
            self.graphs.clear()
