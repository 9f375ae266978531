"""An interrupted launcher ends, even when something it does not own would keep the process alive,
and leaves its run directories as any kill does: unfinished, not damaged."""

from __future__ import annotations

import signal

from sweep_helpers import finish, kill_group, launch, run_dir, tiny_config, wait_for, write_sweep


def test_sigterm_ends_a_launcher_that_a_lingering_thread_would_keep_alive(tmp_path):
    record = tmp_path / "record.txt"
    configs = [tiny_config("linger", record, fault="linger", epochs=60), tiny_config("after", record)]
    sweep = write_sweep(tmp_path / "stuck.py", configs)
    proc = launch(sweep, tmp_path / "runs", env={"ZOOLOGY_EXIT_GRACE_S": "2"})
    try:
        wait_for(lambda: (tmp_path / "record.txt.linger").exists(), what="the lingering thread")
        proc.send_signal(signal.SIGTERM)
        rc, out = finish(proc, timeout=90)  # without the grace period this never returns
    finally:
        kill_group(proc)
    assert rc == 130, out
    assert "launch again to resume" in out
    assert "the launcher did not end within 2s of the interruption; exiting" in out
    stuck, after = (run_dir(tmp_path / "runs" / "stuck", c) for c in configs)
    assert not stuck.is_finished() and stuck.damage() is None and not after.path.exists()
    assert not list((tmp_path / "runs" / "stuck").glob("*/.*.tmp"))
