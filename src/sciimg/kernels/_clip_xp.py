"""The clipped co-add written once against its input's namespace.

`clipped_mean` is whole-stack array operations (medians and variances along
the visit axis): with NumPy arrays it is sciimg's ``reference`` clipped mean
(:func:`sciimg.astro.clipped_mean`), with CuPy arrays the GPU's, in one pass per
iteration. `coadd_stack` builds the four co-add planes from it without the CPU
kernel's strips, for GPUs, whose memory holds a whole stack.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sciimg.kernels._xp import namespace

__all__ = ["clipped_mean", "coadd_planes", "coadd_stack"]


def _along_visits(xp, func, a):
    """``func(a, axis=0)`` over the values that are not NaN; NaN where none is."""
    empty = xp.isnan(a).all(0)
    return xp.where(empty, xp.nan, func(xp.where(empty, 0.0, a), axis=0))


def clipped_mean(
    values: Any,
    variances: Any,
    valid: Any = None,
    *,
    nsigma: float = 3.0,
    iterations: int = 2,
    clip: str = "variance",
) -> tuple[Any, Any, Any, Any]:
    """Inverse-variance weighted mean along axis 0 after iterative clipping:
    mean, variance, values kept, and whether any valid value was clipped
    (the algorithm: :func:`sciimg.astro.clipped_mean`).

    Examples
    --------
    >>> x = np.array([[1.0], [1.2], [0.9], [50.0]])
    >>> m, v, n, c = clipped_mean(x, np.full_like(x, 0.04))
    >>> round(float(m[0]), 3), int(n[0]), bool(c[0])
    (1.033, 3, True)
    """
    xp = namespace(values, variances, valid)
    values = xp.asarray(values, dtype=xp.float64)
    variances = xp.asarray(variances, dtype=xp.float64)
    ok = xp.isfinite(values) & xp.isfinite(variances) & (variances > 0)
    if valid is not None:
        ok &= xp.asarray(valid)
    keep = ok.copy()
    weights = xp.where(ok, 1.0 / xp.where(ok, variances, 1.0), 0.0)
    x = xp.where(ok, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        for it in range(iterations):
            kept = xp.where(keep, values, xp.nan)
            if clip == "stack" or it == 0:
                center = _along_visits(xp, xp.nanmedian, kept)
            else:
                w = xp.where(keep, weights, 0.0)
                center = (w * x).sum(0) / w.sum(0)
            if clip == "stack":
                spread = xp.sqrt(_along_visits(xp, xp.nanvar, kept))
            else:
                spread = xp.sqrt(variances)
            new = keep & (xp.abs(values - center) <= nsigma * spread)
            # Never clip a pixel empty: keep what it had.
            empty = ~new.any(0) & keep.any(0)
            keep = xp.where(empty, keep, new)
        w = xp.where(keep, weights, 0.0)
        total = w.sum(0)
        some = total > 0
        mean = xp.where(some, (w * x).sum(0) / xp.where(some, total, 1), xp.nan)
        var = xp.where(some, 1.0 / xp.where(some, total, 1), xp.nan)
    return mean, var, keep.sum(0), (ok & ~keep).any(0)


def coadd_stack(
    values: Any,
    variances: Any,
    saturated: Any,
    *,
    sat: int,
    no_data: int,
    clipped: int,
    nsigma: float = 3.0,
    iterations: int = 2,
    clip: str = "variance",
) -> Any:
    """Co-add a (n, ny, nx) stack whose flagged values are NaN: a float64
    (4, ny, nx) array of image, variance, depth and mask, as
    :func:`sciimg.kernels.coadd_stack`.

    Examples
    --------
    >>> v = np.array([1.0, 1.1, 0.9, 9.0]).reshape(4, 1, 1)
    >>> out = coadd_stack(v, np.full_like(v, 0.01), np.zeros((1, 1), bool),
    ...                   sat=2, no_data=256, clipped=512)
    >>> out[:, 0, 0].round(3).tolist()
    [1.0, 0.003, 3.0, 512.0]
    """
    kept = clipped_mean(
        values, variances, nsigma=nsigma, iterations=iterations, clip=clip
    )
    return coadd_planes(saturated, *kept, sat=sat, no_data=no_data, clipped=clipped)


def coadd_planes(
    saturated: Any,
    mean: Any,
    var: Any,
    depth: Any,
    was_clipped: Any,
    *,
    sat: int,
    no_data: int,
    clipped: int,
) -> Any:
    """The four float64 co-add planes from `clipped_mean`'s results: image,
    variance, depth, and the mask of saturated, empty and clipped pixels.

    Examples
    --------
    >>> one = np.ones((1, 1))
    >>> coadd_planes(one > 0, one, one, 0 * one, one > 0, sat=2, no_data=256,
    ...              clipped=512)[:, 0, 0].tolist()
    [1.0, 1.0, 0.0, 770.0]
    """
    xp = namespace(mean, saturated)
    mask = xp.where(xp.asarray(saturated), sat, 0)
    mask = xp.where(depth == 0, mask | no_data, mask)
    mask = xp.where(was_clipped, mask | clipped, mask)
    return xp.stack([mean, var, depth.astype(xp.float64), mask.astype(xp.float64)])
