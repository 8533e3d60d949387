"""The tasks of a patch's co-addition graph (:mod:`sciimg.astro._patch`): warp
one exposure onto its footprint, co-add one block of sky, cut out one plane.

A warp goes from its task to the block tasks either as a task result or, with a
scratch folder, as the path of a ``.npy`` file that each block reads its box of.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sciimg import kernels
from sciimg.astro._warp import _header_wcs, _margin, _starts, input_box


@dataclass
class _Warped:
    """One exposure warped onto a box ``(y0, y1, x0, x1)`` of the patch: float32
    (3, y1 - y0, x1 - x0) value, variance and saturation, in memory or in a
    ``.npy`` file."""

    box: tuple[int, int, int, int]
    data: np.ndarray | None = None
    path: str | None = None

    def overlap(self, y0: int, y1: int, x0: int, x1: int):
        """Where this warp meets patch box ``(y0, y1, x0, x1)``, in the warp and
        in that box; None where they do not meet."""
        wy0, wy1, wx0, wx1 = self.box
        ya, yb, xa, xb = max(y0, wy0), min(y1, wy1), max(x0, wx0), min(x1, wx1)
        if ya >= yb or xa >= xb:
            return None
        here = (slice(None), slice(ya - wy0, yb - wy0), slice(xa - wx0, xb - wx0))
        return here, (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))

    def read(self, here) -> np.ndarray:
        """The warp's pixels at ``here`` (from :meth:`overlap`)."""
        if self.data is not None:
            return self.data[here]
        # A memory map, dropped once its box is copied: the file's pages leave
        # the task's memory with it.
        return np.array(np.load(self.path, mmap_mode="r")[here])


#: Most input pixels a warp task reads at once: up to this, the planes' region
#: under the whole footprint is read in one go (a Zarr chunk is then decoded
#: once, not once per band); beyond it, band by band.
READ_PIXELS = 1 << 21


class _Reader:
    """A plane that reads on slicing (a Zarr array), read inside the warp task.

    Wrapped so that building the graph neither walks the array's fields (a Zarr
    array is a dataclass, which dask would search for collections) nor hashes
    more than its identity.
    """

    def __init__(self, plane):
        self.plane = plane

    def __getitem__(self, cut):
        return self.plane[cut]

    def __dask_tokenize__(self):
        path = getattr(self.plane, "store_path", None)
        if path is None:
            from dask.base import tokenize

            return tokenize(self.plane)
        return type(self.plane).__name__, str(path), self.plane.shape


def _read_region(planes, shape, wcs, target_wcs, box, sigma, limit=READ_PIXELS):
    """The planes' input region under a footprint box, read now if it has no
    more than ``limit`` pixels (None: whatever its size)."""
    if any(not isinstance(p, _Reader) for p in planes):
        return planes, (0, 0)
    y0, y1, x0, x1 = box
    cut = input_box(
        wcs, shape, target_wcs, (y0, x0), (y1 - y0, x1 - x0), _margin(sigma)
    )
    if cut is None:
        return planes, (0, 0)
    if limit is not None and (cut[1] - cut[0]) * (cut[3] - cut[2]) > limit:
        return planes, (0, 0)
    ya, yb, xa, xb = cut
    return [np.asarray(p[ya:yb, xa:xb]) for p in planes], (ya, xa)


def _warp_task(
    planes,
    offset,
    header,
    shape,
    target_header,
    box,
    sigma,
    bits,
    dest,
    impl,
    device="cpu",
):
    """Warp one exposure onto its footprint box; into a new file of ``dest``.

    On ``device="gpu"`` the input region is read whole and warped on the GPU
    (a CCD's three planes are a few hundred MiB there at most)."""
    wcs, target_wcs = _cached_wcs(header), _cached_wcs(target_header)
    # The reference warp is reproject's, on the host.
    gpu = device == "gpu" and impl != "reference"
    if offset == (0, 0):
        limit = None if gpu else READ_PIXELS
        planes, offset = _read_region(planes, shape, wcs, target_wcs, box, sigma, limit)
    # Planes still unread have an empty input region: nothing to warp on a GPU.
    if gpu and not any(isinstance(p, _Reader) for p in planes):
        import cupy

        planes = [cupy.asarray(np.asarray(p)) for p in planes]
    data = kernels.warp(
        planes,
        wcs,
        shape,
        target_wcs,
        box,
        sigma=sigma,
        bits=bits,
        offset=offset,
        implementation=impl,
    )
    if not isinstance(data, np.ndarray):  # warped on the GPU
        data = data.get()
    if dest is None:
        return _Warped(tuple(box), data=data)
    # A new name per attempt: a task run again (its worker lost) never writes
    # into a file that a block may be reading.
    path = Path(dest) / f"{uuid.uuid4().hex}.npy"
    np.save(path, data)
    return _Warped(tuple(box), path=str(path))


_local = threading.local()


def _cached_wcs(header: str):
    """The WCS of a header, parsed once per thread: a worker warps many
    exposures onto one patch, and one exposure onto up to four patches."""
    cache = _local.__dict__.setdefault("wcs", {})
    if header not in cache:
        if len(cache) >= 64:
            cache.clear()
        cache[header] = _header_wcs(header)
    return cache[header]


def _coadd_block(warps, origin, shape, coadd_kw):
    """Co-add one block from its box of each covering exposure's warp."""
    y0, x0 = origin
    ny, nx = shape
    parts = [(w, o) for w in warps if (o := w.overlap(y0, y0 + ny, x0, x0 + nx))]
    values = np.full((len(parts), ny, nx), np.nan, dtype=np.float32)
    variances = np.full((len(parts), ny, nx), np.nan, dtype=np.float32)
    saturated = np.zeros(shape, dtype=bool)
    # One warp's box at a time: beside the stack, the task holds one box.
    for k, (warp, (here, there)) in enumerate(parts):
        pixels = warp.read(here)
        values[k][there] = pixels[0]
        variances[k][there] = pixels[1]
        saturated[there] |= pixels[2] != 0
    kw = {key: v for key, v in coadd_kw.items() if key not in ("bad", "sat")}
    return kernels.coadd_stack(values, variances, saturated, sat=coadd_kw["sat"], **kw)


def _plane(block: np.ndarray, k: int, dtype) -> np.ndarray:
    return block[k].astype(dtype)


def _empty(shape, k: int, dtype, no_data: int) -> np.ndarray:
    fill = np.nan if k < 2 else (no_data if k == 3 else 0)
    return np.full(shape, fill, dtype=dtype)


def _whole_plane(blocks: list, grid, k: int, dtype, no_data: int) -> np.ndarray:
    """Plane ``k`` of the whole patch from its blocks (None: no exposure there),
    row by row of the grid."""
    out = np.empty((sum(grid[0]), sum(grid[1])), dtype=dtype)
    boxes = [
        (slice(y0, y0 + ny), slice(x0, x0 + nx))
        for y0, ny in zip(_starts(grid[0]), grid[0], strict=True)
        for x0, nx in zip(_starts(grid[1]), grid[1], strict=True)
    ]
    for box, block in zip(boxes, blocks, strict=True):
        out[box] = _empty((), k, dtype, no_data) if block is None else block[k]
    return out
