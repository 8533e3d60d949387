"""The Spark engine's astronomy plan (see :mod:`sciimg.bench._spark`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sciimg.bench import _kernels as k
from sciimg.bench._outputs import StepClock, save_catalog, save_coadd
from sciimg.bench._spark import _engine, _persist, spark_context
from sciimg.bench._workloads import Workload

if TYPE_CHECKING:
    from pyspark import Broadcast

# ------------------------------------------------------------------- astronomy


def _read_exposure(item) -> tuple[str, dict[str, Any]]:
    eid, path = item
    return eid, k.read_exposure(path)


def _calibrate(exposure, params: Mapping[str, Any]) -> dict[str, Any]:
    return k.calibrate_exposure(exposure, params)


def _footprint(item) -> tuple[str, tuple]:
    eid, c = item
    return eid, (c["wcs"], c["image"].shape, c["psf_fwhm"], c["mask_bits"])


def _warps(item, plan: Broadcast) -> Iterator[tuple[str, tuple[str, dict]]]:
    eid, calexp = item
    skymap, patches, targets = plan.value
    for pid in patches.get(eid, ()):
        warp = k.warp_exposure(calexp, k.patch_of(skymap, pid), targets[pid])
        yield pid, (eid, warp)


def _coadd(item, bits: Broadcast, params: Mapping[str, Any]) -> tuple[str, dict]:
    pid, warps = item
    ordered = [warp for _, warp in sorted(warps, key=lambda w: w[0])]
    return pid, k.coadd_warps(ordered, bits.value[pid], params)


def _detect(item, plan: Broadcast, params: Mapping[str, Any]) -> tuple:
    pid, coadd = item
    skymap = plan.value[0]
    return pid, coadd["image"], k.detect_sources(coadd, k.patch_of(skymap, pid), params)


def run_astro(
    workload: Workload,
    out: Path,
    params: dict[str, Any],
    *,
    workers: int = 1,
    master: str | None = None,
) -> dict:
    """Run the astro pipeline (calibrate, warp, coadd, detect) on Spark RDDs.

    Parameters
    ----------
    workload : Workload
        The exposures to process.
    out : Path
        Where ``coadd/<patch>.npy`` and ``catalog.parquet`` are written.
    params : dict
        Step parameters, as :meth:`Workload.step_params` gives them.
    workers : int
        Cores of the local master, when ``master`` is None.
    master : str, optional
        A Spark master URL instead of ``local[workers]``.

    Returns
    -------
    dict
        ``steps``: seconds per step; ``engine``: the master and Spark version.
    """
    from sciimg.io import discover_exposures

    exposures = [(eid, str(path)) for eid, path in discover_exposures(workload.data)]
    clock = StepClock()
    with spark_context(workers, master) as sc:
        with clock.step("ingest"):
            raw = _persist(
                sc.parallelize(exposures, len(exposures)).map(_read_exposure)
            )
            raw.count()
        with clock.step("calibrate"):
            calexps = _persist(
                raw.mapValues(partial(_calibrate, params=params["calibrate"]))
            )
            calexps.count()
            raw.unpersist()
        with clock.step("warp"):
            meta = dict(calexps.map(_footprint).collect())
            skymap = k.sky_map(
                [(meta[e][0], meta[e][1]) for e in sorted(meta)], params["skymap"]
            )
            members = k.patch_members(skymap, {e: m[:2] for e, m in meta.items()})
            patches: dict[str, list[str]] = {}
            for pid, eids in members.items():
                for eid in eids:
                    patches.setdefault(eid, []).append(pid)
            targets = {
                pid: k.target_fwhm([meta[e][2] for e in eids], params["coadd"])
                for pid, eids in members.items()
            }
            bits = {pid: meta[eids[0]][3] for pid, eids in members.items()}
            plan = sc.broadcast((skymap, patches, targets))
            warps = _persist(calexps.flatMap(partial(_warps, plan=plan)))
            warps.count()
            calexps.unpersist()
        with clock.step("coadd"):
            coadds = _persist(
                warps.groupByKey().map(
                    partial(_coadd, bits=sc.broadcast(bits), params=params["coadd"])
                )
            )
            coadds.count()
            warps.unpersist()
        with clock.step("detect"):
            found = coadds.map(
                partial(_detect, plan=plan, params=params["detect"])
            ).collect()
            coadds.unpersist()
        found.sort(key=lambda item: item[0])
        for pid, image, _ in found:
            save_coadd(out, pid, image)
        save_catalog(out, [table for _, _, table in found])
        engine = _engine(sc)
    return {"steps": clock.as_dict(), "engine": engine}
