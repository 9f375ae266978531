"""The learning rate of every optimiser step: one function of the step index, read by both the
host-fed and the resident training step (which copies it into a device table).

    warm-up (steps 0 … W−1):  from `warmup_start` (default peak / W) linearly towards the peak
    decay   (W … total):      cosine, linear or none from the peak to the floor `min_lr`, reached at `total_steps`
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

LearningRate = Callable[[int], float]
"""step index (0-based) -> learning rate."""

Decay = Literal["cosine", "linear", "constant"]


def learning_rates(
    peak: float,
    total_steps: int,
    warmup_steps: int = 0,
    decay: Decay = "cosine",
    min_lr: float = 0.0,
    warmup_start: float | None = None,
) -> LearningRate:
    """lr(step): warm-up over `warmup_steps` steps, then `decay` from `peak` to `min_lr` at `total_steps`.

    Without `warmup_start` the warm-up is peak·(step + 1)/W (the peak at step W − 1); with it,
    warmup_start + (peak − warmup_start)·step/W (warmup_start at step 0, the peak at step W).
    """

    def lr(step: int) -> float:
        if step < warmup_steps:
            if warmup_start is None:
                return peak * ((step + 1) / warmup_steps)
            return warmup_start + (peak - warmup_start) * (step / warmup_steps)
        if decay == "constant":
            return peak
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        remaining = 0.5 * (1.0 + math.cos(math.pi * progress)) if decay == "cosine" else 1.0 - progress
        return min_lr + (peak - min_lr) * remaining

    return lr
