"""The diffusion-MRI kernels: b0 mean, brain mask, noise, denoising, tensor fit.

Each takes and returns NumPy arrays (one volume, or one block of voxels with all
its volumes) and dispatches to the implementation asked for. ``"reference"`` is
dipy called directly; ``"fast"`` is sciimg's numba code where it exists, which
equals dipy within the tolerances its tests state.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from sciimg.errors import InputError
from sciimg.kernels._dispatch import kernel, on_host
from sciimg.kernels._xp import namespace

__all__ = [
    "derive_tensor_map",
    "estimate_sigma",
    "fit_tensor",
    "mean_b0",
    "median_otsu",
    "nlmeans",
    "tensor_design_rank",
]


def mean_b0(volumes: np.ndarray, *, implementation: str = "fast") -> np.ndarray:
    """Mean over the last axis (the b0 volumes), voxel by voxel.

    Examples
    --------
    >>> mean_b0(np.array([[1.0, 2.0, 6.0]])).tolist()
    [3.0]
    """
    return kernel("mean_b0")(volumes, implementation=implementation)


@kernel("mean_b0").register(("fast", "reference"))
def _mean_b0(volumes):
    return np.mean(volumes, axis=-1)


def estimate_sigma(
    volumes: np.ndarray, *, n_coils: int = 0, implementation: str = "fast"
) -> np.ndarray:
    """Noise standard deviation of each volume of ``(x, y, z[, volume])``,
    dipy's ``estimate_sigma`` (it is a few convolutions: no faster version).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> np.round(estimate_sigma(rng.normal(100, 5, (16, 16, 16, 1))), 0).tolist()
    [5.0]
    """
    return kernel("estimate_sigma")(
        volumes, n_coils=n_coils, implementation=implementation
    )


@kernel("estimate_sigma").register(("fast", "reference"))
def _estimate_sigma(volumes, *, n_coils):
    from dipy.denoise.noise_estimate import estimate_sigma as _estimate

    return np.atleast_1d(_estimate(volumes, N=n_coils)).astype(np.float32)


def median_otsu(
    volume: np.ndarray,
    *,
    median_radius: int = 4,
    numpass: int = 2,
    dilate: int | None = 1,
    finalize_mask: bool = False,
    require_signal: bool = True,
    source: str = "volume",
    implementation: str = "fast",
) -> np.ndarray:
    """Brain mask of a 3-D volume: dipy's ``median_otsu`` mask, voxel for voxel.

    With ``require_signal``, a constant volume (all zero, say) or a mask holding
    no voxel above the background is an :class:`~sciimg.errors.InputError`
    naming ``source`` rather than a meaningless mask.

    Examples
    --------
    >>> vol = np.zeros((20, 20, 20)); vol[5:15, 5:15, 5:15] = 100.0
    >>> int(median_otsu(vol, median_radius=1).sum()) > 1000
    True
    """
    if require_signal:
        _check_not_constant(volume, source)
    mask = kernel("median_otsu")(
        volume,
        median_radius=median_radius,
        numpass=numpass,
        dilate=dilate,
        finalize_mask=finalize_mask,
        implementation=implementation,
    ).astype(bool)
    if require_signal:
        _check_brain_in_mask(volume, mask, source)
    return mask


@kernel("median_otsu").register("reference")
def _median_otsu_dipy(volume, *, median_radius, numpass, dilate, finalize_mask):
    import warnings

    from dipy.segment.mask import median_otsu as _median_otsu

    with warnings.catch_warnings():
        # dipy's Otsu divides by an empty class weight on a flat histogram.
        warnings.filterwarnings("ignore", "invalid value", RuntimeWarning)
        _, mask = _median_otsu(
            volume,
            median_radius=median_radius,
            numpass=numpass,
            dilate=dilate,
            finalize_mask=finalize_mask,
        )
    return mask


@kernel("median_otsu").register("fast")
def _median_otsu_fast(volume, **kwargs):
    # Imported on first use: numba compiles (or loads from its cache) then.
    from sciimg.kernels._median_fast import median_otsu_mask

    return median_otsu_mask(volume, **kwargs)


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


def nlmeans(
    volume: np.ndarray,
    sigma: float | np.ndarray,
    mask: np.ndarray | None = None,
    *,
    method: Literal["classic", "blockwise"] = "classic",
    patch_radius: int = 1,
    block_radius: int | None = None,
    rician: bool = True,
    implementation: str = "fast",
) -> np.ndarray:
    """Non-local means of one 3-D volume, dipy's ``nlmeans`` (one thread).

    ``"fast"`` runs the classic algorithm in sciimg's own code; ``"blockwise"``
    is always dipy's. Voxels outside ``mask`` are 0, as in dipy.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noisy = rng.normal(100, 5, (12, 12, 12)).astype("f4")
    >>> bool(nlmeans(noisy, 5.0, block_radius=2).std() < noisy.std())
    True
    """
    if block_radius is None:
        block_radius = 5 if method == "classic" else 2
    return kernel("nlmeans")(
        volume,
        sigma,
        mask,
        method=method,
        patch_radius=patch_radius,
        block_radius=block_radius,
        rician=rician,
        implementation=implementation,
    )


@kernel("nlmeans").register("reference")
def _nlmeans_dipy(volume, sigma, mask, *, method, patch_radius, block_radius, rician):
    from dipy.denoise.nlmeans import nlmeans as _nlmeans

    return _nlmeans(
        volume,
        sigma if np.ndim(sigma) else float(sigma),
        mask=mask,
        patch_radius=patch_radius,
        block_radius=block_radius,
        rician=rician,
        num_threads=1,
        method=method,
    )


@kernel("nlmeans").register("fast")
def _nlmeans_fast(volume, sigma, mask, *, method, **kwargs):
    if method != "classic":
        return _nlmeans_dipy(volume, sigma, mask, method=method, **kwargs)
    # Imported on first use: numba compiles (or loads from its cache) then.
    from sciimg.kernels._nlmeans_fast import nlmeans_classic

    return nlmeans_classic(volume, sigma, mask, **kwargs)


def tensor_design_rank(gtab) -> int:
    """Rank of the tensor model's design matrix for ``gtab`` (7 when it can fit).

    Examples
    --------
    >>> from dipy.data import get_3shell_gtab
    >>> tensor_design_rank(get_3shell_gtab())
    7
    """
    from dipy.reconst.dti import design_matrix

    return int(np.linalg.matrix_rank(design_matrix(gtab)))


def fit_tensor(
    data: np.ndarray,
    gtab,
    mask: np.ndarray | None = None,
    *,
    fit_method: Literal["WLS", "OLS", "NLLS"] = "WLS",
    implementation: str = "fast",
) -> np.ndarray:
    """Diffusion tensors of a block of voxels ``(..., volume)``: dipy's
    ``TensorFit.model_params``, ``(..., 12)`` (three eigenvalues, then the 3×3
    eigenvectors as columns), 0 outside ``mask``.

    Examples
    --------
    >>> from dipy.data import get_3shell_gtab
    >>> gtab = get_3shell_gtab()
    >>> signal = 1000 * np.exp(-gtab.bvals * 1e-3)[None, :]
    >>> np.round(fit_tensor(signal, gtab)[0, :3] * 1e3, 3).tolist()
    [1.0, 1.0, 1.0]
    """
    return kernel("fit_tensor")(
        data, gtab, mask, fit_method=fit_method, implementation=implementation
    )


@kernel("fit_tensor").register("reference")
def _fit_tensor_dipy(data, gtab, mask, *, fit_method):
    from dipy.reconst.dti import TensorModel

    if mask is None:
        mask = np.ones(data.shape[:-1], dtype=bool)
    if not mask.any():  # dipy cannot fit an empty set of voxels
        return np.zeros((*data.shape[:-1], 12))
    return TensorModel(gtab, fit_method=fit_method).fit(data, mask=mask).model_params


@kernel("fit_tensor").register("fast")
def _fit_tensor_fast(data, gtab, mask, *, fit_method):
    if fit_method not in ("WLS", "OLS"):
        return _fit_tensor_dipy(data, gtab, mask, fit_method=fit_method)
    # Imported on first use: numba compiles (or loads from its cache) then.
    from sciimg.kernels._tensor_fast import fit_tensor as _fit_tensor

    return _fit_tensor(data, gtab, mask, fit_method=fit_method)


def derive_tensor_map(params: np.ndarray, name: str) -> np.ndarray:
    """One map of the tensors ``params`` (``(..., 12)``, as :func:`fit_tensor`):
    ``fa``, ``md``, ``ad``, ``rd``, ``rgb``, ``evals`` or ``evecs``, as dipy
    computes it.

    Examples
    --------
    >>> p = np.zeros((1, 12)); p[:, :3] = [1.7e-3, 3e-4, 3e-4]
    >>> p[:, 3:] = np.eye(3).ravel()
    >>> round(float(derive_tensor_map(p, "fa")[0]), 3)
    0.799
    """
    from dipy.reconst import dti

    if namespace(params) is not np:
        return on_host(derive_tensor_map)(params, name)  # dipy's formulas
    evals = params[..., :3]
    evecs = params[..., 3:].reshape((*params.shape[:-1], 3, 3))
    maps: dict[str, Any] = {
        "evals": lambda: evals,
        "evecs": lambda: evecs,
        "fa": lambda: dti.fractional_anisotropy(evals),
        "md": lambda: dti.mean_diffusivity(evals),
        "ad": lambda: dti.axial_diffusivity(evals),
        "rd": lambda: dti.radial_diffusivity(evals),
        "rgb": lambda: dti.color_fa(dti.fractional_anisotropy(evals), evecs),
    }
    if name not in maps:
        msg = f"no tensor map {name!r} (there are: {', '.join(maps)})"
        raise ValueError(msg)
    return maps[name]()
