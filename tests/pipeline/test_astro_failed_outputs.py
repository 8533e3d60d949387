"""A failed exposure leaves nothing that looks like an output: not a calexp half
written when the disk fills, nor the merged catalog of an earlier run."""

from sciimg.pipeline import load_config, run_pipeline
from tests.pipeline.astro_runs import (
    BAD,
    BAD_FILE,
    EXPOSURES,
    _config,
    _copy,
    _patches,
    _raw,
    _statuses,
    _temporaries,
    _truncate,
    quiet,
)


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
