"""Brain masks: dipy's ``median_otsu`` on the mean b0 volume."""

from __future__ import annotations

from sciimg import kernels

__all__ = ["median_otsu_mask"]


def median_otsu_mask(
    b0,
    *,
    median_radius: int = 4,
    numpass: int = 2,
    dilate: int | None = 1,
    finalize_mask: bool = False,
    require_signal: bool = True,
    source: str | None = None,
    implementation: str = "fast",
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
    implementation : {"fast", "reference"}
        sciimg's median filter, or dipy's ``median_otsu`` itself
        (:mod:`sciimg.kernels`); the masks are identical.

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
    kernels.check_implementation(implementation)
    whole = b0.rechunk(b0.shape)
    return whole.map_blocks(
        kernels.median_otsu,
        median_radius=median_radius,
        numpass=numpass,
        dilate=dilate,
        finalize_mask=finalize_mask,
        require_signal=require_signal,
        source=source or "volume",
        implementation=implementation,
        dtype=bool,
        token="median_otsu",
    )
