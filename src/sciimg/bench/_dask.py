"""The dask engine: sciimg's own pipeline, as ``sciimg run`` runs it.

Its outputs (Zarr stores, catalog) are copied into the benchmark's common layout
for comparison. Per-step times come from the run's task stream: Dask runs the
steps of all items at once without barriers, so a step's time is its tasks'
compute seconds divided by the worker threads (steps overlap in time).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from sciimg.bench._outputs import save_catalog, save_coadd, save_neuro
from sciimg.bench._workloads import Workload

#: sciimg step names → the benchmark's (``read`` is the ingest; in astro each
#: exposure's warp onto a patch is a task of step ``warp``, which also reads its
#: calibrated pixels back from ``calexp.zarr``).
_STEP_NAMES = {"read": "ingest"}


def _run(workload: Workload, out: Path, workers: int) -> dict[str, Any]:
    from sciimg.pipeline import load_config, run_pipeline

    run_dir = Path(out) / "run"
    cfg = load_config(workload.config(run_dir, workers))
    report = run_pipeline(cfg, force=True, log=lambda message: None)
    failed = [s.id for s in report.subjects if s.status == "failed"]
    if failed:
        msg = f"sciimg run failed for {', '.join(failed)}; see {run_dir / 'run.json'}"
        raise RuntimeError(msg)
    run = json.loads((run_dir / "run.json").read_text())
    busy: dict[str, float] = defaultdict(float)
    for item in run["subjects"]:
        for step, t in item.get("steps", {}).items():
            busy[_STEP_NAMES.get(step, step)] += t["compute_s"]
    threads = max(1, run["cluster"].get("threads") or workers)
    return {
        "steps": {k: round(v / threads, 4) for k, v in busy.items()},
        "engine": {"task_seconds": {k: round(v, 4) for k, v in busy.items()}},
        "run_dir": run_dir,
    }


def run_neuro(workload: Workload, out: Path, params: dict, *, workers: int = 1):
    """Run the neuro pipeline on a LocalCluster of ``workers`` 1-thread workers.

    ``params`` is not used: the workload's config carries the same parameters.
    """
    from sciimg.io import open_zarr

    result = _run(workload, out, workers)
    for store in sorted(result.pop("run_dir").glob("*.zarr")):
        subject = store.name.removesuffix(".zarr")
        mask = np.asarray(open_zarr(store, "mask").data.compute())
        fa = np.asarray(open_zarr(store, "fa").data.compute())
        save_neuro(out, subject, mask, fa)
    return result


def run_astro(workload: Workload, out: Path, params: dict, *, workers: int = 1):
    """Run the astro pipeline on a LocalCluster of ``workers`` 1-thread workers."""
    from astropy.table import Table

    from sciimg.io import open_zarr

    result = _run(workload, out, workers)
    run_dir = result.pop("run_dir")
    tables = []
    for store in sorted((run_dir / "coadd.zarr").iterdir()):
        if not store.is_dir() or not store.name.startswith("patch-"):
            continue
        save_coadd(out, store.name, np.asarray(open_zarr(store, "image").data))
        catalog = run_dir / "catalogs" / f"{store.name}.parquet"
        if catalog.exists():
            tables.append(Table.read(catalog, format="parquet"))
    save_catalog(out, tables)
    return result
