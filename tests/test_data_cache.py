"""The segment disk cache: keyed by config, seed and generator version; safe under concurrent writers
(processes that build the same segment at once all succeed, a reader never sees a partial file, and
exactly one complete file remains)."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from zoology.data import cache_path, load_segment
from zoology.data.ar import ARConfig
from zoology.data.mqar import MQARConfig

ROOT = Path(__file__).resolve().parent.parent

WRITER = textwrap.dedent(
    """
    import hashlib, sys, time
    from pathlib import Path
    from zoology.data import cache_path, load_segment
    from zoology.data.mqar import MQARConfig

    cache, index = Path(sys.argv[1]), sys.argv[2]
    config = MQARConfig(input_seq_len=256, num_kv_pairs=64, num_examples=4000)
    (cache.parent / f"ready-{index}").touch()
    while not (cache.parent / "go").exists():
        time.sleep(0.001)
    missed = not cache_path(config, 7, cache).exists()
    segment = load_segment(config, 7, cache)
    digest = hashlib.sha256(segment.inputs.numpy().tobytes() + segment.labels.numpy().tobytes()).hexdigest()
    print(digest, "miss" if missed else "hit")
    """
)


def digest(segment) -> str:
    import hashlib

    return hashlib.sha256(segment.inputs.numpy().tobytes() + segment.labels.numpy().tobytes()).hexdigest()


def test_concurrent_writers_leave_one_valid_file(tmp_path):
    cache = tmp_path / "cache"
    writers = 2
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(cache), str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for i in range(writers)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < writers and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.01)
    config = MQARConfig(input_seq_len=256, num_kv_pairs=64, num_examples=4000)
    path = cache_path(config, 7, cache)
    (tmp_path / "go").touch()
    while not path.exists() and any(p.poll() is None for p in procs):
        time.sleep(0.0002)
    first_seen = torch.load(path, weights_only=True)  # the moment it appears, the file is complete
    assert first_seen["inputs"].shape == first_seen["labels"].shape == (4000, 256)
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err.decode()

    expected = digest(config.build(7))
    reports = [out.decode().split() for out, _ in outputs]
    assert [r[0] for r in reports] == [expected] * writers
    assert sorted(os.listdir(cache)) == [path.name], "one file, no temporary files left"
    assert digest(load_segment(config, 7, cache)) == expected
    print("writers that missed the cache:", sum(r[1] == "miss" for r in reports))


def test_cache_hit_returns_the_built_segment_and_stores_small_ints(tmp_path):
    config = ARConfig(input_seq_len=64, num_kv_pairs=8, num_examples=500, filler="random_no_kv")
    first = load_segment(config, 3, tmp_path)
    path = cache_path(config, 3, tmp_path)
    assert path.exists() and path.name.startswith("ar-L64-N8-random_no_kv-")
    stamp = path.stat().st_mtime_ns
    again = load_segment(config, 3, tmp_path)
    assert path.stat().st_mtime_ns == stamp, "a hit does not rewrite the file"
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.labels, again.labels)
    assert again.inputs.dtype == again.labels.dtype == torch.long
    assert again.slice == config.slice_fields() and again.name == first.name
    assert torch.load(path, weights_only=True)["inputs"].dtype == torch.int16
    big_vocab = MQARConfig(vocab_size=40_000, input_seq_len=64, num_kv_pairs=4, num_examples=50)
    segment = load_segment(big_vocab, 0, tmp_path)
    assert torch.load(cache_path(big_vocab, 0, tmp_path), weights_only=True)["inputs"].dtype == torch.int32
    assert torch.equal(load_segment(big_vocab, 0, tmp_path).inputs, segment.inputs)


def test_key_covers_config_seed_and_generator_version(tmp_path, monkeypatch):
    config = MQARConfig(input_seq_len=64, num_kv_pairs=4, num_examples=100)
    base = cache_path(config, 0, tmp_path)
    assert cache_path(config, 1, tmp_path) != base
    assert cache_path(config.model_copy(update={"power_a": 0.02}), 0, tmp_path) != base
    assert cache_path(MQARConfig(input_seq_len=64, num_kv_pairs=4, num_examples=100), 0, tmp_path) == base
    monkeypatch.setattr(MQARConfig, "generator_version", MQARConfig.generator_version + 1)
    assert cache_path(config, 0, tmp_path) != base


def test_unreadable_file_is_rebuilt(tmp_path):
    config = MQARConfig(input_seq_len=64, num_kv_pairs=4, num_examples=100)
    path = cache_path(config, 0, tmp_path)
    path.write_bytes(b"not a tensor file")
    with pytest.warns(UserWarning, match="does not load"):
        segment = load_segment(config, 0, tmp_path)
    assert torch.equal(segment.inputs, config.build(0).inputs)
    assert torch.equal(torch.load(path, weights_only=True)["inputs"].long(), segment.inputs)
