"""Every engine runs the tiny workloads and agrees with the serial run.

Real engines: a Dask LocalCluster, PySpark in local mode (a JVM), DuckDB, and
the plain loop, each in a fresh process as ``sciimg bench`` runs them. No
timing is asserted; the figures are only checked to be measured.
"""

from __future__ import annotations

import json

import pytest

from sciimg.bench import ENGINES, run_bench


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("workloads")


@pytest.mark.slow
@pytest.mark.parametrize(("pipeline", "count"), [("neuro", 1), ("astro", 2)])
def test_every_engine_agrees_with_serial(pipeline, count, cache, tmp_path):
    out = tmp_path / "bench"
    results = run_bench(
        pipeline,
        engines=list(ENGINES),
        size="tiny",
        counts=[count],
        workers=[2],
        out=out,
        cache=cache,
        log=lambda m: None,
    )
    runs = {r["engine"]: r for r in results["runs"]}
    assert sorted(runs) == sorted(ENGINES)
    for engine, run in runs.items():
        assert run["ok"], f"{engine}: {run['error']}"
        assert run["wall_s"] > 0 and run["cpu_s"] > 0 and run["peak_rss_mib"] > 50
        # One core per worker: native thread pools add none of their own.
        assert set(run["thread_limits"].values()) == {"1"}, run["thread_limits"]
        assert set(run["steps"]) >= {
            "ingest",
            "detect" if pipeline == "astro" else "dti",
        }
        if engine != "serial":
            assert run["agreement"]["agree"], (engine, run["agreement"]["problems"])
    if pipeline == "astro":
        assert runs["dask"]["agreement"]["sources"] > 20
    # Spark's JVM is part of what is measured.
    assert runs["spark"]["peak_rss_mib"] > runs["serial"]["peak_rss_mib"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(results["runs"], default=str))
    assert "| spark |" in (out / "results.md").read_text()
    for png in ("steps.png", "scaling.png"):
        assert (out / png).stat().st_size > 5_000


def test_a_disagreeing_engine_is_reported(tmp_path, cache):
    """An engine whose FA is off is marked as disagreeing, with the reason."""
    import numpy as np

    from sciimg.bench._compare import compare_astro, compare_neuro

    ref, other = tmp_path / "ref", tmp_path / "other"
    for root in (ref, other):
        (root / "sub-01").mkdir(parents=True)
        np.save(root / "sub-01" / "mask.npy", np.ones((4, 4, 4), bool))
    np.save(ref / "sub-01" / "fa.npy", np.full((4, 4, 4), 0.5, np.float32))
    np.save(other / "sub-01" / "fa.npy", np.full((4, 4, 4), 0.52, np.float32))
    verdict = compare_neuro(ref, other)
    assert not verdict["agree"]
    assert "FA differs by up to 0.02" in verdict["problems"][0]
    (other / "coadd").mkdir()
    (ref / "coadd").mkdir()
    np.save(ref / "coadd" / "patch-0-0.npy", np.zeros((3, 3), np.float32))
    import pandas as pd

    pd.DataFrame(
        {"patch": ["patch-0-0"], "x": [1.0], "y": [1.0], "flux": [5.0]}
    ).to_parquet(ref / "catalog.parquet")
    verdict = compare_astro(ref, other)
    assert not verdict["agree"]
    assert verdict["problems"] == ["patch-0-0: no coadd", "no catalog"]


def test_unknown_engine_and_size_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown engine 'flink'"):
        run_bench("neuro", engines=["flink"], out=tmp_path)
    with pytest.raises(ValueError, match="no size 'hcp' for astro"):
        run_bench("astro", engines=["serial"], size="hcp", out=tmp_path)
