"""A config's steps over one item: each step's function called with the results
it names, its outputs checked and kept as images on the item's grid."""

from __future__ import annotations

from typing import Any

from sciimg.io import Image, default_dims
from sciimg.pipeline.steps import resolve_arguments
from sciimg.pipeline.writes import graph_keys

__all__ = ["as_image", "run_steps"]


def as_image(
    name: str, value: Any, base: Image, dims=None, kind: str = "item"
) -> Image:
    """A step's result as an :class:`~sciimg.io.Image` on ``base``'s grid.

    The spatial axes of a result are where ``base`` holds them: leading for
    volumes (x, y, z, then others), trailing for sky images (others, then
    z, y, x). A result with as many axes as ``base`` takes its axis names.

    Raises
    ------
    TypeError, ValueError
        Not an array, or not on the grid (the spatial axes of ``base``).
    """
    import dask.array as da
    import numpy as np

    if isinstance(value, Image):
        return value
    if isinstance(value, np.ndarray):
        value = da.from_array(value)
    if not isinstance(value, da.Array):
        msg = f"result {name!r} is a {type(value).__name__}, not an array"
        raise TypeError(msg)
    space = [i for i, d in enumerate(base.dims) if d in ("x", "y", "z")]
    n = len(space)
    leading = space == list(range(n))
    grid = base.shape[:n] if leading else base.shape[base.ndim - n :]
    have = value.shape[:n] if leading else value.shape[max(value.ndim - n, 0) :]
    if value.ndim < n or have != grid:
        msg = (
            f"result {name!r} has shape {value.shape}; results must be images on "
            f"the {kind}'s grid {grid}"
        )
        raise ValueError(msg)
    gtab = base.gtab if value.shape == base.shape else None
    if dims is None and value.ndim == base.ndim:
        dims = base.dims
    elif dims is None and leading:
        dims = default_dims(value.ndim)
    elif dims is None:
        extra = value.ndim - n
        dims = (*(f"dim_{i}" for i in range(extra)), *base.dims[base.ndim - n :])
    return Image(
        value, base.affine, tuple(dims), base.zooms, gtab=gtab, source=base.source
    )


def run_steps(
    plan, results: dict[str, Any], base: Image, owners: dict, kind: str = "item"
) -> dict[str, Image]:
    """Build every planned step's graph; their results, named, as images.

    ``results`` holds what the pipeline offers (updated with each step's
    outputs); ``owners`` gets each new task key's step name.
    """
    images: dict[str, Image] = {}
    for planned in plan:
        args = resolve_arguments(planned.step, results, planned.params, planned.inputs)
        out = planned.step.func(**args)
        if not isinstance(out, dict):
            out = {planned.step.outputs[0]: out}
        missing = set(planned.step.outputs) - set(out)
        if missing:
            msg = f"step {planned.name!r} did not return {sorted(missing)}"
            raise ValueError(msg)
        for name, value in out.items():
            dims = planned.step.dims.get(name)
            image = as_image(name, value, base, dims, kind)
            images[name] = image
            results[name] = image.data
        for key in graph_keys(images[n].data for n in out) - owners.keys():
            owners[key] = planned.name
    return images
