"""``input.where`` in the astronomy runner: exposures chosen by FITS keyword, and
the left-out ones listed in manifest.parquet."""

from sciimg.pipeline import load_config, run_pipeline
from tests.pipeline.astro_runs import EXPOSURES, _patches, _raw, _statuses, quiet


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
