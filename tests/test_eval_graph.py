"""A captured evaluation (one CUDA graph per run, replayed every epoch) computes what an eager pass
computes, for every mixer, as the weights change between epochs. CUDA only (elsewhere evaluation is
the eager pass itself)."""

from __future__ import annotations

import pytest
import torch

from zoology import mixers
from zoology.config import ModelConfig
from zoology.data import DeviceSegment
from zoology.data.mqar import MQARConfig
from zoology.model import LanguageModel
from zoology.training.evaluation import Evaluation, evaluate
from zoology.training.step import autocast

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="evaluation is captured only on CUDA")


@pytest.mark.parametrize("mixer", mixers.names())
def test_captured_evaluation_matches_eager_as_weights_change(mixer):
    device = torch.device("cuda")
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=256, d_model=32, mixers=["base_conv", mixer])
    model = LanguageModel(config, max_seq_len=128).to(device)
    slices = [(32, 4, 70), (128, 16, 45)]  # short last batches too
    segments = [
        DeviceSegment.from_segment(
            MQARConfig(vocab_size=256, input_seq_len=seq, num_kv_pairs=kv, num_examples=n).build(seed=i), device
        )
        for i, (seq, kv, n) in enumerate(slices)
    ]
    evaluation = Evaluation(model, segments, batch_size=16, precision="bf16", cuda_graphs=True)
    results = []
    with torch.cuda.stream(torch.cuda.Stream()):
        for round in range(4):
            captured = evaluation()
            with autocast(device, "bf16"):
                eager = evaluate(model, segments, 16)
            assert captured["slices"] == eager["slices"], (mixer, round)
            assert captured["acc"] == eager["acc"], (mixer, round)
            assert captured["token_acc"] == eager["token_acc"], (mixer, round)
            assert captured["macro_acc"] == eager["macro_acc"], (mixer, round)
            assert captured["loss"] == pytest.approx(eager["loss"], rel=1e-6), (mixer, round)
            results.append(captured["loss"])
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p), alpha=0.05)
        assert evaluation.graph is not None
        evaluation.release()
    assert len(set(results)) == len(results), "the weights changed, so every round's loss must differ"
