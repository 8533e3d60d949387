"""The astronomy pipeline: calibrate exposures, then co-add and detect per sky
patch.

Two stages, each a set of independent Dask computations:

1. every exposure is calibrated into ``calexp.zarr/<exposure>`` (the background-
   subtracted, flux-scaled planes and the measured PSF);
2. the sky map is laid over the calibrated exposures, and every patch is co-added
   from the exposures that cover it and searched for sources, into
   ``coadd.zarr/<patch>`` and ``catalogs/<patch>.parquet``. Each exposure is
   warped onto each of its patches once, into a temporary file that the patch's
   co-add tasks read their blocks from (``.warps.tmp-*``, removed as the patch
   is committed and at the end of the run, and swept by the next run if this
   one dies).

The one barrier between the stages is deliberate: a coadd must know which
exposures calibrated cleanly, so that one bad file is left out of the coadds
instead of failing every patch it touches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sciimg.astro import Patch, plot_detections, target_psf_fwhm
from sciimg.io import (
    ZarrStoreWriter,
    discover_exposures,
    ensure_collection,
    fits_keywords,
    open_exposure,
    open_zarr,
    read_catalog,
    remove_path,
    temporary_sibling,
    write_catalog,
)
from sciimg.pipeline import astro_steps  # noqa: F401  (registers the astro steps)
from sciimg.pipeline._jobs import Job
from sciimg.pipeline.astro_outputs import (
    list_stores,
    merge_catalogs,
    open_calexp,
    sky_image,
)
from sciimg.pipeline.records import drop_record, inside
from sciimg.pipeline.registry import Item, Pipeline, Stage
from sciimg.pipeline.writes import graph_keys, store_images

__all__ = ["PIPELINE"]


def _hash(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _file_stat(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _discover(cfg, errors) -> list[Item]:
    found = discover_exposures(cfg.input.path, errors=errors)
    return [Item(eid, "exposure", path) for eid, path in found]


def _describe_exposure(cfg, item: Item) -> dict[str, Any]:
    """The exposure's FITS keywords (primary and image headers), as names
    ``input.where`` can use: lower case, ``-`` as ``_`` (``MJD-OBS`` is
    ``mjd_obs``); layout and WCS keywords left out."""
    from astropy.io import fits

    with fits.open(item.payload, lazy_load_hdus=True) as hdul:
        image = hdul[cfg.input.planes.image]
        return {
            "files": [str(item.payload)],
            "shape": "x".join(str(n) for n in reversed(image.shape or ())),
            **fits_keywords(hdul[0].header, image.header),
        }


def _describe_patch(cfg, item: Item) -> dict[str, Any]:
    patch, sources = item.payload
    return {
        "exposures": len(sources),
        "patch_y": patch.index[0],
        "patch_x": patch.index[1],
    }


def _start(run) -> None:
    cfg = run.cfg
    run.state["calexp"] = ensure_collection(
        run.output / "calexp.zarr", {"pipeline": cfg.pipeline}
    )
    run.state["coadd"] = ensure_collection(
        run.output / "coadd.zarr", {"pipeline": cfg.pipeline}
    )
    run.state["steps"] = steps = {s.name: s for s in cfg.plan()}
    run.state["calibration"] = _hash(
        steps["calibrate"].params,
        # Which exposures are selected does not change any one's calibration.
        cfg.input.model_dump(exclude={"path", "where"}),
        cfg.chunk_memory,
    )
    run.state["fingerprints"] = {}
    run.state["exposures"] = {}


# -- stage 1: exposures -------------------------------------------------------


def _exposure_fingerprint(run, item: Item) -> str:
    planes, path = run.cfg.input.planes, item.payload
    run.state["exposures"][item.id] = open_exposure(
        path,
        image=planes.image,
        mask=planes.mask,
        variance=planes.variance,
        mask_bits=run.cfg.input.mask_bits,
        chunk_memory=run.cfg.chunk_memory,
    )
    fp = _hash(run.state["calibration"], _file_stat(path))
    run.state["fingerprints"][item.id] = fp
    inside(run.state["calexp"], item.id)  # an id that would climb out fails here
    return fp


def _calexp_job(run, item: Item, fingerprint: str) -> Job:
    eid, path = item.id, item.payload
    exposure = run.state["exposures"].pop(eid)
    step = run.state["steps"]["calibrate"]
    out = step.step.func(exposure, **step.params)
    planes = [exposure.image] + [
        p for p in (exposure.variance, exposure.mask) if p is not None
    ]
    owners = dict.fromkeys(graph_keys(planes), "read")
    images = {
        name: sky_image(out[name], exposure.wcs, str(path))
        for name in ("image", "variance", "mask", "background")
    }
    for key in graph_keys([*(out[n] for n in images), out["psf_fwhm"]]):
        owners.setdefault(key, "calibrate")
    writer = ZarrStoreWriter(
        run.state["calexp"] / eid,
        chunk_memory=run.cfg.chunk_memory,
        attrs={
            "exposure": eid,
            "source": str(path),
            "fingerprint": fingerprint,
            "scale": out["scale"],
            "mask_bits": exposure.mask_bits,
        },
    )
    targets = store_images(writer, images, owners)
    return Job(
        eid,
        fingerprint,
        writer,
        [*targets, out["psf_fwhm"]],
        owners,
        kind="exposure",
        finish=lambda values: {"psf_fwhm": float(values[-1])},
        depth=1,
    )


# -- stage 2: patches ---------------------------------------------------------


def _patches(run) -> list[Item]:
    """The sky map over the exposures that calibrated, and the patches on it."""
    output, results = run.output, run.results
    run.state["exposures"].clear()  # those opened for skipped exposures
    exposures = [r for r in results.values() if r.kind == "exposure"]
    for r in exposures:
        if r.status == "failed":
            # A calexp of an earlier version of the file must not outlive the
            # failure of this one.
            drop_record(output, "exposure", r.id)
            remove_path(run.state["calexp"] / r.id)
    # In id order, whichever were skipped: the sky map and the coadds (and so
    # the patches' fingerprints) must not depend on what was recomputed.
    good = sorted(r.id for r in exposures if r.status != "failed")
    if not good:
        return []
    sources = {eid: open_calexp(run.state["calexp"] / eid) for eid in good}
    steps = run.state["steps"]
    skymap = steps["skymap"].step.func(
        [(s.wcs, s.image.shape) for s in sources.values()], **steps["skymap"].params
    )
    run.summary["skymap"] = skymap.to_dict()
    run.state["patch_fp"] = _hash(
        steps["skymap"].params,
        steps["coadd"].params,
        steps["detect"].params,
        skymap.to_dict(),
        run.cfg.chunk_memory,
    )
    members: dict[str, tuple[Patch, list[str]]] = {}
    for eid, src in sources.items():
        for patch in skymap.patches_for(src.wcs, src.image.shape):
            members.setdefault(patch.id, (patch, []))[1].append(eid)
    # The warps of this run's patches, a folder each: removed as its patch is
    # committed, and all at the end (a run that dies leaves them to the next
    # run's sweep of temporaries).
    run.state["warps"] = temporary_sibling(output / "warps")
    return [
        Item(pid, "patch", (patch, [sources[e] for e in eids]))
        for pid, (patch, eids) in sorted(members.items())
    ]


def _patch_fingerprint(run, item: Item) -> str:
    fps = run.state["fingerprints"]
    eids = sorted((s.id, fps.get(s.id)) for s in item.payload[1])
    return _hash(run.state["patch_fp"], eids)


def _patch_outdated(run, item: Item) -> None:
    """An older coadd of this patch no longer matches: neither it nor its
    catalog piece and picture may outlive a failure of the new."""
    for old in (
        inside(run.state["coadd"], item.id),
        inside(run.output, "catalogs", f"{item.id}.parquet"),
        inside(run.output, "qc", f"{item.id}.png"),
    ):
        remove_path(old)


def _task_name(key) -> str:
    return str(key[0] if isinstance(key, tuple) else key)


def _common_bits(sources) -> dict[str, int] | None:
    """The mask bits of the patch's exposures (one survey: the first one's)."""
    return next((s.mask_bits for s in sources if s.mask_bits), None)


def _patch_job(run, item: Item, fingerprint: str) -> Job:
    steps, output = run.state["steps"], run.output
    patch, sources = item.payload
    scratch = run.state["warps"] / patch.id
    # The PSF the warps are matched to, decided once: the coadd is made with
    # it and its store records it.
    params = dict(steps["coadd"].params)
    target = params["psf_fwhm"] = target_psf_fwhm(
        (s.psf_fwhm for s in sources), params["psf_fwhm"]
    )
    coadd = steps["coadd"].step.func(
        sources,
        patch,
        _common_bits(sources),
        scratch,
        run.cfg.chunk_memory,
        device=run.cfg.device,
        **params,
    )
    # The calexps are read inside the warp tasks: reading counts as warp.
    owners = {
        key: "warp" if _task_name(key).startswith("warp-") else "coadd"
        for key in graph_keys(coadd.values())
    }
    catalog = steps["detect"].step.func(coadd, patch, **steps["detect"].params)
    for key in graph_keys([catalog]):
        owners.setdefault(key, "detect")
    images = {name: sky_image(coadd[name], patch.wcs, None) for name in coadd}
    writer = ZarrStoreWriter(
        run.state["coadd"] / patch.id,
        chunk_memory=run.cfg.chunk_memory,
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
        image = open_zarr(store, "image").data.compute()
        table = read_catalog(output / piece)
        png = plot_detections(
            image,
            table,
            output / "qc" / f"{patch.id}.png",
            title=f"{patch.id}: {len(table)} sources, {len(sources)} exposures",
        )
        return [piece, str(png.relative_to(output))]

    return Job(
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


def _patches_done(run) -> None:
    if "warps" in run.state:
        remove_path(run.state["warps"])


def _finish(run, complete: bool) -> None:
    if complete:
        patches = sorted(
            r.id
            for r in run.results.values()
            if r.kind == "patch" and r.status != "failed"
        )
        merge_catalogs(run.output, patches, run.summary)
    # The collections list what they hold after this run's writes and removals.
    list_stores(run.state["calexp"], run.state["coadd"])


PIPELINE = Pipeline(
    name="astro",
    description="survey exposures: calibrate, co-add per sky patch, detect",
    bench="sciimg.bench.astro_suite:SUITE",
    discover=_discover,
    start=_start,
    finish=_finish,
    worker_modules=(
        "sciimg.pipeline.astro_steps",
        "sciimg.io",
        "astropy.io.fits",
        "astropy.wcs",
        "reproject",
        "astroscrappy",
        "sep",
    ),
    stages=(
        Stage(
            "exposure",
            fingerprint=_exposure_fingerprint,
            build=_calexp_job,
            describe=_describe_exposure,
            store=lambda item: f"calexp.zarr/{item.id}",
        ),
        Stage(
            "patch",
            items=_patches,
            fingerprint=_patch_fingerprint,
            build=_patch_job,
            store=lambda item: f"coadd.zarr/{item.id}",
            outdated=_patch_outdated,
            done=_patches_done,
            describe=_describe_patch,
        ),
    ),
)
