"""`python -m zoology.bench kernels` runs end to end on the CPU (the fast routes themselves are checked on a GPU
by tests/test_fla_kernels.py)."""

from __future__ import annotations

import pytest
import torch

from zoology.bench import kernels


def test_a_row_of_errors_per_mixer_and_dtype_and_a_timing_row_per_shape(capsys):
    args = ["--route", "eager", "--d-model", "16", "--shapes", "2x20", "3x9", "--repeats", "1", "--warmup", "0"]
    assert kernels.main([*args, "--mixers", "gla", "rwkv7"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[:3] for line in lines if "errors:" in line] == [
        [m, dtype, "eager"] for m in ("gla", "rwkv7") for dtype in ("float32", "bf16")
    ]
    timed = [line.split()[:4] for line in lines if "fwd+bwd" in line]
    assert timed == [
        [m, dtype, "eager", shape]
        for m in ("gla", "rwkv7")
        for dtype in ("float32", "bf16")
        for shape in ("2x20", "3x9")
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for hosts without a GPU")
def test_fla_route_on_a_machine_without_cuda_is_a_reported_failure(capsys):
    assert kernels.main(["--route", "fla", "--mixers", "gla", "--d-model", "16", "--shapes", "2x8"]) == 1
    assert "gla              failed: ValueError: backend='fla' needs a CUDA device" in capsys.readouterr().out
