"""What sciimg promises about its outputs, each proved through the real command:
one run per output folder, an item complete only when all its outputs are,
nothing stale after a change, nothing left half-written, nothing written outside
the output folder. docs/guarantees.md cites these tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr

from tests.helpers import (
    astro_config,
    neuro_config,
    run_sciimg,
    synth_astro,
    synth_neuro,
)

STEPS = {
    "mask": {"median_radius": 1, "numpass": 1, "dilate": 1},
    "denoise": {"method": "classic"},
    "dti": {"fit_method": "WLS"},
}


def _config(where: Path, data: Path, output: Path, **changes) -> Path:
    return neuro_config(
        where, data, output, **{"steps": STEPS, "export": ["fa", "md"], **changes}
    )


def _arrays(store: Path) -> dict[str, np.ndarray]:
    """Every image of a store, as stored."""
    group = zarr.open_group(store, mode="r")
    return {name: image["0"][...] for name, image in group.groups() if "0" in image}


def _statuses(output: Path) -> dict[str, str]:
    report = json.loads((output / "run.json").read_text())
    return {s["id"]: s["status"] for s in report["subjects"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synth_neuro(tmp_path_factory.mktemp("neuro") / "data")


@pytest.fixture(scope="module")
def clean(tmp_path_factory, data) -> Path:
    """A run alone on its output folder, to compare the others with."""
    where = tmp_path_factory.mktemp("clean")
    run = run_sciimg("run", _config(where, data, where / "out"), "--no-progress")
    assert run.returncode == 0, run.stdout + run.stderr
    return where / "out"


def test_a_second_run_on_the_same_output_refuses(tmp_path, data, clean):
    """Two runs on one output: the second refuses at once, naming the first;
    the first's stores are complete and equal to a run made alone."""
    out = tmp_path / "out"
    cfg = _config(tmp_path, data, out)
    first = subprocess.Popen(
        [sys.executable, "-m", "sciimg", "run", str(cfg), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = out / ".sciimg" / "lock"
        end = time.monotonic() + 120
        while not lock.exists() and first.poll() is None and time.monotonic() < end:
            time.sleep(0.1)
        assert lock.exists(), "the first run never took its output folder"
        second = run_sciimg("run", cfg, "--no-progress", "--workers", 1)
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2, second.stdout + second.stderr
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    assert "in use by another sciimg run" in lines[0]
    assert f"pid {first.pid} on " in lines[0]
    assert first.returncode == 0, stdout + stderr
    assert not lock.exists()  # given back at the end
    for sid in ("sub-01", "sub-02"):
        mine, alone = _arrays(out / f"{sid}.zarr"), _arrays(clean / f"{sid}.zarr")
        assert mine.keys() == alone.keys() and len(mine) == 10
        for name in mine:
            np.testing.assert_array_equal(mine[name], alone[name], err_msg=name)


def test_a_lock_left_by_a_dead_run_is_taken_over(tmp_path, data):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)  # fmt: skip
    out = tmp_path / "out"
    (out / ".sciimg").mkdir(parents=True)
    import socket

    (out / ".sciimg" / "lock").write_text(
        json.dumps(
            {"host": socket.gethostname(), "pid": int(gone.stdout), "token": "x"}
        )
    )
    (out / ".sub-01.zarr.tmp-deadbeef").mkdir()  # what the dead run left
    run = run_sciimg("run", _config(tmp_path, data, out), "--no-progress")
    assert run.returncode == 0, run.stdout + run.stderr
    assert not list(out.glob(".*.tmp-*"))


def test_changed_fit_rewrites_the_exports(tmp_path, data, clean):
    """WLS, then OLS: the exported FA is the new store's, not the old file."""
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    ols = {**STEPS, "dti": {"fit_method": "OLS"}}
    run = run_sciimg("run", _config(tmp_path, data, out, steps=ols), "--no-progress")
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(_statuses(out).values()) == {"done"}
    for sid in ("sub-01", "sub-02"):
        store = zarr.open_array(out / f"{sid}.zarr" / "fa" / "0", mode="r")[...]
        exported = np.asarray(nib.load(out / sid / "fa.nii.gz").dataobj)
        np.testing.assert_array_equal(exported, store.T)
        before = np.asarray(nib.load(clean / sid / "fa.nii.gz").dataobj)
        assert not np.array_equal(exported, before)  # it did change


def test_temporaries_are_swept_at_every_level(tmp_path, data, clean):
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    left = [
        out / "sub-01" / ".md.nii.gz.tmp-0badc0de",
        out / ".sciimg" / "items" / "subject" / ".sub-02.json.tmp-0badc0de",
        out / ".run.json.tmp-0badc0de",
    ]
    for path in left:
        path.write_bytes(b"")
    run = run_sciimg("run", _config(tmp_path, data, out), "--no-progress")
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(_statuses(out).values()) == {"skipped"}
    assert not any(path.exists() for path in left)


def test_an_item_without_its_record_is_redone(tmp_path, data, clean):
    """A store and exports without the record written after them (a run killed
    between the two) do not count: the subject is computed again."""
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    (out / ".sciimg" / "items" / "subject" / "sub-02.json").unlink()
    run = run_sciimg("run", _config(tmp_path, data, out), "--no-progress")
    assert run.returncode == 0, run.stdout + run.stderr
    assert _statuses(out) == {"sub-01": "skipped", "sub-02": "done"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"export": ["fa", "/tmp/x"]}, "export: must be a simple name"),
        (
            {"steps": {**STEPS, "../up": {"function": "numpy:sqrt"}}},
            "steps.../up: a step's name must be a simple name",
        ),
    ],
    ids=["export", "step"],
)
def test_escaping_names_are_refused(tmp_path, data, change, message):
    out = tmp_path / "out"
    run = run_sciimg("run", _config(tmp_path, data, out, **change))
    assert run.returncode == 2
    assert len(run.stderr.splitlines()) == 1 and message in run.stderr
    assert not out.exists()


def test_dashboard_listens_on_loopback_only():
    import psutil

    from sciimg.pipeline import open_client

    client = open_client({"n_workers": 1, "processes": False})
    try:
        port = int(client.dashboard_link.split(":")[2].split("/")[0])
        listening = [
            c.laddr
            for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]
    finally:
        client.shutdown()
    assert listening and {a.ip for a in listening} == {"127.0.0.1"}


def test_item_times_count_this_runs_tasks_only(tmp_path, data, running_cluster):
    """On a scheduler that outlives runs, a rerun's tasks have the same keys as
    the last run's: its times must not include them."""
    out = tmp_path / "out"
    cfg = _config(tmp_path, data, out)
    for _ in range(2):
        run = run_sciimg(
            "run", cfg, "--scheduler", running_cluster, "--force", "--no-progress"
        )
        assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "run.json").read_text())
    for item in report["subjects"]:
        assert 0 < item["seconds"] <= report["wall_seconds"], item
        for step in item["steps"].values():
            assert step["span_s"] <= report["wall_seconds"]


def test_lock_on_a_shared_folder_from_another_host(tmp_path):
    """A holder on another host cannot be asked whether it lives: its refreshes
    of the lock say so, and a lock left unrefreshed is taken over."""
    from sciimg.pipeline.lock import OutputBusyError, OutputLock

    lock = tmp_path / ".sciimg" / "lock"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "t"}))
    with pytest.raises(OutputBusyError, match="pid 1 on elsewhere"):
        OutputLock(tmp_path, stale_after=60).acquire()
    old = time.time() - 120
    os.utime(lock, (old, old))
    with OutputLock(tmp_path, stale_after=60) as held:
        assert json.loads(lock.read_text())["token"] == held.token
    assert not lock.exists()


def test_a_patch_whose_picture_failed_is_redone(tmp_path):
    """The coadd and catalog piece of a patch are written, its QC picture is
    not: the patch is not complete, and the next run makes all of it again."""
    out = tmp_path / "out"
    cfg = astro_config(tmp_path, synth_astro(tmp_path / "data"), out)
    out.mkdir()
    (out / "qc").write_text("a file where the pictures' folder goes")
    first = run_sciimg("run", cfg, "--no-progress")
    assert first.returncode == 1, first.stdout + first.stderr
    report = json.loads((out / "run.json").read_text())
    patches = [s for s in report["subjects"] if s["kind"] == "patch"]
    assert patches and {s["status"] for s in patches} == {"failed"}
    assert list(out.glob("coadd.zarr/patch-*"))  # committed, yet not complete
    (out / "qc").unlink()
    again = run_sciimg("run", cfg, "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((out / "run.json").read_text())
    status = {(s["kind"], s["status"]) for s in report["subjects"]}
    assert status == {("exposure", "skipped"), ("patch", "done")}
    assert {p.stem for p in out.glob("qc/*.png")} == {s["id"] for s in patches}
