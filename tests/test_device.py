"""``device: gpu``: validated before a run, asked of every worker, and the GPU
request in batch job scripts. These run on machines without a GPU too: there,
``device: gpu`` must be one line saying what is missing, with status 2."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest
import yaml

from sciimg.device import gpu_problem
from sciimg.errors import ConfigError
from sciimg.pipeline import load_config, run_pipeline
from tests.helpers import run_sciimg

NO_GPU = gpu_problem()
needs_no_gpu = pytest.mark.skipif(NO_GPU is None, reason="this machine has a GPU")


def _config(tmp_path, **top):
    (tmp_path / "data").mkdir(exist_ok=True)
    raw = {
        "pipeline": "images",
        "input": {"path": str(tmp_path / "data")},
        "output": str(tmp_path / "out"),
        **top,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@needs_no_gpu
@pytest.mark.parametrize("how", ["config", "option"])
def test_gpu_without_one_is_one_line(tmp_path, how):
    top = {"device": "gpu"} if how == "config" else {}
    extra = ["--device", "gpu"] if how == "option" else []
    run = run_sciimg("run", _config(tmp_path, **top), *extra)
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stdout + run.stderr
    assert lines[0].endswith(f"device: gpu: {NO_GPU}")
    assert not (tmp_path / "out").exists()  # said before anything is written


def test_unknown_device(tmp_path):
    run = run_sciimg("run", _config(tmp_path, device="tpu"))
    assert run.returncode == 2
    assert "device: Input should be 'cpu' or 'gpu'" in run.stderr


@needs_no_gpu
def test_workers_elsewhere_are_asked(tmp_path, client):
    # Workers of a cluster sciimg did not start answer for themselves.
    path = _config(tmp_path, device="gpu")
    cluster = {"kind": "scheduler", "address": client.scheduler.address}
    cfg = load_config(path, replace={"cluster": cluster})
    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    nib.save(image, tmp_path / "data" / "a.nii.gz")
    asked = r"device: gpu: worker tcp://\S+ \(and 1 more workers\): "
    with pytest.raises(ConfigError, match=asked + re.escape(NO_GPU)):
        run_pipeline(cfg, client=client, log=lambda message: None)


def test_device_in_fingerprint_and_record(tmp_path):
    cpu = load_config(_config(tmp_path))
    gpu = load_config(_config(tmp_path, device="gpu"))
    assert cpu.device == "cpu" and gpu.device == "gpu"
    assert cpu.fingerprint() != gpu.fingerprint()
    assert json.loads(gpu.model_dump_json())["device"] == "gpu"


@pytest.mark.parametrize(
    ("kind", "directive"),
    [
        ("slurm", "#SBATCH --gres=gpu:1"),
        ("pbs", "#PBS -l ngpus=1"),
        ("lsf", '#BSUB -gpu "num=1"'),
    ],
)
def test_job_scripts_ask_for_a_gpu(tmp_path, kind, directive):
    cluster = {"kind": kind, "cores": 8, "memory": "32GB", "processes": 4}
    path = _config(tmp_path, device="gpu", cluster=cluster)
    worker = run_sciimg("jobscript", path, "--part", "worker")
    assert worker.returncode == 0, worker.stderr
    assert directive in worker.stdout.splitlines()
    assert "--nworkers" not in worker.stdout  # one worker per job, on its GPU
    cpu = run_sciimg(
        "jobscript", _config(tmp_path, cluster=cluster), "--part", "worker"
    )
    assert "gpu" not in cpu.stdout.lower()


def test_more_than_one_gpu_per_job(tmp_path):
    cluster = {"kind": "slurm", "gpus": 2}
    run = run_sciimg("jobscript", _config(tmp_path, device="gpu", cluster=cluster))
    assert run.returncode == 2
    assert "cluster.gpus: one GPU per worker job" in run.stderr


def test_device_recorded_by_a_run(tmp_path, client):
    import pyarrow.parquet as pq

    path = _config(tmp_path)
    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    nib.save(image, tmp_path / "data" / "a.nii.gz")
    report = run_pipeline(load_config(path), client=client, log=lambda message: None)
    assert report.ok and report.config["device"] == "cpu"
    manifest = pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()
    assert [row["device"] for row in manifest] == ["cpu"]


# ---- on a GPU -----------------------------------------------------------------

IN_PROCESS = {"n_workers": 1, "threads_per_worker": 1, "processes": False}


def _demo_run(tmp_path, pipeline: str, device: str):
    from tests.helpers import FAST_STEPS, synth_astro, synth_neuro

    data = tmp_path / "data"
    if not data.exists():
        (synth_neuro if pipeline == "neuro" else synth_astro)(data)
    steps = FAST_STEPS if pipeline == "neuro" else {"skymap": {"patch_size": 300}}
    raw = {
        "pipeline": pipeline,
        "input": {"path": str(data)},
        "output": str(tmp_path / device),
        "steps": steps,
        "device": device,
        "cluster": {**IN_PROCESS, "dashboard_address": None},
    }
    report = run_pipeline(load_config(raw), log=lambda message: None)
    assert report.ok, [s.error for s in report.subjects if s.error]
    return tmp_path / device


@pytest.mark.gpu
@pytest.mark.parametrize("pipeline", ["neuro", "astro"])
def test_demos_on_the_gpu_equal_the_cpu(tmp_path, pipeline):
    """``device: gpu`` end to end against ``device: cpu`` on the same data:
    FA within 1e-5, masks identical; co-adds within 1e-5 of their spread."""
    from sciimg.io import open_zarr

    cpu = _demo_run(tmp_path, pipeline, "cpu")
    gpu = _demo_run(tmp_path, pipeline, "gpu")
    if pipeline == "neuro":
        for store in sorted(cpu.glob("*.zarr")):
            want = {n: np.asarray(open_zarr(store, n).data) for n in ("fa", "mask")}
            other = gpu / store.name
            got = {n: np.asarray(open_zarr(other, n).data) for n in ("fa", "mask")}
            np.testing.assert_array_equal(got["mask"], want["mask"])
            assert np.nanmax(np.abs(got["fa"] - want["fa"])) <= 1e-5
        return
    patches = sorted(p for p in (cpu / "coadd.zarr").iterdir() if p.is_dir())
    assert patches
    for store in patches:
        if not store.name.startswith("patch-"):
            continue
        want = np.asarray(open_zarr(store, "image").data)
        got = np.asarray(open_zarr(gpu / "coadd.zarr" / store.name, "image").data)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        spread = float(np.nanmax(want) - np.nanmin(want))
        assert np.nanmax(np.abs(got - want)) <= 1e-5 * spread
