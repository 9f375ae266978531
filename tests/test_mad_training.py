"""What the MAD protocol adds to the model and trainer, as general mechanisms: a SwiGLU MLP, an untied
unembedding, the bottleneck read-out, token and macro accuracy, validation segments that pick the
reported epoch; and that an attention model learns each MAD task above chance on a tiny CPU run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from pydantic import ValidationError

from zoology import papers, results
from zoology.config import ModelConfig, TrainConfig
from zoology.data import IGNORE_INDEX, DeviceSegment, segment_seed
from zoology.data.presets import MAD_TASKS, mad_setting
from zoology.model import LanguageModel, SwiGLU
from zoology.runner.rundir import RunDir
from zoology.runner.sequential import train_run
from zoology.training import Callbacks, train
from zoology.training.evaluation import evaluate
from zoology.training.loop import load_segments

NEW_DEFAULTS = {
    "model.mlp": "gelu",
    "model.mlp_width": None,
    "model.tie_embeddings": True,
    "model.readout": "tokens",
    "data.valid": [],
    "data.train.0.labels": "task",
}


def test_the_new_options_at_their_defaults_change_no_run_id_and_no_model():
    config = tiny_config({"model.mlp_expand": 2})
    assert config.set(NEW_DEFAULTS).run_id == config.run_id
    torch.manual_seed(0)
    names = [n for n, _ in LanguageModel(config.model).named_parameters()]
    assert [n for n in names if ".mlp." in n and n.startswith("blocks.0")] == [
        f"blocks.0.mlp.{i}.{p}" for i in (0, 1, 3) for p in ("weight", "bias")
    ]
    assert "unembed.weight" not in names and not any(n.startswith("readout.") for n in names)


def test_swiglu_mlp_has_its_inner_width_and_no_bias():
    config = ModelConfig(vocab_size=16, d_model=8, mixers=["attention"], mlp="swiglu", mlp_width=22)
    model = LanguageModel(config)
    norm, swiglu = model.blocks[0].mlp
    assert isinstance(swiglu, SwiGLU)
    assert [(n, tuple(p.shape)) for n, p in swiglu.named_parameters()] == [
        ("gate.weight", (22, 8)),
        ("up.weight", (22, 8)),
        ("down.weight", (8, 22)),
    ]
    x = torch.randn(2, 5, 8)
    h = norm(x)
    expected = F.silu(h @ swiglu.gate.weight.T) * (h @ swiglu.up.weight.T) @ swiglu.down.weight.T
    assert torch.allclose(model.blocks[0].mlp(x), expected, atol=1e-6)
    assert ModelConfig(vocab_size=16, d_model=8, mixers=["attention"], mlp="swiglu", mlp_expand=3).inner_width == 24
    with pytest.raises(ValidationError, match="mlp='swiglu' needs an inner width: set mlp_width"):
        ModelConfig(vocab_size=16, d_model=8, mixers=["attention"], mlp="swiglu")


def test_untied_unembedding_is_a_matrix_of_its_own():
    config = ModelConfig(vocab_size=16, d_model=8, mixers=["attention"], tie_embeddings=False)
    model = LanguageModel(config)
    ids = torch.randint(0, 16, (2, 6))
    logits = model(ids)
    assert torch.allclose(logits, model.norm_f(model.hidden_states(ids)) @ model.unembed.weight.T, atol=1e-6)
    assert model.unembed.bias is None
    logits.sum().backward()
    assert model.unembed.weight.grad.abs().sum() > 0
    tied = LanguageModel(config.model_copy(update={"tie_embeddings": True}))
    assert tied.num_parameters() == model.num_parameters() - 16 * 8


def test_bottleneck_readout_decodes_every_position_from_the_last_state():
    config = ModelConfig(vocab_size=16, d_model=16, mixers=["base_conv", "attention"], readout="bottleneck")
    torch.manual_seed(0)
    model = LanguageModel(config).eval()
    ids = torch.randint(0, 15, (3, 10))
    logits = model(ids)
    assert logits.shape == (3, 10, 16)
    positions = torch.tensor([[0, 4, 9]] * 3)
    assert torch.allclose(model(ids, positions), logits[:, [0, 4, 9]], atol=1e-6)
    changed = ids.clone()
    changed[:, -1] = 15
    assert not torch.allclose(model(changed)[:, 0], logits[:, 0]), "position 0 is decoded from the last state"
    assert not torch.allclose(logits[:, 0], logits[:, 1]), "positions differ through their sinusoidal embedding"
    plain = LanguageModel(config.model_copy(update={"readout": "tokens"})).eval()
    assert torch.allclose(plain(changed)[:, 0], plain(ids)[:, 0]), "without it position 0 sees only token 0"
    with pytest.raises(ValueError, match="readout='bottleneck' .* no token-by-token prefill or step"):
        model.prefill(ids)


def test_token_and_macro_accuracy_match_a_direct_count():
    torch.manual_seed(1)
    config = ModelConfig(vocab_size=16, d_model=16, mixers=["base_conv", "attention"], tie_embeddings=False)
    model = LanguageModel(config).eval()  # untied and untrained: predictions spread over the vocabulary
    segments = [
        DeviceSegment.from_segment(
            mad_setting("in_context_recall", input_seq_len=32).test.model_copy(update={"num_examples": 37}).build(seed),
            torch.device("cpu"),
        )
        for seed in (0, 1)
    ]
    got = evaluate(model, segments, batch_size=16)
    predicted, wanted = [], []
    for seg in segments:
        full = model(seg.inputs).argmax(-1)
        labelled = seg.targets != IGNORE_INDEX
        predicted.append(full.gather(1, seg.positions)[labelled])
        wanted.append(seg.targets[labelled])
    predicted, wanted = torch.cat(predicted), torch.cat(wanted)
    right = (predicted == wanted).double()
    per_class = [right[wanted == c].mean() for c in wanted.unique()]
    assert got["token_acc"] == pytest.approx(float(right.mean()))
    assert got["macro_acc"] == pytest.approx(float(torch.stack(per_class).mean()))
    assert len(set(wanted.tolist())) == 8 and 0 < got["token_acc"] != got["acc"], "ragged labels: the two differ"


def easy_with_validation(valid: list[dict], threshold: float | None) -> TrainConfig:
    return tiny_config({"data.valid": valid, "max_epochs": 4, "early_stopping_threshold": threshold})


def test_validation_segments_select_the_reported_epoch_and_drive_early_stopping(tmp_path):
    valid = [{"vocab_size": 64, "input_seq_len": 32, "num_kv_pairs": 4, "num_examples": 200}]
    config = easy_with_validation(valid, None)
    result = train_run(config, RunDir(tmp_path / "run"))
    history = RunDir(tmp_path / "run").metrics()
    assert len(history) == 4 and all("validation" in r for r in history)
    chosen = max(history, key=lambda r: (r["validation"]["token_acc"], -r["validation"]["loss"]))
    assert result["selected"]["epoch"] == chosen["epoch"]
    assert result["selected"]["acc"] == chosen["valid_acc"] and result["selected"]["token_acc"] == chosen["token_acc"]
    assert result["selected"]["validation"] == chosen["validation"]
    row = results.load(tmp_path).iloc[0]
    assert row["token_acc_selected"] == chosen["token_acc"] and row["selected_epoch"] == chosen["epoch"]
    assert row["acc_selected.mqar-L32-N4"] == chosen["valid_acc"]
    # the validation segment is drawn apart from the test segment of the same config
    test, held_out = (
        load_segments(config, "test", torch.device("cpu")),
        load_segments(config, "valid", torch.device("cpu")),
    )
    assert segment_seed(0, "valid", 0) != segment_seed(0, "test", 0)
    assert not torch.equal(test[0].inputs, held_out[0].inputs)

    # an easy test set alone stops the run early; unreachable validation accuracy keeps it going
    assert train(easy_with_validation([], 0.5))["stopped_early"]
    unreachable = [{**valid[0], "labels": "next_token"}]  # random filler as targets: far below 0.5
    late = train(easy_with_validation(unreachable, 0.5))
    assert late["epochs"] == 4 and late["last"]["acc"] > 0.5 > late["selected"]["validation"]["token_acc"]


TINY = {
    # task: (fields, training sequences, epochs, chance: 1 / the candidates of a labelled position)
    "in_context_recall": ({"vocab_size": 8, "input_seq_len": 16}, 2000, 2, 1 / 4),
    "noisy_recall": ({"vocab_size": 24, "input_seq_len": 16}, 2000, 3, 1 / 4),
    "fuzzy_recall": (
        {"vocab_size": 9, "input_seq_len": 24, "key_lengths": (1, 2), "value_lengths": (1, 2)},
        2000,
        2,
        1 / 4,
    ),
    "selective_copying": ({"vocab_size": 8, "input_seq_len": 16, "num_tokens_to_copy": 3}, 2000, 2, 1 / 6),
    "compression": ({"vocab_size": 6, "input_seq_len": 6}, 2000, 3, (5 * 1 / 5 + 1) / 6),
    "memorization": ({"vocab_size": 33, "input_seq_len": 16}, 256, 3, 1 / 16),
}
"""Each task at the smallest size that keeps its structure. Chance: guessing among the values
(recall), the data tokens (copying), the data tokens plus the always-known compression token
(compression), the 16 values of the map (memorization)."""


@pytest.mark.parametrize("task", MAD_TASKS)
def test_attention_learns_each_mad_task_above_chance_on_a_tiny_run(task):
    fields, train_examples, epochs, chance = TINY[task]
    setting = mad_setting(task, train_examples=train_examples, test_examples=200, valid_examples=200, **fields)
    (config,) = papers.mad_configs(TrainConfig.from_yaml("mad"), ["attention"], [setting], (1e-2,), (0.0,))
    config = config.set(
        {"max_epochs": epochs, "device": "cpu", "model.d_model": 32, "model.mlp_width": 64, "data.batch_size": 32}
    )
    result = train(config)
    assert result["selected"]["token_acc"] > 2 * chance, result["selected"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("task", ["in_context_recall", "compression"])
def test_mad_runs_on_the_captured_cuda_path_as_eagerly(task):
    """Next-token training labels, validation segments and the bottleneck read-out on the resident,
    captured (bf16) path: the same records as the eager path, and the run learns."""
    fields, train_examples, epochs, chance = TINY[task]
    setting = mad_setting(task, train_examples=train_examples, test_examples=200, valid_examples=200, **fields)
    (config,) = papers.mad_configs(TrainConfig.from_yaml("mad"), ["attention"], [setting], (1e-2,), (0.0,))
    config = config.set(
        {"max_epochs": epochs, "device": "cuda", "early_stopping_threshold": None, "data.batch_size": 32}
    )
    records = {}
    for graphs in (False, True):
        records[graphs] = []
        result = train(config.set({"cuda_graphs": graphs}), Callbacks(on_epoch=records[graphs].append))
        assert result["cuda_graphs"] is graphs and result["precision"] == "bf16"
    for eager, captured in zip(records[False], records[True], strict=True):
        assert captured["train_loss"] == pytest.approx(eager["train_loss"], rel=2e-2)
        for key in ("token_acc", "macro_acc"):
            assert captured[key] == pytest.approx(eager[key], abs=0.03)
            assert captured["validation"][key] == pytest.approx(eager["validation"][key], abs=0.03)
    assert result["selected"]["token_acc"] > 2 * chance
