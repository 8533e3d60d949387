"""The diffusion-MRI kernels for GPUs, written against their input's namespace.

Each function computes what the CPU kernel of the same name computes, with
whole-array operations a GPU runs well (CuPy), and runs unchanged under NumPy,
where the tests compare it with the CPU kernels. They take and return arrays
of their input's namespace:

* `mean_b0`: the mean over the last axis.
* `estimate_sigma`: dipy's estimator (the 6-neighbour convolution), for
  ``n_coils=0``; other coil counts run on the host.
* `median_otsu`: ``numpass`` cube median filters (``ndimage.median_filter``,
  scipy's reflect mode, as dipy filters), scikit-image's Otsu threshold on a
  256-bin histogram, and dilation by the 6-connected cross.
* `nlmeans_classic`: dipy's classic non-local means, dense: for each search
  offset the squared differences of the whole volume are box-summed over the
  patch and weighted, so the work is a few hundred full-volume passes.
* `fit_tensor`: OLS and WLS through the 7×7 normal equations of every voxel at
  once, and a batched eigen-decomposition.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sciimg.kernels._xp import namespace, ndimage

__all__ = ["estimate_sigma", "fit_tensor", "mean_b0", "median_otsu", "nlmeans_classic"]

# dipy.reconst.dti: signals are clipped to this before the log.
_MIN_SIGNAL = 0.0001
# dipy's fits clip eigenvalues at this over the largest b-matrix entry.
_EVAL_TOL = 1e-6


def mean_b0(volumes: Any) -> Any:
    """Mean over the last axis (the b0 volumes).

    Examples
    --------
    >>> mean_b0(np.array([[1.0, 2.0, 6.0]])).tolist()
    [3.0]
    """
    return namespace(volumes).mean(volumes, axis=-1)


def estimate_sigma(volumes: Any) -> Any:
    """dipy's ``estimate_sigma(volumes, N=0)``: one float32 value per volume.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> np.round(estimate_sigma(rng.normal(100, 5, (16, 16, 16, 1))), 0).tolist()
    [5.0]
    """
    xp = namespace(volumes)
    nd = ndimage(xp)
    arr = volumes if volumes.ndim == 4 else volumes[..., None]
    cross = xp.zeros((3, 3, 3))
    for axis in range(3):
        for end in (0, 2):
            index = [1, 1, 1]
            index[axis] = end
            cross[tuple(index)] = 1
    sigma = xp.zeros(arr.shape[-1], dtype=xp.float32)
    for i in range(arr.shape[-1]):
        vol = arr[..., i].astype(xp.float64)
        conv = nd.convolve(vol, cross)  # scipy's default mode, as dipy's
        block = math.sqrt(6 / 7) * (vol - conv / 6)
        sigma[i] = xp.sqrt(xp.mean(block**2))
    return sigma


def _otsu(image: Any) -> Any:
    """scikit-image's ``threshold_otsu(image)`` (256 bins over the value range)."""
    xp = namespace(image)
    flat = image.ravel()
    if bool((flat == flat[0]).all()):
        return flat[0]
    counts, edges = xp.histogram(flat, bins=256)
    counts = counts.astype(xp.float32)
    centers = (edges[:-1] + edges[1:]) / 2
    weight1 = xp.cumsum(counts)
    weight2 = xp.cumsum(counts[::-1])[::-1]
    mean1 = xp.cumsum(counts * centers) / weight1
    mean2 = (xp.cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]
    between = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return centers[int(xp.argmax(between))]


def median_otsu(
    volume: Any, *, median_radius: int, numpass: int, dilate: int | None
) -> Any:
    """dipy's ``median_otsu`` mask of a 3-D volume (without ``finalize_mask``).

    Examples
    --------
    >>> vol = np.zeros((12, 12, 12), dtype=np.float32)
    >>> vol[3:9, 3:9, 3:9] = 100.0
    >>> int(median_otsu(vol, median_radius=1, numpass=1, dilate=1).sum())
    304
    """
    xp = namespace(volume)
    nd = ndimage(xp)
    smoothed = volume
    for _ in range(numpass):
        smoothed = nd.median_filter(smoothed, size=2 * median_radius + 1)
    mask = smoothed > _otsu(smoothed)
    if dilate is not None:
        cross = xp.asarray(nd.generate_binary_structure(3, 1))
        mask = nd.binary_dilation(mask, cross, iterations=dilate)
    return mask


def _box_sum(a: Any, radius: int) -> Any:
    """Sums over the (2 radius + 1)**3 cubes that fit in ``a``: the result is
    ``2 radius`` shorter on every axis."""
    for axis in range(3):
        n = a.shape[axis] - 2 * radius
        parts = [a.take(range(c, c + n), axis=axis) for c in range(2 * radius + 1)]
        total = parts[0].copy()
        for p in parts[1:]:
            total += p
        a = total
    return a


def nlmeans_classic(
    arr: Any,
    sigma: Any,
    mask: Any = None,
    *,
    patch_radius: int = 1,
    block_radius: int = 5,
    rician: bool = True,
) -> Any:
    """dipy's classic non-local means of a 3-D volume, in float64.

    ``sigma`` is one value or a map of ``arr``'s shape (the weight of a moving
    patch uses the mean sigma over it); voxels outside ``mask`` are 0 and still
    serve as neighbours. Returned in ``arr``'s dtype.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> vol = 100 + 10 * rng.standard_normal((8, 8, 8))
    >>> out = nlmeans_classic(vol, 10.0, block_radius=2)
    >>> out.shape, bool(out.std() < vol.std())
    ((8, 8, 8), True)
    """
    xp = namespace(arr, sigma, mask)
    P, B = int(patch_radius), int(block_radius)
    if arr.ndim != 3 or min(arr.shape) <= B:
        raise ValueError(
            f"arr must be 3-D with every dimension above block_radius={B}, "
            f"got shape {arr.shape}"
        )
    R = B - P
    pv = (2 * P + 1) ** 3
    ap = xp.pad(xp.asarray(arr, dtype=xp.float64), B, mode="reflect")
    n0, n1, n2 = arr.shape
    sigma = xp.asarray(sigma, dtype=xp.float64)
    if sigma.size == 1:
        sigma = sigma.reshape(())
        # dipy averages the same sigma over the patch: sum, then divide.
        sbar = sum([float(sigma)] * pv) / pv
        denom = pv * (math.sqrt(2) * sbar**2)
        q = 1.0 / denom if denom != 0 else math.inf
        q_at = None
    else:
        sp = xp.pad(sigma, B, mode="reflect")
        with np.errstate(divide="ignore"):
            q_pad = 1.0 / (pv * (math.sqrt(2) * (_box_sum(sp, P) / pv) ** 2))
        q_pad = xp.pad(q_pad, P)  # back on the padded grid (edges never read)

        def q_at(i, j, k):
            return q_pad[B + i : B + i + n0, B + j : B + j + n1, B + k : B + k + n2]

    def window(i, j, k, r):  # the centres' grid moved by (i, j, k), widened by r
        return ap[
            B + i - r : B + i + n0 + r,
            B + j - r : B + j + n1 + r,
            B + k - r : B + k + n2 + r,
        ]

    centre = window(0, 0, 0, P)
    total = xp.zeros(arr.shape)
    weighted = xp.zeros(arr.shape)
    offsets = range(-R, R + 1) if R >= 0 else range(0)
    for i in offsets:
        for j in offsets:
            for k in offsets:
                if i == j == k == 0:
                    continue
                ssd = _box_sum((centre - window(i, j, k, P)) ** 2, P)
                with np.errstate(invalid="ignore"):
                    w = xp.exp(-ssd * (q if q_at is None else q_at(i, j, k)))
                total += w
                weighted += w * window(i, j, k, 0) ** 2
    x = window(0, 0, 0, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w0 = xp.exp(-0.0 * (q if q_at is None else q_at(0, 0, 0)))
        if R >= 0:
            total = total + w0
            weighted = weighted + w0 * x**2
        keep = total > 0
        if mask is not None:
            keep &= xp.asarray(mask) != 0
        value = xp.where(keep, weighted / xp.where(keep, total, 1.0), 0.0)
    if rician:
        value = xp.maximum(value - 2 * sigma**2, 0.0)
    return xp.sqrt(value).astype(arr.dtype)


def _design(gtab, xp):
    from dipy.reconst.dti import design_matrix

    x = design_matrix(gtab)
    return xp.asarray(x), _EVAL_TOL / -x.min()


def fit_tensor(data: Any, gtab, mask: Any = None, *, fit_method: str = "WLS") -> Any:
    """dipy's ``TensorModel(gtab, fit_method).fit(data, mask).model_params``.

    OLS is ``pinv(X) @ log(signal)``; WLS weighs the volumes by the OLS fit's
    predicted signal and solves the weighted normal equations. Eigenvalues come
    in descending order, clipped as dipy clips them; eigenvectors' signs are
    those of the namespace's ``eigh``.

    Examples
    --------
    >>> from dipy.core.gradients import gradient_table
    >>> bvecs = np.r_[[[0, 0, 0]], np.eye(3), np.sqrt(0.5) * np.array(
    ...     [[1, 1, 0], [1, 0, 1], [0, 1, 1]])]
    >>> gtab = gradient_table(np.r_[0, [1000] * 6], bvecs=bvecs)
    >>> signal = 100 * np.exp(-1000 * np.array([0, 1.7, .3, .3, 1, 1, .3]) * 1e-3)
    >>> np.round(fit_tensor(signal, gtab)[:3] * 1e3, 3)
    array([1.7, 0.3, 0.3])
    """
    xp = namespace(data, mask)
    method = str(fit_method).upper()
    if method not in ("WLS", "OLS"):
        raise ValueError(f"fit_method must be WLS or OLS, not {fit_method!r}")
    x, min_diffusivity = _design(gtab, xp)
    shape, n_vol = data.shape[:-1], data.shape[-1]
    flat = data.reshape(-1, n_vol)
    index = xp.arange(flat.shape[0])
    if mask is not None:
        index = xp.flatnonzero(xp.asarray(mask).reshape(-1))
    params = xp.zeros((flat.shape[0], 12))
    if index.size == 0:
        return params.reshape(*shape, 12)
    # dipy clips and takes the log in the data's own dtype, then goes float64.
    logs = xp.log(xp.maximum(flat[index], _MIN_SIGNAL)).astype(xp.float64)
    beta = logs @ xp.linalg.pinv(x).T
    if method == "WLS":
        w2 = xp.exp(beta @ x.T) ** 2
        normal = xp.einsum("vk,ki,kj->vij", w2, x, x)
        rhs = xp.einsum("vk,ki->vi", w2 * logs, x)
        beta = xp.linalg.solve(normal, rhs[..., None])[..., 0]
    xx, xy, yy, xz, yz, zz = (beta[:, c] for c in range(6))
    tensor = xp.stack(
        [
            xp.stack([xx, xy, xz], -1),
            xp.stack([xy, yy, yz], -1),
            xp.stack([xz, yz, zz], -1),
        ],
        -2,
    )
    evals, evecs = xp.linalg.eigh(tensor)
    evals, evecs = evals[:, ::-1], evecs[:, :, ::-1]  # descending, as dipy's
    evals = xp.maximum(evals, min_diffusivity)
    params[index] = xp.concatenate([evals, evecs.reshape(-1, 9)], axis=1)
    return params.reshape(*shape, 12)
