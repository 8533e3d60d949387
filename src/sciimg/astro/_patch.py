"""Co-addition of one patch as a graph: one warp task per exposure, then blocks.

Each exposure that covers the patch is warped and PSF-matched once, by one task,
over the bounding box of its footprint (:func:`warp_footprint`), and the co-add
tasks, one per block of sky, take their box of each warp. A block's stack of
visits is what bounds its memory: its side shrinks as exposures are added, so
that the stack fits a memory budget.

Where the warps wait between the two depends on ``scratch``. Without it they are
task results held by the workers, so a patch's warps may all be in memory at
once. With it each warp task writes its warp to a file of its own in that folder
and returns the path, and each block reads just its box of each file: what the
workers hold between tasks is then a few paths, whatever the number of visits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sciimg.astro._coadd import Clip, _coadd_bits
from sciimg.astro._footprint import footprint_box
from sciimg.astro._masks import whole
from sciimg.astro._patch_tasks import (
    _coadd_block,
    _empty,
    _plane,
    _Reader,
    _warp_task,
    _whole_plane,
)
from sciimg.astro._psf import target_psf_fwhm
from sciimg.astro._warp import (
    BLOCK,
    _block_grid,
    _margin,
    _starts,
    input_box,
    psf_match_sigma,
)
from sciimg.io import chunk_budget

__all__ = ["WarpSource", "coadd_patch"]


@dataclass
class WarpSource:
    """A calibrated exposure ready to warp: planes (y, x), WCS, PSF and name.

    The planes are dask or NumPy arrays, or arrays that read on slicing (Zarr
    arrays, memory maps): those are read inside the exposure's warp task, band
    by band, so an exposure is read only when, and where, it is warped.
    """

    image: Any
    variance: Any
    mask: Any
    wcs: Any
    psf_fwhm: float | None = None
    id: str = ""
    mask_bits: Mapping[str, int] | None = None


#: A block task's visit stack (float32 value and variance per exposure and
#: pixel) is ``chunk_memory`` divided by this. With Dask's default chunk size
#: (128 MiB) that is the 32 MiB stack at which the workers' peak memory was
#: measured flat from 2 to 24 visits (docs/astro_memory.md); the task holds its
#: four output planes and one warp's box beside it.
STACK_SHARE = 4
#: Smallest default block side: below it the per-task costs outweigh the block.
MIN_BLOCK = 64


def _block_side(n_sources: int, memory: int) -> int:
    """Side of square blocks whose stack of ``n_sources`` fits ``memory`` bytes.

    Examples
    --------
    >>> _block_side(8, 32 * 2**20), _block_side(96, 32 * 2**20)
    (256, 209)
    """
    side = int(np.sqrt(memory / (8 * max(1, n_sources))))
    return int(np.clip(side, MIN_BLOCK, BLOCK))


def _planes(src: WarpSource, target_wcs, box, sigma):
    """The planes a warp task reads, and the exposure pixel of their [0, 0].

    Arrays that read on slicing go as they are (read in the task, band by band);
    dask and NumPy arrays as one value, cut to the input the footprint needs.
    """
    import dask.array as da

    planes = (src.image, src.variance, src.mask)
    if not any(isinstance(p, np.ndarray | da.Array) for p in planes):
        return [_Reader(p) for p in planes], (0, 0)
    y0, y1, x0, x1 = box
    cut = input_box(
        src.wcs,
        src.image.shape,
        target_wcs,
        (y0, x0),
        (y1 - y0, x1 - x0),
        _margin(sigma),
    )
    if cut is None:
        return None, (0, 0)
    ya, yb, xa, xb = cut
    window = (slice(ya, yb), slice(xa, xb))
    return [whole(da.asarray(p)[window]) for p in planes], (ya, xa)


#: The coadd's planes: name and type, in the order of ``coadd_stack``'s output.
_PLANES = (
    ("image", np.float32),
    ("variance", np.float32),
    ("depth", np.int16),
    ("mask", np.int32),
)


def _assemble(
    blocks: dict, grid, name: str, no_data: int, whole_planes: bool
) -> dict[str, Any]:
    """The coadd's four planes as dask arrays, each chunk taken straight from its
    block's task (no tasks in between that only pass or cast values), or each
    plane one chunk made from all the blocks in one task."""
    import dask
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    done = [b for b in blocks.values() if b is not None]
    token = dask.base.tokenize([b.key for b in done], grid, no_data, whole_planes)
    keys = [None if b is None else b.key for _, b in sorted(blocks.items())]
    out = {}
    for k, (plane, dtype) in enumerate(_PLANES):
        key = f"{name}-{plane}-{token}"
        if whole_planes:
            layer = {(key, 0, 0): (_whole_plane, keys, grid, k, dtype, no_data)}
            chunks = ((sum(grid[0]),), (sum(grid[1]),))
        else:
            layer = {}
            for (i, j), block in blocks.items():
                shape = (grid[0][i], grid[1][j])
                layer[(key, i, j)] = (
                    (_empty, shape, k, dtype, no_data)
                    if block is None
                    else (_plane, block.key, k, dtype)
                )
            chunks = grid
        graph = HighLevelGraph.from_collections(key, layer, dependencies=done)
        out[plane] = da.Array(graph, key, chunks, dtype=dtype)
    return out


def coadd_patch(
    sources: Sequence[WarpSource],
    target_wcs,
    target_shape: Sequence[int],
    *,
    target_fwhm: float | None = None,
    mask_bits: Mapping[str, int] | None = None,
    nsigma: float = 3.0,
    iterations: int = 2,
    clip: Clip = "variance",
    chunks: Any = None,
    chunk_memory: int | str | None = None,
    name: str = "coadd",
    scratch: str | Path | None = None,
    implementation: str = "fast",
    device: str = "cpu",
    whole_planes: bool = False,
) -> dict[str, Any]:
    """Warp, PSF-match and co-add exposures onto one patch.

    The same result as :func:`warp` on each exposure followed by :func:`coadd`:
    one task per exposure warps it once over its footprint on the patch, then one
    task per block of sky co-adds its box of each warp. A block task holds a
    float32 value and variance per covering exposure and pixel; by default the
    block side shrinks as exposures are added so that this stack stays within
    a quarter of ``chunk_memory`` (``docs/astro_memory.md``).

    Parameters
    ----------
    sources : sequence of WarpSource
        Calibrated exposures, each with its WCS and PSF FWHM (pixels). Planes that
        read on slicing (Zarr arrays) are read inside the warp tasks.
    target_wcs, target_shape
        The patch grid.
    target_fwhm : float, optional
        PSF FWHM (pixels) to match every exposure to; default the largest
        ``psf_fwhm`` among ``sources`` (:func:`target_psf_fwhm`).
    mask_bits, nsigma, iterations, clip
        As for :func:`coadd`.
    chunks : optional
        Sky blocks, as dask chunks; overrides ``chunk_memory``.
    chunk_memory : int or str, optional
        Bytes per chunk (default Dask's ``array.chunk-size``). A block task holds
        a visit stack of a quarter of it (:data:`STACK_SHARE`): square blocks of
        side ``sqrt(stack / (8 * len(sources)))``, between :data:`MIN_BLOCK` and
        :data:`BLOCK` pixels.
    name : str
        Prefix of the block tasks' names (shown on the dashboard); the warp
        tasks' names start with ``warp`` instead of ``coadd``.
    scratch : path, optional
        Folder (on storage every worker reads) for the warps, one ``.npy`` file
        each (12 bytes per pixel of footprint); the caller removes it once the
        coadd is computed. Without it the warps are task results in the
        workers' memory, which grows with the number of exposures.
    implementation : {"fast", "reference"}
        Of the kernels :func:`sciimg.kernels.warp` and
        :func:`sciimg.kernels.clipped_mean`.
    device : {"cpu", "gpu"}
        Where the warps are made: on ``"gpu"`` each warp task copies its
        exposure's input region to the GPU, warps it there and copies the warp
        back. The co-add blocks run on the host.
    whole_planes : bool
        Each plane as one chunk, put together from the blocks in one task,
        rather than one chunk per block: for a caller that needs whole planes
        (source detection), this spares a task per block and plane.

    Returns
    -------
    dict of dask arrays
        As :func:`coadd`.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.wcs import WCS
    >>> w = WCS(naxis=2)
    >>> w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> w.wcs.crval, w.wcs.crpix = [150.0, 2.0], [32.5, 32.5]
    >>> w.wcs.cd = [[-1e-4, 0], [0, 1e-4]]
    >>> rng = np.random.default_rng(0)
    >>> visits = [
    ...     WarpSource(rng.normal(0, 1, (64, 64)), np.ones((64, 64)),
    ...                np.zeros((64, 64), "i4"), w, id=f"v{k}")
    ...     for k in range(4)
    ... ]
    >>> out = coadd_patch(visits, w, (64, 64), chunks=32)
    >>> int(out["depth"][32, 32]), round(float(out["variance"][32, 32]), 2)
    (4, 0.25)
    """
    import dask

    if not sources:
        msg = "coadd_patch needs at least one exposure"
        raise ValueError(msg)
    target_fwhm = target_psf_fwhm((s.psf_fwhm for s in sources), target_fwhm)
    bits = _coadd_bits(mask_bits)
    coadd_kw = {
        **bits,
        "nsigma": nsigma,
        "iterations": iterations,
        "clip": clip,
        "implementation": implementation,
    }
    if chunks is None:
        stack = chunk_budget(chunk_memory) // STACK_SHARE
        chunks = _block_side(len(sources), stack)
    dest = None
    if scratch is not None:
        # Made here, once: a task never makes it, so none can bring it back
        # after the caller has removed it.
        Path(scratch).mkdir(parents=True, exist_ok=True)
        dest = str(scratch)
    shape = tuple(int(n) for n in target_shape)
    target_header = target_wcs.to_header_string()
    warp_name = "warp" + name[5:] if name.startswith("coadd") else f"{name}-warp"
    warp_bits = (bits["bad"], bits["sat"], bits["no_data"])
    warps = []
    for k, src in enumerate(sources):
        box = footprint_box(src.wcs, src.image.shape, target_wcs, shape)
        if box is None:
            continue
        sigma = psf_match_sigma(src.psf_fwhm, target_fwhm)
        planes, offset = _planes(src, target_wcs, box, sigma)
        if planes is None:
            continue
        args = (
            planes,
            offset,
            src.wcs.to_header_string(),
            tuple(src.image.shape),
            target_header,
            box,
            sigma,
            warp_bits,
            dest,
            implementation,
            device,
        )
        token = dask.base.tokenize(*args)
        task = dask.delayed(_warp_task, pure=True)(
            *args, dask_key_name=f"{warp_name}-{k}-{token}"
        )
        warps.append((task, box))
    grid = _block_grid(shape, chunks)
    blocks = {}
    for i, (y0, ny) in enumerate(zip(_starts(grid[0]), grid[0], strict=True)):
        for j, (x0, nx) in enumerate(zip(_starts(grid[1]), grid[1], strict=True)):
            covering = [
                task
                for task, (wy0, wy1, wx0, wx1) in warps
                if wy0 < y0 + ny and y0 < wy1 and wx0 < x0 + nx and x0 < wx1
            ]
            if not covering:
                blocks[i, j] = None
                continue
            token = dask.base.tokenize(covering, y0, x0, ny, nx, coadd_kw)
            blocks[i, j] = dask.delayed(_coadd_block, pure=True)(
                covering,
                (y0, x0),
                (ny, nx),
                coadd_kw,
                dask_key_name=f"{name}-{i}-{j}-{token}",
            )
    return _assemble(blocks, grid, name, bits["no_data"], whole_planes)
