"""python -m zoology.bench based: agreement of the Based training views, the fused polynomial-attention
kernels against their float64 reference (where they run: CUDA), forward+backward time of every view
(Based and ReBased, float32 and bf16 autocast), bf16-autocast accuracy, and the state elements of the
Based presets.

On a GPU: `python -m zoology.bench based` (d = 128, f = 16, batch 256, l = 256 and 1024). On a CPU the
defaults shrink to batch 8, l = 256, and the fused view is left out.
"""

from __future__ import annotations

import argparse

import torch

from zoology.bench.mixers import time_mixer
from zoology.config import TrainConfig
from zoology.mixers.based import TAYLOR_COEFFS, Based
from zoology.mixers.rebased import SQUARE_COEFFS
from zoology.model import LanguageModel
from zoology.ops import poly_attention
from zoology.utils import pick_device


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b|."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def views_agreement(
    d_model: int, feature_dim: int, seq_len: int, dtype: torch.dtype, device, view: str = "chunked"
) -> float:
    """max |view − quadratic| / max |quadratic| of Based's forward on x ~ N(0, 1), batch 4."""
    torch.manual_seed(0)
    mixer = Based(d_model, feature_dim=feature_dim, view=view).to(device=device, dtype=dtype)
    x = torch.randn(4, seq_len, d_model, device=device, dtype=dtype)
    with torch.no_grad():
        y = mixer(x)
        mixer.view = "quadratic"
        return rel_diff(y, mixer(x))


def bf16_autocast_error(d_model: int, feature_dim: int, seq_len: int, device, view: str = "chunked") -> float:
    """max rel diff of Based's forward under bf16 autocast against float32 (chunked view)."""
    torch.manual_seed(0)
    mixer = Based(d_model, feature_dim=feature_dim, view=view).to(device)
    x = torch.randn(4, seq_len, d_model, device=device)
    with torch.no_grad():
        mixer.view = "chunked"
        reference = mixer(x)
        mixer.view = view
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return rel_diff(mixer(x), reference)


def kernel_errors(coeffs, feature_dim: int, d_h: int, seq_len: int, dtype: torch.dtype, device) -> dict[str, float]:
    """max rel error of the fused kernels' y, den, dq, dk, dv against the float64 reference on the same
    inputs (batch 2, 2 heads, q, k, v ~ N(0, 1); ReBased's coefficients with a random offset tensor)."""
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 2, seq_len, feature_dim, generator=generator) for _ in range(2))
    v, dy = (torch.randn(2, 2, seq_len, d_h, generator=generator) for _ in range(2))
    q, k, v, dy = (t.to(device=device, dtype=dtype) for t in (q, k, v, dy))
    offset = 1e-12 if coeffs == TAYLOR_COEFFS else torch.rand(2, 2, seq_len, generator=generator).to(device)
    scale = feature_dim**-0.5
    results = []
    for fn, cast in (
        (poly_attention.causal_poly_attention, None),
        (poly_attention.reference_poly_attention, torch.float64),
    ):
        leaves = [t.detach().to(cast or t.dtype).requires_grad_() for t in (q, k, v)]
        y, den = fn(*leaves, coeffs, scale, offset)
        y.backward(dy.to(y.dtype))
        results.append((y, den, *(t.grad for t in leaves)))
    return {name: rel_diff(a.detach(), b.detach()) for name, a, b in zip(("y", "den", "dq", "dk", "dv"), *results)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench based", description=__doc__)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--feature-dim", type=int, default=16)
    parser.add_argument("--batch", type=int, default=None, help="default 256 on CUDA, 8 on the CPU")
    parser.add_argument(
        "--seq-lens", type=int, nargs="+", default=None, help="default 256 1024 on CUDA, 256 on the CPU"
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, …")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    batch = args.batch or (256 if on_gpu else 8)
    seq_lens = args.seq_lens or ([256, 1024] if on_gpu else [256])
    d, f = args.d_model, args.feature_dim
    fused = poly_attention.available(torch.empty(0, device=device))
    where = torch.cuda.get_device_name(device) if on_gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(f"on {where}, torch {torch.__version__}; fused kernels {'available' if fused else 'not available here'}")

    print(f"views agreement, max|view − quadratic| / max|quadratic|  (d={d}, f={f}, batch 4, x ~ N(0, 1))")
    for seq_len in (256, 1024):
        f32 = views_agreement(d, f, seq_len, torch.float32, device)
        f64 = views_agreement(d, f, seq_len, torch.float64, device)
        line = f"  l={seq_len:5d}   chunked float32 {f32:.2e}   chunked float64 {f64:.2e}"
        if fused:
            line += f"   fused float32 {views_agreement(d, f, seq_len, torch.float32, device, view='fused'):.2e}"
        print(line)

    if fused:
        print(f"fused kernels vs float64 reference, max rel error (batch 2, 2 heads, f={f}, d_h={d})")
        for label, coeffs in (("based", TAYLOR_COEFFS), ("rebased", SQUARE_COEFFS)):
            for seq_len in (256, 1024):
                for dtype in (torch.float32, torch.bfloat16):
                    errors = kernel_errors(coeffs, f, d, seq_len, dtype, device)
                    cells = "  ".join(f"{name} {err:.1e}" for name, err in errors.items())
                    print(f"  {label:8s} l={seq_len:5d} {str(dtype).removeprefix('torch.'):9s} {cells}")

    for view in ("chunked", "fused") if fused else ("chunked",):
        err = bf16_autocast_error(d, f, 2048, device, view)
        print(f"bf16 autocast ({view}) vs float32 (chunked) forward at l=2048: max rel diff {err:.2e}")

    print(
        f"forward+backward per batch of {batch} at d={d}, f={f} on {device} "
        f"(median of {args.repeats} after {args.warmup} warm-up, ms)"
    )
    views = {"based": ("quadratic", "chunked", "fused"), "rebased": ("chunked", "fused")}
    for seq_len in seq_lens:
        for name, mixer_views in views.items():
            for view in mixer_views:
                if view == "fused" and not fused:
                    continue
                spec = f"{name}:feature_dim={f}:view={view}"
                cells = []
                for bf16 in (False, True):
                    try:
                        timing = time_mixer(spec, d, batch, seq_len, device, args.repeats, args.warmup, bf16=bf16)
                        cells.append(f"{timing['median_ms']:8.2f}")
                    except torch.OutOfMemoryError:
                        cells.append(f"{'OOM':>8s}")
                        torch.cuda.empty_cache()
                print(f"  l={seq_len:5d} {name:8s} {view:10s} float32 {cells[0]}   bf16 autocast {cells[1]}")

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
