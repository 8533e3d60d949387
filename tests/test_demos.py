"""The demo configs, unchanged, on every kind of cluster: the LocalCluster their
``cluster:`` section describes, a scheduler with workers started by hand, and a
SLURM batch system where one answers. Each run must give the same results."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr

from tests.helpers import dask_config_dir, run_sciimg

ROOT = Path(__file__).resolve().parents[1]
DEMOS = {
    "neuro": ROOT / "pipelines/neuro/demo.yaml",
    "astro": ROOT / "pipelines/astro/demo.yaml",
}
OUTPUT = {"neuro": "out/neuro", "astro": "out/astro-demo"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The demos' data, as their comments say to make it (fewer items)."""
    root = tmp_path_factory.mktemp("demo-data")
    for args in (
        ("neuro", "data/neuro", "--subjects", "1"),
        ("astro", "data/astro", "--visits", "3", "--ccds", "2"),
    ):
        made = run_sciimg("synth", *args, cwd=root)
        assert made.returncode == 0, made.stderr
    return root / "data"


def _place(tmp_path_factory, data, name):
    """A working folder with the data in it, as a user's would be."""
    where = tmp_path_factory.mktemp(name)
    (where / "data").symlink_to(data)
    return where


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory, data):
    where = _place(tmp_path_factory, data, "local")
    for pipeline, config in DEMOS.items():
        run = run_sciimg("run", config, "--no-progress", cwd=where)
        assert run.returncode == 0, run.stdout + run.stderr
        report = json.loads((where / OUTPUT[pipeline] / "run.json").read_text())
        assert report["cluster"]["kind"] == "local"
    return where


def _arrays(store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(store, mode="r")
    return {
        name: member[...]
        for name, member in group.members(max_depth=None)
        if isinstance(member, zarr.Array)
    }


def assert_same_results(one: Path, other: Path, pipeline: str) -> None:
    """Every image of every store identical, and the same catalog."""
    a, b = one / OUTPUT[pipeline], other / OUTPUT[pipeline]
    stores = sorted(p.name for p in a.glob("*.zarr"))
    assert stores and stores == sorted(p.name for p in b.glob("*.zarr"))
    for store in stores:
        left, right = _arrays(a / store), _arrays(b / store)
        assert left.keys() == right.keys() and left
        for name in left:
            np.testing.assert_array_equal(left[name], right[name], err_msg=name)
    if pipeline == "astro":
        pd.testing.assert_frame_equal(
            pd.read_parquet(a / "catalog.parquet"),
            pd.read_parquet(b / "catalog.parquet"),
        )


@pytest.mark.parametrize("pipeline", ["neuro", "astro"])
def test_demo_on_an_existing_scheduler(
    pipeline, tmp_path_factory, data, local_runs, running_cluster
):
    where = _place(tmp_path_factory, data, f"scheduler-{pipeline}")
    run = run_sciimg(
        "run",
        DEMOS[pipeline],
        "--scheduler",
        running_cluster,
        "--no-progress",
        cwd=where,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"on the Dask scheduler at {running_cluster}" in run.stdout
    report = json.loads((where / OUTPUT[pipeline] / "run.json").read_text())
    assert report["cluster"]["kind"] == "scheduler"
    assert report["cluster"]["scheduler"] == running_cluster
    assert report["cluster"]["workers"] == 2
    assert_same_results(local_runs, where, pipeline)


def _walk(top: Path) -> tuple[dict, list[str], list[str]]:
    """Every group under ``top`` by path, the image groups, the collections."""
    root = zarr.open_group(top, mode="r")
    groups = {"": root}
    groups.update(
        (path, node)
        for path, node in root.members(max_depth=None)
        if isinstance(node, zarr.Group)
    )
    images = [p for p, g in groups.items() if "0" in g and "sciimg" in g.attrs]
    collections = [
        p
        for p, g in groups.items()
        if "bioformats2raw.layout" in (g.attrs.get("ome") or {})
    ]
    return groups, sorted(images), sorted(collections)


def test_demo_stores_are_ngff(local_runs):
    """Every image either demo wrote is an NGFF 0.5 image, and every store a
    collection listing its images, as docs/zarr.md says."""
    import ngff_zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    tops = [
        store
        for pipeline in DEMOS
        for store in sorted((local_runs / OUTPUT[pipeline]).glob("*.zarr"))
    ]
    assert [p.name for p in tops] == ["sub-01.zarr", "calexp.zarr", "coadd.zarr"]
    for top in tops:
        groups, images, collections = _walk(top)
        listings = [p for p in groups if p.rsplit("/", 1)[-1] == "OME"]
        # Nothing else: each group is an image, a store of images, or a listing.
        assert set(groups) == {*images, *collections, *listings}
        assert "" in collections and len(images) > 1
        for where in collections:
            attrs = groups[where].attrs.asdict()
            assert attrs["ome"] == {"version": "0.5", "bioformats2raw.layout": 3}
            ngff_zarr.validate(attrs, version="0.5", model="bf2raw")
            listing = groups[where]["OME"].attrs.asdict()
            ngff_zarr.validate(listing, version="0.5", model="ome")
            prefix = f"{where}/" if where else ""
            inside = [p[len(prefix) :] for p in images if p.startswith(prefix)]
            assert sorted(listing["ome"]["series"]) == inside
        # ngff-zarr asks which image to open; ome-zarr passes the store over.
        with pytest.raises(ValueError, match="bioformats2raw container"):
            ngff_zarr.from_ome_zarr(str(top))
        assert list(Reader(parse_url(str(top)))()) == []
        for path in images:
            where = top / path
            attrs = groups[path].attrs.asdict()
            ngff_zarr.validate(attrs, version="0.5", model="image")
            ngff_zarr.from_ome_zarr(str(where), validate=True)
            (node,) = Reader(parse_url(str(where)))()
            np.testing.assert_array_equal(
                node.data[0].compute(), groups[path]["0"][...], err_msg=str(where)
            )


def _squeue(name: str) -> list[str]:
    listed = subprocess.run(
        ["squeue", "-h", "-n", name, "-o", "%i %T"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split("\n")[:-1]


@pytest.mark.slurm
def test_neuro_demo_on_slurm(tmp_path_factory, data, local_runs):
    """``kind: slurm`` submits real worker jobs; they end with the run."""
    where = _place(tmp_path_factory, data, "slurm")
    name = f"sciimg-test-{os.getpid()}"
    # Batch defaults as a site would set them, in dask's own config file.
    env = dask_config_dir(
        where,
        {
            "slurm": {
                "name": name,
                "walltime": "00:10:00",
                "log-directory": str(where / "logs"),
                # Workers and scheduler meet on loopback: one node.
                "interface": "lo",
            }
        },
    )
    run = run_sciimg(
        "run", DEMOS["neuro"], "--cluster", "slurm", "--no-progress", cwd=where, env=env
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "on slurm jobs of 1 cores and 4GB (1 worker(s) each)" in run.stdout
    assert "slurm: submitted worker jobs" in run.stdout
    report = json.loads((where / OUTPUT["neuro"] / "run.json").read_text())
    assert report["cluster"]["kind"] == "slurm"
    assert report["subjects"][0]["status"] == "done"
    assert_same_results(local_runs, where, "neuro")
    # The worker jobs ran, logged, and ended with the run.
    assert list((where / "logs").glob(f"{name}-*.err"))
    assert _squeue(name) == []


@pytest.mark.slurm
def test_jobscripts_pass_sbatch_test_only(tmp_path):
    """The scripts `sciimg jobscript` prints are ones SLURM accepts."""
    config = tmp_path / "slurm.yaml"
    raw = yaml.safe_load(DEMOS["neuro"].read_text())
    config.write_text(
        yaml.safe_dump(
            {
                **raw,
                "cluster": {
                    "kind": "slurm",
                    "cores": 1,
                    "memory": "1GB",
                    "walltime": "00:05:00",
                    "job_extra_directives": ["--nice=10"],
                },
            },
            sort_keys=False,  # steps run in the order they are written
        )
    )
    for part in ("worker", "driver"):
        script = run_sciimg("jobscript", config, "--part", part, cwd=tmp_path)
        assert script.returncode == 0, script.stderr
        path = tmp_path / f"{part}.sh"
        path.write_text(script.stdout)
        checked = subprocess.run(
            ["sbatch", "--test-only", path],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert checked.returncode == 0, checked.stderr
        assert "to start at" in checked.stderr


@pytest.mark.slurm
def test_astro_demo_on_adaptive_slurm(tmp_path_factory, data, local_runs):
    """``min_jobs``/``max_jobs``: no job until there is work, then up to two."""
    where = _place(tmp_path_factory, data, "slurm-adaptive")
    name = f"sciimg-adapt-{os.getpid()}"
    raw = yaml.safe_load(DEMOS["astro"].read_text())
    raw["cluster"] = {
        "kind": "slurm",
        "cores": 1,
        "memory": "2GB",
        "walltime": "00:10:00",
        "interface": "lo",
        "min_jobs": 0,
        "max_jobs": 2,
        "dashboard_address": ":0",
    }
    config = where / "adaptive.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = dask_config_dir(where, {"slurm": {"name": name}})
    run = run_sciimg("run", config, "--no-progress", cwd=where, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "slurm: adaptive, 0 to 2 worker jobs" in run.stdout
    assert_same_results(local_runs, where, "astro")
    assert _squeue(name) == []
