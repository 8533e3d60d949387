"""Brain masks: dipy's ``median_otsu`` on the mean b0 volume."""

from __future__ import annotations

import numpy as np

from sciimg.errors import InputError

__all__ = ["median_otsu_mask"]


def _median_otsu(
    volume: np.ndarray,
    median_radius: int,
    numpass: int,
    dilate: int | None,
    finalize_mask: bool,
    require_signal: bool = True,
    source: str = "volume",
) -> np.ndarray:
    import warnings

    from dipy.segment.mask import median_otsu

    if require_signal:
        _check_not_constant(volume, source)
    with warnings.catch_warnings():
        # dipy's Otsu divides by an empty class weight on a flat histogram.
        warnings.filterwarnings("ignore", "invalid value", RuntimeWarning)
        _, mask = median_otsu(
            volume,
            median_radius=median_radius,
            numpass=numpass,
            dilate=dilate,
            finalize_mask=finalize_mask,
        )
    mask = mask.astype(bool)
    if require_signal:
        _check_brain_in_mask(volume, mask, source)
    return mask


def _check_not_constant(volume: np.ndarray, source: str) -> None:
    """A series with one value everywhere (all zero: an empty or blanked
    conversion) has no tissue to find; dipy would return an empty mask and every
    map after it would be zero, with nothing said."""
    low, high = float(volume.min()), float(volume.max())
    if high == low == 0:
        raise InputError(source, "has no signal: its b0 volumes are all zero")
    if high == low:
        raise InputError(
            source, f"has no signal: its b0 volumes are {low:g} in every voxel"
        )


def _check_brain_in_mask(volume: np.ndarray, mask: np.ndarray, source: str) -> None:
    """The mask must hold some voxel brighter than the background, taken as the
    median outside the mask (air and noise). Real heads leave a wide margin: the
    median voxel inside is 2.6 times the background on dipy's small_64D, and
    nibabel's example4d has a background of 0. An empty mask holds no head."""
    inside = volume[mask]
    outside = volume[~mask]
    background = float(np.median(outside)) if outside.size else float(volume.min())
    if not np.any(inside > background):
        raise InputError(
            source,
            "no voxel is above background inside the brain mask "
            f"({int(mask.sum())} voxels; background {background:g}): no head "
            "to process in its mean b0 volume",
        )


def median_otsu_mask(
    b0,
    *,
    median_radius: int = 4,
    numpass: int = 2,
    dilate: int | None = 1,
    finalize_mask: bool = False,
    require_signal: bool = True,
    source: str | None = None,
):
    """Brain mask of a (mean b0) volume by median filtering and Otsu's threshold.

    The defaults are those of Mehta et al. (2017): radius 4, two passes, one
    dilation. The result is dipy's ``median_otsu`` mask, voxel for voxel; a
    volume with no signal in it is an error rather than a meaningless mask.

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
    require_signal : bool
        Check, in the mask's own task, that the volume is not constant (all zero,
        say) and that some voxel inside the mask is above background; False
        gives dipy's mask whatever the volume.
    source : str, optional
        The file the volume comes from, named in those errors.

    Returns
    -------
    dask.array.Array of bool
        ``(x, y, z)``, in one chunk.

    Raises
    ------
    InputError
        When computed, with ``require_signal``: the volume has no signal.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> vol = np.zeros((20, 20, 20)); vol[5:15, 5:15, 5:15] = 100.0
    >>> m = median_otsu_mask(da.from_array(vol, chunks=7), median_radius=1)
    >>> int(m.sum().compute()) > 1000
    True
    >>> median_otsu_mask(da.zeros((8, 8, 8)), source="x.nii").compute()
    Traceback (most recent call last):
    ...
    sciimg.errors.InputError: x.nii: has no signal: its b0 volumes are all zero
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
        require_signal,
        source or "volume",
        dtype=bool,
        token="median_otsu",
    )
