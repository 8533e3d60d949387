"""What a user sees when a run goes wrong: one line on stderr, a status that says
what happened, the details in the run's log, and the previous record untouched
when nothing ran. Each case is the real ``sciimg`` command on real files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import (
    FAST_STEPS,
    astro_config,
    ctrl_c,
    neuro_config,
    run_sciimg,
    synth_astro,
    synth_neuro,
)

STEPS = FAST_STEPS


def _config(where: Path, data: Path, output: Path, **changes) -> Path:
    return neuro_config(where, data, output, **changes)


def _one_line(run: subprocess.CompletedProcess) -> str:
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synth_neuro(tmp_path_factory.mktemp("neuro") / "data")


@pytest.fixture(scope="module")
def previous(tmp_path_factory, data) -> Path:
    """An output folder with a finished run in it."""
    where = tmp_path_factory.mktemp("previous")
    run = run_sciimg("run", _config(where, data, where / "out"), "--no-progress")
    assert run.returncode == 0, run.stdout + run.stderr
    return where / "out"


def _record(output: Path) -> bytes:
    return (output / "run.json").read_bytes()


def test_missing_input_path_is_a_config_error(tmp_path, data, previous):
    before = _record(previous)
    cfg = _config(tmp_path, tmp_path / "nosuch", previous)
    run = run_sciimg("run", cfg)
    assert run.returncode == 2
    line = _one_line(run)
    assert "input.path" in line and "nosuch does not exist" in line
    assert _record(previous) == before


def test_a_typo_is_one_error_with_a_suggestion(tmp_path, data, previous):
    before = _record(previous)
    steps = {**STEPS, "mask": {"median_raduis": 1}}
    cfg = _config(tmp_path, data, previous, steps=steps, export=["fa", "mask"])
    run = run_sciimg("run", cfg)
    assert run.returncode == 2
    line = _one_line(run)
    assert "steps.mask.median_raduis: unknown key; did you mean 'median_radius'?" in (
        line
    )
    assert _record(previous) == before


def test_output_that_is_a_file(tmp_path, data):
    (tmp_path / "out").write_text("not a folder")
    run = run_sciimg("run", _config(tmp_path, data, tmp_path / "out" / "neuro"))
    assert run.returncode == 2
    line = _one_line(run)
    assert "output:" in line and "out is a file, not a folder" in line


@contextlib.contextmanager
def _read_only(folder: Path):
    """``folder`` made unwritable; as root only an immutable flag does that."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root, and no chattr to make a folder read-only")
    made = subprocess.run(["chattr", "+i", folder], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", folder], check=True)


def test_read_only_output_folder(tmp_path, data, previous):
    before = _record(previous)
    with _read_only(previous):
        run = run_sciimg("run", _config(tmp_path, data, previous), "--force")
    assert run.returncode == 2, run.stdout + run.stderr
    line = _one_line(run)
    assert str(previous) in line and "cannot write there" in line
    assert _record(previous) == before


def test_unreachable_scheduler(tmp_path, data, previous):
    before = _record(previous)
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    cfg = _config(tmp_path, data, previous)
    run = run_sciimg("run", cfg, "--scheduler", "tcp://127.0.0.1:9", "--force", env=env)
    assert run.returncode == 2
    line = _one_line(run)
    assert "no Dask scheduler answers at tcp://127.0.0.1:9" in line
    assert _record(previous) == before


@pytest.fixture
def run_json_locked(previous):
    """run.json that cannot be replaced (an immutable file)."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr to make one file unwritable")
    record = previous / "run.json"
    made = subprocess.run(["chattr", "+i", record], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {made.stderr.strip()}")
    yield record
    subprocess.run(["chattr", "-i", record], check=True)


def test_run_json_that_cannot_be_written(tmp_path, data, previous, run_json_locked):
    before = run_json_locked.read_bytes()
    run = run_sciimg("run", _config(tmp_path, data, previous), "--force")
    assert run.returncode == 1
    line = _one_line(run)
    assert "run.json: cannot be written" in line
    log = Path(line.rsplit("traceback in ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text() and log.parent == previous / "logs"
    assert run_json_locked.read_bytes() == before


def test_damaged_file_fails_alone_without_dask_noise(tmp_path, data):
    """A file damaged inside its voxels fails on a worker: sciimg's line on the
    console, distributed's "Compute Failed" block only in the log."""
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    series = copy / "sub-02" / "dwi" / "sub-02_dwi.nii.gz"
    raw = bytearray(series.read_bytes())
    middle = len(raw) // 2  # the header and the gzip trailer stay intact
    raw[middle : middle + 256] = bytes(256)
    series.write_bytes(bytes(raw))
    out = tmp_path / "out"
    run = run_sciimg("run", _config(tmp_path, copy, out), "--no-progress")
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr == ""
    assert "sub-02: failed" in run.stdout
    assert "1 done, 0 skipped, 1 failed" in run.stdout
    assert "Compute Failed" not in run.stdout and "Traceback" not in run.stdout
    log = next((out / "logs").glob("run-*.log")).read_text()
    assert "sub-02: failed" in log and "Traceback" in log
    assert str(out / "logs") in run.stdout  # the summary says where the log is


def test_verbose_shows_the_traceback(tmp_path, data):
    steps = {**STEPS, "boom": {"function": "tests.pipeline.udfs:explode"}}
    cfg = _config(tmp_path, data, tmp_path / "out", steps=steps)
    run = run_sciimg("run", cfg, "--no-progress", "--verbose")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" in run.stderr and "negative signal" in run.stderr


def test_dying_worker_is_one_line_per_item(tmp_path, data):
    """A worker process that dies (as one killed for memory does): one line per
    item on the console; distributed's tracebacks and warnings only in the log."""
    steps = {
        "mask": STEPS["mask"],
        "crash": {"function": "tests.pipeline.udfs:crash_worker"},
    }
    cfg = _config(tmp_path, data, tmp_path / "out", steps=steps, export=[])
    # Give up at the first death, not the third, to keep the test short.
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    run = run_sciimg("run", cfg, "--no-progress", env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr == ""
    assert "Traceback" not in run.stdout and "distributed." not in run.stdout
    failures = [line for line in run.stdout.splitlines() if ": failed in" in line]
    assert len(failures) == 2 and all("KilledWorker" in f for f in failures)
    log = next((tmp_path / "out" / "logs").glob("run-*.log")).read_text()
    assert "distributed" in log and "KilledWorker" in log


#: When to press Ctrl-C: while the graphs are built (a store folder exists), or
#: once the workers write (a chunk of a store exists).
MOMENTS = {"building": ".sub-*.zarr.tmp-*", "computing": ".sub-*.zarr.tmp-*/*/0/c/*"}


@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_ctrl_c_stops_in_order_and_a_rerun_completes(tmp_path, data, moment):
    """SIGINT to the whole process group, as Ctrl-C in a terminal sends it."""
    out = tmp_path / "out"
    cfg = _config(tmp_path, data, out)
    run = ctrl_c(["run", cfg, "--no-progress"], lambda: any(out.glob(MOMENTS[moment])))
    assert run.returncode == 130, run.stdout + run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), run.stderr
    assert lines[0].endswith("not finished; rerun to continue")
    assert "Traceback" not in run.stdout + run.stderr
    report = json.loads((out / "run.json").read_text())
    statuses = {s["id"]: s["status"] for s in report["subjects"]}
    assert "interrupted" in statuses.values()
    assert set(statuses.values()) <= {"done", "interrupted"}
    assert not list(out.glob(".*.tmp-*"))  # no unfinished store is left
    again = run_sciimg("run", cfg, "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((out / "run.json").read_text())
    assert {s["status"] for s in report["subjects"]} <= {"done", "skipped"}


def test_ctrl_c_during_coaddition(tmp_path):
    """The astronomy run: calibrated exposures are kept, patches not finished are
    marked interrupted, and a rerun completes them from the kept exposures."""
    out = tmp_path / "out"
    cfg = astro_config(tmp_path, synth_astro(tmp_path / "data"), out)
    run = ctrl_c(
        ["run", cfg, "--no-progress"], lambda: any(out.glob("coadd.zarr/.patch-*"))
    )
    assert run.returncode == 130, run.stdout + run.stderr
    assert len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith("interrupted: ")
    report = json.loads((out / "run.json").read_text())
    kinds = {(s["kind"], s["status"]) for s in report["subjects"]}
    assert ("exposure", "done") in kinds and ("patch", "interrupted") in kinds
    assert not list(out.rglob(".*.tmp-*"))
    again = run_sciimg("run", cfg, "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((out / "run.json").read_text())
    statuses = {(s["kind"], s["status"]) for s in report["subjects"]}
    assert statuses == {("exposure", "skipped"), ("patch", "done")}
    assert (out / "catalog.parquet").is_file() and list(out.glob("qc/*.png"))
