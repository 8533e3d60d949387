"""Selecting the b0 (unweighted) volumes and averaging them."""

from __future__ import annotations

import numpy as np

from sciimg import kernels
from sciimg.io import chunks_for

__all__ = ["b0_indices", "mean_b0"]


def b0_indices(bvals, *, threshold: float = 10.0) -> np.ndarray:
    """Indices of the volumes with ``b <= threshold``.

    Parameters
    ----------
    bvals : array-like or dipy GradientTable
        b-values (s/mm²), one per volume.
    threshold : float
        Largest b-value still counted as b0 (10 in Mehta et al., 2017).

    Examples
    --------
    >>> b0_indices([0, 5, 1000, 2000, 0]).tolist()
    [0, 1, 4]
    """
    bvals = np.asarray(getattr(bvals, "bvals", bvals), dtype=float)
    idx = np.flatnonzero(bvals <= threshold)
    if idx.size == 0:
        msg = f"no b0 volume: no b-value <= {threshold} (smallest is {bvals.min():g})"
        raise ValueError(msg)
    return idx


def mean_b0(data, bvals, *, threshold: float = 10.0, chunk_memory=None):
    """Mean of the b0 volumes of a diffusion series, voxel by voxel.

    Parameters
    ----------
    data : dask.array.Array
        Diffusion series ``(x, y, z, volume)``.
    bvals : array-like or dipy GradientTable
        b-values per volume.
    threshold : float
        b-values up to this count as b0.
    chunk_memory : int or str, optional
        Bytes per chunk of the spatial blocks the mean is taken over.

    Returns
    -------
    dask.array.Array
        ``(x, y, z)``, the same values as
        ``np.mean(data[..., b0_indices(bvals)], axis=3)``.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> data = da.from_array(np.arange(24.0).reshape(2, 2, 2, 3), chunks=(1, 2, 2, 1))
    >>> mean_b0(data, [0, 1000, 0]).compute()[0, 0, 0]
    np.float64(1.0)
    """
    idx = b0_indices(bvals, threshold=threshold)
    b0 = data[..., idx]
    # All b0 volumes of a voxel in one chunk: the mean is then exactly numpy's.
    b0 = b0.rechunk(
        chunks_for(b0.shape, b0.dtype, chunk_memory=chunk_memory, whole=(3,))
    )
    return b0.map_blocks(
        kernels.mean_b0, drop_axis=3, dtype=data.dtype, token="mean_b0"
    )
