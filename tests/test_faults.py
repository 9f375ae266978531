"""Fault tolerance of the launcher, with real processes: runs that raise or die, a launcher killed
mid-sweep and launched again, two launchers on one sweep, and a lock whose holder died.

The Ray launchers here join one real Ray cluster started for the module (2 CPUs, one run per CPU), as
launchers on a cluster do (--address), rather than each starting and stopping an instance of its own
(tests/test_parallel.py and the README's -p commands start their own)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from sweep_helpers import (
    ROOT,
    check_complete,
    finish,
    kill_group,
    launch,
    ray_cluster,
    run_dir,
    tiny_config,
    trainings,
    wait_for,
    write_sweep,
)

from zoology.runner.locks import RunLock


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """The address of the module's Ray cluster, started on first use."""
    pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "token")  # the cluster's token (~/.ray/auth_token) lets launchers join it
        with ray_cluster(tmp_path_factory.mktemp("ray") / "head.log") as address:
            yield address


def mode_args(request, mode: str) -> list[str]:
    """The launcher's flags for a mode: 'ray' (-p on the module's cluster) or 'sequential' (none)."""
    if mode == "sequential":
        return []
    return ["-p", "--address", request.getfixturevalue("ray_address"), "--cpus-per-run", "1"]


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        kill_group(proc)


@pytest.mark.parametrize("mode", ["ray", "sequential"])
def test_failing_runs_are_marked_failed_and_the_sweep_goes_on(request, tmp_path, procs, mode):
    mode = mode_args(request, mode)
    record = tmp_path / "record.txt"
    faults = ["none", "oom", "exit", "sigkill"] if mode else ["none", "oom"]
    configs = [tiny_config(f, record, fault=f) for f in faults] + [tiny_config("last", record)]
    sweep = write_sweep(tmp_path / "faulty.py", configs)
    proc = launch(sweep, tmp_path / "runs", *mode)
    procs.append(proc)
    rc, out = finish(proc)

    assert rc == 1, out
    sweep_dir = tmp_path / "runs" / "faulty"
    for config in configs[:1] + configs[-1:]:
        check_complete(run_dir(sweep_dir, config), epochs=2)
    for config in configs[1:-1]:
        run = run_dir(sweep_dir, config)
        assert not run.is_finished()
        assert run.error_path.exists(), out
        assert f"FAILED  {config['name']}" in out
    oom = run_dir(sweep_dir, configs[1]).error_path.read_text()
    assert "OutOfMemoryError" in oom and "simulated" in oom
    if mode:
        for config in configs[2:-1]:
            assert "died" in run_dir(sweep_dir, config).error_path.read_text().lower()
    assert trainings(record) == {f: 1 for f in [*faults, "last"]}
    assert f"{len(faults) - 1} run(s) failed" in out


def _kill_mid_sweep(tmp_path, procs, mode: list[str], sig: int) -> None:
    record = tmp_path / "record.txt"
    tags = [str(i) for i in range(4)]
    configs = [tiny_config(t, record, sleep_s=0.5) for t in tags]
    sweep = write_sweep(tmp_path / "resume.py", configs)
    sweep_dir = tmp_path / "runs" / "resume"
    runs = [run_dir(sweep_dir, c) for c in configs]

    first = launch(sweep, tmp_path / "runs", *mode)
    procs.append(first)
    wait_for(lambda: sum(r.is_finished() for r in runs) >= 1, what="a first finished run")
    if sig == signal.SIGINT:
        os.killpg(first.pid, signal.SIGINT)  # as Ctrl-C in a terminal does
    else:
        first.send_signal(sig)
    rc, out = finish(first)
    kill_group(first)
    assert rc == (130 if sig == signal.SIGINT else -signal.SIGKILL), out
    if sig == signal.SIGINT:
        assert "launch again to resume" in out

    done_before = {t: r.result_path.read_bytes() for t, r in zip(tags, runs) if r.is_finished()}
    assert 1 <= len(done_before) < len(tags)
    trained_before = trainings(record)

    again = launch(sweep, tmp_path / "runs", *mode)
    procs.append(again)
    rc, out = finish(again)
    assert rc == 0, out
    assert f"{len(done_before)} finished, {len(tags) - len(done_before)} to run" in out
    for tag, run in zip(tags, runs):
        check_complete(run, epochs=2)
        if tag in done_before:
            assert run.result_path.read_bytes() == done_before[tag]
    trained = trainings(record)
    for tag in tags:
        expected = trained_before[tag] if tag in done_before else trained_before[tag] + 1
        assert trained[tag] == expected, (tag, trained, trained_before)
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == sorted(r.path.name for r in runs)
    assert not list(sweep_dir.glob("*/.*.tmp"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_ray_launcher_resumes_without_redoing_finished_runs(request, tmp_path, procs, sig):
    _kill_mid_sweep(tmp_path, procs, mode_args(request, "ray"), sig)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_sequential_launcher_resumes_without_redoing_finished_runs(tmp_path, procs, sig):
    _kill_mid_sweep(tmp_path, procs, [], sig)


@pytest.mark.parametrize("modes", ["sequential+sequential", "ray+sequential"])
def test_two_launchers_on_one_sweep_train_each_config_once(request, tmp_path, procs, modes):
    modes = [mode_args(request, mode) for mode in modes.split("+")]
    record = tmp_path / "record.txt"
    tags = [str(i) for i in range(6)]
    configs = [tiny_config(t, record, sleep_s=1.0, epochs=1) for t in tags]
    sweep = write_sweep(tmp_path / "shared.py", configs)
    launchers = [launch(sweep, tmp_path / "runs", *mode) for mode in modes]
    procs.extend(launchers)
    outputs = [finish(p) for p in launchers]

    assert [rc for rc, _ in outputs] == [0, 0], outputs
    assert trainings(record) == {t: 1 for t in tags}
    for config in configs:
        check_complete(run_dir(tmp_path / "runs" / "shared", config), epochs=1)
    assert any("being trained by pid" in out or "finished by another launcher" in out for _, out in outputs)


def test_a_lock_is_held_while_its_process_lives_and_freed_when_it_is_killed(tmp_path):
    run_path = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from zoology.runner.locks import RunLock\n"
            f"assert RunLock({str(run_path)!r}).acquire(); print('held', flush=True); time.sleep(600)",
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = RunLock(run_path)
        assert not lock.acquire()
        assert lock.holder()["pid"] == holder.pid
        assert f"pid {holder.pid}" in lock.describe_holder()
        assert lock.seems_held()
    finally:
        holder.kill()
        holder.wait()
    assert (run_path / ".lock").exists()  # left behind by the killed holder, but no longer held
    assert not lock.seems_held()
    assert lock.acquire()
    assert lock.holder()["pid"] == os.getpid()
    assert not RunLock(run_path).acquire()
    lock.release()
    assert not (run_path / ".lock").exists()
    again = RunLock(run_path)
    assert again.acquire()
    again.release()


@pytest.mark.parametrize("mode", ["ray", "sequential"])
def test_a_run_killed_mid_way_resumes_from_its_checkpoint(request, tmp_path, procs, mode):
    mode = mode_args(request, mode)
    epochs = 6  # killed after its third, so that the second attempt resumes mid-way
    config = tiny_config("long", tmp_path / "record.txt", epochs=epochs)
    config["data"]["train"][0]["num_examples"] = 3000
    config["checkpoint_every"] = 0
    sweep = write_sweep(tmp_path / "long.py", [config])
    run = run_dir(tmp_path / "runs" / "long", config)

    first = launch(sweep, tmp_path / "runs", *mode)
    procs.append(first)
    wait_for(lambda: run.checkpoint_path.exists() and len(run.metrics()) >= 3, what="a checkpoint after 3 epochs")
    first.send_signal(signal.SIGKILL)
    finish(first)
    kill_group(first)
    before = run.metrics()
    assert not run.is_finished() and len(before) < epochs

    again = launch(sweep, tmp_path / "runs", *mode)
    procs.append(again)
    rc, out = finish(again)
    assert rc == 0, out
    check_complete(run, epochs=epochs)
    after = run.metrics()
    assert [r["epoch"] for r in after] == list(range(epochs))
    # the epochs up to the checkpoint are the first attempt's records, timings included
    assert after[: len(before) - 1] == before[: len(before) - 1]
    assert not run.checkpoint_path.exists()
