"""Planning a sweep: load a sweep file's configs, filter them by name, pair each with its run
directory (done or to do), and estimate the time of what is left from the runs already finished."""

from __future__ import annotations

import json
import re
import runpy
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from zoology.config import TrainConfig, describe_validation_error
from zoology.errors import UserError, warn
from zoology.runner.locks import RunLock
from zoology.runner.rundir import TRAINING_FILES, RunDir


@dataclass
class Planned:
    config: TrainConfig
    run: RunDir
    done: bool


def compile_shape_key(config: TrainConfig) -> str:
    """What a run's compiled training step depends on, as a string: the model, the training batches'
    shapes (each training segment's fields but its size), the batch size, micro-batching and the
    precision. Runs equal in it (the learning rates or seeds of one model) share compiled graphs."""
    segments = [s.model_dump(mode="json", exclude={"num_examples"}) for s in config.data.train]
    return json.dumps(
        {
            "model": config.model.model_dump(mode="json"),
            "train": segments,
            "batch_size": config.data.batch_size,
            "max_seq_len": config.data.max_seq_len,
            "grad_accum_steps": config.grad_accum_steps,
            "precision": config.precision,
        },
        sort_keys=True,
    )


def by_compile_shape(configs: list[TrainConfig]) -> dict[str, list[TrainConfig]]:
    """`configs` grouped by `compile_shape_key`, the shapes in the order of their first config."""
    shapes: dict[str, list[TrainConfig]] = {}
    for config in configs:
        shapes.setdefault(compile_shape_key(config), []).append(config)
    return shapes


def shapes_in_turn(todo: list[Planned]) -> list[Planned]:
    """`todo` reordered to take the model shapes in turn (the first run of every shape, then the second
    of every shape, ...), each shape's runs and the shapes in their first order. Runs that share a GPU
    then compile different shapes one after another while the others train, instead of all waiting
    on one shape's compile."""
    by_run = {id(p.config): p for p in todo}
    groups = list(by_compile_shape([p.config for p in todo]).values())
    rounds = max((len(g) for g in groups), default=0)
    return [by_run[id(g[i])] for i in range(rounds) for g in groups if i < len(g)]


def load_sweep(path: str | Path) -> list[TrainConfig]:
    """The `configs` list of a sweep file, deduplicated by run id (first one wins, and a warning on
    stderr says how many collapsed); a mistake in the file raises a UserError naming it."""
    configs = sweep_configs(Path(path))
    unique: dict[str, int] = {}
    for i, c in enumerate(configs):
        unique.setdefault(c.run_id, i)
    collapsed = [(i, unique[c.run_id]) for i, c in enumerate(configs) if unique[c.run_id] != i]
    if collapsed:
        i, first = collapsed[0]
        warn(
            f"{path}: {len(collapsed)} of {len(configs)} configs collapse into others with the same run id "
            f"(they differ at most in launch fields such as name or device), e.g. configs[{i}] into "
            f"configs[{first}] ({configs[first].name}): {len(unique)} run(s) remain"
        )
    return [configs[i] for i in unique.values()]


def sweep_configs(path: Path) -> list[TrainConfig]:
    """The sweep file's `configs`, checked to be a non-empty list of TrainConfig."""
    if not path.is_file():
        raise UserError(f"no sweep file {str(path)!r}" + (" (it is a directory)" if path.is_dir() else ""))
    namespace = run_sweep_file(path)
    if "configs" not in namespace:
        raise UserError(f"{path}: a sweep file must define `configs = [TrainConfig(...), ...]`")
    configs = namespace["configs"]
    if isinstance(configs, TrainConfig):
        raise UserError(f"{path}: configs is one TrainConfig ({configs.name}), not a list: write configs = [...]")
    if isinstance(configs, (str, bytes, dict)) or not isinstance(configs, Iterable):
        raise UserError(
            f"{path}: configs must be a list of TrainConfig, not {type(configs).__name__} ({configs!r:.60})"
        )
    configs = list(configs)
    if not configs:
        raise UserError(f"{path}: configs is empty: the sweep has no runs")
    for i, c in enumerate(configs):
        if not isinstance(c, TrainConfig):
            raise UserError(
                f"{path}: configs[{i}] is a {type(c).__name__} ({c!r:.60}), not a TrainConfig "
                "(build it with TrainConfig(...) or TrainConfig.model_validate(...))"
            )
    return configs


def run_sweep_file(path: Path) -> dict[str, Any]:
    """The namespace of the sweep file run as a script; an exception it raises becomes a UserError
    naming the file and the line (--debug shows the traceback)."""
    try:
        return runpy.run_path(str(path), run_name="__sweep__")
    except SyntaxError as e:
        raise UserError(f"{e.filename}:{e.lineno}: SyntaxError: {e.msg}") from e
    except ValidationError as e:
        raise UserError(describe_validation_error(e, _where(path, e))) from e
    except Exception as e:
        raise UserError(f"{_where(path, e)}: {type(e).__name__}: {e}") from e


def _where(path: Path, error: BaseException) -> str:
    """'sweeps/x.py:12': the last line of the sweep file that the error passed through."""
    resolved = path.resolve()
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == resolved]
    return f"{path}:{lines[-1]}" if lines else str(path)


def matching(configs: list[TrainConfig], pattern: str | None) -> list[TrainConfig]:
    """The configs whose name matches `pattern` (re.search); all of them without one."""
    regex = compile_filter(pattern) if pattern else None
    return [c for c in configs if regex is None or regex.search(c.name)]


def compile_filter(pattern: str) -> re.Pattern:
    """--filter's regular expression (a UserError says why it is not one)."""
    try:
        return re.compile(pattern)
    except re.error as e:
        raise UserError(f"--filter {pattern!r} is not a regular expression: {e}") from e


def no_match_message(configs: list[TrainConfig], pattern: str) -> str:
    """Why --filter chose nothing, with the names it could have matched."""
    names = [c.name for c in configs]
    shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
    return (
        f"--filter {pattern!r} matches none of the sweep's {len(names)} run names ({shown}); "
        "it is a regular expression searched anywhere in the name, e.g. '^(attention|based)-'"
    )


def plan(configs: list[TrainConfig], sweep_dir: Path, force: bool = False, pattern: str | None = None) -> list[Planned]:
    """Each matching config with its run directory under `sweep_dir`; `done` if finished and not forced."""
    planned = []
    for c in matching(configs, pattern):
        run = RunDir(sweep_dir / c.run_id)
        planned.append(Planned(c, run, run.is_finished() and not force))
    return planned


def report_damaged(planned: list[Planned]) -> list[Planned]:
    """Say on stderr which planned runs have a result.json but a file that does not read (they count as
    not finished, so this launch trains them again); returns those runs."""
    damaged = []
    for p in planned:
        why = p.run.damage(TRAINING_FILES) if p.run.result_path.exists() else None
        if why is not None:
            print(f"warning: {why}; the run counts as not finished and is trained again", file=sys.stderr)
            damaged.append(p)
    return damaged


@dataclass
class Estimate:
    seconds: float
    source: str


def estimate_seconds(todo: list[Planned], reference: list[Planned]) -> dict[str, Estimate]:
    """Expected wall time of each run in `todo`: the same run (same id) finished in another sweep
    directory beside this one, else the mean over finished `reference` runs of the same model family
    and width, else of the same family; a family with no finished run gets no estimate."""
    finished = [(p.config, p.run.result()["wall_time"]) for p in reference if p.run.is_finished()]
    estimates = {}
    for p in todo:
        c = p.config
        elsewhere = finished_elsewhere(p)
        if elsewhere is not None:
            estimates[c.run_id] = elsewhere
            continue
        family = c.model.family
        same_size = [t for f, t in finished if f.model.family == family and f.model.d_model == c.model.d_model]
        same_family = [t for f, t in finished if f.model.family == family]
        for times, like in ((same_size, "same family and width"), (same_family, "same family")):
            if times:
                estimates[c.run_id] = Estimate(sum(times) / len(times), f"mean of {len(times)} finished, {like}")
                break
    return estimates


def finished_elsewhere(p: Planned) -> Estimate | None:
    """The wall time of the same run finished in a sibling sweep directory, if there is one."""
    sweep_dir = p.run.path.parent
    if not sweep_dir.parent.is_dir():
        return None
    for other in sorted(sweep_dir.parent.iterdir()):
        run = RunDir(other / p.config.run_id)
        if other == sweep_dir or not run.is_finished():
            continue
        try:
            return Estimate(run.result()["wall_time"], f"the same run finished in {other}")
        except (OSError, ValueError, KeyError):
            continue
    return None


def print_plan(planned: list[Planned], reference: list[Planned]) -> None:
    """One line per run (done / todo / running elsewhere) and the estimated time of what is left, per
    family, from the finished runs among `reference` (the whole sweep, unfiltered) and the same runs
    finished in other sweep directories."""
    todo = [p for p in planned if not p.done]
    estimates = estimate_seconds(todo, reference)
    for p in planned:
        c, lock = p.config, RunLock(p.run.path)
        if p.run.is_finished():
            r = p.run.result()
            note = f"acc {r['last']['acc']:.3f}  {r['wall_time']:.1f}s" + ("  (rerun: --force)" if not p.done else "")
            status = "done" if p.done else "todo"
        elif lock.seems_held():
            status, note = "running", f"held by {lock.describe_holder()}"
        else:
            status = "todo"
            e = estimates.get(c.run_id)
            note = f"~{e.seconds:.0f}s ({e.source})" if e else "no estimate"
            note += "  (failed before)" if p.run.error_path.exists() else ""
        print(f"  {status:<8} {c.run_id}  {c.name:<40} {note}")
    if not todo:
        return
    print("estimated training time, one run after another (-p divides it by the runs at a time):")
    families: dict[str, list[Planned]] = {}
    for p in todo:
        families.setdefault(p.config.model.family, []).append(p)
    width = max(map(len, families))
    for family, runs in families.items():
        known = [estimates[p.config.run_id].seconds for p in runs if p.config.run_id in estimates]
        text = f"~{sum(known) / 60:.1f} min" if known else "unknown (no finished run of this family yet)"
        if known and len(known) < len(runs):
            text += f" for {len(known)}; {len(runs) - len(known)} without an estimate"
        print(f"  {family:<{width}}  {len(runs):>4} run(s)  {text}")
    known = [e.seconds for e in estimates.values()]
    total = f"~{sum(known) / 60:.1f} min for {len(known)} of {len(todo)} run(s)" if known else "unknown"
    print(f"  total: {total}")
