"""Co-addition: inverse-variance weighted mean over visits, with sigma clipping.

Each output block stacks the visits of that block of sky only (visits whole,
sky in chunks). :func:`coadd_patch` keeps a task's memory bounded as visits grow:
a block holds one float32 value and variance per covering exposure and pixel,
its side shrinks so that this stack fits a budget, and the clipping works on a
few rows at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sciimg.astro._masks import COADD_BITS, _flagged, _whole, bitmask
from sciimg.astro._warp import (
    BLOCK,
    WARP_BAD,
    _block_grid,
    _margin,
    _starts,
    _warp_arrays,
    input_box,
    psf_match_sigma,
)

__all__ = ["WarpSource", "clipped_mean", "coadd", "coadd_patch"]

Clip = Literal["variance", "stack"]


def clipped_mean(
    values: np.ndarray,
    variances: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    nsigma: float = 3.0,
    iterations: int = 2,
    clip: Clip = "variance",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-variance weighted mean along axis 0 after iterative sigma clipping.

    Each iteration measures a centre and a spread from the values still kept and
    drops those more than ``nsigma`` spreads from the centre. With
    ``clip="variance"`` the spread of each value is its own noise (the square root
    of its variance) and the centre is the median, then the weighted mean: this
    finds outliers even among three visits. With ``clip="stack"`` centre and
    spread are the median and standard deviation of the stack, as in
    ``astropy.stats.sigma_clip``. A pixel where every value would go keeps the
    values it had.

    Parameters
    ----------
    values, variances : ndarray, shape (n, ...)
    valid : ndarray of bool, optional
        Values allowed at all (default: finite with positive variance).

    Returns
    -------
    mean, variance, depth, clipped : ndarray
        Weighted mean and its variance (NaN without data), number of values kept,
        and whether any valid value was clipped.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0], [1.2], [0.9], [50.0]])
    >>> m, v, n, c = clipped_mean(x, np.full_like(x, 0.04))
    >>> round(float(m[0]), 3), int(n[0]), bool(c[0])
    (1.033, 3, True)
    """
    values = np.asarray(values, dtype=np.float64)
    variances = np.asarray(variances, dtype=np.float64)
    ok = np.isfinite(values) & np.isfinite(variances) & (variances > 0)
    if valid is not None:
        ok &= valid
    keep = ok.copy()
    weights = np.where(ok, 1.0 / np.where(ok, variances, 1.0), 0.0)
    x = np.where(ok, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        for it in range(iterations):
            kept = np.where(keep, values, np.nan)
            if clip == "stack" or it == 0:
                center = _nanmedian(kept)
            else:
                w = np.where(keep, weights, 0.0)
                center = (w * x).sum(0) / w.sum(0)
            spread = np.sqrt(_nanvar(kept)) if clip == "stack" else np.sqrt(variances)
            within = np.abs(values - center) <= nsigma * spread
            new = keep & within
            # Never clip a pixel empty: keep what it had.
            empty = ~new.any(0) & keep.any(0)
            keep = np.where(empty, keep, new)
        w = np.where(keep, weights, 0.0)
        total = w.sum(0)
        mean = np.where(
            total > 0, (w * x).sum(0) / np.where(total > 0, total, 1), np.nan
        )
        var = np.where(total > 0, 1.0 / np.where(total > 0, total, 1), np.nan)
    return mean, var, keep.sum(0), (ok & ~keep).any(0)


def _without_empty(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Pixels without any value would make NumPy warn (from worker threads, where
    # warnings cannot be silenced safely); give them a dummy and restore NaN.
    empty = np.isnan(a).all(0)
    return np.where(empty, 0.0, a), empty


def _nanmedian(a: np.ndarray) -> np.ndarray:
    filled, empty = _without_empty(a)
    return np.where(empty, np.nan, np.nanmedian(filled, axis=0))


def _nanvar(a: np.ndarray) -> np.ndarray:
    filled, empty = _without_empty(a)
    return np.where(empty, np.nan, np.nanvar(filled, axis=0))


#: Values per strip of rows in which a stack is clipped: bounds the float64
#: temporaries of :func:`clipped_mean` (about 70 bytes per value) to a few MiB.
_STRIP_VALUES = 1 << 16


def _coadd_planes(values, variances, saturated, *, sat, no_data, clipped, **kw):
    """Coadd a (n, ny, nx) stack whose flagged values are NaN, strip by strip.

    Returns the (4, ny, nx) image, variance, depth and mask; ``saturated`` says
    where any visit was saturated.
    """
    n, ny, nx = values.shape
    out = np.empty((4, ny, nx))
    rows = max(1, _STRIP_VALUES // max(1, n * nx))
    for r in range(0, ny, rows):
        s = slice(r, r + rows)
        mean, var, depth, was_clipped = clipped_mean(
            values[:, s], variances[:, s], **kw
        )
        mask = np.where(saturated[s], sat, 0)
        mask[depth == 0] |= no_data
        mask[was_clipped] |= clipped
        out[:, s] = mean, var, depth, mask
    return out


def _coadd_arrays(images, variances, masks, *, bad, sat, **kw):
    """Coadd a (n, ny, nx) stack: (4, ny, nx) image, variance, depth, mask."""
    masks = np.asarray(masks, dtype=np.int64)
    values = np.where(_flagged(masks, bad, masks.shape), np.nan, images)
    saturated = (masks & sat).any(0) if sat else np.zeros(masks.shape[1:], bool)
    return _coadd_planes(values, variances, saturated, sat=sat, **kw)


def _coadd_bits(mask_bits):
    bits = dict(COADD_BITS if mask_bits is None else {**COADD_BITS, **mask_bits})
    return {
        "bad": bitmask(WARP_BAD, bits),
        "sat": bitmask(["SAT"], bits),
        "no_data": bitmask(["NO_DATA"], bits),
        "clipped": bitmask(["CLIPPED"], bits),
    }


def _split(stacked) -> dict[str, Any]:
    return {
        "image": stacked[0].astype(np.float32),
        "variance": stacked[1].astype(np.float32),
        "depth": stacked[2].astype(np.int16),
        "mask": stacked[3].astype(np.int32),
    }


def coadd(
    images,
    variances,
    masks,
    *,
    mask_bits: Mapping[str, int] | None = None,
    nsigma: float = 3.0,
    iterations: int = 2,
    clip: Clip = "variance",
) -> dict[str, Any]:
    """Co-add warped visits: clipped inverse-variance weighted mean per pixel.

    Parameters
    ----------
    images, variances, masks : arrays of shape (n_visits, ny, nx)
        Visits on a common grid (e.g. from :func:`warp`), NaN where a visit has
        no data. Chunks along the sky are kept; visits are taken whole.
    mask_bits : mapping, optional
        Bit index per flag name; BAD, SAT, CR, NO_DATA and EDGE pixels are left
        out.
    nsigma, iterations : float, int
        Clipping threshold and passes (Mehta et al.: 3σ, two passes).
    clip : {"variance", "stack"}
        Spread used for clipping; see :func:`clipped_mean`.

    Returns
    -------
    dict of dask arrays, shape (ny, nx)
        ``image``, ``variance``, ``depth`` (visits kept per pixel) and ``mask``
        (``NO_DATA`` without visits, ``SAT`` if any visit saturated, ``CLIPPED``
        if any visit was rejected).

    Examples
    --------
    >>> import numpy as np
    >>> imgs = np.stack([np.full((4, 4), v) for v in (1.0, 1.1, 0.9, 9.0)])
    >>> out = coadd(imgs, np.full_like(imgs, 0.01), np.zeros(imgs.shape, "i4"))
    >>> float(out["image"][0, 0]), int(out["depth"][0, 0])
    (1.0, 3)
    """
    import dask.array as da

    images, variances, masks = (
        da.asarray(a).rechunk({0: -1}) for a in (images, variances, masks)
    )
    variances = variances.rechunk(images.chunks)
    masks = masks.rechunk(images.chunks)
    stacked = da.map_blocks(
        _coadd_arrays,
        images,
        variances,
        masks,
        dtype=np.float64,
        chunks=((4,), *images.chunks[1:]),
        **_coadd_bits(mask_bits),
        nsigma=nsigma,
        iterations=iterations,
        clip=clip,
    )
    return _split(stacked)


@dataclass
class WarpSource:
    """A calibrated exposure ready to warp: planes (y, x), WCS, PSF and name.

    The planes are dask or NumPy arrays, or arrays that read on slicing (Zarr
    arrays, memory maps): those are cut inside each block task, so an exposure
    is read only when, and where, a block that needs it runs.
    """

    image: Any
    variance: Any
    mask: Any
    wcs: Any
    psf_fwhm: float | None = None
    id: str = ""
    mask_bits: Mapping[str, int] | None = None


#: Bytes of visit stack (float32 value and variance per exposure and pixel) that
#: one block task of :func:`coadd_patch` may hold by default.
STACK_MEMORY = 32 * 2**20
#: Smallest default block side: below it the cutouts' margins cost more than the
#: block.
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


class _Cutout:
    """A box of a plane that reads on slicing, read when the block task runs."""

    def __init__(self, plane, cut):
        self.plane, self.cut = plane, cut

    def read(self) -> np.ndarray:
        return np.asarray(self.plane[self.cut])

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return tokenize(self.plane), str(self.cut)


def _cutout(plane, cut):
    import dask.array as da

    if isinstance(plane, da.Array):
        return _whole(plane[cut])
    return _Cutout(plane, cut)


def _patch_block(parts, out_header, shape, bad, no_data, coadd_kw):
    """Warp each covering exposure's cutout onto one block, then co-add them.

    One exposure at a time is read and warped; what is kept of it is its float32
    values (NaN where flagged) and variances, and whether it saturated.
    """
    n = len(parts)
    values = np.empty((n, *shape), dtype=np.float32)
    variances = np.empty((n, *shape), dtype=np.float32)
    saturated = np.zeros(shape, dtype=bool)
    sat = coadd_kw["sat"]
    for k, (*planes, in_header, sigma) in enumerate(parts):
        img, var, msk = (p.read() if isinstance(p, _Cutout) else p for p in planes)
        w_img, w_var, w_mask = _warp_arrays(
            img, var, msk, in_header, out_header, shape, sigma, bad, no_data
        )
        w_mask = w_mask.astype(np.int64)
        values[k] = np.where(_flagged(w_mask, bad, shape), np.nan, w_img)
        variances[k] = w_var
        if sat:
            saturated |= (w_mask & sat) != 0
    kw = {key: v for key, v in coadd_kw.items() if key not in ("bad", "sat")}
    return _coadd_planes(values, variances, saturated, sat=sat, **kw)


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
    memory: int | str | None = None,
    name: str = "coadd",
) -> dict[str, Any]:
    """Warp, PSF-match and co-add exposures onto one patch, block by block.

    The same result as :func:`warp` on each exposure followed by :func:`coadd`,
    but one task per block of sky warps just the exposures that cover that block,
    from cutouts, one exposure at a time: no warped exposure is ever held whole.
    A block task holds a float32 value and variance per covering exposure and
    pixel; by default the block side shrinks as exposures are added so that this
    stack stays within ``memory``, which keeps a task's memory flat as visits
    grow (``docs/astro_memory.md``).

    Parameters
    ----------
    sources : sequence of WarpSource
        Calibrated exposures, each with its WCS and PSF FWHM (pixels). Planes that
        read on slicing (Zarr arrays) are read inside the block tasks.
    target_wcs, target_shape
        The patch grid.
    target_fwhm : float, optional
        PSF FWHM (pixels) to match every exposure to; default the largest
        ``psf_fwhm`` among ``sources``.
    mask_bits, nsigma, iterations, clip
        As for :func:`coadd`.
    chunks : optional
        Sky blocks, as dask chunks; overrides ``memory``.
    memory : int or str, optional
        Bytes of visit stack per block task (default :data:`STACK_MEMORY`, 32 MiB):
        square blocks of side ``sqrt(memory / (8 * len(sources)))``, between
        :data:`MIN_BLOCK` and :data:`BLOCK` pixels.
    name : str
        Prefix of the task names (shown on the dashboard).

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
    import dask.array as da
    from dask.utils import parse_bytes

    if not sources:
        msg = "coadd_patch needs at least one exposure"
        raise ValueError(msg)
    if target_fwhm is None:
        fwhms = [s.psf_fwhm for s in sources if s.psf_fwhm is not None]
        target_fwhm = max(fwhms) if fwhms else None
    bits = _coadd_bits(mask_bits)
    coadd_kw = {**bits, "nsigma": nsigma, "iterations": iterations, "clip": clip}
    bad, no_data = bits["bad"], bits["no_data"]
    if chunks is None:
        budget = STACK_MEMORY if memory is None else parse_bytes(memory)
        chunks = _block_side(len(sources), budget)
    sources = [
        (
            s,
            psf_match_sigma(s.psf_fwhm, target_fwhm),
            *(
                da.asarray(p) if isinstance(p, np.ndarray) else p
                for p in (s.image, s.variance, s.mask)
            ),
        )
        for s in sources
    ]
    grid = _block_grid(tuple(target_shape), chunks)
    rows = []
    for i, (y0, ny) in enumerate(zip(_starts(grid[0]), grid[0], strict=True)):
        row = []
        for j, (x0, nx) in enumerate(zip(_starts(grid[1]), grid[1], strict=True)):
            out_header = target_wcs.slice(
                (slice(y0, y0 + ny), slice(x0, x0 + nx))
            ).to_header_string()
            parts = []
            for src, sigma, img, var, msk in sources:
                box = input_box(
                    src.wcs, img.shape, target_wcs, (y0, x0), (ny, nx), _margin(sigma)
                )
                if box is None:
                    continue
                ya, yb, xa, xb = box
                cut = (slice(ya, yb), slice(xa, xb))
                parts.append(
                    (
                        *(_cutout(p, cut) for p in (img, var, msk)),
                        src.wcs.slice(cut).to_header_string(),
                        sigma,
                    )
                )
            if parts:
                token = dask.base.tokenize(parts, out_header, coadd_kw)
                block = dask.delayed(_patch_block, pure=True)(
                    parts,
                    out_header,
                    (ny, nx),
                    bad,
                    no_data,
                    coadd_kw,
                    dask_key_name=f"{name}-{i}-{j}-{token}",
                )
                row.append(da.from_delayed(block, (4, ny, nx), dtype=np.float64))
            else:
                empty = np.zeros((4, ny, nx))
                empty[0:2] = np.nan
                empty[3] = no_data
                row.append(da.from_array(empty, chunks=-1))
        rows.append(row)
    return _split(da.block(rows))
