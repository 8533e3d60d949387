"""The astronomy demo through the real ``sciimg`` command, scored against truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.pipeline.astro_truth import score
from tests.test_cli import sciimg

DEMO = Path(__file__).parents[1] / "pipelines" / "astro" / "demo.yaml"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``sciimg synth astro`` + ``sciimg run pipelines/astro/demo.yaml``."""
    root = tmp_path_factory.mktemp("astro-demo")
    synth = sciimg("synth", "astro", "data/astro", "--visits", 6, "--ccds", 4, cwd=root)
    assert synth.returncode == 0, synth.stderr
    run = sciimg("run", DEMO, "--workers", 2, "--no-progress", cwd=root)
    assert run.returncode == 0, run.stdout + run.stderr
    return root, run


@pytest.mark.slow
def test_demo_writes_every_output(demo_run):
    from astropy.table import Table

    from sciimg.io import image_names, open_zarr, store_attrs

    root, run = demo_run
    out = root / "out" / "astro-demo"
    assert run.stdout.count("Dask dashboard:") == 1  # once, for both phases
    assert "28 done, 0 skipped, 0 failed" in run.stdout
    report = json.loads((out / "run.json").read_text())
    kinds = [s["kind"] for s in report["subjects"]]
    assert kinds.count("exposure") == 24 and kinds.count("patch") == 4
    patches = sorted(p.name for p in (out / "coadd.zarr").iterdir() if p.is_dir())
    assert patches == ["OME", "patch-0-0", "patch-0-1", "patch-1-0", "patch-1-1"]
    patches.remove("OME")  # the list of the collection's images
    for name in patches:
        group = out / "coadd.zarr" / name
        assert sorted(image_names(group)) == ["depth", "image", "mask", "variance"]
        attrs = store_attrs(group)
        assert attrs["wcs_header"].startswith("WCSAXES")
        image = open_zarr(group, "image")
        assert image.attrs["space_unit"] == "arcsecond"
        assert (out / "qc" / f"{name}.png").stat().st_size > 10_000
        # A patch's calexps are read inside its coadd tasks.
        assert {"coadd", "detect", "write"} <= set(
            next(s for s in report["subjects"] if s["id"] == name)["steps"]
        )
    parquet = Table.read(out / "catalog.parquet")
    fits = Table.read(out / "catalog.fits")
    assert len(parquet) == len(fits) == report["summary"]["sources"] > 100
    assert {
        "id",
        "patch",
        "x",
        "y",
        "ra",
        "dec",
        "flux",
        "flux_err",
        "a",
        "b",
        "theta",
        "flags",
    } <= set(parquet.colnames)
    assert len(np.unique(parquet["id"])) == len(parquet)


@pytest.mark.slow
def test_demo_against_truth(demo_run):
    """Completeness, purity, photometry and noise, as the survey's truth says."""
    root, _ = demo_run
    s = score(root / "out" / "astro-demo", root / "data" / "astro")
    assert s.n_complete >= 30 and s.n_pure >= 50
    assert s.completeness >= 0.95, s.missed
    assert s.purity >= 0.98, s.spurious  # cosmic rays must not become sources
    assert s.flux_ratio == pytest.approx(1.0, abs=0.10)
    assert s.noise_ratio == pytest.approx(1.0, abs=0.10)


@pytest.mark.slow
def test_rerun_skips_everything(demo_run):
    root, _ = demo_run
    again = sciimg("run", DEMO, "--workers", 2, "--no-progress", cwd=root)
    assert again.returncode == 0, again.stderr
    assert "0 done, 28 skipped, 0 failed" in again.stdout
