"""The ``sciimg`` command as a user runs it: a real process, a real cluster."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from dipy.reconst.dti import TensorModel
from dipy.segment.mask import median_otsu

from sciimg.io import open_dwi, open_zarr
from sciimg.neuro import b0_indices
from tests.helpers import run_sciimg

SCIIMG = [sys.executable, "-m", "sciimg"]
CLUSTER = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "memory_limit": "2GB",
    "dashboard_address": ":0",
}


def sciimg(*args, cwd=None):
    return subprocess.run(
        [*SCIIMG, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _config(tmp_path, **content):
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {"pipeline": "neuro", "cluster": CLUSTER, **content}, sort_keys=False
        )
    )
    return path


def test_real_dipy_data_through_cli(tmp_path, small_64d):
    data, _bval, _bvec = small_64d
    cfg = _config(
        tmp_path,
        input={"path": [str(data)]},
        output=str(tmp_path / "out"),
        steps={
            "mask": {"median_radius": 4, "numpass": 2, "dilate": 1},
            "denoise": {"method": "classic"},
            "dti": {},
        },
        export=["fa", "mask"],
    )
    run = sciimg("run", cfg)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Dask dashboard: http" in run.stdout
    assert "small_64D" in run.stdout and "1 done, 0 skipped, 0 failed" in run.stdout
    dwi = open_dwi(data)
    arr = dwi.data.compute()
    _, mask = median_otsu(
        arr, vol_idx=b0_indices(dwi.gtab), median_radius=4, numpass=2, dilate=1
    )
    store = tmp_path / "out" / "small_64D.zarr"
    np.testing.assert_array_equal(open_zarr(store, "mask").data.compute(), mask)
    denoised = open_zarr(store, "denoised").data.compute()
    fa = TensorModel(dwi.gtab).fit(denoised, mask=mask).fa
    np.testing.assert_allclose(open_zarr(store, "fa").data.compute(), fa, atol=1e-5)
    exported = nib.load(tmp_path / "out" / "small_64D" / "fa.nii.gz")
    np.testing.assert_array_equal(exported.affine, dwi.affine)
    info = run_sciimg("info", store)
    assert info.returncode == 0, info.stderr
    assert info.stdout.startswith(f"{store}: Zarr store, sciimg ")
    assert "neuro pipeline, subject small_64D" in info.stdout
    for name in ("denoised", "fa", "mask"):
        assert re.search(rf"^{name}\s*$", info.stdout, re.M), name
    # small_64D's affine, in mm and in full: not 4 decimals, no degrees
    rows = re.findall(r"│\s+((?:-?[\d.]+(?:e-?\d+)?\s+){3}-?[\d.]+)\s+│", info.stdout)
    np.testing.assert_allclose(
        np.array([r.split() for r in rows[:4]], dtype=float),
        dwi.affine,
        rtol=1e-5,
        atol=1e-6,
    )
    assert "voxel size (mm)" in info.stdout and "arcsec" not in info.stdout
    again = sciimg("run", cfg)
    assert again.returncode == 0 and "0 done, 1 skipped" in again.stdout
    forced = sciimg("run", cfg, "--force")
    assert forced.returncode == 0 and "1 done, 0 skipped" in forced.stdout


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """README's quick start: synth the phantom, run the shipped demo config."""
    demo = Path(__file__).parents[1] / "pipelines" / "neuro" / "demo.yaml"
    synth = sciimg(
        "synth",
        "neuro",
        "data/neuro",
        "--subjects",
        "2",
        "--shape",
        24,
        24,
        16,
        "--directions",
        6,
        cwd=tmp_path,
    )
    assert synth.returncode == 0, synth.stderr
    # Add a bad subject: the others must still complete, and the exit code says so.
    bad = tmp_path / "data/neuro/sub-03/dwi"
    bad.mkdir(parents=True)
    (bad / "sub-03_dwi.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    run = sciimg("run", demo, "--workers", 2, cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 done, 0 skipped, 1 failed" in run.stdout
    assert "sub-03_dwi.nii.gz" in run.stdout
    out = tmp_path / "out" / "neuro"
    report = json.loads((out / "run.json").read_text())
    assert [s["status"] for s in report["subjects"]] == ["done", "done", "failed"]
    for sid in ("sub-01", "sub-02"):
        labels = np.asarray(
            nib.load(
                tmp_path / f"data/neuro/derivatives/truth/{sid}/{sid}_labels.nii.gz"
            ).dataobj
        )
        mask = np.asarray(nib.load(out / sid / "mask.nii.gz").dataobj).astype(bool)
        assert mask[labels > 0].mean() > 0.95  # the head
        assert mask[labels == 0].mean() < 0.10  # not the background
        for name in ("fa", "md"):
            assert (out / sid / f"{name}.nii.gz").is_file()


def test_config_error_exit_code(tmp_path):
    cfg = _config(
        tmp_path, input={"path": "x"}, output="o", steps={"denoise": {"method": "fast"}}
    )
    run = sciimg("run", cfg)
    assert run.returncode == 2
    assert "steps.denoise.method" in run.stderr and "'fast'" in run.stderr


def test_no_subjects_error(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = _config(
        tmp_path, input={"path": str(tmp_path / "empty")}, output=str(tmp_path / "o")
    )
    run = sciimg("run", cfg)
    assert run.returncode == 2 and "holds no subjects" in run.stderr


def test_ingest_and_info(tmp_path, small_64d, example4d):
    data = tmp_path / small_64d[0].name
    for src in small_64d:
        shutil.copy(src, tmp_path / src.name)
    store = tmp_path / "in.zarr"
    run = sciimg("ingest", data, example4d, "--out", store, "--chunk-memory", "256KiB")
    assert run.returncode == 0, run.stderr
    back = open_zarr(store, "small_64D")
    np.testing.assert_array_equal(back.data.compute(), open_dwi(data).data.compute())
    assert back.gtab is not None
    info = sciimg("info", store)
    assert info.returncode == 0
    for text in (
        "small_64D",
        "example4d",
        "(10, 10, 10, 65)",
        "gradients",
        "affine",
        "chunks",
    ):
        assert text in info.stdout, info.stdout
    assert sciimg("ingest", data, "--out", store).returncode == 2  # exists
    nii = sciimg("info", example4d)
    assert nii.returncode == 0 and "int16" in nii.stdout
    bad = sciimg("info", tmp_path / "small_64D.bval")
    assert bad.returncode == 2 and "no reader recognises" in bad.stderr


def test_synth_truth(tmp_path):
    run = sciimg(
        "synth",
        "neuro",
        tmp_path / "d",
        "--subjects",
        1,
        "--shape",
        12,
        12,
        8,
        "--directions",
        6,
        "--seed",
        7,
    )
    assert run.returncode == 0, run.stderr
    truth = tmp_path / "d/derivatives/truth/sub-01"
    assert {p.name for p in truth.iterdir()} == {
        "sub-01_labels.nii.gz",
        "sub-01_fa.nii.gz",
        "sub-01_md.nii.gz",
        "sub-01_noise.json",
    }
    dwi = open_dwi(tmp_path / "d/sub-01/dwi/sub-01_dwi.nii.gz")
    assert dwi.shape == (12, 12, 8, 21)
    assert sorted(set(np.round(dwi.gtab.bvals, -2).tolist())) == [0, 1000, 2000, 3000]


def test_existing_scheduler(tmp_path, small_64d, running_cluster):
    cfg = _config(
        tmp_path,
        input={"path": [str(small_64d[0])]},
        output=str(tmp_path / "out"),
        steps={"mask": {}, "denoise": {"method": "blockwise"}, "dti": {}},
    )
    run = sciimg("run", cfg, "--scheduler", running_cluster)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "out" / "run.json").read_text())
    assert report["cluster"]["scheduler"] == running_cluster
    assert report["cluster"]["workers"] == 2
    assert report["subjects"][0]["status"] == "done"
