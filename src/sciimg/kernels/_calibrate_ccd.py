"""One CCD calibrated in NumPy: saturation, background, cosmic rays, scale.

The implementation behind :func:`sciimg.kernels.calibrate_ccd`. The background
is sep's and the cosmic rays astroscrappy's (L.A.Cosmic), called through
:func:`sciimg.astro.estimate_background` and
:func:`sciimg.astro.detect_cosmic_rays`: both are already compiled code, so the
reference is also the fast implementation.
"""

from __future__ import annotations

import numpy as np

from sciimg.errors import InputError


def _native(a) -> np.ndarray:
    """C-contiguous native-endian float32, as sep requires (FITS is big-endian)."""
    return np.ascontiguousarray(np.asarray(a), dtype=np.float32)


def _check_variance(variance: np.ndarray, source: str) -> None:
    """A variance plane with no usable value weights nothing: every star's
    significance is undefined, and the PSF measurement that follows would blame
    the stars. Said here, naming the plane."""
    usable = np.isfinite(variance) & (variance > 0)
    if usable.any():
        return
    if np.isnan(variance).all():
        raise InputError(source, "VARIANCE plane is all NaN")
    finite = np.isfinite(variance)
    raise InputError(
        source,
        f"VARIANCE plane has no positive values ({int(finite.sum())} zero or "
        f"negative, {int((~finite).sum())} NaN or infinite)",
    )


def calibrate_ccd(
    image,
    variance,
    mask,
    *,
    mask_bits,
    scale,
    gain,
    read_noise,
    saturate,
    mesh,
    filter_size,
    cosmic_rays,
    cr_sigma,
    cr_objlim,
    cr_niter,
    source,
):
    """Calibrated image, variance, mask and background of one CCD (NumPy)."""
    from sciimg.astro import bitmask, detect_cosmic_rays, estimate_background

    image = _native(image)
    finite = np.isfinite(image)
    if not finite.any():
        raise InputError(source or "image", "all pixels are NaN or infinite")
    if variance is None:
        variance = np.maximum(image, 0) / gain + (read_noise / gain) ** 2
    else:
        _check_variance(_native(variance), source or "image")
    variance = _native(variance)
    mask = (
        np.zeros(image.shape, np.int32)
        if mask is None
        else np.array(mask, np.int32)  # a copy: flags are added below
    )
    if saturate is not None:
        # Before the background and the cosmic rays, which both leave SAT out.
        mask[image >= saturate] |= bitmask(["SAT"], mask_bits)
    background = estimate_background(
        image, mask, mask_bits=mask_bits, mesh=mesh, filter_size=filter_size
    )
    if cosmic_rays:
        hits = detect_cosmic_rays(
            image,
            variance,
            mask,
            background=background,
            mask_bits=mask_bits,
            gain=gain,
            read_noise=read_noise,
            saturate=saturate,
            sigma=cr_sigma,
            objlim=cr_objlim,
            niter=cr_niter,
        )
        mask[hits] |= bitmask(["CR"], mask_bits)
    mask[~finite] |= bitmask(["NO_DATA"], mask_bits)
    calibrated = ((image - background) * scale).astype(np.float32)
    return (
        calibrated,
        (variance * scale**2).astype(np.float32),
        mask,
        (background * scale).astype(np.float32),
    )
