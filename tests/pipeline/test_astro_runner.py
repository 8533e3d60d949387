"""The astronomy runner on a real LocalCluster: bad exposures, atomic outputs, resume.

A tiny survey (3 visits of 2 CCDs, 128² each) on two sky patches keeps every run
to a few seconds. The PSF FWHM is read from the synthetic truth keyword, since a
128² CCD holds too few bright stars to measure it.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
import zarr
from astropy.io import fits
from astropy.table import Table
from typer.testing import CliRunner

from sciimg.cli import app
from sciimg.errors import ConfigError
from sciimg.io import ZarrStoreWriter, open_zarr, store_attrs
from sciimg.io._atomic import temporary_sibling
from sciimg.pipeline import load_config, run_pipeline
from sciimg.synth import write_astro_survey

STEPS = {
    "calibrate": {"psf_fwhm_key": "PSFFWHM"},
    "skymap": {"patch_size": 150, "border": 15},
    "detect": {"qc": False},  # QC pictures only where they are checked
}
QC = {"qc": True}
EXPOSURES = [f"visit-{v}_ccd-{c}" for v in range(3) for c in range(2)]
BAD = "visit-1_ccd-0"  # lies on both patches; each keeps other exposures
BAD_FILE = "visit-1/ccd-0.fits"
SCIIMG = [sys.executable, "-m", "sciimg"]


def quiet(message):
    pass


# ---- helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    root = tmp_path_factory.mktemp("survey")
    write_astro_survey(root, visits=3, ccds=2, ccd_shape=(128, 128), seed=0)
    return root


def _copy(survey, dest):
    shutil.copytree(survey, dest, ignore=shutil.ignore_patterns("truth"))
    return dest


def _raw(data, out, **steps):
    return {
        "pipeline": "astro",
        "input": {"path": str(data)},
        "output": str(out),
        "steps": {**STEPS, **steps},
    }


def _config(data, out, **steps):
    return load_config(_raw(data, out, **steps))


def _statuses(report, kind):
    return {s.id: s.status for s in report.subjects if s.kind == kind}


def _patches(out):
    """Patch id -> store attrs of every committed coadd."""
    root = out / "coadd.zarr"
    return {
        p.name: store_attrs(p)
        for p in sorted(root.iterdir())
        if p.is_dir() and not p.name.startswith(".") and p.name != "OME"
    }


def _temporaries(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if ".tmp-" in p.name)


def _catalog(out):
    return Table.read(out / "catalog.parquet").to_pandas()


def _stamp(path):
    return (path / "zarr.json").stat().st_mtime_ns


# ---- damaged exposures ------------------------------------------------------------


def _truncate(path):
    with fits.open(path) as hdul:
        info = hdul.fileinfo(hdul.index_of("IMAGE"))
    cut = info["datLoc"] + info["datSpan"] // 2  # in the middle of the pixels
    path.write_bytes(path.read_bytes()[:cut])


def _drop_variance(path):
    with fits.open(path, memmap=False) as hdul:
        kept = fits.HDUList([h.copy() for h in hdul if h.name != "VARIANCE"])
    kept.writeto(path, overwrite=True)


_WCS_KEYS = re.compile(
    r"(WCSAXES|CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CD\d_\d|PC\d_\d|RADESYS|EQUINOX)$"
)


def _strip_wcs(path):
    with fits.open(path, memmap=False) as hdul:
        header = hdul["IMAGE"].header
        for key in [k for k in header if _WCS_KEYS.match(k)]:
            del header[key]
        hdul.writeto(path, overwrite=True)


def _all_nan(path):
    with fits.open(path, memmap=False) as hdul:
        hdul["IMAGE"].data[:] = np.nan
        hdul.writeto(path, overwrite=True)


DAMAGES = [
    (_truncate, r"is truncated: HDU 1 \(IMAGE\) needs \d+ bytes, file has \d+"),
    (_drop_variance, r"has no VARIANCE extension \(extensions: IMAGE, MASK\)"),
    (_strip_wcs, r"HDU 1 \(IMAGE\) has no celestial WCS"),
    (_all_nan, "all pixels are NaN or infinite"),
]


@pytest.mark.parametrize(
    ("damage", "problem"), DAMAGES, ids=[d[0].__name__.strip("_") for d in DAMAGES]
)
def test_one_bad_exposure(survey, client, tmp_path, damage, problem):
    data = _copy(survey, tmp_path / "data")
    bad = data / BAD_FILE
    damage(bad)
    out = tmp_path / "out"
    logged = []
    report = run_pipeline(_config(data, out), client=client, log=logged.append)

    exposures = _statuses(report, "exposure")
    assert exposures == {e: "failed" if e == BAD else "done" for e in EXPOSURES}
    error = next(s.error for s in report.subjects if s.id == BAD)
    assert "\n" not in error and error.startswith(f"{bad}: ")
    assert re.search(problem, error), error
    # Damage found while reading fails before any step; the rest names its step.
    said = rf"{BAD}: failed( in step calibrate)?: {re.escape(error)}"
    assert [m for m in logged if m.startswith(f"{BAD}: failed")] == [
        m for m in logged if re.fullmatch(said, m)
    ]
    assert any(re.fullmatch(said, m) for m in logged)
    run = json.loads((out / "run.json").read_text())
    failed = [s for s in run["subjects"] if s["status"] == "failed"]
    assert [(s["id"], s["kind"], s["error"]) for s in failed] == [
        (BAD, "exposure", error)
    ]

    # Every patch is co-added from the exposures that remain.
    patches = _statuses(report, "patch")
    assert patches and set(patches.values()) == {"done"}
    stored = _patches(out)
    assert set(stored) == set(patches)
    used = set()
    for attrs in stored.values():
        assert attrs["exposures"] and BAD not in attrs["exposures"]
        used |= set(attrs["exposures"])
    assert used == set(EXPOSURES) - {BAD}
    assert len(_catalog(out)) > 0
    assert report.summary["sources"] == len(_catalog(out))

    # Nothing of the failed exposure looks like an output; nothing is left over.
    assert not (out / "calexp.zarr" / BAD).exists()
    good = [e for e in EXPOSURES if e != BAD]
    stores = [p.name for p in (out / "calexp.zarr").iterdir() if p.is_dir()]
    assert sorted(stores) == sorted([*good, "OME"])  # OME lists the images
    group = zarr.open_group(out / "calexp.zarr", mode="r")
    assert sorted(group.group_keys()) == sorted([*good, "OME"])
    listed = {s.split("/")[0] for s in group["OME"].attrs["ome"]["series"]}
    assert sorted(listed) == good
    assert _temporaries(out) == []

    # Through the command line, on the same output and cluster: the bad exposure
    # fails again (it is not skipped), the rest is skipped, and the status is 1.
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(_raw(data, out)))
    cli = CliRunner().invoke(
        app,
        ["run", str(config), "--scheduler", client.scheduler.address],
        env={"COLUMNS": "1000"},  # no wrapping: see test_cli_narrow_terminal
    )
    assert cli.exit_code == 1, cli.output
    assert any(re.fullmatch(said, line) for line in cli.output.splitlines())
    assert f"0 done, {len(EXPOSURES) - 1 + len(patches)} skipped, 1 failed" in (
        cli.output
    )
    assert _temporaries(out) == []


def test_real_command_line(survey, client, tmp_path):
    data = _copy(survey, tmp_path / "data")
    bad = data / BAD_FILE
    _truncate(bad)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(_raw(data, tmp_path / "out")))
    run = subprocess.run(
        [*SCIIMG, "run", str(config), "--scheduler", client.scheduler.address],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "1000"},
    )
    assert run.returncode == 1, run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if str(bad) in line]
    assert lines and re.fullmatch(
        rf"{BAD}: failed: {re.escape(str(bad))}: is truncated: .*", lines[0]
    )
    assert re.search(r"\d+ done, 0 skipped, 1 failed", run.stdout)
    report = json.loads((tmp_path / "out" / "run.json").read_text())
    assert [s["id"] for s in report["subjects"] if s["status"] == "failed"] == [BAD]


def test_cli_narrow_terminal(survey, client, tmp_path):
    data = tmp_path / "data" / "a-folder-name-long-enough-to-wrap"
    data.mkdir(parents=True)
    bad = data / "ccd-0.fits"
    shutil.copy(survey / BAD_FILE, bad)
    _truncate(bad)
    raw = {**_raw(data, tmp_path / "out"), "input": {"path": [str(bad)]}}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    cli = CliRunner().invoke(
        app,
        ["run", str(config), "--scheduler", client.scheduler.address],
        env={"COLUMNS": "80"},
    )
    assert cli.exit_code == 1
    line = f"ccd-0: failed: {bad}: is truncated: "
    assert any(x.startswith(line) for x in cli.output.splitlines()), cli.output


# ---- an interrupted write ---------------------------------------------------------


def _disk_full(block):
    raise OSError("No space left on device (simulated)")


@pytest.fixture
def fail_mid_write(monkeypatch):
    """Calibration of BAD_FILE whose background plane fails while being written."""
    import sciimg.pipeline.astro_steps as astro_steps

    real = astro_steps.calibrate

    def calibrate(*args, source=None, **kwargs):
        out = real(*args, source=source, **kwargs)
        if source and source.endswith(BAD_FILE):
            out["background"] = out["background"].map_blocks(
                _disk_full, dtype=np.float32
            )
        return out

    monkeypatch.setattr(astro_steps, "calibrate", calibrate)


def test_interrupted_write_leaves_no_store(survey, client, tmp_path, fail_mid_write):
    data = _copy(survey, tmp_path / "data")
    out = tmp_path / "out"
    report = run_pipeline(_config(data, out), client=client, log=quiet)
    exposures = _statuses(report, "exposure")
    assert exposures == {e: "failed" if e == BAD else "done" for e in EXPOSURES}
    error = next(s.error for s in report.subjects if s.id == BAD)
    assert error == "OSError: No space left on device (simulated)"
    assert not (out / "calexp.zarr" / BAD).exists()
    assert _temporaries(out) == []
    assert set(_statuses(report, "patch").values()) == {"done"}
    assert all(BAD not in a["exposures"] for a in _patches(out).values())


def test_where_selects_exposures_by_fits_keyword(survey, client, tmp_path):
    """input.where on a FITS keyword: the left-out exposures are in no patch,
    and manifest.parquet lists them as filtered, with their keywords."""
    import pyarrow.parquet as pq

    raw = _raw(survey, tmp_path / "out")
    raw["input"]["where"] = "visit != 1 and exptime > 0"
    report = run_pipeline(load_config(raw), client=client, log=quiet)
    exposures = _statuses(report, "exposure")
    assert sorted(exposures) == [e for e in EXPOSURES if not e.startswith("visit-1")]
    for attrs in _patches(tmp_path / "out").values():
        assert not any(e.startswith("visit-1") for e in attrs["exposures"])
    rows = pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()
    by_id = {r["id"]: r for r in rows}
    assert by_id["visit-1_ccd-0"]["status"] == "filtered"
    assert by_id["visit-1_ccd-0"]["visit"] == 1
    assert by_id["visit-0_ccd-0"]["status"] == "done"
    assert by_id["visit-0_ccd-0"]["shape"] == "128x128"
    assert {r["kind"] for r in rows} == {"exposure", "patch"}


def test_no_catalog_outlives_a_run_that_has_none(survey, client, tmp_path):
    """When every exposure fails, no merged catalog of an earlier run is left."""
    path = _copy(survey, tmp_path / "data") / BAD_FILE
    raw = {**_raw(path.parent, tmp_path / "out"), "input": {"path": [str(path)]}}
    cfg = load_config(raw)
    first = run_pipeline(cfg, client=client, log=quiet)
    assert first.ok and first.summary["sources"] > 0
    _truncate(path)
    report = run_pipeline(cfg, client=client, log=quiet)
    assert [(s.id, s.status) for s in report.subjects] == [("ccd-0", "failed")]
    assert report.summary.get("sources", 0) == 0
    assert not (tmp_path / "out" / "catalog.parquet").exists()
    assert not (tmp_path / "out" / "catalog.fits").exists()
    assert not (tmp_path / "out" / "calexp.zarr" / "ccd-0").exists()


# ---- resume -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(survey, client, tmp_path_factory):
    """A complete run of the undamaged survey; each test below leaves it complete."""
    root = tmp_path_factory.mktemp("resume")
    data = _copy(survey, root / "data")
    out = root / "out"
    cfg = _config(data, out, detect=QC)
    report = run_pipeline(cfg, client=client, log=quiet)
    return data, out, cfg, report


def test_clean_run(clean):
    _, out, _, report = clean
    assert report.ok
    assert _statuses(report, "exposure") == dict.fromkeys(EXPOSURES, "done")
    patches = _statuses(report, "patch")
    assert len(patches) >= 2 and set(patches.values()) == {"done"}
    for pid in patches:
        assert (out / "catalogs" / f"{pid}.parquet").is_file()
        assert (out / "qc" / f"{pid}.png").is_file()
        assert open_zarr(out / "coadd.zarr" / pid, "image").shape[0] > 150
    assert (out / "catalog.fits").is_file() and len(_catalog(out)) > 0
    assert len(_covering(out)[BAD]) == len(patches)  # as BAD's comment says


def test_rerun_skips_everything(clean, client):
    _, out, cfg, _ = clean
    before = _catalog(out)
    stamps = {e: _stamp(out / "calexp.zarr" / e) for e in EXPOSURES}
    again = run_pipeline(cfg, client=client, log=quiet)
    assert {s.status for s in again.subjects} == {"skipped"}
    assert len(_statuses(again, "exposure")) == len(EXPOSURES)
    assert stamps == {e: _stamp(out / "calexp.zarr" / e) for e in EXPOSURES}
    after = _catalog(out)
    assert len(after) == len(before) > 0
    assert after.equals(before)
    assert again.summary["sources"] == len(before)
    run = json.loads((out / "run.json").read_text())
    assert {s["status"] for s in run["subjects"]} == {"skipped"}


def _covering(out):
    """Exposure id -> ids of the patches it was co-added into."""
    cover = {e: set() for e in EXPOSURES}
    for pid, attrs in _patches(out).items():
        for e in attrs["exposures"]:
            cover[e].add(pid)
    return cover


def test_touched_exposure_recomputes_only_its_patches(clean, client):
    data, out, cfg, _ = clean
    cover = _covering(out)
    patches = set(_patches(out))
    # An exposure on some patches but not all, so that both cases are seen.
    eid = next(e for e in EXPOSURES if cover[e] and cover[e] != patches)
    path = data / eid.replace("_", "/", 1)
    path = path.with_name(path.name + ".fits")
    path.write_bytes(path.read_bytes())
    stamps = {p: _stamp(out / "coadd.zarr" / p) for p in patches}
    report = run_pipeline(cfg, client=client, log=quiet)
    assert _statuses(report, "exposure") == {
        e: "done" if e == eid else "skipped" for e in EXPOSURES
    }
    assert _statuses(report, "patch") == {
        p: "done" if p in cover[eid] else "skipped" for p in patches
    }
    for p in patches:
        assert (_stamp(out / "coadd.zarr" / p) == stamps[p]) == (p not in cover[eid])
    assert _temporaries(out) == []


def test_changed_coadd_parameter_recomputes_patches_only(clean, client):
    data, out, cfg, _ = clean
    changed = _config(data, out, detect=QC, coadd={"nsigma": 2.5})
    report = run_pipeline(changed, client=client, log=quiet)
    assert set(_statuses(report, "exposure").values()) == {"skipped"}
    assert set(_statuses(report, "patch").values()) == {"done"}
    back = run_pipeline(cfg, client=client, log=quiet)  # and back again
    assert set(_statuses(back, "exposure").values()) == {"skipped"}
    assert set(_statuses(back, "patch").values()) == {"done"}


def test_reference_libraries_give_the_same_coadds(clean, client, tmp_path):
    # The whole graph once more with reproject and astropy's sigma_clip doing the
    # warp and the co-add: every patch and the catalog must come out the same.
    data, out, _, _ = clean
    ref_out = tmp_path / "reference"
    cfg = _config(data, ref_out, coadd={"implementation": "reference"})
    assert run_pipeline(cfg, client=client, log=quiet).ok
    assert sorted(_patches(ref_out)) == sorted(_patches(out))
    for pid in _patches(out):
        for name in ("image", "variance", "depth", "mask"):
            fast_image = open_zarr(out / "coadd.zarr" / pid, name)
            ref_image = open_zarr(ref_out / "coadd.zarr" / pid, name)
            assert fast_image.dims == ref_image.dims == ("y", "x")
            fast, ref = fast_image.data.compute(), ref_image.data.compute()
            np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
            spread = np.nanmax(np.abs(ref)) or 1.0
            np.testing.assert_allclose(
                np.nan_to_num(fast), np.nan_to_num(ref), rtol=0, atol=1e-5 * spread
            )
    fast_cat, ref_cat = _catalog(out), _catalog(ref_out)
    assert len(fast_cat) == len(ref_cat) > 0
    np.testing.assert_allclose(fast_cat[["x", "y"]], ref_cat[["x", "y"]], atol=1e-3)


def test_force_recomputes_everything(clean, client):
    _, out, cfg, _ = clean
    before = _catalog(out)
    report = run_pipeline(cfg, force=True, client=client, log=quiet)
    assert {s.status for s in report.subjects} == {"done"}
    assert len(_statuses(report, "exposure")) == len(EXPOSURES)
    assert _catalog(out).equals(before)


def test_exposure_damaged_after_a_good_run(clean, client):
    """An exposure that fails must not keep its older calexp under its name."""
    data, out, cfg, _ = clean
    path = data / BAD_FILE
    good = path.read_bytes()
    _all_nan(path)
    report = run_pipeline(cfg, client=client, log=quiet)
    assert _statuses(report, "exposure")[BAD] == "failed"
    assert not (out / "calexp.zarr" / BAD).exists()
    assert all(BAD not in a["exposures"] for a in _patches(out).values())
    _truncate(path)  # fails as the file is opened, before any graph is built
    report = run_pipeline(cfg, client=client, log=quiet)
    assert _statuses(report, "exposure")[BAD] == "failed"
    assert not (out / "calexp.zarr" / BAD).exists()
    path.write_bytes(good)
    report = run_pipeline(cfg, client=client, log=quiet)
    assert _statuses(report, "exposure")[BAD] == "done"
    assert report.ok and (out / "calexp.zarr" / BAD).is_dir()


def test_interrupted_rewrite_drops_the_old_store(
    clean, client, fail_mid_write, monkeypatch
):
    data, out, cfg, _ = clean
    path = data / BAD_FILE
    path.write_bytes(path.read_bytes())  # touched: it is calibrated again
    report = run_pipeline(cfg, client=client, log=quiet)
    assert _statuses(report, "exposure")[BAD] == "failed"
    assert not (out / "calexp.zarr" / BAD).exists()
    assert _temporaries(out) == []
    monkeypatch.undo()
    report = run_pipeline(cfg, client=client, log=quiet)
    assert _statuses(report, "exposure")[BAD] == "done" and report.ok


def test_leftovers_of_a_killed_run_are_cleared(clean, client):
    """What a run killed mid-write leaves is never read, and the next run clears it."""
    _, out, cfg, _ = clean
    pid = next(iter(_patches(out)))
    stores = (out / "calexp.zarr" / BAD, out / "coadd.zarr" / pid)
    committed = {store: store_attrs(store) for store in stores}
    image = open_zarr(stores[0], "image")
    for store in stores:  # killed while rewriting these, before the commit
        writer = ZarrStoreWriter(store, attrs={"fingerprint": "half-written"})
        writer.store_all({"image": image})[0].compute()
    for name in (
        "run.json",
        "catalog.parquet",
        f"catalogs/{pid}.parquet",
        f"qc/{pid}.png",
    ):
        temporary_sibling(out / name).write_bytes(b"half")
    assert {store: store_attrs(store) for store in stores} == committed
    assert len(_temporaries(out)) == 6
    report = run_pipeline(cfg, client=client, log=quiet)
    assert {s.status for s in report.subjects} == {"skipped"}
    assert _temporaries(out) == []


# ---- configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ({"warp": {}}, r"steps\.warp: unknown step \(the astro pipeline's steps are"),
        (
            {"coadd": {"clip": "median"}},
            r"steps\.coadd\.clip: Input should be 'variance' or 'stack' "
            r"\(got 'median'\)",
        ),
        (
            {"mine": {"function": "tests.pipeline.udfs:white_matter"}},
            r"steps\.mine: unknown step",
        ),
        (
            {"coadd": {"function": "tests.pipeline.udfs:white_matter"}},
            r"steps\.coadd\.function: unknown key",
        ),
    ],
    ids=["unknown-step", "bad-clip", "own-step", "own-function-for-builtin"],
)
def test_config_errors(tmp_path, steps, message):
    raw = {
        "pipeline": "astro",
        "input": {"path": str(tmp_path)},
        "output": str(tmp_path / "out"),
        "steps": steps,
    }
    with pytest.raises(ConfigError, match=message) as info:
        load_config(raw)
    assert "\n" not in str(info.value)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    cli = CliRunner().invoke(app, ["run", str(config)])
    assert cli.exit_code == 2
    assert re.search(message, cli.output), cli.output
    assert not (tmp_path / "out").exists()
