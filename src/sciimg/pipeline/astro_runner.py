"""Running the astronomy pipeline: calibrate exposures, then co-add and detect
per sky patch.

Two phases, each a set of independent Dask computations:

1. every exposure is calibrated into ``calexp.zarr/<exposure>`` (the background-
   subtracted, flux-scaled planes and the measured PSF);
2. the sky map is laid over the calibrated exposures, and every patch is co-added
   from the exposures that cover it and searched for sources, into
   ``coadd.zarr/<patch>`` and ``catalogs/<patch>.parquet``. Each exposure is
   warped onto each of its patches once, into a temporary file that the patch's
   co-add tasks read their blocks from (``.warps.tmp-*``, removed as the patch
   is committed and at the end of the run, and swept by the next run if this
   one dies).

The one barrier between the phases is deliberate: a coadd must know which
exposures calibrated cleanly, so that one bad file is left out of the coadds
instead of failing every patch it touches. Outputs are written under temporary
names and renamed when complete; items whose fingerprint matches are skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sciimg.astro import Patch, plot_detections
from sciimg.errors import InputError, RunInterrupted
from sciimg.io import (
    ZarrStoreWriter,
    discover_exposures,
    ensure_collection,
    open_zarr,
    read_catalog,
    remove_path,
    write_catalog,
)
from sciimg.io._atomic import temporary_sibling
from sciimg.pipeline._jobs import SubjectResult, _Job, _one_line, compute_jobs
from sciimg.pipeline.astro_outputs import (
    list_stores,
    merge_catalogs,
    open_calexp,
    sky_image,
)
from sciimg.pipeline.config import PipelineConfig
from sciimg.pipeline.outputs import hold_output, mark_interrupted
from sciimg.pipeline.records import drop_record, inside, read_record
from sciimg.pipeline.report import write_report
from sciimg.pipeline.runner import (
    _graph_keys,
    store_images,
)

__all__ = ["run_astro"]

logger = logging.getLogger(__name__)


def _hash(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _file_stat(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _calexp_job(cfg, step, eid, path, exposure, fingerprint, root: Path) -> _Job:
    out = step.step.func(exposure, **step.params)
    owners = dict.fromkeys(
        _graph_keys(
            [exposure.image]
            + [p for p in (exposure.variance, exposure.mask) if p is not None]
        ),
        "read",
    )
    images = {
        name: sky_image(out[name], exposure.wcs, str(path))
        for name in ("image", "variance", "mask", "background")
    }
    for key in _graph_keys([*(out[n] for n in images), out["psf_fwhm"]]):
        owners.setdefault(key, "calibrate")
    writer = ZarrStoreWriter(
        root / eid,
        budget=cfg.chunk_memory,
        attrs={
            "exposure": eid,
            "source": str(path),
            "fingerprint": fingerprint,
            "scale": out["scale"],
            "mask_bits": exposure.mask_bits,
        },
    )
    targets = store_images(writer, images, owners)
    return _Job(
        eid,
        fingerprint,
        writer,
        [*targets, out["psf_fwhm"]],
        owners,
        kind="exposure",
        finish=lambda values: {"psf_fwhm": float(values[-1])},
        depth=1,
    )


def _patch_job(
    cfg, steps, patch: Patch, sources, fingerprint, root, output, scratch: Path
) -> _Job:
    coadd = steps["coadd"].step.func(
        sources, patch, _common_bits(sources), scratch, **steps["coadd"].params
    )
    fwhms = [s.psf_fwhm for s in sources if s.psf_fwhm is not None]
    target = steps["coadd"].params["psf_fwhm"] or (max(fwhms) if fwhms else None)
    # The calexps are read inside the warp tasks: reading counts as warp.
    owners = {
        key: "warp" if _task_name(key).startswith("warp-") else "coadd"
        for key in _graph_keys(coadd.values())
    }
    catalog = steps["detect"].step.func(coadd, patch, target, **steps["detect"].params)
    for key in _graph_keys([catalog]):
        owners.setdefault(key, "detect")
    wcs = patch.wcs
    images = {name: sky_image(coadd[name], wcs, None) for name in coadd}
    writer = ZarrStoreWriter(
        root / patch.id,
        budget=cfg.chunk_memory,
        attrs={
            "patch": patch.id,
            "index": list(patch.index),
            "inner": list(patch.inner),
            "fingerprint": fingerprint,
            "exposures": [s.id for s in sources],
            "psf_fwhm": target,
            "wcs_header": patch.header,
        },
    )
    targets = store_images(writer, images, owners)
    qc = steps["detect"].params["qc"]

    def finish(values):
        # The coadd is computed: its warps are no longer needed.
        remove_path(scratch)
        table = values[-1]
        write_catalog(table, output / "catalogs" / f"{patch.id}.parquet")
        return {"sources": len(table)}

    def after(store: Path) -> list[str]:
        """The patch's other outputs: its catalog piece, its QC picture."""
        piece = f"catalogs/{patch.id}.parquet"
        if not qc:
            return [piece]
        image = open_zarr(store, "image").data.T.compute()
        table = read_catalog(output / piece)
        png = plot_detections(
            image,
            table,
            output / "qc" / f"{patch.id}.png",
            title=f"{patch.id}: {len(table)} sources, {len(sources)} exposures",
        )
        return [piece, str(png.relative_to(output))]

    return _Job(
        patch.id,
        fingerprint,
        writer,
        [*targets, catalog],
        owners,
        kind="patch",
        finish=finish,
        after=after,
        depth=1,
    )


def _task_name(key) -> str:
    return str(key[0] if isinstance(key, tuple) else key)


def _common_bits(sources) -> dict[str, int] | None:
    """The mask bits of the patch's exposures (one survey: the first one's)."""
    return next((s.mask_bits for s in sources if s.mask_bits), None)


def run_astro(
    cfg: PipelineConfig,
    *,
    force: bool = False,
    client=None,
    progress: bool = False,
    log=print,
):
    """Run the astronomy pipeline (see the module docstring); returns a RunReport."""
    t0, started = time.perf_counter(), datetime.now(UTC)
    cfg.check_paths()
    # Everything that can be wrong with the input is said before the output
    # folder (and the previous run's record) is touched.
    undiscovered: dict[str, InputError] = {}
    exposures = discover_exposures(cfg.input.path, errors=undiscovered)
    with hold_output(cfg.output) as output:
        return _run_held(
            cfg,
            output,
            (exposures, undiscovered),
            force,
            client,
            progress,
            log,
            (t0, started),
        )


def _run_held(cfg, output, found, force, client, progress, log, clock):
    """The run, once its output folder is held."""
    from sciimg.io import open_exposure
    from sciimg.pipeline.cluster import connect

    t0, started = clock
    exposures, undiscovered = found
    calexp_root = ensure_collection(output / "calexp.zarr", {"pipeline": "astro"})
    coadd_root = ensure_collection(output / "coadd.zarr", {"pipeline": "astro"})
    steps = {s.name: s for s in cfg.plan()}
    results: dict[str, SubjectResult] = {}
    for eid, exc in undiscovered.items():  # a duplicate id, a symlink loop
        results[eid] = SubjectResult(
            eid, "failed", error=_one_line(exc), kind="exposure"
        )
        log(f"{eid}: failed: {results[eid].error}")
    planes = cfg.input.planes
    calib_fp = _hash(
        steps["calibrate"].params,
        cfg.input.model_dump(exclude={"path"}),
        cfg.chunk_memory,
    )
    jobs, fingerprints = [], {}
    items = [(eid, "exposure") for eid, _ in exposures]
    patch_jobs: list[_Job] = []
    for eid, path in exposures:
        try:
            exposure = open_exposure(
                path,
                image=planes.image,
                mask=planes.mask,
                variance=planes.variance,
                mask_bits=cfg.input.mask_bits,
                budget=cfg.chunk_memory,
            )
            fp = _hash(calib_fp, _file_stat(path))
            fingerprints[eid] = fp
            inside(calexp_root, eid)  # an id that would climb out fails here
            record = None if force else read_record(output, "exposure", eid, fp)
            if record is not None:
                results[eid] = SubjectResult(
                    eid,
                    "skipped",
                    kind="exposure",
                    store=f"calexp.zarr/{eid}",
                    steps=record.get("timings", {}),
                )
                continue
            drop_record(output, "exposure", eid)
            jobs.append(
                _calexp_job(
                    cfg, steps["calibrate"], eid, path, exposure, fp, calexp_root
                )
            )
        except Exception as exc:  # one bad exposure must not stop the others
            results[eid] = SubjectResult(
                eid, "failed", error=_one_line(exc), kind="exposure"
            )
            log(f"{eid}: failed: {results[eid].error}")
            logger.error("%s: failed", eid, exc_info=exc)

    def phase_two(run_client) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if jobs:
            info = compute_jobs(jobs, run_client, results, progress, log)
        for r in results.values():
            if r.kind == "exposure" and r.status == "failed":
                # A calexp of an earlier version of the file must not outlive
                # the failure of this one.
                drop_record(output, "exposure", r.id)
                remove_path(calexp_root / r.id)
        # In id order, whichever were skipped: the sky map and the coadds (and so
        # the patches' fingerprints) must not depend on what was recomputed.
        good = sorted(
            r.id
            for r in results.values()
            if r.kind == "exposure" and r.status != "failed"
        )
        if not good:
            merge_catalogs(output, [], summary)
            return info
        sources = {eid: open_calexp(calexp_root / eid) for eid in good}
        skymap = steps["skymap"].step.func(
            [(s.wcs, s.image.shape) for s in sources.values()], **steps["skymap"].params
        )
        summary["skymap"] = skymap.to_dict()
        patch_fp = _hash(
            steps["skymap"].params,
            steps["coadd"].params,
            steps["detect"].params,
            skymap.to_dict(),
            cfg.chunk_memory,
        )
        members: dict[str, tuple[Patch, list[str]]] = {}
        for eid, src in sources.items():
            for patch in skymap.patches_for(src.wcs, src.image.shape):
                members.setdefault(patch.id, (patch, []))[1].append(eid)
        items.extend((pid, "patch") for pid in sorted(members))
        # The warps of this run's patches, a folder each: removed as its patch is
        # committed, and all at the end (a run that dies leaves them to the
        # next run's sweep of temporaries).
        warps = temporary_sibling(output / "warps")
        try:
            info = _patches(run_client, members, sources, patch_fp, warps) or info
        finally:
            remove_path(warps)
        merge_catalogs(
            output,
            [
                p
                for p in sorted(members)
                if results.get(p) and results[p].status != "failed"
            ],
            summary,
        )
        return info

    def _patches(run_client, members, sources, patch_fp, warps) -> dict[str, Any]:
        """Co-add and detect the patches that are not current; their cluster info."""
        for pid, (patch, eids) in sorted(members.items()):
            fp = _hash(patch_fp, sorted((e, fingerprints.get(e)) for e in eids))
            try:
                record = None if force else read_record(output, "patch", pid, fp)
                if record is not None:
                    results[pid] = SubjectResult(
                        pid,
                        "skipped",
                        kind="patch",
                        store=f"coadd.zarr/{pid}",
                        steps=record.get("timings", {}),
                    )
                    continue
                # An older coadd of this patch no longer matches: neither it nor
                # its catalog piece and picture may outlive a failure of the new.
                drop_record(output, "patch", pid)
                for old in (
                    inside(coadd_root, pid),
                    inside(output, "catalogs", f"{pid}.parquet"),
                    inside(output, "qc", f"{pid}.png"),
                ):
                    remove_path(old)
                patch_jobs.append(
                    _patch_job(
                        cfg,
                        steps,
                        patch,
                        [sources[e] for e in eids],
                        fp,
                        coadd_root,
                        output,
                        warps / pid,
                    )
                )
            except Exception as exc:
                results[pid] = SubjectResult(
                    pid, "failed", error=_one_line(exc), kind="patch"
                )
                log(f"{pid}: failed: {results[pid].error}")
                logger.error("%s: failed", pid, exc_info=exc)
        if not patch_jobs:
            return {}
        return compute_jobs(patch_jobs, run_client, results, progress, log)

    summary: dict[str, Any] = {}
    cluster_info: dict[str, Any] = {}
    try:
        if client is None:
            with connect(cfg.cluster, log) as own:
                cluster_info = {"kind": cfg.cluster.kind, **phase_two(own)}
        else:
            cluster_info = phase_two(client)
    except KeyboardInterrupt:
        mark_interrupted(output, [*jobs, *patch_jobs], results, items)
        list_stores(calexp_root, coadd_root)
        report = write_report(cfg, output, t0, started, cluster_info, results, summary)
        raise RunInterrupted(report) from None
    list_stores(calexp_root, coadd_root)
    return write_report(cfg, output, t0, started, cluster_info, results, summary)
