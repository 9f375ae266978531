"""python -m zoology.bench based: agreement of the two Based training views, their forward+backward
time, bf16-autocast accuracy, and the state elements of the Based presets."""

from __future__ import annotations

import argparse

import torch

from zoology.bench.mixers import time_mixer
from zoology.config import TrainConfig
from zoology.mixers.based import Based
from zoology.model import LanguageModel
from zoology.utils import pick_device


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b|."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def views_agreement(d_model: int, feature_dim: int, seq_len: int, dtype: torch.dtype, device) -> float:
    torch.manual_seed(0)
    mixer = Based(d_model, feature_dim=feature_dim).to(device=device, dtype=dtype)
    x = torch.randn(4, seq_len, d_model, device=device, dtype=dtype)
    with torch.no_grad():
        chunked = mixer(x)
        mixer.view = "quadratic"
        return rel_diff(chunked, mixer(x))


def bf16_autocast_error(d_model: int, feature_dim: int, seq_len: int, device) -> float:
    torch.manual_seed(0)
    mixer = Based(d_model, feature_dim=feature_dim).to(device)
    x = torch.randn(4, seq_len, d_model, device=device)
    with torch.no_grad():
        reference = mixer(x)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return rel_diff(mixer(x), reference)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench based", description=__doc__)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--feature-dim", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    d, f = args.d_model, args.feature_dim

    print(f"views agreement, max|chunked − quadratic| / max|quadratic|  (d={d}, f={f}, batch 4, x ~ N(0, 1))")
    for seq_len in (256, 1024):
        f32 = views_agreement(d, f, seq_len, torch.float32, device)
        f64 = views_agreement(d, f, seq_len, torch.float64, device)
        print(f"  l={seq_len:5d}   float32 {f32:.2e}   float64 {f64:.2e}")

    err = bf16_autocast_error(d, f, 2048, device)
    print(f"bf16 autocast vs float32 forward at l=2048: max rel diff {err:.2e}")

    print(f"forward+backward per batch of {args.batch}×{args.seq_len} at d={d}, f={f} on {device} (median)")
    for view in ("quadratic", "chunked"):
        spec = f"based:feature_dim={f}:view={view}"
        timing = time_mixer(spec, d, args.batch, args.seq_len, device, args.repeats, warmup=1, bf16=False)
        print(f"  {view:10s} {timing['median_ms']:8.1f} ms")

    print("state elements per sequence (after 64 tokens)")
    for preset in ("based", "based_full"):
        try:
            config = TrainConfig.from_yaml(preset)
        except ValueError as e:
            reason = e.errors()[0]["msg"] if hasattr(e, "errors") else str(e)
            print(f"  {preset}: cannot build here: {reason}")
            continue
        model = LanguageModel(config.model)
        for i, block in enumerate(model.blocks):
            mixer = block.mixer
            line = f"  {preset} layer {i} {type(mixer).__name__:14s} {mixer.state_size(64):7,d}"
            if isinstance(mixer, Based):
                d_model, heads, D = mixer.d_model, mixer.num_heads, mixer.feature_map.dim
                line += f"   (d + H)·D = ({d_model} + {heads})·{D} = {(d_model + heads) * D:,}"
            print(line)
        print(f"  {preset} total {model.state_size(64):,}")
    return 0
