"""The neuroscience pipeline: one item per subject, its steps from the config.

Each subject becomes one Dask computation ending in the writes of its Zarr store
(``<output>/<subject>.zarr``) and the NIfTI exports the config asks for, so
subjects run side by side on the cluster and nothing waits on a barrier.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sciimg.device import to_device
from sciimg.io import (
    Subject,
    ZarrStoreWriter,
    discover_subjects,
    find_gradient_files,
    open_dwi,
    open_zarr,
    read_gradients,
    write_nifti,
)
from sciimg.pipeline import neuro_steps  # noqa: F401  (registers the neuro steps)
from sciimg.pipeline._jobs import ItemResult, Job
from sciimg.pipeline.records import inside, write_record
from sciimg.pipeline.registry import Item, Pipeline, Stage
from sciimg.pipeline.step_graph import run_steps
from sciimg.pipeline.writes import graph_keys, store_images

__all__ = ["PIPELINE"]


def _discover(cfg, errors) -> list[Item]:
    return [
        Item(s.id, "subject", s)
        for s in discover_subjects(cfg.input.path, errors=errors)
    ]


def _describe(cfg, item: Item) -> dict[str, Any]:
    """What the NIfTI header and the b-values say, without reading voxels."""
    import nibabel as nib

    subject: Subject = item.payload
    img = nib.load(subject.dwi)
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    md: dict[str, Any] = {
        "files": [str(p) for p in (subject.dwi, subject.bval, subject.bvec) if p],
        "shape": "x".join(str(n) for n in img.shape),
        "dtype": str(img.get_data_dtype()),
        "voxel_x": zooms[0],
        "voxel_y": zooms[1],
        "voxel_z": zooms[2],
        "volumes": int(img.shape[3]) if len(img.shape) > 3 else 1,
    }
    pair = (subject.bval, subject.bvec) if subject.bval and subject.bvec else None
    pair = pair or find_gradient_files(subject.dwi)
    if pair is not None:
        # The gradient reader sciimg opens subjects with; dipy's b0 threshold
        # (50 s/mm²). Shells are named by the b-value rounded to the hundred.
        gtab = read_gradients(*pair)
        b = gtab.bvals
        shells = sorted({int(round(v, -2)) for v in b[~gtab.b0s_mask]})
        md.update(
            b0_volumes=int(gtab.b0s_mask.sum()),
            b_max=float(b.max(initial=0.0)),
            shells=",".join(str(v) for v in shells),
        )
    return md


def _store(item: Item) -> str:
    return f"{item.id}.zarr"


def _fingerprint(run, item: Item) -> str:
    subject: Subject = item.payload
    inside(run.output, _store(item))  # an id that would climb out fails here
    files = [p for p in (subject.dwi, subject.bval, subject.bvec) if p is not None]
    files += list(find_gradient_files(subject.dwi) or ())
    stats = [
        (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
        for p in files
        if p.exists()
    ]
    blob = json.dumps([run.cfg.fingerprint(), stats]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _required(run, item: Item) -> list[str]:
    # Exports are remade from a complete store; the store itself must be there.
    return [_store(item)]


def _skipped(run, item: Item, record: dict) -> ItemResult:
    """A current subject: exports the config asks for only now are made (and
    listed in its record) from its store."""
    store = run.output / _store(item)
    exports = _export(run.cfg, item.id, store, missing_only=True)
    if set(exports) - set(record["outputs"]):
        write_record(
            run.output,
            "subject",
            item.id,
            record["fingerprint"],
            [*record["outputs"], *exports],
            timings=record.get("timings", {}),
        )
    return ItemResult(
        item.id,
        "skipped",
        store=store.name,
        exports=exports,
        steps=record.get("timings", {}),
    )


def _build(run, item: Item, fingerprint: str) -> Job:
    cfg, subject = run.cfg, item.payload
    chunk_memory = cfg.chunk_memory
    dwi = open_dwi(
        subject.dwi, bval=subject.bval, bvec=subject.bvec, chunk_memory=chunk_memory
    )
    results: dict[str, Any] = {
        "dwi": to_device(dwi.data, cfg.device),  # the only copy to a GPU
        "gtab": dwi.gtab,
        "affine": dwi.affine,
        "zooms": dwi.zooms,
        "subject": subject.id,
        "source": str(subject.dwi),  # named by steps' errors about its voxels
        "chunk_memory": chunk_memory,
    }
    owners = dict.fromkeys(graph_keys([dwi.data]), "read")
    images = run_steps(cfg.plan(), results, dwi, owners, kind="subject")
    writer = ZarrStoreWriter(
        inside(cfg.output, _store(item)),
        chunk_memory=chunk_memory,
        attrs={
            "subject": subject.id,
            "pipeline": cfg.pipeline,
            "fingerprint": fingerprint,
            "source": str(subject.dwi),
            "config": cfg.model_dump(mode="json"),
        },
    )
    targets = store_images(writer, images, owners, cfg.device)
    return Job(
        subject.id,
        fingerprint,
        writer,
        targets,
        owners,
        after=lambda store: _export(cfg, subject.id, store),
    )


def _export(
    cfg, subject_id: str, store: Path, *, missing_only: bool = False
) -> list[str]:
    """Write the config's exports of a store; all of them when the store was just
    made (an older file must not outlive its store), else only those missing."""
    paths = []
    for name in cfg.export:
        out = inside(cfg.output, subject_id, f"{name}.nii.gz")
        if not (missing_only and out.exists()):
            write_nifti(open_zarr(store, name), out)
        paths.append(str(out.relative_to(cfg.output)))
    return paths


PIPELINE = Pipeline(
    name="neuro",
    description="diffusion MRI: b0 mean, brain mask, denoising, tensor fit",
    bench="sciimg.bench.neuro_suite:SUITE",
    discover=_discover,
    inputs=("dwi", "gtab", "affine", "zooms", "subject", "chunk_memory"),
    worker_modules=("sciimg.pipeline.neuro_steps", "sciimg.io", "nibabel"),
    stages=(
        Stage(
            "subject",
            fingerprint=_fingerprint,
            build=_build,
            required=_required,
            skipped=_skipped,
            store=_store,
            describe=_describe,
        ),
    ),
)
