"""Co-addition: inverse-variance weighted mean over visits, with sigma clipping.

Each output block stacks the visits of that block of sky only (visits whole,
sky in chunks): memory grows with the block and its visits, not with the survey.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sciimg.astro._masks import COADD_BITS, _flagged, _whole, bitmask
from sciimg.astro._warp import (
    _SPLINE_MARGIN,
    WARP_BAD,
    _block_grid,
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


def _coadd_arrays(images, variances, masks, *, bad, sat, no_data, clipped, **kw):
    """Coadd a (n, ny, nx) stack: (4, ny, nx) image, variance, depth, mask."""
    masks = np.asarray(masks, dtype=np.int64)
    valid = ~_flagged(masks, bad, masks.shape)
    mean, var, depth, was_clipped = clipped_mean(images, variances, valid, **kw)
    out_mask = np.zeros(mean.shape, dtype=np.int64)
    out_mask[(masks & sat).any(0) if sat else np.zeros(mean.shape, bool)] |= sat
    out_mask[depth == 0] |= no_data
    out_mask[was_clipped] |= clipped
    return np.stack([mean, var, depth.astype(np.float64), out_mask.astype(np.float64)])


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
    """A calibrated exposure ready to warp: planes (y, x), WCS, PSF and name."""

    image: Any
    variance: Any
    mask: Any
    wcs: Any
    psf_fwhm: float | None = None
    id: str = ""
    mask_bits: Mapping[str, int] | None = None


def _patch_block(parts, out_header, shape, bad, no_data, coadd_kw):
    """Warp every visit's cutout onto one block, then co-add them."""
    warped = [
        _warp_arrays(img, var, msk, hdr, out_header, shape, sigma, bad, no_data)
        for img, var, msk, hdr, sigma in parts
    ]
    stack = np.stack(warped, axis=1)  # (3, n, ny, nx)
    return _coadd_arrays(stack[0], stack[1], stack[2], **coadd_kw)


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
    name: str = "coadd",
) -> dict[str, Any]:
    """Warp, PSF-match and co-add exposures onto one patch, block by block.

    The same result as :func:`warp` on each exposure followed by :func:`coadd`,
    but one task per block of sky warps just the exposures that cover that block,
    from cutouts: no warped exposure is ever held whole. A block task still holds
    every covering visit of its block at once, so its memory grows with the
    visits (see ``docs/astro_memory.md``); a smaller ``chunks`` bounds it.

    Parameters
    ----------
    sources : sequence of WarpSource
        Calibrated exposures, each with its WCS and PSF FWHM (pixels).
    target_wcs, target_shape
        The patch grid.
    target_fwhm : float, optional
        PSF FWHM (pixels) to match every exposure to; default the largest
        ``psf_fwhm`` among ``sources``.
    mask_bits, nsigma, iterations, clip
        As for :func:`coadd`.
    chunks : optional
        Sky blocks; default from a small memory budget.
    name : str
        Prefix of the task names (shown on the dashboard).

    Returns
    -------
    dict of dask arrays
        As :func:`coadd`.

    Examples
    --------
    See ``docs/astro.md``; the tests compare it with :func:`warp` + :func:`coadd`.
    """
    import dask
    import dask.array as da

    if not sources:
        msg = "coadd_patch needs at least one exposure"
        raise ValueError(msg)
    if target_fwhm is None:
        fwhms = [s.psf_fwhm for s in sources if s.psf_fwhm is not None]
        target_fwhm = max(fwhms) if fwhms else None
    bits = _coadd_bits(mask_bits)
    coadd_kw = {**bits, "nsigma": nsigma, "iterations": iterations, "clip": clip}
    bad, no_data = bits["bad"], bits["no_data"]
    sources = [
        (
            s,
            psf_match_sigma(s.psf_fwhm, target_fwhm),
            *map(da.asarray, (s.image, s.variance, s.mask)),
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
                margin = _SPLINE_MARGIN + int(np.ceil(4.0 * sigma)) + 2
                box = input_box(
                    src.wcs, img.shape, target_wcs, (y0, x0), (ny, nx), margin
                )
                if box is None:
                    continue
                ya, yb, xa, xb = box
                cut = (slice(ya, yb), slice(xa, xb))
                parts.append(
                    (
                        _whole(img[cut]),
                        _whole(var[cut]),
                        _whole(msk[cut]),
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
