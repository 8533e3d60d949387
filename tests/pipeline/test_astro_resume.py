"""Resuming the astronomy runner: a rerun skips what is complete, a touched
exposure or a changed parameter recomputes only what depends on it, a damaged or
interrupted exposure loses its older store, and a killed run's leftovers are
cleared. All tests share one complete run and leave it complete."""

import json

import numpy as np
import pytest

from sciimg.io import ZarrStoreWriter, open_zarr, store_attrs
from sciimg.io._atomic import temporary_sibling
from sciimg.pipeline import run_pipeline
from tests.pipeline.astro_runs import (
    BAD,
    BAD_FILE,
    EXPOSURES,
    QC,
    _all_nan,
    _catalog,
    _config,
    _copy,
    _patches,
    _statuses,
    _temporaries,
    _truncate,
    quiet,
)


@pytest.fixture(scope="module")
def clean(survey, client, tmp_path_factory):
    """A complete run of the undamaged survey; each test below leaves it complete."""
    root = tmp_path_factory.mktemp("resume")
    data = _copy(survey, root / "data")
    out = root / "out"
    cfg = _config(data, out, detect=QC)
    report = run_pipeline(cfg, client=client, log=quiet)
    return data, out, cfg, report


def _stamp(path):
    return (path / "zarr.json").stat().st_mtime_ns


def _covering(out):
    """Exposure id -> ids of the patches it was co-added into."""
    cover = {e: set() for e in EXPOSURES}
    for pid, attrs in _patches(out).items():
        for e in attrs["exposures"]:
            cover[e].add(pid)
    return cover


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
