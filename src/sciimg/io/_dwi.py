"""Opening a diffusion series with everything the neuro pipeline checks up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sciimg.errors import InputError
from sciimg.io._gradients import read_gradients
from sciimg.io._image import Image
from sciimg.io._registry import open_image

__all__ = ["open_dwi"]


def _finite_or_raise(block: np.ndarray, source: str) -> np.ndarray:
    if not np.all(np.isfinite(block)):
        raise InputError(source, "contains NaN or infinite voxel values")
    return block


def open_dwi(
    path: str | Path,
    *,
    bval: str | Path | None = None,
    bvec: str | Path | None = None,
    **kwargs,
) -> Image:
    """Open a 4-D diffusion series with its gradient table, checking it on the way.

    Shape and gradient table are checked now; voxel values (NaN, infinity, damaged
    compressed data) are checked as each chunk is read, so the check costs no extra
    pass over the data.

    Parameters
    ----------
    path : str or Path
        NIfTI (or sciimg Zarr) diffusion series, ``x, y, z, volume``.
    bval, bvec : str or Path, optional
        Gradient files; by default found beside ``path`` (BIDS or HCP names).
    **kwargs
        Passed to the reader (``chunks``, ``chunk_memory``).

    Returns
    -------
    Image
        ``float32`` voxels (as the HCP ships them) with ``gtab`` set.

    Raises
    ------
    InputError
        Not 4-D, no or mismatched gradient table, unreadable file.

    Examples
    --------
    >>> from dipy.data import get_fnames
    >>> fdata, fbval, fbvec = get_fnames(name="small_64D")
    >>> dwi = open_dwi(fdata, bval=fbval, bvec=fbvec)
    >>> dwi.data.dtype, dwi.gtab.bvals.shape
    (dtype('float32'), (65,))
    """
    img = open_image(path, **kwargs)
    if img.data.ndim != 4:
        raise InputError(
            path,
            f"is {img.data.ndim}-D with shape {img.shape}; a 4-D "
            "diffusion series (x, y, z, volume) is needed",
        )
    if bval is not None or bvec is not None:
        if bval is None or bvec is None:
            raise InputError(path, "give both bval and bvec files, or neither")
        img.gtab = read_gradients(bval, bvec, n_volumes=img.shape[3], image=path)
    if img.gtab is None:
        raise InputError(
            path,
            "has no gradient table: no .bval/.bvec (or bvals/bvecs) files beside it",
        )
    data = img.data.astype(np.float32) if img.dtype != np.float32 else img.data
    img.data = data.map_blocks(_finite_or_raise, source=str(path), dtype=np.float32)
    return img
