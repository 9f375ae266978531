"""Train one TrainConfig to one result: `python -m zoology.train configs/attention.yaml --set k=v`.

Data live on the device; the step has no host synchronisation (losses and accuracies accumulate on
the device and are read once per epoch); logits are computed only at labelled positions.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import zoology
from zoology.config import TrainConfig
from zoology.data import IGNORE_INDEX, Batches, DeviceSegment, load_segment, segment_seed
from zoology.model import LanguageModel
from zoology.results import RunDir
from zoology.utils import pick_device

EpochCallback = Callable[[dict], None]
COMPILE_MIN_STEPS = 5000
"""compile="auto" compiles runs of at least this many steps: compiling costs about 55 s with a cold
cache and 7 s with a warm one and saves 1–2 ms per step on an H100 (zoology.bench train)."""
COMPILED_GRAPHS_PER_PROCESS = 4096
"""Every run in a process shares the compiled loss's cache (one entry per model and batch shape);
past dynamo's default of 8 entries, later runs of a worker would silently train eagerly."""


class CaptureLock:
    """Runs that train in threads of one process (sharing a GPU) do eager CUDA work (building,
    compiling, warming up, evaluating) side by side, but capture a graph alone: anything else that
    touches the device during a capture may invalidate it. A capture waits for the eager work under
    way to end, and new eager work waits for a waiting capture. Graph replays take no part."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._eager = 0
        self._captures_waiting = 0
        self._capturing = False

    @contextlib.contextmanager
    def eager(self, device: torch.device):
        if device.type != "cuda":
            yield
            return
        with self._changed:
            self._changed.wait_for(lambda: not self._capturing and not self._captures_waiting)
            self._eager += 1
        try:
            yield
        finally:
            with self._changed:
                self._eager -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def capture(self):
        with self._changed:
            self._captures_waiting += 1
            self._changed.wait_for(lambda: not self._capturing and not self._eager)
            self._captures_waiting -= 1
            self._capturing = True
        try:
            yield
        finally:
            with self._changed:
                self._capturing = False
                self._changed.notify_all()


CAPTURE_LOCK = CaptureLock()
COMPILED_CALLS = threading.Lock()
"""Held while a thread calls a compiled loss outside a capture: while one thread compiles, dynamo
refuses a compiled call from any other ("FX to symbolically trace a dynamo-optimized function")."""
SEEDING = threading.Lock()
"""Held while a run seeds the global generator and draws its initial weights from it."""


def capture(fn: Callable[[], object], device: torch.device, pool=None) -> tuple[torch.cuda.CUDAGraph, object]:
    """fn() captured as a CUDA graph on the current stream (in `pool`, else a pool of its own) while no
    other thread of the process does eager CUDA work; (the graph, not yet replayed, and fn's result)."""
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.current_stream(device)
    with CAPTURE_LOCK.capture(), torch.cuda.graph(graph, pool, stream, capture_error_mode="thread_local"):
        result = fn()
    return graph, result


def load_segments(config: TrainConfig, split: str, device: torch.device) -> list[DeviceSegment]:
    data = config.data
    return [
        DeviceSegment.from_segment(load_segment(seg, segment_seed(data.seed, split, i), data.cache_dir), device)
        for i, seg in enumerate(getattr(data, split))
    ]


def cosine_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to 0 at `total_steps` (a factor on the base lr)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def query_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled positions only: logits (B, K, V), targets (B, K)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


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


def autocast(device: torch.device, precision: str):
    """bf16 autocast when precision is 'bf16' (mixers keep their sums and states in fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


class TrainStep:
    """One optimisation step: loss at query positions, backward, optional clipping, AdamW.

    Two ways to feed it. Called with a batch (`step(inputs, positions, targets)`, the learning rate
    set by `set_lr`), it runs eagerly, or compiled (short batches then padded to the batch size by
    `pad_batch`, so a segment gives one shape). Given the training segments and a learning-rate
    schedule instead, it is *resident*: `begin_epoch` loads the epoch's table of example indices
    (`Batches.index_table`) onto the device and `resident_step(segment)` takes the next row, gathers
    that batch from the segment (rows of -1 become ignored labels) and reads its learning rate from
    a device table, both through device counters it advances. A resident step takes no input from the
    host, so with CUDA graphs it is captured on the current stream (not the default one: see
    `run_stream`) once per segment, after one eager step, and each later step is a single replay.
    The graphs share one memory pool and gradients live in persistent buffers. The summed training
    loss stays on the device (`loss_sum`) and is read once per epoch.
    """

    def __init__(
        self,
        model,
        optimizer,
        precision: str,
        grad_clip: float | None,
        cuda_graphs: bool,
        compile: bool = False,
        batch_size: int | None = None,
        segments: list[DeviceSegment] | None = None,
        lr_at: Callable[[int], float] | None = None,
        total_steps: int = 0,
    ):
        self.model, self.optimizer, self.precision, self.grad_clip = model, optimizer, precision, grad_clip
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
            raise ValueError("CUDA graphs need a resident step: give the training segments and lr_at")
        if segments is not None:
            if lr_at is None or batch_size is None:
                raise ValueError("a resident step needs batch_size, lr_at and total_steps")
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

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def _loss(self, inputs, positions, targets) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return query_loss(self.model(inputs, positions), targets)

    def _step(self, inputs, positions, targets) -> None:
        loss = self.loss(inputs, positions, targets)
        loss.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=not self.cuda_graphs)
        self.loss_sum += loss.detach()

    def __call__(self, inputs, positions, targets) -> None:
        if self.pad_to is not None:
            inputs, positions, targets = pad_batch(inputs, positions, targets, self.pad_to)
        with CAPTURE_LOCK.eager(self.device), COMPILED_CALLS if self.compiled else contextlib.nullcontext():
            self._step(inputs, positions, targets)

    def begin_epoch(self, batches: Batches, epoch: int, first_step: int) -> list[int]:
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

    def _resident_step(self, segment: int) -> None:
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

    def resident_step(self, segment: int) -> None:
        if segment in self.graphs:
            self.graphs[segment].replay()
            return
        if not self.cuda_graphs or segment not in self.warmed:
            with CAPTURE_LOCK.eager(self.device), COMPILED_CALLS if self.compiled else contextlib.nullcontext():
                self._resident_step(segment)
            self.warmed.add(segment)
            return
        self.graphs[segment], _ = capture(lambda: self._resident_step(segment), self.device, self.pool)
        self.graphs[segment].replay()

    def release(self) -> None:
        """Free the captured graphs (while no other thread captures)."""
        with CAPTURE_LOCK.eager(self.device):
            self.graphs.clear()


def run_stream(device: torch.device):
    """Where a run's CUDA work goes: the current stream, or a new one if that is the device's default
    (graphs cannot be captured there). Runs trained by threads of one process each bring their own."""
    if device.type != "cuda" or torch.cuda.current_stream(device) != torch.cuda.default_stream(device):
        return contextlib.nullcontext()
    return torch.cuda.stream(torch.cuda.Stream(device))


@torch.no_grad()
def evaluation_sums(model: LanguageModel, segments: list[DeviceSegment], batch_size: int) -> torch.Tensor:
    """(segments, 3) float64 on the device: per segment the summed per-example accuracy (fraction of
    its queries predicted exactly), the summed loss and the number of labelled positions."""
    was_training = model.training
    model.eval()
    device = segments[0].inputs.device
    sums = torch.zeros(len(segments), 3, device=device, dtype=torch.float64)
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
            sums[i] += torch.stack([per_example.sum(), loss, labelled.sum()])
    model.train(was_training)
    return sums


def summarize_evaluation(sums: torch.Tensor, segments: list[DeviceSegment]) -> dict:
    """Overall accuracy (mean over examples), loss (mean over labelled positions) and per-slice accuracy."""
    acc_sum, loss_sum, n_labels = sums.cpu().unbind(1)
    n_examples = torch.tensor([float(len(seg)) for seg in segments], dtype=torch.float64)
    return {
        "acc": float(acc_sum.sum() / n_examples.sum()),
        "loss": float(loss_sum.sum() / n_labels.sum().clamp_min(1)),
        "slices": {seg.name: float(a / n) for seg, a, n in zip(segments, acc_sum, n_examples)},
    }


def evaluate(model: LanguageModel, segments: list[DeviceSegment], batch_size: int) -> dict:
    """Per-segment and overall accuracy and loss of `model` on `segments`; one host sync at the end."""
    return summarize_evaluation(evaluation_sums(model, segments, batch_size), segments)


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
        self.sums: torch.Tensor | None = None

    def _sums(self) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return evaluation_sums(self.model, self.segments, self.batch_size)

    def __call__(self) -> dict:
        if self.graph is not None:
            self.graph.replay()
            with CAPTURE_LOCK.eager(self.device):
                sums = self.sums.cpu()
            return summarize_evaluation(sums, self.segments)
        if not self.cuda_graphs or self.sums is None:
            with CAPTURE_LOCK.eager(self.device):
                self.sums = self._sums()
            return summarize_evaluation(self.sums, self.segments)
        self.graph, self.sums = capture(self._sums, self.device)
        return self()

    def release(self) -> None:
        with CAPTURE_LOCK.eager(self.device):
            self.graph = None
            self.sums = None


def train(
    config: TrainConfig,
    run_dir: str | Path | None = None,
    on_epoch: EpochCallback | None = None,
    resume: bytes | None = None,
    on_checkpoint: Callable[[bytes], None] | None = None,
) -> dict:
    """Train `config`; write config.json, metrics.jsonl and finally result.json into `run_dir`.

    At the end of an epoch, once `config.checkpoint_every` seconds have passed since the last one, a
    checkpoint (model, optimiser, RNG, the epochs' records) goes to `on_checkpoint` (with a run_dir:
    its checkpoint.pt). Given `resume` (with a run_dir: that file, if an unfinished attempt left it),
    training replays the checkpoint's epoch records and continues after its last epoch.
    """
    device = pick_device(config.device)
    with run_stream(device):
        return _train(config, device, run_dir, on_epoch, resume, on_checkpoint)


def _train(config, device, run_dir, on_epoch, resume, on_checkpoint) -> dict:
    started = time.perf_counter()
    run = RunDir(run_dir) if run_dir is not None else None
    if run:
        resume = resume if resume is not None else run.checkpoint()
        on_checkpoint = on_checkpoint or run.write_checkpoint
        run.start(config.model_dump(mode="json"))
    with CAPTURE_LOCK.eager(device):
        train_segments = load_segments(config, "train", device)
        test_segments = load_segments(config, "test", device)
        if len({s.name for s in test_segments}) != len(test_segments):
            raise ValueError("data.test: two test segments have the same slice; make each distinct")
        batches = Batches(train_segments, config.data.batch_size, config.data.shuffle, config.seed)

        with SEEDING:
            torch.manual_seed(config.seed)
            model = LanguageModel(config.model, max_seq_len=config.data.max_seq_len)
        model = model.to(device)
        precision = config.resolved_precision(device)
        use_graphs = device.type == "cuda" and config.cuda_graphs
        optimizer = torch.optim.AdamW(
            model.param_groups(config.weight_decay),
            lr=torch.tensor(config.lr, device=device) if use_graphs else config.lr,
            betas=config.betas,
            **({"fused": True, "capturable": use_graphs} if device.type == "cuda" else {}),
        )
        total_steps = config.max_epochs * len(batches)
        lr_factor = cosine_schedule(total_steps, config.warmup_steps)
        use_compile = config.compile is True or (
            config.compile == "auto" and device.type == "cuda" and total_steps >= COMPILE_MIN_STEPS
        )
        resident = {"segments": train_segments, "lr_at": lambda s: config.lr * lr_factor(s), "total_steps": total_steps}
        step = TrainStep(
            model,
            optimizer,
            precision,
            config.grad_clip,
            use_graphs,
            use_compile,
            config.data.batch_size,
            **(resident if use_graphs else {}),
        )
        evaluation = Evaluation(model, test_segments, config.data.test_batch_size, precision, use_graphs)
        longest_test = max(s.inputs.shape[1] for s in test_segments)
        state_size = model.state_size(longest_test)
        tokens_per_epoch = sum(s.inputs.numel() for s in train_segments)

        history: list[dict] = []
        best: dict | None = None
        train_time = 0.0
        global_step = 0
        if resume is not None:
            saved = torch.load(io.BytesIO(resume), map_location=device, weights_only=True)
            model.load_state_dict(saved["model"])
            lrs = [group["lr"] for group in optimizer.param_groups]
            optimizer.load_state_dict(saved["optimizer"])
            for group, lr in zip(optimizer.param_groups, lrs):
                group["lr"] = lr
            history, best, train_time, global_step = saved["history"], saved["best"], saved["train_time"], saved["step"]
            torch.set_rng_state(saved["rng"].cpu())
            if device.type == "cuda" and "cuda_rng" in saved:
                torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), device)
    for record in history:
        if run:
            run.append_metrics(record)
        if on_epoch:
            on_epoch({**record, "max_epochs": config.max_epochs})
    last_checkpoint = time.perf_counter()
    for epoch in range(len(history), config.max_epochs):
        model.train()
        epoch_start = time.perf_counter()
        step.loss_sum.zero_()
        if step.segments is not None:
            for segment in step.begin_epoch(batches, epoch, global_step):
                step.resident_step(segment)
            global_step += len(batches)
        else:
            for _, inputs, positions, targets in batches.epoch(epoch):
                step.set_lr(config.lr * lr_factor(global_step))
                step(inputs, positions, targets)
                global_step += 1
        loss_sum = step.loss_sum
        if device.type == "cuda":
            torch.cuda.current_stream(device).synchronize()
        epoch_time = time.perf_counter() - epoch_start
        train_time += epoch_time
        valid = evaluation()
        eval_time = time.perf_counter() - epoch_start - epoch_time
        record = {
            "epoch": epoch,
            "train_loss": float(loss_sum) / len(batches),
            "valid_loss": valid["loss"],
            "valid_acc": valid["acc"],
            "slices": valid["slices"],
            "lr": config.lr * lr_factor(global_step - 1),
            "epoch_time": epoch_time,
            "eval_time": eval_time,
            "tokens_per_s": tokens_per_epoch / epoch_time,
        }
        history.append(record)
        if best is None or record["valid_acc"] > best["valid_acc"]:
            best = record
        if run:
            run.append_metrics(record)
        threshold = config.early_stopping_threshold
        stop = threshold is not None and record["valid_acc"] > threshold
        due = config.checkpoint_every is not None and time.perf_counter() - last_checkpoint >= config.checkpoint_every
        if on_checkpoint and due and not stop and epoch + 1 < config.max_epochs:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history}
            state |= {"best": best, "train_time": train_time, "step": global_step, "rng": torch.get_rng_state()}
            if device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state(device)
            buffer = io.BytesIO()
            torch.save(state, buffer)
            on_checkpoint(buffer.getvalue())
            last_checkpoint = time.perf_counter()
        if on_epoch:
            on_epoch({**record, "max_epochs": config.max_epochs})
        if stop:
            break
    step.release()
    evaluation.release()

    last = history[-1]
    result = {
        "run_id": config.run_id,
        "name": config.name,
        "params": model.num_parameters(),
        "state_size": state_size,
        "state_seq_len": longest_test,
        "epochs": len(history),
        "stopped_early": len(history) < config.max_epochs,
        "last": {"acc": last["valid_acc"], "loss": last["valid_loss"], "slices": last["slices"]},
        "best": {"acc": best["valid_acc"], "epoch": best["epoch"], "slices": best["slices"]},
        "slices": [{"slice": s.name, **s.slice, "num_examples": len(s)} for s in test_segments],
        "wall_time": time.perf_counter() - started,
        "train_tokens_per_s": tokens_per_epoch * len(history) / train_time,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "precision": precision,
        "cuda_graphs": use_graphs,
        "compiled": use_compile,
        "version": zoology.__version__,
        "torch": torch.__version__,
    }
    if run:
        run.write_result(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a YAML TrainConfig, or the name of a preset in configs/")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override fields by dotted path, e.g. model.d_model=64 lr=3e-3",
    )
    parser.add_argument("--runs-dir", default="runs", help="results go to RUNS_DIR/<config name>/<run id>")
    args = parser.parse_args(argv)
    config = TrainConfig.from_yaml(args.config, args.overrides)
    run_dir = Path(args.runs_dir) / Path(args.config).stem / config.run_id
    print(f"{config.name}  run {config.run_id}  ->  {run_dir}")

    def report(r: dict) -> None:
        print(
            f"epoch {r['epoch'] + 1:>3}/{r['max_epochs']}  loss {r['train_loss']:.4f}  "
            f"valid acc {r['valid_acc']:.4f}  {r['tokens_per_s']:,.0f} tok/s",
            flush=True,
        )

    result = train(config, run_dir, on_epoch=report)
    print(
        f"last acc {result['last']['acc']:.4f}  best acc {result['best']['acc']:.4f}  "
        f"params {result['params']:,}  state {result['state_size']:,}  {result['wall_time']:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
