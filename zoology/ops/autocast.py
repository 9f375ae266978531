"""`autocast_off`: ops that compute in the dtype they are given (float32, or float64), also inside autocast."""

from __future__ import annotations

import functools

import torch


def autocast_off(fn):
    """Run fn with autocast off on its first tensor argument's device, so it computes in the dtype given."""

    @functools.wraps(fn)
    def wrapped(first, *args, **kwargs):
        with torch.autocast(first.device.type, enabled=False):
            return fn(first, *args, **kwargs)

    return wrapped
