"""W&B logging for real, offline: the .wandb files the launcher writes hold what it logged."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from sweep_helpers import check_complete, finish, kill_group, launch, run_dir, tiny_config, write_sweep

from zoology.config import LoggerConfig, TrainConfig


def wandb_records(path: Path) -> list:
    """Every record of a .wandb file: a 7-byte header, then a LevelDB-style log of 32 KiB blocks
    whose chunks (crc32c, length, type: 1 full, 2 first, 3 middle, 4 last) hold protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, block, pending = [], 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def read_offline_run(path: Path) -> dict:
    """The run record, history rows, final summary and exit code of one offline run."""
    out: dict = {"history": [], "summary": {}}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"] = {item.key: json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "history":
            out["history"].append(
                {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
            )
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"]["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def test_logger_is_launch_metadata_and_keeps_the_run_id(tmp_path):
    config = TrainConfig.model_validate(tiny_config("a", tmp_path / "r.txt"))
    logged = config.model_copy(update={"logger": LoggerConfig(project="p", mode="offline")})
    assert logged.run_id == config.run_id
    assert config.set({"logger": {"project": "p", "tags": ["x"]}}).run_id == config.run_id
    with pytest.raises(ValueError, match="mode"):
        LoggerConfig(project="p", mode="sometimes")


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "ray"])
def test_offline_wandb_run_files_hold_the_logged_metrics(tmp_path, parallel):
    pytest.importorskip("wandb")
    if parallel:
        pytest.importorskip("ray")
    record = tmp_path / "record.txt"
    configs = [tiny_config("ok", record, epochs=3), tiny_config("oom", record, fault="oom")]
    sweep = write_sweep(tmp_path / "logged.py", configs)
    args = ["--wandb-project", "zoology-tests", "--wandb-mode", "offline"]
    args += ["-p", "--num-cpus", "2"] if parallel else []
    proc = launch(sweep, tmp_path / "runs", *args, env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    try:
        rc, out = finish(proc)
    finally:
        kill_group(proc)
    assert rc == 1, out

    sweep_dir = tmp_path / "runs" / "logged"
    files = sorted((sweep_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2, out
    note = f"W&B offline: 2 run(s) saved under {sweep_dir / 'wandb'}; upload with `wandb sync {sweep_dir / 'wandb'}/"
    assert note in out, out
    runs = {r["run"].display_name: r for r in map(read_offline_run, files)}
    ok, oom = runs["probe-ok"], runs["probe-oom"]

    run = run_dir(sweep_dir, configs[0])
    result = check_complete(run, epochs=3)
    assert ok["run"].run_group == "logged" and ok["run"].project == "zoology-tests"
    assert ok["config"]["run_id"] == run.path.name
    assert ok["config"]["model"]["d_model"] == 16
    assert [h["valid_acc"] for h in ok["history"]] == [m["valid_acc"] for m in run.metrics()]
    assert [h["train_loss"] for h in ok["history"]] == [m["train_loss"] for m in run.metrics()]
    assert [h["_step"] for h in ok["history"]] == [0, 1, 2]
    slice_name = next(iter(result["last"]["slices"]))
    assert ok["history"][-1][f"valid_acc/{slice_name}"] == result["last"]["slices"][slice_name]
    for key in ("params", "state_size", "epochs"):
        assert ok["summary"][key] == result[key]
    assert ok["summary"]["acc_last"] == result["last"]["acc"]
    assert ok["summary"]["acc_best"] == result["best"]["acc"]
    assert ok["summary"]["status"] == "done" and ok["exit_code"] == 0

    assert oom["summary"]["status"] == "failed" and oom["exit_code"] == 1
    assert "OutOfMemoryError" in oom["summary"]["error"]
