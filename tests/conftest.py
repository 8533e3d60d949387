"""Shared fixtures: real data shipped with dipy/nibabel, phantoms, a Dask cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _slurm_unreachable() -> str | None:
    """Why tests marked ``slurm`` cannot run here, or None when they can."""
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo not found)"
    try:
        answer = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "the SLURM controller does not answer (sinfo timed out)"
    if answer.returncode != 0:
        return f"the SLURM controller does not answer: {answer.stderr.strip()}"
    if not {"idle", "mixed", "allocated"} & set(answer.stdout.split()):
        return f"no SLURM node is up (states: {answer.stdout.split()})"
    return None


def pytest_collection_modifyitems(config, items):
    _skip_slurm(items)
    _skip_gpu(items)


def _skip_slurm(items) -> None:
    # CI sets SCIIMG_REQUIRE_SLURM after starting SLURM: there the tests must run
    # (and fail if SLURM is not answering), not be skipped.
    if os.environ.get("SCIIMG_REQUIRE_SLURM"):
        return
    marked = [item for item in items if "slurm" in item.keywords]
    reason = _slurm_unreachable() if marked else None
    for item in marked if reason else ():
        item.add_marker(pytest.mark.skip(reason=reason))


def _skip_gpu(items) -> None:
    """Tests marked ``gpu`` run CuPy on a GPU: skipped, saying why, without one."""
    marked = [item for item in items if "gpu" in item.keywords]
    if not marked:
        return
    from sciimg.device import gpu_problem

    reason = gpu_problem()
    for item in marked if reason else ():
        item.add_marker(pytest.mark.skip(reason=f"no GPU here: {reason}"))


@pytest.fixture(scope="session")
def small_64d():
    """dipy's bundled real dMRI: 10×10×10×65, b0 + b≈1000 (data, bval, bvec)."""
    from dipy.data import get_fnames

    return tuple(Path(p) for p in get_fnames(name="small_64D"))


@pytest.fixture(scope="session")
def small_101d():
    """dipy's bundled real dMRI: 6×10×10×102, b0 + b≈1000 (data, bval, bvec)."""
    from dipy.data import get_fnames

    return tuple(Path(p) for p in get_fnames(name="small_101D"))


@pytest.fixture(scope="session")
def example4d():
    """nibabel's bundled real 4-D NIfTI (int16, 128×96×24×2)."""
    import nibabel.testing

    return Path(nibabel.testing.data_path) / "example4d.nii.gz"


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    """A two-subject BIDS phantom, small enough for seconds-long runs."""
    from sciimg.synth import write_neuro_dataset

    root = tmp_path_factory.mktemp("phantom")
    write_neuro_dataset(
        root, subjects=2, shape=(24, 24, 14), directions=8, seed=3, snr=15
    )
    return root


@pytest.fixture(scope="session")
def client():
    """A real LocalCluster: two single-threaded worker processes."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit="3GB",
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def uneven():
    """Chunk shapes that cut a volume unevenly, to cross block boundaries."""

    def make(shape):
        return tuple(max(1, (n + 2) // 3) if n > 3 else n for n in shape)

    return make


@pytest.fixture(scope="module")
def running_cluster(tmp_path_factory):
    """A scheduler and two workers started as separate processes, as on a cluster."""
    bindir = Path(sys.executable).parent
    sched_file = tmp_path_factory.mktemp("dask") / "scheduler.json"
    procs = [
        subprocess.Popen(
            [
                bindir / "dask",
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                ":0",
                "--scheduler-file",
                sched_file,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for _ in range(300):
            if sched_file.exists() and sched_file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        procs += [
            subprocess.Popen(
                [
                    bindir / "dask",
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--memory-limit",
                    "2GB",
                    "--host",
                    "127.0.0.1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        from distributed import Client

        with Client(address) as c:
            c.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
