"""The astronomy kernels: calibrate a CCD, warp it onto a patch, co-add a stack
of warps, detect sources.

Calibration (sep's background, astroscrappy's L.A.Cosmic) and detection (sep) are
compiled libraries already, registered as both implementations; the warp and the
clipped mean have a fast implementation of sciimg's own and the reference one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from sciimg.kernels._clip_xp import clipped_mean as clipped_mean_xp
from sciimg.kernels._clip_xp import coadd_planes
from sciimg.kernels._clip_xp import coadd_stack as coadd_xp
from sciimg.kernels._dispatch import kernel
from sciimg.kernels._xp import namespace

__all__ = ["calibrate_ccd", "clipped_mean", "coadd_stack", "detect_sources", "warp"]


def clipped_mean(
    values: np.ndarray,
    variances: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    nsigma: float = 3.0,
    iterations: int = 2,
    clip: Literal["variance", "stack"] = "variance",
    implementation: str = "fast",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-variance weighted mean along axis 0 after iterative sigma clipping.

    See :func:`sciimg.astro.clipped_mean` for the algorithm; ``"reference"`` is
    that NumPy formulation, ``"fast"`` one pass per pixel in compiled code.

    Examples
    --------
    >>> x = np.array([[1.0], [1.2], [0.9], [50.0]])
    >>> m, v, n, c = clipped_mean(x, np.full_like(x, 0.04))
    >>> round(float(m[0]), 3), int(n[0]), bool(c[0])
    (1.033, 3, True)
    """
    return kernel("clipped_mean")(
        values,
        variances,
        valid,
        nsigma=nsigma,
        iterations=iterations,
        clip=clip,
        implementation=implementation,
    )


# The NumPy formulation, the one the GPU runs too.
kernel("clipped_mean").register("reference")(clipped_mean_xp)


@kernel("clipped_mean").register("fast")
def _clipped_mean_numba(values, variances, valid, **kwargs):
    # Imported on first use: numba compiles (or loads from its cache) then.
    from sciimg.kernels._clip_fast import clipped_mean as _clipped_mean

    return _clipped_mean(values, variances, valid, **kwargs)


#: Values per strip of rows in which a stack is clipped: bounds the float64
#: temporaries of the reference clipped mean (about 70 bytes per value) to a
#: few MiB.
_STRIP_VALUES = 1 << 16


def coadd_stack(
    values: np.ndarray,
    variances: np.ndarray,
    saturated: np.ndarray,
    *,
    sat: int,
    no_data: int,
    clipped: int,
    nsigma: float = 3.0,
    iterations: int = 2,
    clip: Literal["variance", "stack"] = "variance",
    implementation: str = "fast",
) -> np.ndarray:
    """Co-add a (n, ny, nx) stack of warps whose flagged values are NaN.

    Parameters
    ----------
    values, variances : ndarray, shape (n, ny, nx)
        The visits' warped values (NaN where flagged or without data) and
        variances.
    saturated : ndarray of bool, shape (ny, nx)
        Where any visit was saturated.
    sat, no_data, clipped : int
        Mask values set where a visit saturated, where no visit is left, and
        where at least one visit was clipped.
    nsigma, iterations, clip
        As :func:`clipped_mean`.
    implementation : {"fast", "reference"}
        Of :func:`clipped_mean`.

    Returns
    -------
    ndarray, float64, shape (4, ny, nx)
        Image, variance, depth (visits kept) and mask.

    Examples
    --------
    >>> v = np.array([1.0, 1.1, 0.9, 9.0]).reshape(4, 1, 1)
    >>> out = coadd_stack(v, np.full_like(v, 0.01), np.zeros((1, 1), bool),
    ...                   sat=2, no_data=256, clipped=512)
    >>> out[:, 0, 0].round(3).tolist()
    [1.0, 0.003, 3.0, 512.0]
    """
    if namespace(values) is not np:
        # The whole stack at once: a GPU has the memory and wants the size.
        return coadd_xp(
            values,
            variances,
            saturated,
            sat=sat,
            no_data=no_data,
            clipped=clipped,
            nsigma=nsigma,
            iterations=iterations,
            clip=clip,
        )
    n, ny, nx = values.shape
    out = np.empty((4, ny, nx))
    rows = max(1, _STRIP_VALUES // max(1, n * nx))
    for r in range(0, ny, rows):
        s = slice(r, r + rows)
        kept = clipped_mean(
            values[:, s],
            variances[:, s],
            nsigma=nsigma,
            iterations=iterations,
            clip=clip,
            implementation=implementation,
        )
        flags = {"sat": sat, "no_data": no_data, "clipped": clipped}
        out[:, s] = coadd_planes(saturated[s], *kept, **flags)
    return out


def warp(
    planes: Sequence[Any],
    wcs: Any,
    shape: Sequence[int],
    target_wcs: Any,
    box: Sequence[int],
    *,
    sigma: float = 0.0,
    bits: tuple[int, int, int] = (0, 0, 0),
    offset: Sequence[int] = (0, 0),
    implementation: str = "fast",
) -> np.ndarray:
    """Warp one exposure onto a box of a target grid, PSF-matched.

    ``"fast"`` is :func:`sciimg.astro.warp_footprint` (one pixel transform per
    output pixel for every plane, fitted where both WCS are plain tangent
    planes); ``"reference"`` resamples with reproject's ``reproject_interp``.
    Both interpolate bicubically as reproject does and flag alike.

    Parameters
    ----------
    planes, wcs, shape, target_wcs, box, sigma, bits, offset
        As :func:`sciimg.astro.warp_footprint`: the exposure's (image,
        variance, mask), its WCS and shape, the target grid's WCS and box
        ``(y0, y1, x0, x1)``, the PSF-matching Gaussian, the (bad, sat,
        no_data) mask values, and the exposure pixel of the planes' [0, 0].
    implementation : {"fast", "reference"}

    Returns
    -------
    ndarray, float32, shape (3, y1 - y0, x1 - x0)
        Value (NaN where flagged or without data), variance, and 1 where the
        exposure saturated.

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> w = WCS(naxis=2)
    >>> w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> w.wcs.crval, w.wcs.crpix = [150.0, 2.0], [16.5, 16.5]
    >>> w.wcs.cd = [[-1e-4, 0], [0, 1e-4]]
    >>> img = np.arange(32 * 32, dtype=float).reshape(32, 32)
    >>> planes = (img, np.ones_like(img), np.zeros((32, 32), "i4"))
    >>> fast = warp(planes, w, (32, 32), w, (4, 28, 4, 28))
    >>> ref = warp(planes, w, (32, 32), w, (4, 28, 4, 28), implementation="reference")
    >>> bool(np.allclose(fast[0], img[4:28, 4:28])), bool(np.allclose(fast, ref))
    (True, True)
    """
    first = planes[0]
    # Planes that read on slicing are read into NumPy arrays.
    probe = first if hasattr(first, "__array_namespace__") else np.empty(0)
    impl = kernel("warp").resolve(probe, implementation)
    return impl(
        planes, wcs, shape, target_wcs, box, sigma=sigma, bits=bits, offset=offset
    )


@kernel("warp").register("fast")
def _warp_footprint(planes, wcs, shape, target_wcs, box, **kwargs):
    from sciimg.astro import warp_footprint

    return warp_footprint(planes, wcs, shape, target_wcs, box, **kwargs)


@kernel("warp").register("reference")
def _warp_reproject(planes, wcs, shape, target_wcs, box, **kwargs):
    from sciimg.kernels._warp_reference import warp_reference

    return warp_reference(planes, wcs, shape, target_wcs, box, **kwargs)


def detect_sources(
    image: np.ndarray,
    variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    *,
    implementation: str = "fast",
    **options: Any,
) -> Any:
    """Detect, deblend and measure sources: :func:`sciimg.astro.detect` (sep).

    sep is compiled code already, so both implementations are sep's.

    Examples
    --------
    >>> yy, xx = np.mgrid[:64, :64]
    >>> rng = np.random.default_rng(1)
    >>> img = 200 * np.exp(-((xx - 30) ** 2 + (yy - 33) ** 2) / 4.0)
    >>> img = img + rng.normal(0, 1, img.shape)
    >>> cat = detect_sources(img.astype("f4"), np.ones((64, 64), "f4"))
    >>> len(cat), round(float(cat["x"][0])), round(float(cat["y"][0]))
    (1, 30, 33)
    """
    return kernel("detect_sources")(
        image, variance, mask, implementation=implementation, **options
    )


@kernel("detect_sources").register(("fast", "reference"))
def _detect_sep(image, variance, mask, **options):
    from sciimg.astro import detect

    return detect(image, variance, mask, **options)


def calibrate_ccd(
    image: np.ndarray,
    variance: np.ndarray | None,
    mask: np.ndarray | None,
    *,
    mask_bits: Mapping[str, int],
    scale: float = 1.0,
    gain: float = 1.0,
    read_noise: float = 0.0,
    saturate: float | None = None,
    mesh: int = 64,
    filter_size: int = 3,
    cosmic_rays: bool = True,
    cr_sigma: float = 6.0,
    cr_objlim: float = 8.0,
    cr_niter: int = 2,
    source: str | None = None,
    implementation: str = "fast",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Calibrate one CCD: saturation, sky background, cosmic rays, flux scale.

    The NumPy kernel of :func:`sciimg.astro.calibrate`, which documents the
    parameters (``mesh`` and ``filter_size`` are its ``background_mesh`` and
    ``background_filter``). Both implementations are sep's background and
    astroscrappy's L.A.Cosmic.

    Returns
    -------
    tuple of ndarray
        Image (background-subtracted, scaled, float32), variance (float32),
        mask (int32, with ``SAT``, ``CR`` and ``NO_DATA`` bits added) and the
        scaled background (float32).

    Examples
    --------
    >>> from sciimg.io import DEFAULT_MASK_BITS
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(500, 5, (64, 64)).astype("f4")
    >>> out = calibrate_ccd(img, np.full((64, 64), 25.0, "f4"), None,
    ...                     mask_bits=DEFAULT_MASK_BITS, scale=2.0)
    >>> bool(abs(out[0].mean()) < 1), float(out[1][0, 0]), out[2].dtype.name
    (True, 100.0, 'int32')
    """
    return kernel("calibrate_ccd")(
        image,
        variance,
        mask,
        mask_bits=mask_bits,
        scale=scale,
        gain=gain,
        read_noise=read_noise,
        saturate=saturate,
        mesh=mesh,
        filter_size=filter_size,
        cosmic_rays=cosmic_rays,
        cr_sigma=cr_sigma,
        cr_objlim=cr_objlim,
        cr_niter=cr_niter,
        source=source,
        implementation=implementation,
    )


@kernel("calibrate_ccd").register(("fast", "reference"))
def _calibrate_numpy(image, variance, mask, **kwargs):
    from sciimg.kernels._calibrate_ccd import calibrate_ccd as _calibrate

    return _calibrate(image, variance, mask, **kwargs)
