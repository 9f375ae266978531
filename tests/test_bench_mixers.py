"""`python -m zoology.bench mixers` times every registered mixer and any named one."""

from __future__ import annotations

from zoology import mixers
from zoology.bench import mixers as bench

TINY = ["--d-model", "8", "--batch", "1", "--seq-len", "8", "--repeats", "1", "--warmup", "0"]


def test_every_registered_mixer_and_a_named_one_get_a_row(capsys):
    assert bench.main([*TINY, "--mixer", "sliding_window:window_size=2"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[3:]]
    assert rows == [*mixers.names(), "sliding_window:window_size=2"]


def test_a_failing_mixer_is_reported_and_the_exit_code_says_so(capsys):
    assert bench.main([*TINY, "--only", "attention:num_heads=3"]) == 1
    assert "failed: ValueError" in capsys.readouterr().out
