"""The reference warp: reproject's ``reproject_interp`` called directly.

The implementation ``"reference"`` of :func:`sciimg.kernels.warp`. The exposure's
planes are PSF-matched whole, then resampled onto the box with
``reproject_interp``: bicubic for value and variance, nearest pixel for the mask
and the flags, each call computing the pixel transform again. It is what the
fast implementation (:func:`sciimg.astro.warp_footprint`) is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_wcs(wcs):
    if isinstance(wcs, str):
        from astropy.io.fits import Header
        from astropy.wcs import WCS

        return WCS(Header.fromstring(wcs))
    return wcs


def warp_reference(
    planes: Sequence,
    wcs,
    shape: Sequence[int],
    target_wcs,
    box: Sequence[int],
    *,
    sigma: float = 0.0,
    bits: tuple[int, int, int] = (0, 0, 0),
    offset: Sequence[int] = (0, 0),
) -> np.ndarray:
    """Float32 (3, ny, nx): value, variance, saturation on ``box`` of the target."""
    from reproject import reproject_interp
    from scipy.ndimage import binary_dilation

    from sciimg.astro import psf_match

    del shape  # the planes are read whole: their own shape is what counts
    bad, sat, no_data = bits
    oy, ox = offset
    image = np.asarray(planes[0][:, :], dtype=np.float64)
    variance = np.asarray(planes[1][:, :], dtype=np.float64)
    mask = np.asarray(planes[2][:, :], dtype=np.int64)
    w_in = _as_wcs(wcs).slice((slice(oy, None), slice(ox, None)))
    y0, y1, x0, x1 = box
    w_out = _as_wcs(target_wcs).slice((slice(y0, y1), slice(x0, x1)))
    out_shape = (y1 - y0, x1 - x0)
    invalid = ~np.isfinite(image) | ~np.isfinite(variance) | ((mask & bad) != 0)
    matched, var, invalid = psf_match(image, variance, invalid, sigma)

    def interp(stack, order):
        return reproject_interp(
            (np.stack(stack), w_in),
            w_out,
            shape_out=(len(stack), *out_shape),
            order=order,
            return_footprint=False,
            roundtrip_coords=False,
        )

    out_img, out_var = interp([matched, var], "bicubic")
    # A flagged pixel spoils the output pixels whose interpolation touches it.
    spoiled = binary_dilation(invalid, np.ones((3, 3), bool))
    out_mask, out_spoiled = interp(
        [mask.astype(np.float64), spoiled.astype(np.float64)], "nearest-neighbor"
    )
    empty = ~np.isfinite(out_img)
    bad_out = ~(out_spoiled == 0) | empty
    code = np.where(np.isfinite(out_mask), out_mask, 0).astype(np.int64)
    code[empty] |= no_data
    out = np.empty((3, *out_shape), dtype=np.float32)
    out[0] = np.where(bad_out | ((code & bad) != 0), np.nan, out_img)
    out[1] = np.where(bad_out, np.nan, out_var)
    out[2] = ((code & sat) != 0) if sat else 0
    return out
