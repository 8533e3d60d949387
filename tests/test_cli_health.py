"""A run whose cluster is in trouble ends in bounded time: workers out of memory,
a worker paused for good, every worker lost, the scheduler lost, or a run that
goes quiet. Each case is the real ``sciimg`` command on real clusters, and ends
with one line per item on the console, ``run.json`` and the right status."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_sciimg, synth_neuro

MASK = {"median_radius": 1, "numpass": 1, "dilate": 1}
ADVICE = (
    "give workers more memory (cluster.memory_limit / --memory-limit) or lower "
    "chunk_memory"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synth_neuro(tmp_path_factory.mktemp("neuro") / "data")


def _config(where: Path, data: Path, step: dict, cluster: dict) -> Path:
    raw = {
        "pipeline": "neuro",
        "input": {"path": str(data)},
        "output": str(where / "out"),
        "steps": {"mask": MASK, "udf": step},
        "export": [],
        "cluster": cluster,
    }
    path = where / "run.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _statuses(output: Path) -> dict[str, tuple[str, str | None]]:
    report = json.loads((output / "run.json").read_text())
    return {s["id"]: (s["status"], s["error"]) for s in report["subjects"]}


def _clean(stdout: str, stderr: str) -> None:
    assert stderr == ""
    assert "Traceback" not in stdout and "distributed." not in stdout


@pytest.mark.parametrize("workers", [2, 1])
def test_a_step_over_the_memory_limit_fails_its_item(tmp_path, data, workers):
    """Its workers are restarted by their nannies; after a second restart (the
    bound sciimg sets on its own clusters) the item fails, the other is done.
    With one worker the other item's waiting tasks die with it each time: Dask
    gives up on them too, and the run computes that item again."""
    step = {"function": "tests.pipeline.udfs:hog_memory", "params": {"only": "sub-01"}}
    # The limit leaves room for a worker's libraries (Dask, dipy, numba and the
    # compiled kernels: about 320 MiB resident), so only the step's memory crosses it.
    cluster = {"n_workers": workers, "threads_per_worker": 1, "memory_limit": "600MB"}
    start = time.monotonic()
    run = run_sciimg("run", _config(tmp_path, data, step, cluster), "--no-progress")
    assert time.monotonic() - start < 120
    assert run.returncode == 1, run.stdout + run.stderr
    _clean(run.stdout, run.stderr)
    failed = [line for line in run.stdout.splitlines() if ": failed" in line]
    assert failed == [
        "sub-01: failed in step udf: workers restarted at their 600 MB memory "
        f"limit 2 times while running step udf; {ADVICE}"
    ]
    assert "sub-02: done" in run.stdout
    statuses = _statuses(tmp_path / "out")
    assert statuses["sub-02"] == ("done", None)
    assert statuses["sub-01"][0] == "failed" and ADVICE in statuses["sub-01"][1]


def test_a_worker_paused_for_good_is_restarted_then_its_items_fail(tmp_path, data):
    """Memory Dask cannot spill keeps the one worker paused: it is restarted
    after pause_timeout, and the items it held fail at the second time."""
    step = {"function": "tests.pipeline.udfs:keep_memory"}
    cluster = {"n_workers": 1, "memory_limit": "600MB", "pause_timeout": "3s"}
    start = time.monotonic()
    run = run_sciimg("run", _config(tmp_path, data, step, cluster), "--no-progress")
    assert time.monotonic() - start < 120
    assert run.returncode == 1, run.stdout + run.stderr
    _clean(run.stdout, run.stderr)
    paused = r"a worker stayed paused at \d+% of its 600 MB memory limit for 3 s with"
    assert re.search(rf"^sub-0\d: {paused} .*: restarting it; ", run.stdout, re.M)
    failed = [line for line in run.stdout.splitlines() if ": failed" in line]
    assert len(failed) == 2, run.stdout
    # A worker that holds on to its memory may also cross the nanny's terminate
    # fraction before it is seen paused for long enough: either way, its item
    # fails in bounded time with a line that says memory and what to change.
    restarted = r"workers restarted at their 600 MB memory limit \d times? while"
    for line in failed:
        assert re.match(
            rf"sub-0\d: failed( in step \w+)?: ({paused}|{restarted}) ", line
        ), line
        assert line.endswith(ADVICE) and "time" in line
    assert {s for s, _ in _statuses(tmp_path / "out").values()} == {"failed"}


def test_a_quiet_run_says_what_it_waits_for(tmp_path, data):
    step = {"function": "tests.pipeline.udfs:nap", "params": {"seconds": 8}}
    cluster = {"n_workers": 2, "memory_limit": "1GB", "quiet_warning": "2s"}
    run = run_sciimg("run", _config(tmp_path, data, step, cluster), "--no-progress")
    assert run.returncode == 0, run.stdout + run.stderr
    _clean(run.stdout, run.stderr)
    said = r"(nothing|no item) finished for (\d+) s"
    quiet = [line for line in run.stdout.splitlines() if re.match(said, line)]
    # The first after 2 s, then after twice as long each time; an item that
    # finishes starts the count again.
    seconds = [int(re.match(said, line)[2]) for line in quiet]
    assert len(seconds) >= 2 and seconds[0] in (2, 3), run.stdout
    assert all(b >= 2 * a - 1 or b in (2, 3) for a, b in itertools.pairwise(seconds)), (
        seconds
    )
    # Outputs that need only the read may be written by then.
    sleeping = r"waiting for 2 items: sub-01 \(\d/\d+ outputs; steps? [^)]*udf"
    assert any(re.search(sleeping, line) for line in quiet), quiet
    assert all(re.search(r"2 workers using \d+(-\d+)?% of 1 GB memory$", line)
               for line in quiet), quiet  # fmt: skip


@pytest.fixture
def own_cluster(tmp_path):
    """A scheduler and two workers (with their nannies) as processes of their
    own, for a test to break: ``(address, scheduler, workers)``."""
    bindir = Path(sys.executable).parent
    sched_file = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [
        subprocess.Popen(
            [bindir / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", ":0", "--scheduler-file", sched_file],
            start_new_session=True, **quiet,
        )
    ]  # fmt: skip
    try:
        assert _wait_for(lambda: sched_file.exists() and sched_file.stat().st_size, 30)
        address = json.loads(sched_file.read_text())["address"]
        procs += [
            subprocess.Popen(
                [bindir / "dask", "worker", address, "--nthreads", "1",
                 "--memory-limit", "1GB", "--host", "127.0.0.1"],
                start_new_session=True, **quiet,
            )
            for _ in range(2)
        ]  # fmt: skip
        from distributed import Client

        with Client(address) as c:
            c.wait_for_workers(2, timeout=60)
        yield address, procs[0], procs[1:]
    finally:
        for p in reversed(procs):
            _kill(p, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)
            _kill(p, signal.SIGKILL)


def _kill(proc: subprocess.Popen, sig: int) -> None:
    """Signal a process and what it started (a nanny's worker)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _run_and_break(tmp_path, data, address, victims) -> tuple[int, str, str, float]:
    """Start a run of slow steps on ``address``; once they run, kill
    ``victims``; the status, output and seconds from the kill to the end."""
    started = tmp_path / "started"
    started.mkdir()
    step = {
        "function": "tests.pipeline.udfs:nap",
        "params": {"seconds": 60, "started": str(started)},
    }
    cluster = {"kind": "scheduler", "address": address, "lost_timeout": "5s"}
    cfg = _config(tmp_path, data, step, cluster)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sciimg", "run", str(cfg), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert _wait_for(lambda: any(started.iterdir()), 120), "no step ran"
        for victim in victims:
            _kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, stdout, stderr, time.monotonic() - killed


def test_losing_every_worker_ends_the_run(tmp_path, data, own_cluster):
    address, _, workers = own_cluster
    status, stdout, stderr, seconds = _run_and_break(tmp_path, data, address, workers)
    assert status == 1, stdout + stderr
    assert seconds < 30
    _clean(stdout, stderr)
    line = (
        f"failed: no Dask worker for 5 s: every worker of the scheduler at {address} "
        "died or was stopped (killed, out of memory or out of walltime; see the "
        "workers' logs)"
    )
    failed = [x for x in stdout.splitlines() if ": failed" in x]
    assert failed == [f"sub-01: {line}", f"sub-02: {line}"], stdout
    statuses = _statuses(tmp_path / "out")
    assert {s for s, _ in statuses.values()} == {"failed"}
    assert not list((tmp_path / "out").glob(".*.tmp-*"))


def test_losing_the_scheduler_ends_the_run(tmp_path, data, own_cluster):
    address, scheduler, _ = own_cluster
    status, stdout, stderr, seconds = _run_and_break(
        tmp_path, data, address, [scheduler]
    )
    assert status == 1, stdout + stderr
    assert seconds < 30
    _clean(stdout, stderr)
    line = (
        f"failed: lost the Dask scheduler at {address} (it stopped, or the network "
        "to it failed); the work in flight is gone"
    )
    failed = [x for x in stdout.splitlines() if ": failed" in x]
    assert failed == [f"sub-01: {line}", f"sub-02: {line}"], stdout
    assert "0 done, 0 skipped, 2 failed" in stdout
    statuses = _statuses(tmp_path / "out")
    assert {s for s, _ in statuses.values()} == {"failed"}
