"""The data tools through the real command: info, ingest, synth, --version.

The astronomy outputs come from a tiny survey run through ``sciimg run`` where
pandas cannot be imported, as after a plain ``pip install``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sciimg.io import open_zarr, read_catalog
from tests.helpers import run_sciimg, without_pandas


def _one_error_line(result) -> str:
    """The single ``error:`` line a refused command prints."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def no_pandas(tmp_path_factory) -> dict[str, str]:
    env = without_pandas(tmp_path_factory.mktemp("env"))
    check = run_sciimg("--version", env=env)  # the command starts without it
    assert check.returncode == 0, check.stderr
    import subprocess

    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util as u; print(u.find_spec('pandas'))",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == "None", found.stdout + found.stderr
    return env


@pytest.fixture(scope="module")
def astro_run(tmp_path_factory, no_pandas):
    """Two visits of one CCD, calibrated, co-added and searched, without pandas."""
    root = tmp_path_factory.mktemp("astro-run")
    data, out = root / "data", root / "out"
    synth = run_sciimg(
        "synth", "astro", data, "--visits", 2, "--ccds", 1, "--ccd-shape", 128, 128
    )
    assert synth.returncode == 0, synth.stderr
    config = root / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": "astro",
                "input": {"path": str(data)},
                "output": str(out),
                "steps": {
                    "skymap": {"patch_size": 100, "border": 10},
                    "detect": {"qc": False},
                },
                "cluster": {
                    "n_workers": 1,
                    "threads_per_worker": 2,
                    "dashboard_address": ":0",
                },
            }
        )
    )
    run = run_sciimg("run", config, "--no-progress", env=no_pandas)
    assert run.returncode == 0, run.stdout + run.stderr
    return out, run


def test_astro_run_without_pandas(astro_run):
    from astropy.table import Table

    out, run = astro_run
    catalog = read_catalog(out / "catalog.parquet")
    assert len(catalog) > 5
    said = re.search(r"(\d+) sources in (\S+)", run.stdout)
    assert said and int(said[1]) == len(catalog), run.stdout
    assert Path(said[2]) == out / "catalog.parquet"
    # astropy (with pandas, here) reads the file as it would its own.
    theirs = Table.read(out / "catalog.parquet")
    assert theirs.colnames == catalog.colnames
    assert theirs["ra"].unit == catalog["ra"].unit == "deg"
    assert theirs["x"].description == "patch pixel column, 0-based"
    assert theirs["patch"].dtype == catalog["patch"].dtype
    np.testing.assert_array_equal(theirs["flux"], catalog["flux"])
    fits = read_catalog(out / "catalog.fits")
    assert fits["ra"].unit == "deg"
    np.testing.assert_array_equal(fits["patch"], catalog["patch"])


def test_catalog_round_trip_without_pandas(tmp_path, no_pandas):
    from astropy.table import Table

    path = tmp_path / "cat.parquet"
    script = f"""
import numpy as np
from astropy.table import MaskedColumn, Table
from sciimg.io import read_catalog, write_catalog
t = Table({{"ra": [150.0, 150.5], "name": ["a", "bcd"], "n": np.array([1, 2])}})
t["ra"].unit = "deg"
t["ra"].description = "right ascension"
t["m"] = MaskedColumn([1.0, 2.0], mask=[False, True])
t.meta["survey"] = "synthetic"
write_catalog(t, {str(path)!r})
back = read_catalog({str(path)!r})
assert back.colnames == ["ra", "name", "n", "m"], back.colnames
assert back["ra"].unit == "deg" and back["ra"].description == "right ascension"
assert back["name"].dtype.str == "<U3" and back["n"].dtype == np.int64
assert back.meta == {{"survey": "synthetic"}}
assert back["m"].mask.tolist() == [False, True]
print("round trip ok")
"""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", script], env=no_pandas, capture_output=True, text=True
    )
    assert done.returncode == 0 and "round trip ok" in done.stdout, done.stderr
    info = run_sciimg("info", path, env=no_pandas)
    assert info.returncode == 0, info.stderr
    assert f"{path}: Parquet catalog, 2 rows, 4 columns" in info.stdout
    assert re.search(r"ra\s+│ float64\s+│ deg\s+│ 150 to 150.5", info.stdout)
    theirs = Table.read(path)
    assert theirs["ra"].unit == "deg" and theirs.meta == {"survey": "synthetic"}


def test_info_coadd_collection(astro_run):
    out, _ = astro_run
    patches = sorted(p.name for p in (out / "coadd.zarr").glob("patch-*"))
    info = run_sciimg("info", out / "coadd.zarr")
    assert info.returncode == 0, info.stderr
    lines = info.stdout.splitlines()
    assert lines[0].startswith(f"{out / 'coadd.zarr'}: Zarr collection")
    for pid in patches:
        (line,) = [li for li in lines if li.strip().startswith(pid)]
        assert "depth, image, mask, variance" in line and "2 exposures" in line
        assert re.search(r"\d+ sources?", line), line
    total = len(read_catalog(out / "catalog.parquet"))
    assert f"{total} sources in {len(patches)} members" in info.stdout


def test_info_patch_in_arcseconds(astro_run):
    out, _ = astro_run
    store = out / "coadd.zarr" / "patch-0-0"
    info = run_sciimg("info", store)
    assert info.returncode == 0, info.stderr
    assert info.stdout.startswith(f"{store}: Zarr store")
    assert "patch patch-0-0" in info.stdout and "2 exposures" in info.stdout
    for name in ("depth", "image", "mask", "variance"):
        assert re.search(rf"^{name}\s*$", info.stdout, re.M), name
    scale = re.search(r"pixel size \(arcsec\)\s+│ ([\d.]+), ([\d.]+)", info.stdout)
    assert scale and float(scale[1]) == pytest.approx(0.5, rel=1e-3)
    linear = re.search(
        r"affine linear part \(arcsec\)\s+│\s+(\S+)\s+(\S+)\s+│\n│\s+│\s+(\S+)\s+(\S+)",
        info.stdout,
    )
    assert linear, info.stdout
    np.testing.assert_allclose(
        [float(v) for v in linear.groups()], [-0.5, 0, 0, 0.5], atol=1e-3
    )
    assert "-0.0001" not in info.stdout and "RA---TAN DEC--TAN" in info.stdout


def test_info_calexp(astro_run):
    out, _ = astro_run
    info = run_sciimg("info", out / "calexp.zarr")
    assert info.returncode == 0, info.stderr
    members = [li.split()[0] for li in info.stdout.splitlines() if "PSF FWHM" in li]
    assert members == ["visit-0_ccd-0", "visit-1_ccd-0"]
    assert "background, image, mask, variance" in info.stdout
    one = run_sciimg("info", out / "calexp.zarr" / "visit-1_ccd-0")
    assert one.returncode == 0, one.stderr
    assert "exposure visit-1_ccd-0" in one.stdout and "ccd-0.fits" in one.stdout
    assert one.stdout.count("pixel size (arcsec)") == 4


@pytest.mark.parametrize("name", ["catalog.parquet", "catalog.fits"])
def test_info_catalog(astro_run, name):
    out, _ = astro_run
    rows = len(read_catalog(out / name))
    info = run_sciimg("info", out / name)
    assert info.returncode == 0, info.stderr
    kind = "Parquet" if name.endswith("parquet") else "FITS"
    assert f"{kind} catalog, {rows} rows, 16 columns" in info.stdout
    assert re.search(r"dec\s+│ float64\s+│ deg", info.stdout), info.stdout
    assert re.search(r"patch\s+│ string", info.stdout)
    assert "sky: RA 1" in info.stdout and "rows flagged" in info.stdout


def test_info_errors(tmp_path):
    import zarr

    missing = _one_error_line(run_sciimg("info", tmp_path / "nothing.zarr"))
    assert f"{tmp_path / 'nothing.zarr'}: does not exist" in missing
    (tmp_path / "bad.parquet").write_text("not parquet")
    bad = _one_error_line(run_sciimg("info", tmp_path / "bad.parquet"))
    assert "bad.parquet: is not a readable Parquet file" in bad
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    plain = _one_error_line(run_sciimg("info", tmp_path / "plain.zarr"))
    assert "plain.zarr: is a Zarr group with no sciimg images" in plain


def test_ingest_fits_exposures(tmp_path):
    from astropy.io import fits

    data = tmp_path / "data"
    synth = run_sciimg(
        "synth", "astro", data, "--visits", 1, "--ccds", 2, "--ccd-shape", 40, 48
    )
    assert synth.returncode == 0, synth.stderr
    files = sorted(data.glob("visit-0/ccd-*.fits"))
    store = tmp_path / "in.zarr"
    run = run_sciimg("ingest", *files, "--out", store)
    assert run.returncode == 0, run.stderr
    assert "ccd-0 (image, mask, variance), ccd-1 (image, mask, variance)" in run.stdout
    for path in files:
        for hdu in ("image", "mask", "variance"):
            back = open_zarr(store / path.stem, hdu)
            np.testing.assert_array_equal(
                back.data.compute(), fits.getdata(path, hdu.upper())
            )
        assert back.attrs["space_unit"] == "arcsecond"
    info = run_sciimg("info", store)
    assert info.returncode == 0, info.stderr
    assert re.search(r"ccd-0\s+48 x 40\s+image, mask, variance", info.stdout)
    member = run_sciimg("info", store / "ccd-1")
    assert member.returncode == 0, member.stderr
    assert "from " in member.stdout and "ccd-1.fits" in member.stdout
    assert member.stdout.count("hdu ") == 3


def test_ingest_refuses_two_files_of_one_name(tmp_path):
    data = tmp_path / "data"
    synth = run_sciimg(
        "synth", "astro", data, "--visits", 2, "--ccds", 1, "--ccd-shape", 24, 24
    )
    assert synth.returncode == 0, synth.stderr
    first, second = data / "visit-0/ccd-0.fits", data / "visit-1/ccd-0.fits"
    line = _one_error_line(
        run_sciimg("ingest", first, second, "--out", tmp_path / "in.zarr")
    )
    assert str(first) in line and str(second) in line and "'ccd-0'" in line
    assert not (tmp_path / "in.zarr").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("neuro", "--subjects", 1, "--shape", 8, 8, 6, "--directions", 6),
        ("astro", "--visits", 1, "--ccds", 1, "--ccd-shape", 24, 24),
    ],
    ids=["neuro", "astro"],
)
def test_synth_refuses_a_folder_not_empty(tmp_path, args):
    kind, *options = args
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    line = _one_error_line(run_sciimg("synth", kind, folder, *options))
    assert f"{folder}: is not empty" in line and "--overwrite" in line
    assert "overwrite=True" not in line
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    again = run_sciimg("synth", kind, folder, *options, "--overwrite")
    assert again.returncode == 0, again.stderr
    assert len(list(folder.rglob("*.nii.gz" if kind == "neuro" else "*.fits"))) > 0


def test_version():
    from sciimg import __version__

    run = run_sciimg("--version")
    assert run.returncode == 0 and run.stdout == f"sciimg {__version__}\n"
