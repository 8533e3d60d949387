"""Pipelines found by name: sciimg's own, and one a package of one's own adds
through the ``sciimg.pipelines`` entry point group, run by the same engine."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from sciimg.errors import ConfigError
from sciimg.pipeline import load_config, run_pipeline
from sciimg.pipeline.registry import get_pipeline, pipeline_names

PACKAGE = '''
"""A pipeline of one's own: one item per .npy file, its mean written to a store."""
import dask.array as da
import numpy as np

from sciimg.io import Image, ZarrStoreWriter
from sciimg.pipeline.registry import Item, Pipeline, Stage

def discover(cfg, errors):
    from pathlib import Path
    files = sorted(Path(cfg.input.path).glob("*.npy"))
    return [Item(p.stem, "array", p) for p in files]

def fingerprint(run, item):
    return f"{item.payload.stat().st_mtime_ns}-{run.cfg.fingerprint()}"

def build(run, item, fingerprint):
    from sciimg.pipeline.engine import Job

    data = da.from_array(np.load(item.payload))
    image = Image(data, np.eye(4), ("x", "y"), (1.0, 1.0))
    writer = ZarrStoreWriter(run.output / f"{item.id}.zarr")
    return Job(item.id, fingerprint, writer, writer.store_all({"image": image}),
               {}, kind="array")

PIPELINE = Pipeline(
    name="arrays",
    discover=discover,
    stages=(Stage("array", fingerprint=fingerprint, build=build,
                  store=lambda item: f"{item.id}.zarr"),),
)
'''


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A distribution on sys.path whose entry point registers ``arrays``: as
    ``pip install`` of a package declaring it would leave it."""
    site = tmp_path / "site"
    (site / "mylab_arrays.py").parent.mkdir(parents=True)
    (site / "mylab_arrays.py").write_text(textwrap.dedent(PACKAGE))
    info = site / "mylab_arrays-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mylab-arrays\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[sciimg.pipelines]\narrays = mylab_arrays:PIPELINE\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtin_pipelines_come_first():
    assert pipeline_names()[:2] == ["neuro", "astro"]
    assert get_pipeline("neuro").inputs[0] == "dwi"
    assert get_pipeline("astro").fixed_steps


def test_unknown_pipeline_is_one_line():
    with pytest.raises(ConfigError, match="pipeline: Input should be 'neuro'"):
        load_config({"pipeline": "spectra", "input": {"path": "d"}, "output": "o"})
    with pytest.raises(ConfigError, match="no pipeline 'spectra'"):
        get_pipeline("spectra")


def test_a_package_adds_a_pipeline(installed, tmp_path, client):
    assert "arrays" in pipeline_names()
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        np.save(data / f"a{i}.npy", np.full((4, 3), float(i)))
    cfg = load_config(
        {
            "pipeline": "arrays",
            "input": {"path": str(data)},
            "output": str(tmp_path / "out"),
        }
    )
    report = run_pipeline(cfg, client=client, log=lambda m: None)
    assert {s.id: s.status for s in report.subjects} == {"a0": "done", "a1": "done"}
    again = run_pipeline(cfg, client=client, log=lambda m: None)
    assert {s.status for s in again.subjects} == {"skipped"}
    from sciimg.io import open_zarr

    np.testing.assert_array_equal(
        open_zarr(tmp_path / "out" / "a1.zarr", "image").data.compute(),
        np.ones((4, 3)),
    )
