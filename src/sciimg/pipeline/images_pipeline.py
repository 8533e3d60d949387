"""The images pipeline: any NIfTI, FITS or Zarr images, one item each, through
dask-image filters and steps of one's own.

Each image is read lazily with its geometry, stored with every step's result
in ``<output>/<image>.zarr`` (the input as ``image``), with the same resume,
failure isolation, ``run.json`` and ``manifest.parquet`` as the other
pipelines. Filters work on the spatial axes only (named ``x``, ``y``, ``z``,
in whichever order the image holds them): a 4-D series is filtered volume by
volume.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from sciimg.device import to_device
from sciimg.io import (
    ZarrStoreWriter,
    discover_images,
    fits_keywords,
    open_image,
)
from sciimg.pipeline._jobs import Job
from sciimg.pipeline.records import inside
from sciimg.pipeline.registry import Item, Pipeline, Stage
from sciimg.pipeline.step_graph import run_steps
from sciimg.pipeline.steps import register_step
from sciimg.pipeline.strict import StrictModel
from sciimg.pipeline.writes import graph_keys, store_images

__all__ = ["PIPELINE"]

_Mode = Literal["reflect", "constant", "nearest", "mirror", "wrap"]


class _Filter(StrictModel):
    mode: _Mode = Field("reflect", description="how the edges are extended")


class GaussianParams(_Filter):
    sigma: float = Field(1.0, gt=0, description="pixels, on every spatial axis")


class SizeParams(_Filter):
    size: int = Field(3, ge=1, description="window side, pixels, spatial axes")


class SobelParams(_Filter):
    axis: int = Field(
        0, ge=0, description="the array axis to differentiate (a spatial one)"
    )


_SPACE = ("x", "y", "z")


def _per_axis(dims, spatial, other):
    """A filter's per-axis argument: ``spatial`` on the spatial axes."""
    return [spatial if d in _SPACE else other for d in dims]


@register_step("gaussian", pipeline="images", params=GaussianParams)
def gaussian(image, dims, sigma=1.0, mode="reflect"):
    """dask-image's Gaussian filter over the spatial axes."""
    from dask_image.ndfilters import gaussian_filter

    return gaussian_filter(image, _per_axis(dims, sigma, 0.0), mode=mode)


@register_step("median", pipeline="images", params=SizeParams)
def median(image, dims, size=3, mode="reflect"):
    """dask-image's median filter over the spatial axes."""
    from dask_image.ndfilters import median_filter

    return median_filter(image, size=_per_axis(dims, size, 1), mode=mode)


@register_step("uniform", pipeline="images", params=SizeParams)
def uniform(image, dims, size=3, mode="reflect"):
    """dask-image's mean (uniform) filter over the spatial axes."""
    from dask_image.ndfilters import uniform_filter

    return uniform_filter(image, size=_per_axis(dims, size, 1), mode=mode)


@register_step("sobel", pipeline="images", params=SobelParams)
def sobel(image, dims, axis=0, mode="reflect"):
    """dask-image's Sobel derivative along one spatial axis."""
    from dask_image.ndfilters import sobel as sobel_filter

    if axis >= len(dims) or dims[axis] not in _SPACE:
        msg = f"axis {axis} is not a spatial axis of an image with axes {dims}"
        raise ValueError(msg)
    return sobel_filter(image.astype("f4"), axis=axis, mode=mode)


def _discover(cfg, errors) -> list[Item]:
    found = discover_images(cfg.input.path, errors=errors)
    return [Item(iid, "image", path) for iid, path in found]


def _store(item: Item) -> str:
    return f"{item.id}.zarr"


def _describe(cfg, item: Item) -> dict[str, Any]:
    image = open_image(item.payload)
    header = image.attrs.get("header")
    return {
        "files": [str(item.payload)],
        "shape": "x".join(str(n) for n in image.shape),
        "dtype": str(image.dtype),
        "dims": ",".join(image.dims),
        # zooms are indexed by spatial axis name, whatever the array's order.
        **{f"voxel_{d}": float(z) for d, z in zip(_SPACE, image.zooms, strict=False)},
        **(fits_keywords(header) if header is not None else {}),
    }


def _fingerprint(run, item: Item) -> str:
    inside(run.output, _store(item))  # an id that would climb out fails here
    st = item.payload.stat()
    stat = [str(item.payload.resolve()), st.st_size, st.st_mtime_ns]
    blob = json.dumps([run.cfg.fingerprint(), stat]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _build(run, item: Item, fingerprint: str) -> Job:
    cfg = run.cfg
    image = open_image(item.payload, chunk_memory=cfg.chunk_memory)
    results: dict[str, Any] = {
        "image": to_device(image.data, cfg.device),
        "dims": image.dims,
        "affine": image.affine,
        "zooms": image.zooms,
        "source": str(item.payload),
        "chunk_memory": cfg.chunk_memory,
    }
    owners = dict.fromkeys(graph_keys([image.data]), "read")
    images = {"image": image}
    images |= run_steps(cfg.plan(), results, image, owners, kind="image")
    writer = ZarrStoreWriter(
        inside(cfg.output, _store(item)),
        chunk_memory=cfg.chunk_memory,
        attrs={
            "image": item.id,
            "pipeline": cfg.pipeline,
            "fingerprint": fingerprint,
            "source": str(item.payload),
            "config": cfg.model_dump(mode="json"),
        },
    )
    return Job(
        item.id,
        fingerprint,
        writer,
        store_images(writer, images, owners, cfg.device),
        owners,
        kind="image",
    )


PIPELINE = Pipeline(
    name="images",
    description="any NIfTI, FITS or Zarr images through filters and steps of one's own",
    discover=_discover,
    inputs=("image", "dims", "affine", "zooms", "source", "chunk_memory"),
    default_steps=(),
    worker_modules=("sciimg.pipeline.images_pipeline", "sciimg.io"),
    stages=(
        Stage(
            "image",
            fingerprint=_fingerprint,
            build=_build,
            store=_store,
            describe=_describe,
        ),
    ),
)
