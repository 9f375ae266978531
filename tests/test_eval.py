"""python -m zoology.eval: trained runs evaluated on new test slices, recorded beside their own; the
throughput bench measuring a run's kept weights."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config

from zoology import analysis, results
from zoology.bench import throughput
from zoology.config import segment_adapter
from zoology.data import DeviceSegment, load_segment
from zoology.eval import eval_seed
from zoology.runner.rundir import RunDir
from zoology.runner.sequential import train_run
from zoology.training.evaluation import evaluate

ROOT = Path(__file__).resolve().parent.parent
LONGER = "{input_seq_len: 48, num_kv_pairs: 4, num_examples: 100, vocab_size: 64}"
MORE_PAIRS = "[{input_seq_len: 32, num_kv_pairs: 8, num_examples: 100, vocab_size: 64}]"


def zoology_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zoology.eval", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Two finished runs (d_model 16 and 32) of the tiny MQAR, trained at L = 32, N = 4."""
    sweep = tmp_path_factory.mktemp("evalsweep") / "sweep"
    for d_model in (16, 32):
        config = tiny_config({"model.d_model": d_model, "max_epochs": 3, "keep_best_weights": True})
        train_run(config, RunDir(sweep / config.run_id))
    return sweep


def test_eval_records_new_slices_beside_the_runs_own(sweep):
    before = results.load(sweep)
    frontier_before = analysis.frontier_points(before)
    out = zoology_eval(str(sweep), "--test", LONGER, "--test", MORE_PAIRS)
    assert out.returncode == 0, out.stderr
    slices = results.load_slices(sweep)
    added = slices[slices["evaluated"]]
    assert sorted(added["slice"].unique()) == ["mqar-L32-N8", "mqar-L48-N4"]
    assert added["beyond_train_len"].tolist() == [s == "mqar-L48-N4" for s in added["slice"]]
    assert added["beyond_train_kv"].tolist() == [s == "mqar-L32-N8" for s in added["slice"]]
    assert added["acc_best"].isna().all()  # only the final weights were evaluated
    # what was recorded is what the kept weights score on those examples
    for run in (RunDir(p) for p in sorted(sweep.iterdir())):
        config = json.loads(run.config_path.read_text())
        segment = segment_adapter.validate_python(yaml.safe_load(LONGER))
        built = DeviceSegment.from_segment(load_segment(segment, eval_seed(config["data"]["seed"], segment)), "cpu")
        expected = evaluate(results.load_model(run.path), [built], 256)["acc"]
        row = added[(added["run_id"] == run.path.name) & (added["slice"] == "mqar-L48-N4")]
        assert row["acc_last"].item() == pytest.approx(expected, abs=1e-12)
        assert f"{config['name']:<32} final mqar-L48-N4" in out.stdout
    after = results.load(sweep)
    assert {"acc_last.mqar-L48-N4", "acc_last.mqar-L32-N8"} <= set(after.columns)
    # the frontier's default mean is still over the slices each run trained with
    assert analysis.frontier_points(after)["accuracy"].tolist() == frontier_before["accuracy"].tolist()
    assert "mqar-L48-N4" in analysis.slice_matrix(after).columns
    picked = analysis.frontier_points(after, slices=["mqar-L48-N4"])
    assert sorted(picked["accuracy"]) == pytest.approx(sorted(after["acc_last.mqar-L48-N4"]))


def test_evaluating_again_replaces_and_best_weights_fill_acc_best(sweep):
    assert zoology_eval(str(sweep), "--test", LONGER).returncode == 0
    out = zoology_eval(str(sweep), "--test", LONGER, "--weights", "best")
    assert out.returncode == 0, out.stderr
    for run in (RunDir(p) for p in sorted(sweep.iterdir())):
        keys = [(e["slice"], e["weights"]) for e in run.evaluations()]
        assert len(keys) == len(set(keys)) and ("mqar-L48-N4", "best") in keys
    slices = results.load_slices(sweep)
    row = slices[slices["evaluated"] & (slices["slice"] == "mqar-L48-N4")]
    assert row["acc_best"].notna().all() and row["acc_last"].notna().all()


def test_eval_of_one_run_directory_records_that_run_only(sweep):
    one, other = (RunDir(p) for p in sorted(sweep.iterdir()))
    shorter = "{input_seq_len: 40, num_kv_pairs: 4, num_examples: 50, vocab_size: 64}"
    out = zoology_eval(str(one.path), "--test", shorter)
    assert out.returncode == 0, out.stderr
    assert ("mqar-L40-N4", "final") in [(e["slice"], e["weights"]) for e in one.evaluations()]
    assert "mqar-L40-N4" not in [e["slice"] for e in other.evaluations()]
    slices = results.load_slices(sweep)
    assert slices[slices["slice"] == "mqar-L40-N4"]["run_id"].tolist() == [one.path.name]


def test_eval_refuses_bad_input_with_clear_errors(tmp_path, sweep):
    out = zoology_eval(str(sweep), "--test", "{input_seq_len: 33, num_kv_pairs: 4, num_examples: 10, vocab_size: 64}")
    assert out.returncode == 2 and "input_seq_len=33 must be even" in out.stderr
    out = zoology_eval(str(sweep), "--test", "{input_seq_len: 32, num_kv_pairs: 4, num_examples: 10, vocab_size: 512}")
    assert out.returncode == 1 and "vocab_size=512 exceeds the run's model.vocab_size=64" in out.stderr
    out = zoology_eval(str(tmp_path / "nowhere"), "--test", LONGER)
    assert out.returncode == 2 and "no sweep directory" in out.stderr
    unfinished = RunDir(tmp_path / "unfinished")
    unfinished.start(tiny_config().model_dump(mode="json"))
    out = zoology_eval(str(unfinished.path), "--test", LONGER)
    assert out.returncode == 1 and "has not finished" in out.stderr


def test_throughput_of_a_sweep_uses_each_runs_kept_weights_and_says_so(tmp_path, capsys):
    runs = tmp_path / "sweep"
    trained = tiny_config({"model.d_model": 16, "max_epochs": 1})
    untrained = tiny_config({"model.d_model": 32, "max_epochs": 1})
    for config in (trained, untrained):
        train_run(config, RunDir(runs / config.run_id))
    RunDir(runs / untrained.run_id).weights_path("final").unlink()
    args = ["--sweep", str(runs), "-B", "2", "-P", "8", "--decode-steps", "2", "--repeats", "1", "--warmup", "0"]
    assert throughput.main([*args, "--device", "cpu"]) == 0
    out = capsys.readouterr()
    entries = {}
    for config in (trained, untrained):
        data = json.loads((runs / config.run_id / "throughput.json").read_text())
        ((by_dtype,),) = [list(v.values()) for v in data["results"].values()]
        entries[config.run_id] = by_dtype["weights"]
    assert entries[trained.run_id] == f"trained: {runs / trained.run_id / 'model.safetensors'}"
    assert entries[untrained.run_id] == "random"
    assert "trained weights for 1 model(s), random for 1" in out.out
    assert f"weights of {runs / trained.run_id}" in out.err
