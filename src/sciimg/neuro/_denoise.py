"""Noise estimation and non-local means denoising, one task per volume."""

from __future__ import annotations

from typing import Literal

import numpy as np

from sciimg import kernels

__all__ = ["estimate_sigma", "nlmeans"]


def _per_volume(data):
    """Whole volumes per chunk: both algorithms look at a volume in one piece."""
    return data.rechunk({0: -1, 1: -1, 2: -1, 3: 1})


def estimate_sigma(data, *, n_coils: int = 0):
    """Noise standard deviation of each volume, as dipy's ``estimate_sigma``.

    Parameters
    ----------
    data : dask.array.Array
        ``(x, y, z, volume)``.
    n_coils : int
        Receiver coils, for dipy's bias correction (0: none, dipy's default).

    Returns
    -------
    dask.array.Array
        ``(volume,)`` float32.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> data = da.from_array(rng.normal(100, 5, (16, 16, 16, 2)), chunks=(8, 16, 16, 1))
    >>> np.round(estimate_sigma(data).compute(), 0).tolist()
    [5.0, 5.0]
    """
    if data.ndim != 4:
        msg = f"estimate_sigma needs (x, y, z, volume) data, got shape {data.shape}"
        raise ValueError(msg)
    data = _per_volume(data)
    return data.map_blocks(
        kernels.estimate_sigma,
        n_coils=n_coils,
        drop_axis=(0, 1, 2),
        chunks=(data.chunks[3],),
        dtype=np.float32,
        token="estimate_sigma",
    )


def _nlmeans_block(block, sigma, mask, **kwargs):
    out = np.empty_like(block)
    for i in range(block.shape[-1]):
        out[..., i] = kernels.nlmeans(block[..., i], float(sigma[i]), mask, **kwargs)
    return out


def nlmeans(
    data,
    sigma,
    *,
    mask=None,
    method: Literal["classic", "blockwise"] = "classic",
    patch_radius: int = 1,
    block_radius: int | None = None,
    rician: bool = True,
    implementation: str = "fast",
):
    """Non-local means denoising of each volume, as dipy's ``nlmeans``.

    Each volume is one task, so a subject's volumes are denoised in parallel and
    the result equals dipy's on the whole 4-D array.

    Parameters
    ----------
    data : dask.array.Array
        ``(x, y, z, volume)``.
    sigma : float, array-like or dask.array.Array
        Noise standard deviation: one value, or one per volume
        (:func:`estimate_sigma`).
    mask : dask.array.Array, optional
        ``(x, y, z)`` voxels to denoise; the others become 0 (dipy's behaviour).
    method : {"classic", "blockwise"}
        ``"classic"`` is the algorithm of Mehta et al. (2017); ``"blockwise"`` is
        dipy's current default.
    patch_radius, block_radius : int
        Patch and search-block radii (block default: 5 classic, 2 blockwise).
    rician : bool
        Rician (magnitude MRI) rather than Gaussian noise.
    implementation : {"fast", "reference"}
        sciimg's compiled classic algorithm, or dipy's ``nlmeans`` itself
        (:mod:`sciimg.kernels`; ``"blockwise"`` is always dipy's).

    Returns
    -------
    dask.array.Array
        Same shape and dtype as ``data``, one chunk per volume.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> noisy = da.from_array(rng.normal(100, 5, (12, 12, 12, 2)).astype("f4"))
    >>> out = nlmeans(noisy, 5.0, block_radius=2)
    >>> bool(out.std().compute() < noisy.std().compute())
    True
    """
    import dask.array as da

    if data.ndim != 4:
        msg = f"nlmeans needs (x, y, z, volume) data, got shape {data.shape}"
        raise ValueError(msg)
    if method not in ("classic", "blockwise"):
        msg = f"method must be 'classic' or 'blockwise', got {method!r}"
        raise ValueError(msg)
    kernels.check_implementation(implementation)
    if block_radius is None:
        block_radius = 5 if method == "classic" else 2
    data = _per_volume(data)
    n_vol = data.shape[3]
    if not isinstance(sigma, da.Array):
        sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (n_vol,))
        sigma = da.from_array(np.array(sigma), chunks=(data.chunks[3],))
    elif sigma.shape != (n_vol,):
        msg = f"sigma must have one value per volume ({n_vol}), got {sigma.shape}"
        raise ValueError(msg)
    sigma = sigma.rechunk((data.chunks[3],))
    if mask is None:
        mask = da.ones(data.shape[:3], dtype=bool, chunks=-1)
    elif mask.shape != data.shape[:3]:
        msg = f"mask shape {mask.shape} does not match volumes {data.shape[:3]}"
        raise ValueError(msg)
    mask = mask.rechunk(-1)
    return da.blockwise(
        _nlmeans_block,
        "ijkv",
        data,
        "ijkv",
        sigma,
        "v",
        mask,
        "ijk",
        dtype=data.dtype,
        token=f"nlmeans_{method}",
        patch_radius=patch_radius,
        block_radius=block_radius,
        rician=rician,
        method=method,
        implementation=implementation,
    )
