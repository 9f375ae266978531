"""Claiming runs: a launcher locks a run just before it trains it, so launchers sharing a sweep
directory never train one config twice, and skips what another launcher holds or has finished.
Whoever holds a run's lock may remove the temporary files that killed writes left in it."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from zoology.runner.locks import RunLock
from zoology.runner.plan import Planned


class Claim(Enum):
    TAKEN = "taken"
    FINISHED = "finished"
    ELSEWHERE = "elsewhere"


def claim(p: Planned, lock: RunLock, rerun_before: float | None) -> Claim:
    """Lock a run for training. A run that another launcher finished meanwhile is not retrained;
    under --force (`rerun_before` = this launch's start) only results older than the launch are."""
    if not lock.acquire():
        return Claim.ELSEWHERE
    p.run.remove_temps()
    if p.run.is_finished() and (rerun_before is None or p.run.result_path.stat().st_mtime >= rerun_before):
        lock.release()
        return Claim.FINISHED
    return Claim.TAKEN


def remove_stale_temps(planned: list[Planned]) -> int:
    """Remove the temporary files interrupted writes left in each planned run directory (finished or
    not) whose lock is free, taking the lock meanwhile; runs another launcher holds are left alone.
    Returns how many files went."""
    removed = 0
    for p in planned:
        if not p.run.path.is_dir():
            continue
        lock = RunLock(p.run.path)
        if lock.acquire():
            try:
                removed += len(p.run.remove_temps())
            finally:
                lock.release()
    return removed


def claim_in_turn(
    todo: list[Planned], rerun_before: float | None, on_skip: Callable[[Planned, Claim, str], None]
) -> Callable[[], tuple[Planned, RunLock] | None]:
    """A function giving the next run this launcher may train, locked; None when there is none.
    Runs held by another launcher are tried once more at the end (that launcher may have died);
    each run given up is reported to `on_skip(run, why, holder)`."""
    queue = list(todo)
    retried: set[str] = set()

    def next_run() -> tuple[Planned, RunLock] | None:
        while queue:
            p = queue.pop(0)
            lock = RunLock(p.run.path)
            outcome = claim(p, lock, rerun_before)
            if outcome is Claim.TAKEN:
                return p, lock
            if outcome is Claim.ELSEWHERE and p.config.run_id not in retried:
                retried.add(p.config.run_id)
                queue.append(p)
                continue
            on_skip(p, outcome, lock.describe_holder())
        return None

    return next_run
