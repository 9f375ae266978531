"""`python -m zoology.bench share`: step time against batch size, and runs side by side."""

from __future__ import annotations

import pytest
import torch

from zoology.bench import share

TINY = ["--model", "attention", "--d-model", "16", "--vocab-size", "64", "--seq-len", "16", "--num-kv-pairs", "2"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for hosts without a GPU")
def test_without_a_gpu_it_says_it_needs_one():
    with pytest.raises(SystemExit, match="needs a GPU"):
        share.main([*TINY, "--device", "cpu"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="times CUDA graphs and streams")
def test_a_row_per_batch_and_per_number_of_runs(capsys):
    assert share.main([*TINY, "--batch", "8", "--batches", "4,8", "--runs", "1,2", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    scaling = [line for line in out.splitlines() if line.startswith("| attention | 16 |")]
    assert [row.split("|")[3].strip() for row in scaling[:2]] == ["4", "8"]
    runs = [row.split("|") for row in scaling[2:]]
    assert [r[3].strip() for r in runs] == ["1", "2"] and runs[0][5].strip() == "1.00"
