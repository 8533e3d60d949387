"""Brain masks: dipy's ``median_otsu`` on the mean b0 volume."""

from __future__ import annotations

import numpy as np

__all__ = ["median_otsu_mask"]


def _median_otsu(
    volume: np.ndarray,
    median_radius: int,
    numpass: int,
    dilate: int | None,
    finalize_mask: bool,
) -> np.ndarray:
    from dipy.segment.mask import median_otsu

    _, mask = median_otsu(
        volume,
        median_radius=median_radius,
        numpass=numpass,
        dilate=dilate,
        finalize_mask=finalize_mask,
    )
    return mask.astype(bool)


def median_otsu_mask(
    b0,
    *,
    median_radius: int = 4,
    numpass: int = 2,
    dilate: int | None = 1,
    finalize_mask: bool = False,
):
    """Brain mask of a (mean b0) volume by median filtering and Otsu's threshold.

    The defaults are those of Mehta et al. (2017): radius 4, two passes, one
    dilation. The result is dipy's ``median_otsu`` mask, voxel for voxel.

    Parameters
    ----------
    b0 : dask.array.Array
        3-D volume ``(x, y, z)``, usually :func:`~sciimg.neuro.mean_b0`.
    median_radius : int
        Radius of the median filter, in voxels.
    numpass : int
        Passes of the median filter.
    dilate : int or None
        Iterations of binary dilation after thresholding (None: none).
    finalize_mask : bool
        Remove islands and fill holes (dipy's option).

    Returns
    -------
    dask.array.Array of bool
        ``(x, y, z)``, in one chunk.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> vol = np.zeros((20, 20, 20)); vol[5:15, 5:15, 5:15] = 100.0
    >>> m = median_otsu_mask(da.from_array(vol, chunks=7), median_radius=1)
    >>> int(m.sum().compute()) > 1000
    True
    """
    if b0.ndim != 3:
        msg = f"median_otsu_mask needs a 3-D volume, got shape {b0.shape}"
        raise ValueError(msg)
    if median_radius < 1 or numpass < 1:
        msg = "median_radius and numpass must be at least 1"
        raise ValueError(msg)
    # Otsu's threshold is a property of the whole volume, so the mask is one task.
    # It is one 3-D volume per subject (a few MB even at HCP size): parallelism
    # comes from subjects and from the denoising and fitting steps, not from here.
    whole = b0.rechunk(b0.shape)
    return whole.map_blocks(
        _median_otsu,
        median_radius,
        numpass,
        dilate,
        finalize_mask,
        dtype=bool,
        token="median_otsu",
    )
