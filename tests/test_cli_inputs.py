"""Bad inputs that once passed as success or stopped the whole run: each fails its
own item with one line naming the file and the problem, and the others complete.
Each case is the real ``sciimg`` command on files a user could have, several bad
items to a run."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from astropy.io import fits

from tests.helpers import run_sciimg

CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "2GB"}
NEURO_STEPS = {
    "mask": {"median_radius": 1, "numpass": 1},
    "denoise": {"method": "classic"},
    "dti": {},
}


def _run(where: Path, raw: dict) -> tuple[subprocess.CompletedProcess, dict]:
    cfg = where / "run.yaml"
    cfg.write_text(yaml.safe_dump({**raw, "cluster": CLUSTER}, sort_keys=False))
    run = run_sciimg("run", cfg, "--no-progress")
    record = json.loads((Path(raw["output"]) / "run.json").read_text())
    return run, {item["id"]: item for item in record["subjects"]}


def _console_says(run: subprocess.CompletedProcess, item: str, error: str) -> None:
    """The item's failure is one line of the console, as run.json has it."""
    assert run.stderr == "", run.stderr
    assert "Traceback" not in run.stdout
    lines = [line for line in run.stdout.splitlines() if line.startswith(f"{item}:")]
    assert len(lines) == 1 and lines[0].endswith(error), run.stdout


def _series(root: Path, sub: str, ext: str = ".nii.gz") -> Path:
    return root / sub / "dwi" / f"{sub}_dwi{ext}"


@pytest.fixture(scope="module")
def neuro(tmp_path_factory) -> tuple[Path, dict]:
    """Seven synthetic subjects, five of them damaged, one run over them all."""
    where = tmp_path_factory.mktemp("neuro")
    data = where / "data"
    made = run_sciimg(
        "synth", "neuro", data, "--subjects", 7, "--shape", 12, 12, 8,
        "--directions", 6,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    # sub-01: every voxel zero, as an empty or blanked conversion.
    img = nib.load(_series(data, "sub-01"))
    zeros = np.zeros(img.shape, np.float32)
    nib.save(nib.Nifti1Image(zeros, img.affine), _series(data, "sub-01"))
    # sub-03: b-values in ms/µm² (1, 2, 3) where s/mm² belong.
    bval = _series(data, "sub-03", ".bval")
    np.savetxt(bval, np.loadtxt(bval)[None] / 1000, fmt="%g")
    # sub-04: the diffusion-weighted vectors at half length.
    bvec = _series(data, "sub-04", ".bvec")
    weighted = np.loadtxt(_series(data, "sub-04", ".bval")) > 50
    vectors = np.loadtxt(bvec)
    vectors[:, weighted] *= 0.5
    np.savetxt(bvec, vectors)
    # sub-05: the series uncompressed beside the compressed one.
    raw = gzip.decompress(_series(data, "sub-05").read_bytes())
    _series(data, "sub-05", ".nii").write_bytes(raw)
    # sub-06: a link back to the subject's own folder.
    (data / "sub-06" / "dwi" / "loop").symlink_to("..")
    # sub-07: only b0 volumes (every b-value 0): no tensor can be fitted.
    bval = _series(data, "sub-07", ".bval")
    np.savetxt(bval, 0 * np.loadtxt(bval)[None], fmt="%g")
    out = where / "out"
    run, items = _run(
        where,
        {
            "pipeline": "neuro",
            "input": {"path": str(data)},
            "output": str(out),
            "steps": NEURO_STEPS,
            "export": ["fa"],
        },
    )
    return data, {"run": run, "items": items, "out": out}


def test_bad_subjects_fail_alone(neuro):
    _, result = neuro
    run, items = result["run"], result["items"]
    assert run.returncode == 1, run.stdout + run.stderr
    assert {i: s["status"] for i, s in items.items()} == {
        "sub-01": "failed",
        "sub-02": "done",
        "sub-03": "failed",
        "sub-04": "failed",
        "sub-05": "failed",
        "sub-06": "failed",
        "sub-07": "failed",
    }
    assert "1 done, 0 skipped, 6 failed" in run.stdout
    assert (result["out"] / "sub-02" / "fa.nii.gz").is_file()
    assert not list(result["out"].glob("sub-0[1345-7]*"))


@pytest.mark.parametrize(
    ("item", "step", "error"),
    [
        (
            "sub-01",
            "mask",
            "{data}/sub-01/dwi/sub-01_dwi.nii.gz: has no signal: its b0 volumes are "
            "all zero",
        ),
        (
            "sub-03",
            None,
            "{data}/sub-03/dwi/sub-03_dwi.bval: largest b-value is 3, below 50: the "
            "values look like ms/µm², but this file must give s/mm² (1 ms/µm² = "
            "1000 s/mm²)",
        ),
        (
            "sub-04",
            None,
            "{data}/sub-04/dwi/sub-04_dwi.bvec: the b-vector of volume 1 (counting "
            "from 0; b=2000) has length 0.5, not 1 ± 0.01 (and 17 more); vectors of "
            "diffusion-weighted volumes must be unit length",
        ),
        (
            "sub-05",
            None,
            "{data}/sub-05/dwi/sub-05_dwi.nii: gives subject id 'sub-05', as does "
            "{data}/sub-05/dwi/sub-05_dwi.nii.gz; neither is processed: remove or "
            "rename all but one",
        ),
        (
            "sub-06",
            None,
            "{data}/sub-06/dwi/loop: is a symlink loop: it leads back to "
            "{data}/sub-06, above it",
        ),
        (
            "sub-07",
            None,
            "{data}/sub-07/dwi/sub-07_dwi.nii.gz: cannot give a diffusion tensor: its "
            "0 diffusion-weighted volumes leave the tensor fit with rank 1 of 7 (a "
            "tensor needs at least 6 non-collinear gradient directions and a b0)",
        ),
    ],
)
def test_each_bad_subject_says_what_and_where(neuro, item, step, error):
    data, result = neuro
    error = error.format(data=data)
    record = result["items"][item]
    assert (record["error"], record["step"]) == (error, step)
    _console_says(result["run"], item, error)


@pytest.fixture(scope="module")
def astro(tmp_path_factory) -> tuple[Path, dict]:
    """Three synthetic exposures: one saturated in a block, one with a variance
    plane of NaN, one beside a copy of itself; and a link that loops."""
    where = tmp_path_factory.mktemp("astro")
    data = where / "data"
    made = run_sciimg(
        "synth", "astro", data, "--visits", 3, "--ccds", 1,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with fits.open(data / "visit-0" / "ccd-0.fits", mode="update") as hdul:
        hdul[0].header["SATURATE"] = 30000.0
        hdul["IMAGE"].data[10:20, 30:40] = 65000.0
    with fits.open(data / "visit-1" / "ccd-0.fits", mode="update") as hdul:
        hdul["VARIANCE"].data[:] = np.nan
    twin = data / "visit-2" / "ccd-0.fits"
    twin.with_name("ccd-0.fits.gz").write_bytes(gzip.compress(twin.read_bytes()))
    (data / "visit-0" / "loop").symlink_to("..")
    out = where / "out"
    run, items = _run(
        where,
        {
            "pipeline": "astro",
            "input": {"path": str(data)},
            "output": str(out),
            "steps": {
                "skymap": {"patch_size": 150, "border": 15},
                "detect": {"qc": False},
            },
        },
    )
    return data, {"run": run, "items": items, "out": out}


def test_bad_exposures_fail_alone(astro):
    data, result = astro
    run, items = result["run"], result["items"]
    assert run.returncode == 1, run.stdout + run.stderr
    exposures = {i: s for i, s in items.items() if s["kind"] == "exposure"}
    assert {i: s["status"] for i, s in exposures.items()} == {
        "visit-0_ccd-0": "done",
        "visit-0_loop": "failed",
        "visit-1_ccd-0": "failed",
        "visit-2_ccd-0": "failed",
    }
    patches = [s for s in items.values() if s["kind"] == "patch"]
    assert patches and all(s["status"] == "done" for s in patches)
    expected = {
        "visit-1_ccd-0": (
            "calibrate",
            "{data}/visit-1/ccd-0.fits: VARIANCE plane is all NaN",
        ),
        "visit-2_ccd-0": (
            None,
            "{data}/visit-2/ccd-0.fits: gives exposure id 'visit-2_ccd-0', as does "
            "{data}/visit-2/ccd-0.fits.gz; neither is processed: remove or rename "
            "all but one",
        ),
        "visit-0_loop": (
            None,
            "{data}/visit-0/loop: is a symlink loop: it leads back to {data}, above it",
        ),
    }
    for item, (step, error) in expected.items():
        error = error.format(data=data)
        assert (exposures[item]["step"], exposures[item]["error"]) == (step, error)
        _console_says(run, item, error)


def test_saturated_pixels_are_flagged_in_the_calibrated_mask(astro):
    from sciimg.io import open_zarr

    data, result = astro
    with fits.open(data / "visit-0" / "ccd-0.fits") as hdul:
        image = hdul["IMAGE"].data.astype("f4")
        before = hdul["MASK"].data.astype("i4")
        level = hdul[0].header["SATURATE"]
        sat = 1 << hdul["MASK"].header["MP_SAT"]
    store = result["out"] / "calexp.zarr" / "visit-0_ccd-0"
    mask = open_zarr(store, "mask").data.compute()
    over = image >= level
    assert over[10:20, 30:40].all()
    np.testing.assert_array_equal((mask & sat) != 0, over | ((before & sat) != 0))
    assert np.all((mask & before) == before)  # the file's own flags are kept


def test_a_folder_with_no_exposures_stops_the_run(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("no FITS here")
    cfg = tmp_path / "run.yaml"
    raw = {
        "pipeline": "astro",
        "input": {"path": str(tmp_path / "data")},
        "output": str(tmp_path / "out"),
    }
    cfg.write_text(yaml.safe_dump(raw))
    run = run_sciimg("run", cfg)
    assert run.returncode == 2
    assert run.stderr.strip().endswith(
        "holds no FITS files (.fits, .fit, .fts, .fits.gz, .fits.fz)"
    )
    assert len(run.stderr.splitlines()) == 1
    assert not (tmp_path / "out" / "run.json").exists()
