"""End-of-epoch checkpoints as bytes: weights, optimiser, RNG and the loop's progress, so a run cut
short continues where it stopped and ends as an uninterrupted one would."""

from __future__ import annotations

import io

import torch


def pack(model, optimizer, device: torch.device, progress: dict) -> bytes:
    """The bytes of a checkpoint; `progress` holds the loop's state (history, best, selected, train_time, step)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **progress}
    state["rng"] = torch.get_rng_state()
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def model_weights(model) -> dict[str, torch.Tensor]:
    """The model's state dict copied to the CPU (what a run keeps as its weights)."""
    return {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}


def restore(data: bytes, model, optimizer, device: torch.device) -> dict:
    """Load a checkpoint into the model, the optimiser (keeping the optimiser's own learning-rate
    objects, which a resident step writes on the device) and the RNGs; returns the loop's progress."""
    saved = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    model.load_state_dict(saved["model"])
    lrs = [group["lr"] for group in optimizer.param_groups]
    optimizer.load_state_dict(saved["optimizer"])
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    torch.set_rng_state(saved["rng"].cpu())
    if device.type == "cuda" and "cuda_rng" in saved:
        torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), device)
    return {key: saved[key] for key in ("history", "best", "train_time", "step")} | {"selected": saved.get("selected")}
