"""Co-addition: inverse-variance weighted mean over visits, with sigma clipping.

Each output block stacks the visits of that block of sky only (visits whole,
sky in chunks). :func:`coadd_patch` keeps a task's memory bounded as visits grow:
a block holds one float32 value and variance per covering exposure and pixel,
its side shrinks so that this stack fits a memory budget, and the clipping works on a
few rows at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from sciimg.astro._masks import COADD_BITS, _flagged, bitmask
from sciimg.astro._warp import WARP_BAD

__all__ = ["clipped_mean", "coadd"]

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
    from sciimg import kernels

    return kernels.clipped_mean(
        values,
        variances,
        valid,
        nsigma=nsigma,
        iterations=iterations,
        clip=clip,
        implementation="reference",
    )


def _coadd_arrays(images, variances, masks, *, bad, sat, **kw):
    """Coadd a (n, ny, nx) stack: (4, ny, nx) image, variance, depth, mask."""
    from sciimg.kernels import coadd_stack

    masks = np.asarray(masks, dtype=np.int64)
    values = np.where(_flagged(masks, bad, masks.shape), np.nan, images)
    saturated = (masks & sat).any(0) if sat else np.zeros(masks.shape[1:], bool)
    return coadd_stack(values, variances, saturated, sat=sat, **kw)


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
    implementation: str = "fast",
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
    implementation : {"fast", "reference"}
        Of the kernel :func:`sciimg.kernels.clipped_mean`.

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
        implementation=implementation,
    )
    return _split(stacked)
