"""The CuPy implementations of sciimg's kernels, registered for ``cupy.ndarray``.

Imported the first time a kernel is called with a CuPy array (see
`sciimg.kernels.Kernel.register_lazy`). What has no GPU implementation here
(calibration with astroscrappy and sep, detection with sep, dipy's blockwise
non-local means, the hole filling of ``finalize_mask``, the ``reference``
implementations) runs on the host: the block is copied there and the result
back, by the dispatch point.
"""

from __future__ import annotations

import cupy

from sciimg.kernels import _clip_xp as clip
from sciimg.kernels import _gpu_neuro as neuro
from sciimg.kernels._dispatch import kernel, on_host

__all__: list[str] = []


def _host(name: str):
    """The kernel's CPU fast implementation, run on the host."""
    import numpy as np

    return on_host(kernel(name).resolve(np.empty(0), "fast"))


@kernel("mean_b0").register("fast", cupy.ndarray)
def _mean_b0(volumes):
    return neuro.mean_b0(volumes)


@kernel("estimate_sigma").register("fast", cupy.ndarray)
def _estimate_sigma(volumes, *, n_coils):
    if n_coils != 0:  # Koay's correction factors live in dipy
        return _host("estimate_sigma")(volumes, n_coils=n_coils)
    return neuro.estimate_sigma(volumes)


@kernel("median_otsu").register("fast", cupy.ndarray)
def _median_otsu(volume, *, median_radius, numpass, dilate, finalize_mask):
    if finalize_mask:
        return _host("median_otsu")(
            volume,
            median_radius=median_radius,
            numpass=numpass,
            dilate=dilate,
            finalize_mask=finalize_mask,
        )
    return neuro.median_otsu(
        volume, median_radius=median_radius, numpass=numpass, dilate=dilate
    )


@kernel("nlmeans").register("fast", cupy.ndarray)
def _nlmeans(volume, sigma, mask, *, method, **kwargs):
    if method != "classic":
        return _host("nlmeans")(volume, sigma, mask, method=method, **kwargs)
    return neuro.nlmeans_classic(volume, sigma, mask, **kwargs)


@kernel("fit_tensor").register("fast", cupy.ndarray)
def _fit_tensor(data, gtab, mask, *, fit_method):
    return neuro.fit_tensor(data, gtab, mask, fit_method=fit_method)


@kernel("clipped_mean").register("fast", cupy.ndarray)
def _clipped_mean(values, variances, valid, **kwargs):
    return clip.clipped_mean(values, variances, valid, **kwargs)


@kernel("warp").register("fast", cupy.ndarray)
def _warp(planes, wcs, shape, target_wcs, box, **kwargs):
    # The same code as on the CPU, on the planes' namespace: the pixel
    # transform is computed on the host (astropy) and copied over once per band
    # for all planes; PSF matching, interpolation and flags run on the GPU.
    from sciimg.astro import warp_footprint

    return warp_footprint(planes, wcs, shape, target_wcs, box, **kwargs)
