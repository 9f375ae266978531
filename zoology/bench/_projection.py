"""The wall time of a whole sweep projected from a stratified subset of it (`bench sweep --subset stratified`).

The subset: every compile shape (`compile_shape_key`: the lrs of one model share one) trained once,
its first config for E epochs without early stopping, and for G shapes every config as the sweep has
it, after their shape run (so those runs find the shape compiled, and stop when the sweep's would).

Per shape, from its shape run: steady train s/epoch and eval s/epoch (medians over the epochs after
the first) and the cold set-up, wall − E × (train + eval): what the first run of a shape pays once
(data, model, compiling, graph capture, the first epoch's excess). From the grid runs: the warm
set-up of a later run of a shape, wall − epochs × (train + eval). The projection of a shape is its
cold set-up plus, for each of its runs, epochs × (train + eval), plus the warm set-up for every run
after the first; a run's epochs are those it took in the grid, else its max_epochs (an upper bound
where early stopping is on). Shapes without grid runs take the median warm set-up of those with.
One cold set-up per shape assumes a shape's later runs find it compiled (a worker's first runs
also pay its start-up, counted in their shapes' cold set-up).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Literal

import torch

from zoology.config import TrainConfig
from zoology.runner.plan import by_compile_shape, compile_shape_key
from zoology.runner.rundir import RunDir
from zoology.training.build import compiles, planned_steps

Part = Literal["shape", "grid"]


@dataclass(frozen=True)
class SweepRun:
    """A config of the full sweep, as much of it as the projection needs."""

    run_id: str
    shape: str
    family: str
    max_epochs: int
    can_stop_early: bool

    @classmethod
    def of(cls, config: TrainConfig) -> SweepRun:
        return cls(
            config.run_id,
            compile_shape_key(config),
            config.model.family,
            config.max_epochs,
            config.early_stopping_threshold is not None,
        )


@dataclass(frozen=True)
class MeasuredRun:
    """A finished run of the subset: its part ('shape' or 'grid'), shape, run id, and times in seconds."""

    part: Part
    shape: str
    run_id: str
    wall_time: float
    epoch_times: tuple[float, ...]
    eval_times: tuple[float, ...]

    @property
    def epochs(self) -> int:
        return len(self.epoch_times)

    @classmethod
    def read(cls, part: Part, shape: str, run: RunDir) -> MeasuredRun:
        """The times of a finished run directory: result.json's wall_time, metrics.jsonl's per-epoch times."""
        metrics = run.metrics()
        return cls(
            part,
            shape,
            run.path.name,
            run.result()["wall_time"],
            tuple(m["epoch_time"] for m in metrics),
            tuple(m["eval_time"] for m in metrics),
        )


@dataclass
class Subset:
    """What `--subset stratified` trains: one short run per shape, then every config of the grid shapes."""

    shape_runs: list[TrainConfig]
    grid_runs: list[TrainConfig]
    grid_shapes: list[str]
    shape_names: dict[str, str]
    """Each shape's first config's name, to show the shape by."""

    def configs(self) -> list[TrainConfig]:
        return [*self.shape_runs, *self.grid_runs]


def pick_grid_shapes(configs: list[TrainConfig], count: int) -> list[str]:
    """`count` shapes whose every config the subset trains: the narrowest shape (smallest d_model, the
    first in sweep order among equals) of each family, families by run count (most first, ties in
    sweep order); past the number of families, each family's next narrowest in the same order."""
    shapes = by_compile_shape(configs)
    families: dict[str, list[str]] = {}
    for key, runs in shapes.items():
        families.setdefault(runs[0].model.family, []).append(key)
    run_count = {f: sum(len(shapes[k]) for k in keys) for f, keys in families.items()}
    by_size = sorted(families, key=lambda f: -run_count[f])  # stable: ties stay in sweep order
    for family in by_size:
        families[family].sort(key=lambda k: shapes[k][0].model.d_model)  # stable as well
    rounds = max(len(keys) for keys in families.values())
    ranked = [families[f][i] for i in range(rounds) for f in by_size if i < len(families[f])]
    return ranked[:count]


def shape_run(config: TrainConfig, epochs: int, device_type: str) -> TrainConfig:
    """`config` for `epochs` epochs without early stopping, compiled exactly when the full run is
    (a short run of compile: auto would otherwise fall under the loop's step threshold)."""
    short = config.set({"max_epochs": epochs, "early_stopping_threshold": None})
    compiled = compiles(config, torch.device(device_type), planned_steps(config))
    return short.set({"compile": compiled, "name": f"{config.name}-shape-e{epochs}"})


def select_subset(configs: list[TrainConfig], shape_epochs: int, grid_shapes: int, device_type: str) -> Subset:
    """Every shape's first config as a shape run of `shape_epochs` epochs (the grid shapes' first, so
    their grid runs start warm), then every config of `grid_shapes` shapes (`pick_grid_shapes`) as it is."""
    if shape_epochs < 2:
        raise ValueError(f"--shape-epochs={shape_epochs}: the steady epoch time needs at least 2 epochs")
    if grid_shapes < 1:
        raise ValueError(f"--grid-shapes={grid_shapes}: the warm set-up of a later run needs at least 1 shape")
    shapes = by_compile_shape(configs)
    grid = pick_grid_shapes(configs, grid_shapes)
    first = [*grid, *(key for key in shapes if key not in grid)]
    shape_runs = [shape_run(shapes[key][0], shape_epochs, device_type) for key in first]
    grid_runs = [config for key in grid for config in shapes[key]]
    same = {c.run_id for c in shape_runs} & {c.run_id for c in grid_runs}
    if same:
        raise ValueError(
            f"--shape-epochs={shape_epochs}: the shape run of a grid shape would be the sweep's own run "
            f"({len(same)} of them: {shape_epochs} epochs without early stopping); give another --shape-epochs"
        )
    return Subset(
        shape_runs=shape_runs,
        grid_runs=grid_runs,
        grid_shapes=grid,
        shape_names={key: runs[0].name for key, runs in shapes.items()},
    )


@dataclass
class ShapeCost:
    """A shape's measured costs (seconds) and its projected share of the sweep."""

    shape: str
    family: str
    runs: int
    cold_setup: float
    train_per_epoch: float
    eval_per_epoch: float
    warm_setup: float
    warm_measured: bool
    epochs: list[int]
    epochs_measured: int
    projected: float

    @property
    def per_epoch(self) -> float:
        return self.train_per_epoch + self.eval_per_epoch


@dataclass
class Projection:
    """The sweep's projected time: per shape, and in all (serial: one run after another; wall: divided
    by the runs at once). `unmeasured` are shapes without a finished shape run, left out of the totals."""

    shapes: list[ShapeCost]
    runs_at_once: int
    unmeasured: list[str] = field(default_factory=list)
    upper_bound_runs: int = 0
    median_warm_setup: float = float("nan")

    @property
    def serial(self) -> float:
        return sum(s.projected for s in self.shapes)

    @property
    def wall(self) -> float:
        return self.serial / self.runs_at_once

    def families(self) -> list[dict]:
        """Per family (in sweep order): runs, shapes, Σ cold set-up, mean s/epoch (train + eval) over its
        shapes, Σ projected seconds."""
        grouped: dict[str, list[ShapeCost]] = {}
        for s in self.shapes:
            grouped.setdefault(s.family, []).append(s)
        return [
            {
                "family": family,
                "runs": sum(s.runs for s in shapes),
                "shapes": len(shapes),
                "cold_setup_s": sum(s.cold_setup for s in shapes),
                "s_per_epoch": statistics.fmean(s.per_epoch for s in shapes),
                "projected_s": sum(s.projected for s in shapes),
            }
            for family, shapes in grouped.items()
        ]


def project(sweep: list[SweepRun], measured: list[MeasuredRun], runs_at_once: int) -> Projection:
    """The projection of `sweep` from the subset's finished runs `measured` (see the module docstring)."""
    shape_runs = {m.shape: m for m in measured if m.part == "shape"}
    grid_runs = {m.run_id: m for m in measured if m.part == "grid"}
    steady = {
        key: (statistics.median(m.epoch_times[1:]), statistics.median(m.eval_times[1:]))
        for key, m in shape_runs.items()
    }
    warm_by_shape: dict[str, list[float]] = {}
    for m in grid_runs.values():
        if m.shape in steady:
            train, evaluation = steady[m.shape]
            warm_by_shape.setdefault(m.shape, []).append(m.wall_time - m.epochs * (train + evaluation))
    every_warm = [w for ws in warm_by_shape.values() for w in ws]
    median_warm = statistics.median(every_warm) if every_warm else float("nan")

    runs_by_shape: dict[str, list[SweepRun]] = {}
    for run in sweep:
        runs_by_shape.setdefault(run.shape, []).append(run)
    costs, unmeasured, upper_bound_runs = [], [], 0
    for key, runs in runs_by_shape.items():
        if key not in shape_runs:
            unmeasured.append(key)
            continue
        train, evaluation = steady[key]
        first = shape_runs[key]
        cold = first.wall_time - first.epochs * (train + evaluation)
        warm = statistics.median(warm_by_shape[key]) if key in warm_by_shape else median_warm
        epochs = [grid_runs[r.run_id].epochs if r.run_id in grid_runs else r.max_epochs for r in runs]
        upper_bound_runs += sum(1 for r in runs if r.run_id not in grid_runs and r.can_stop_early)
        later_setups = (len(runs) - 1) * warm if len(runs) > 1 else 0.0
        projected = cold + sum(epochs) * (train + evaluation) + later_setups
        costs.append(
            ShapeCost(
                shape=key,
                family=runs[0].family,
                runs=len(runs),
                cold_setup=cold,
                train_per_epoch=train,
                eval_per_epoch=evaluation,
                warm_setup=warm,
                warm_measured=key in warm_by_shape,
                epochs=epochs,
                epochs_measured=sum(1 for r in runs if r.run_id in grid_runs),
                projected=projected,
            )
        )
    return Projection(costs, runs_at_once, unmeasured, upper_bound_runs, median_warm)
