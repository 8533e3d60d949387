"""The images pipeline through the real command: a folder of NIfTI and FITS
files, a dask-image filter and a step of one's own, against SciPy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from astropy.io import fits
from scipy import ndimage

from sciimg.io import open_zarr
from sciimg.pipeline import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    vol = rng.random((9, 8, 7, 2)).astype("f4")  # a 4-D series: per volume
    nib.save(nib.Nifti1Image(vol, np.diag([2.0, 2.0, 2.0, 1.0])), root / "t1.nii.gz")
    sky = rng.random((20, 30)).astype("f4")
    hdu = fits.ImageHDU(sky, name="IMAGE")
    hdu.header["EXPTIME"] = 30.0
    (root / "sky").mkdir()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(root / "sky" / "ccd-1.fits")
    return root, {"t1": vol, "sky_ccd-1": sky}


def test_sciimg_run_filters_each_image(folder, tmp_path):
    root, arrays = folder
    config = {
        "pipeline": "images",
        "input": {"path": str(root)},
        "output": str(tmp_path / "out"),
        "steps": {
            "bright": {"function": "tests.pipeline.udfs:above", "outputs": ["bright"]},
            "gaussian": {"sigma": 1.0},
        },
        "cluster": {"n_workers": 1, "threads_per_worker": 2},
    }
    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "sciimg", "run", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for item, data in arrays.items():
        store = tmp_path / "out" / f"{item}.zarr"
        ref = data  # a FITS image is (y, x) in sciimg, as in astropy
        sigma = [1.0] * min(3, ref.ndim) + [0.0] * (ref.ndim - 3)
        expected = ndimage.gaussian_filter(ref, sigma, mode="reflect")
        got = open_zarr(store, "gaussian").data.compute()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(
            open_zarr(store, "bright").data.compute(), got > 0.5
        )
        np.testing.assert_array_equal(open_zarr(store, "image").data.compute(), ref)
    rows = {
        r["id"]: r
        for r in pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()
    }
    assert rows["t1"]["shape"] == "9x8x7x2" and rows["t1"]["voxel_x"] == 2.0
    assert rows["sky_ccd-1"]["exptime"] == 30.0
    assert {r["status"] for r in rows.values()} == {"done"}


def test_the_example_config_is_valid():
    cfg = load_config(ROOT / "pipelines" / "images" / "images.yaml")
    assert [s.name for s in cfg.plan()] == ["gaussian", "median"]


def test_no_steps_stores_the_images(folder, tmp_path, client):
    from sciimg.pipeline import run_pipeline

    root, arrays = folder
    cfg = load_config(
        {
            "pipeline": "images",
            "input": {"path": str(root), "where": "exptime > 10"},
            "output": str(tmp_path / "out"),
        }
    )
    report = run_pipeline(cfg, client=client, log=lambda m: None)
    assert {s.id: s.status for s in report.subjects} == {"sky_ccd-1": "done"}
    store = tmp_path / "out" / "sky_ccd-1.zarr"
    np.testing.assert_array_equal(
        open_zarr(store, "image").data.compute(), arrays["sky_ccd-1"]
    )


def test_median_and_sobel_match_scipy(folder, tmp_path, client):
    from sciimg.pipeline import run_pipeline

    root, arrays = folder
    cfg = load_config(
        {
            "pipeline": "images",
            "input": {"path": str(root / "t1.nii.gz")},
            "output": str(tmp_path / "out"),
            "steps": {
                "median": {"size": 3, "mode": "nearest"},
                "sobel": {"axis": 1, "inputs": {"image": "median"}},
            },
        }
    )
    report = run_pipeline(cfg, client=client, log=lambda m: None)
    assert report.ok
    vol = arrays["t1"]
    med = ndimage.median_filter(vol, size=(3, 3, 3, 1), mode="nearest")
    store = tmp_path / "out" / "t1.zarr"
    np.testing.assert_array_equal(open_zarr(store, "median").data.compute(), med)
    np.testing.assert_allclose(
        open_zarr(store, "sobel").data.compute(),
        ndimage.sobel(med, axis=1, mode="reflect"),
        rtol=1e-5,
        atol=1e-5,
    )
