import json

import pytest
import torch
from conftest import tiny_config

from zoology.config import TrainConfig
from zoology.data import IGNORE_INDEX, Batches
from zoology.model import LanguageModel
from zoology.runner.progress import epochs_note
from zoology.runner.rundir import RunDir
from zoology.runner.sequential import train_run
from zoology.training import Callbacks, train
from zoology.training.loop import load_segments
from zoology.training.schedule import learning_rates
from zoology.training.step import TrainStep, pad_batch, query_loss


def test_tiny_attention_learns_easy_mqar(tmp_path):
    config = tiny_config({"max_epochs": 8, "early_stopping_threshold": 0.97})
    result = train_run(config, RunDir(tmp_path / "run"))
    assert result["best"]["acc"] >= 0.95, result
    assert result["last"]["slices"] == {"mqar-L32-N4": result["last"]["acc"]}
    assert result["state_size"] == 32 * 2 + 2 * 32 * 32
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == result["epochs"]
    assert json.loads((tmp_path / "run" / "result.json").read_text())["run_id"] == config.run_id
    assert TrainConfig.model_validate_json((tmp_path / "run" / "config.json").read_text()) == config


def test_early_stopping_at_threshold():
    config = tiny_config({"max_epochs": 20, "early_stopping_threshold": 0.5})
    result = train(config)
    assert result["stopped_early"] and result["epochs"] < 20
    assert result["last"]["acc"] > 0.5
    note = f"{result['epochs']} of 20 epochs, stopped early: valid acc > 0.5"
    assert epochs_note(config, result) == note  # what the launcher and zoology.train print for the run


def test_loss_ignores_unlabelled_positions():
    logits = torch.randn(4, 3, 10, requires_grad=True)
    targets = torch.tensor([[1, 2, IGNORE_INDEX]] * 4)
    loss = query_loss(logits, targets)
    loss.backward()
    assert torch.all(logits.grad[:, 2] == 0)
    assert torch.all(logits.grad[:, :2].abs().sum(-1) > 0)
    changed = logits.detach().clone()
    changed[:, 2] = 100.0
    assert torch.allclose(query_loss(changed, targets), loss)


def test_model_logits_only_at_query_positions_match_full_logits():
    config = tiny_config()
    model = LanguageModel(config.model).eval()
    ids = torch.randint(0, 64, (3, 32))
    positions = torch.tensor([[5, 9, 31]] * 3)
    full = model(ids)
    picked = model(ids, positions)
    assert torch.allclose(picked, full.gather(1, positions[..., None].expand(-1, -1, 64)), atol=1e-6)


def test_no_weight_decay_on_norms_and_biases():
    model = LanguageModel(tiny_config().model)
    decay, no_decay = model.param_groups(0.1)
    assert all(p.dim() >= 2 for p in decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(("norm" in names[id(p)] or names[id(p)].endswith("bias") or p.dim() < 2) for p in no_decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_bf16_fast_path_matches_fp32_training():
    fp32 = train(tiny_config({"max_epochs": 4, "precision": "fp32"}))
    bf16 = train(tiny_config({"max_epochs": 4, "precision": "bf16"}))
    assert bf16["precision"] == "bf16" and fp32["precision"] == "fp32"
    assert bf16["run_id"] == fp32["run_id"]
    assert abs(bf16["best"]["acc"] - fp32["best"]["acc"]) <= 0.02, (fp32["best"], bf16["best"])


def test_compiled_step_with_padded_short_batches_matches_eager():
    """torch.compile and the padding of short last batches (100 = 64 + 36 rows) change nothing."""
    config = tiny_config({"max_epochs": 1, "data.train.0.num_examples": 100, "data.test.0.num_examples": 50})
    eager = train(config.set({"compile": False}))
    compiled = train(config.set({"compile": True}))
    assert compiled["compiled"] and not eager["compiled"]
    assert compiled["run_id"] == eager["run_id"]
    assert abs(compiled["last"]["loss"] - eager["last"]["loss"]) < 1e-4, (eager["last"], compiled["last"])


def test_padding_a_short_batch_keeps_loss_and_gradients():
    model = LanguageModel(tiny_config().model)
    inputs = torch.randint(0, 64, (5, 32))
    positions = torch.randint(0, 32, (5, 4))
    targets = torch.randint(0, 64, (5, 4))
    padded = pad_batch(inputs, positions, targets, 8)
    assert padded[0].shape == (8, 32) and (padded[2][5:] == IGNORE_INDEX).all()
    grads = []
    for batch in ((inputs, positions, targets), padded):
        model.zero_grad()
        loss = query_loss(model(*batch[:2]), batch[2])
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.allclose(grads[0][0], grads[1][0])
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(grads[0][1], grads[1][1]))


def test_resident_steps_train_as_batches_handed_in():
    """The GPU fast path's step (its batch gathered on the device through a table of example indices,
    its learning rate read from a device table: what a CUDA graph captures) trains as batches handed
    in from the host do, short last batches (100 = 64 + 36 rows) and shuffling included."""
    config = tiny_config({"data.train.0.num_examples": 100, "grad_clip": 1.0})
    segments = load_segments(config, "train", torch.device("cpu"))
    batches = Batches(segments, 64, shuffle=True, seed=3)
    total = 3 * len(batches)
    lr_at = learning_rates(config.lr, total, 2)
    runs = []
    for resident in (False, True):
        torch.manual_seed(0)
        model = LanguageModel(config.model)
        optimizer = torch.optim.AdamW(model.param_groups(0.1), lr=torch.tensor(config.lr))
        extra = {"segments": segments, "total_steps": total}
        step = TrainStep(model, optimizer, lr_at, "fp32", 1.0, False, batch_size=64, **(extra if resident else {}))
        losses = []
        for epoch in range(3):
            step.run_epoch(batches, epoch, epoch * len(batches))
            losses.append(float(step.loss_sum))
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
    (host_losses, host_params), (resident_losses, resident_params) = runs
    assert resident_losses == pytest.approx(host_losses, rel=1e-6)
    assert host_losses[-1] < host_losses[0]
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(host_params, resident_params))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_captured_training_and_evaluation_match_the_eager_path_on_cuda():
    config = tiny_config({"device": "cuda", "max_epochs": 3, "early_stopping_threshold": None})
    config = config.set({"data.train.0.num_examples": 1000})  # 15 full batches and a short one
    records = {}
    for graphs in (False, True):
        records[graphs] = []
        result = train(config.set({"cuda_graphs": graphs}), Callbacks(on_epoch=records[graphs].append))
        assert result["cuda_graphs"] is graphs
    for eager, captured in zip(records[False], records[True], strict=True):
        assert captured["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-3)
        assert captured["valid_acc"] == pytest.approx(eager["valid_acc"], abs=0.01)
        assert captured["valid_loss"] == pytest.approx(eager["valid_loss"], rel=1e-3)


def test_a_resident_step_needs_a_tensor_learning_rate():
    config = tiny_config()
    model = LanguageModel(config.model)
    segments = load_segments(config, "train", torch.device("cpu"))
    with pytest.raises(ValueError, match="tensor lr"):
        TrainStep(
            model,
            torch.optim.AdamW(model.parameters(), lr=1e-3),
            lambda s: 1e-3,
            "fp32",
            None,
            False,
            batch_size=64,
            segments=segments,
            total_steps=10,
        )


class Interrupted(Exception):
    pass


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_a_run_cut_short_resumes_from_its_checkpoint_and_ends_the_same(tmp_path, device):
    """On CUDA the run takes the resident, captured path; its backward sums with atomics, so
    there the records agree to rounding, not bit for bit."""
    config = tiny_config({"max_epochs": 4, "checkpoint_every": 0, "early_stopping_threshold": None, "device": device})
    whole = train_run(config, RunDir(tmp_path / "whole"))

    def cut_after_second_epoch(record):
        if record["epoch"] == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train_run(config, RunDir(tmp_path / "cut"), on_epoch=cut_after_second_epoch)
    cut = RunDir(tmp_path / "cut")
    assert cut.checkpoint_path.exists() and len(cut.metrics()) == 2 and not cut.is_finished()

    seen = []
    resumed = train_run(config, RunDir(tmp_path / "cut"), on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [0, 1, 2, 3]
    assert resumed["epochs"] == whole["epochs"] == 4
    assert not cut.checkpoint_path.exists()
    keys = ("epoch", "train_loss", "valid_loss", "valid_acc", "lr")
    expected = [{k: r[k] for k in keys} for r in RunDir(tmp_path / "whole").metrics()]
    got = [{k: r[k] for k in keys} for r in cut.metrics()]
    if device == "cpu":
        assert got == expected
        assert resumed["last"] == whole["last"]
    else:
        assert got == [
            {k: pytest.approx(v, rel=1e-4, abs=0.01 if k == "valid_acc" else 0) for k, v in r.items()} for r in expected
        ]


def test_no_checkpoint_when_checkpoint_every_is_none(tmp_path):
    checkpoints = []
    train(tiny_config({"checkpoint_every": None}), Callbacks(on_checkpoint=checkpoints.append))
    train(tiny_config({"checkpoint_every": 0}), Callbacks(on_checkpoint=checkpoints.append))
    assert len(checkpoints) == 1  # 2 epochs: only after the first, never after the last


def test_a_process_training_many_model_shapes_keeps_compiling_each():
    """Runs in one worker share the compiled loss's cache, one entry per model and batch shape; past
    dynamo's recompile limit (8 entries by default, lowered to 2 here so that 2 models x 2 batch shapes
    pass it with 4 compilations instead of 10) later runs must still train compiled, not fall back to eager."""
    from torch._dynamo.utils import counters

    counters.clear()
    segment = {"vocab_size": 64, "num_kv_pairs": 2, "num_examples": 64}
    data = {"data.train": [{**segment, "input_seq_len": 16}, {**segment, "input_seq_len": 32}]}
    with torch._dynamo.config.patch(recompile_limit=2):
        for d_model in (8, 16):
            result = train(tiny_config({**data, "model.d_model": d_model, "max_epochs": 1, "compile": True}))
            assert result["compiled"]
    assert counters["frames"]["total"] == counters["frames"]["ok"] == 4, dict(counters["frames"])


def test_learning_rate_schedules_warm_up_then_decay_to_their_floor():
    """The Based proof of concept's schedule: 1e-5 at step 0, the peak at step 200, cosine to 0 at the end;
    linear decay to a floor; and the default warm-up, which reaches the peak at its last step."""
    poc = learning_rates(1e-3, 1000, warmup_steps=200, decay="cosine", warmup_start=1e-5)
    assert poc(0) == pytest.approx(1e-5) and poc(100) == pytest.approx((1e-5 + 1e-3) / 2) and poc(200) == 1e-3
    assert poc(600) == pytest.approx(0.5e-3) and poc(1000) == pytest.approx(0.0, abs=1e-18)
    floor = learning_rates(1e-3, 100, decay="linear", min_lr=1e-4)
    assert [floor(s) for s in (0, 50, 100, 150)] == pytest.approx([1e-3, 5.5e-4, 1e-4, 1e-4])
    ramp = learning_rates(1e-3, 100, warmup_steps=4)
    assert [ramp(s) for s in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert learning_rates(1e-3, 100, decay="constant")(99) == 1e-3


def test_schedule_settings_are_checked_and_reach_the_trainer():
    with pytest.raises(ValueError, match="min_lr=0.01 must be at most lr=0.001"):
        tiny_config({"lr": 1e-3, "min_lr": 1e-2})
    with pytest.raises(ValueError, match="warmup_start_lr"):
        tiny_config({"lr": 1e-3, "warmup_start_lr": 1e-2})
    records = []
    config = tiny_config({"max_epochs": 3, "early_stopping_threshold": None, "lr_decay": "linear", "min_lr": 2e-4})
    train(config, Callbacks(on_epoch=records.append))
    steps = 3 * len(Batches(load_segments(config, "train", torch.device("cpu")), config.data.batch_size, True, 0))
    # each epoch's record holds the lr of its last step; the floor is reached after the last step
    expected = [2e-4 + (config.lr - 2e-4) * (1 - s / steps) for s in (steps // 3 - 1, 2 * steps // 3 - 1, steps - 1)]
    assert [r["lr"] for r in records] == pytest.approx(expected)
    assert config.run_id != tiny_config({"max_epochs": 3, "early_stopping_threshold": None}).run_id
