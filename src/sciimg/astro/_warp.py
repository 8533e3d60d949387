"""Warp an exposure onto a patch grid, matched to a common PSF.

Per output block, the exposure's pixels that map there (plus a margin) are cut
out, convolved to the patch's target PSF in the exposure's own frame, then
resampled onto the block with reproject. A block therefore needs only a small
cutout of each exposure, which is what keeps co-addition's memory flat.

PSF matching before resampling keeps the resampling accurate (a wider PSF is
better sampled) and makes the variance exact: the convolution acts on independent
pixels, so the variance is convolved with the squared kernel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sciimg.astro._masks import _flagged, bitmask, whole
from sciimg.constants import FWHM_PER_SIGMA
from sciimg.io import DEFAULT_MASK_BITS
from sciimg.kernels import namespace, ndimage

__all__ = ["input_box", "psf_match", "psf_match_sigma", "warp"]

#: Flags that exclude a pixel from a warp (and so from the coadd).
WARP_BAD = ("BAD", "SAT", "CR", "NO_DATA", "EDGE")
#: Extra input pixels around a cutout: reproject's own spline padding.
_SPLINE_MARGIN = 10


def _margin(sigma: float) -> int:
    """Input pixels a cutout needs beyond a block: spline padding and kernel."""
    return _SPLINE_MARGIN + int(np.ceil(4.0 * sigma)) + 2


def psf_match_sigma(fwhm: float | None, target_fwhm: float | None) -> float:
    """Sigma (pixels) of the Gaussian that widens a Gaussian PSF to the target.

    Examples
    --------
    >>> round(psf_match_sigma(3.0, 5.0), 4)
    1.6986
    >>> psf_match_sigma(5.0, 3.0), psf_match_sigma(None, 3.0)
    (0.0, 0.0)
    """
    if fwhm is None or target_fwhm is None or target_fwhm <= fwhm:
        return 0.0
    return float(np.sqrt(target_fwhm**2 - fwhm**2) / FWHM_PER_SIGMA)


def _kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(4.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _separable(data, k: np.ndarray):
    # SciPy's, or CuPy's twin of it for arrays on a GPU.
    xp = namespace(data)
    correlate1d = ndimage(xp).correlate1d
    k = xp.asarray(k)
    out = correlate1d(data, k, axis=0, mode="constant", cval=0.0)
    return correlate1d(out, k, axis=1, mode="constant", cval=0.0)


def psf_match(
    image: np.ndarray, variance: np.ndarray, invalid: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convolve an image with a Gaussian of ``sigma`` pixels, flagged pixels
    getting no weight; the variance follows. Returns image, variance, invalid.

    A pixel keeps a value where at least half the kernel's weight is valid; the
    variance follows exactly for independent input pixels (squared kernel).

    Examples
    --------
    >>> img = np.zeros((15, 15)); img[7, 7] = 1.0
    >>> ok = np.zeros((15, 15), bool)
    >>> out, var, bad = psf_match(img, np.ones((15, 15)), ok, 1.0)
    >>> round(float(out.sum()), 6), round(float(out[7, 7]), 4)
    (1.0, 0.1592)
    >>> bool(bad[0, 0]), bool(bad[0, 7])  # a corner keeps under half the weight
    (True, False)
    """
    xp = namespace(image)  # NumPy, or CuPy for arrays on a GPU
    if sigma <= 0:
        return xp.where(invalid, 0.0, image), xp.where(invalid, 0.0, variance), invalid
    k = _kernel(sigma)
    valid = (~invalid).astype(xp.float64)
    den = _separable(valid, k)
    num = _separable(xp.where(invalid, 0.0, image), k)
    var = _separable(xp.where(invalid, 0.0, variance), k**2)
    ok = den > 0.5
    safe = xp.where(ok, den, 1.0)
    return xp.where(ok, num / safe, 0.0), xp.where(ok, var / safe**2, 0.0), ~ok


def _header_wcs(header: str):
    from astropy.io.fits import Header
    from astropy.wcs import WCS

    return WCS(Header.fromstring(header))


def _warp_arrays(
    image, variance, mask, in_header, out_header, shape, sigma, bad, no_data
) -> np.ndarray:
    """Warp one cutout onto one output block: a (3, ny, nx) image/variance/mask."""
    from reproject import reproject_interp
    from scipy.ndimage import binary_dilation

    image = np.asarray(image, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.int64)
    invalid = (
        ~np.isfinite(image) | ~np.isfinite(variance) | _flagged(mask, bad, image.shape)
    )
    matched, var, invalid = psf_match(image, variance, invalid, sigma)
    w_in, w_out = _header_wcs(in_header), _header_wcs(out_header)

    def interp(planes, order):
        # Planes share one coordinate transform; TAN to TAN needs no round trip.
        return reproject_interp(
            (np.stack(planes), w_in),
            w_out,
            shape_out=(len(planes), *shape),
            order=order,
            return_footprint=False,
            roundtrip_coords=False,
        )

    out_img, out_var = interp([matched, var], "bicubic")
    # A flagged pixel spoils the output pixels whose interpolation touches it:
    # grow the flags by one pixel, then take the nearest.
    spoiled = binary_dilation(invalid, np.ones((3, 3), bool))
    out_mask, out_spoiled = interp(
        [mask.astype(np.float64), spoiled], "nearest-neighbor"
    )
    bad_out = ~(out_spoiled == 0) | ~np.isfinite(out_img)
    out_mask = np.where(np.isfinite(out_mask), out_mask, 0).astype(np.int64)
    out_mask[~np.isfinite(out_img)] |= no_data
    out_img[bad_out] = np.nan
    out_var[bad_out] = np.nan
    return np.stack([out_img, out_var, out_mask.astype(np.float64)])


def input_box(
    wcs,
    shape: Sequence[int],
    target_wcs,
    origin: Sequence[int],
    block: Sequence[int],
    margin: int,
) -> tuple[int, int, int, int] | None:
    """Input pixel box ``(y0, y1, x0, x1)`` that maps onto an output block.

    ``origin`` is the block's first pixel (y, x) in the target grid. ``None`` if
    the block falls outside the input.
    """
    ny, nx = block
    t = np.linspace(0, 1, 9)
    xs = np.concatenate([t * nx, t * nx, np.zeros(9), np.full(9, nx)]) - 0.5 + origin[1]
    ys = np.concatenate([np.zeros(9), np.full(9, ny), t * ny, t * ny]) - 0.5 + origin[0]
    world = target_wcs.pixel_to_world_values(xs, ys)
    x, y = wcs.world_to_pixel_values(*world)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None
    x0, x1 = int(np.floor(x.min())) - margin, int(np.ceil(x.max())) + margin + 1
    y0, y1 = int(np.floor(y.min())) - margin, int(np.ceil(y.max())) + margin + 1
    if x1 <= 0 or y1 <= 0 or x0 >= shape[1] or y0 >= shape[0]:
        return None
    return max(y0, 0), min(y1, shape[0]), max(x0, 0), min(x1, shape[1])


#: Default side of a block of sky, pixels: small enough that the planes of tens
#: of visits fit a task comfortably, large enough that per-task costs vanish.
BLOCK = 256


def _block_grid(shape, chunks):
    from dask.array.core import normalize_chunks

    return normalize_chunks(chunks or BLOCK, tuple(shape), dtype=np.float64)


def _starts(sizes):
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)


def warp(
    image,
    variance,
    mask,
    wcs,
    target_wcs,
    target_shape: Sequence[int],
    *,
    mask_bits: Mapping[str, int] | None = None,
    psf_fwhm: float | None = None,
    target_fwhm: float | None = None,
    chunks: Any = None,
) -> dict[str, Any]:
    """Resample an exposure onto another pixel grid (a patch), PSF-matched.

    Parameters
    ----------
    image, variance, mask : dask or numpy arrays, shape (ny, nx)
        Calibrated planes of the exposure.
    wcs, target_wcs : astropy.wcs.WCS
        Celestial WCS of the exposure and of the target grid.
    target_shape : (int, int)
        (ny, nx) of the target grid.
    mask_bits : mapping, optional
        Bit index per flag name; flagged pixels (BAD, SAT, CR, NO_DATA, EDGE)
        carry no data into the warp.
    psf_fwhm, target_fwhm : float, optional
        FWHM in pixels of the exposure's PSF and of the wanted PSF; with both,
        the image is convolved with the Gaussian that matches them first.
    chunks : optional
        Output chunking; default from a small memory budget.

    Returns
    -------
    dict of dask arrays on the target grid
        ``image`` and ``variance`` (NaN where the exposure has no valid data) and
        ``mask`` (the exposure's flags, nearest pixel, plus ``NO_DATA``).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.wcs import WCS
    >>> w = WCS(naxis=2)
    >>> w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> w.wcs.crval, w.wcs.crpix = [150.0, 2.0], [32.5, 32.5]
    >>> w.wcs.cd = [[-1e-4, 0], [0, 1e-4]]
    >>> img = np.random.default_rng(0).normal(0, 1, (64, 64))
    >>> out = warp(img, np.ones((64, 64)), np.zeros((64, 64), "i4"), w, w, (64, 64))
    >>> bool(np.allclose(out["image"][12:-12, 12:-12], img[12:-12, 12:-12]))
    True
    """
    import dask
    import dask.array as da

    bits = dict(DEFAULT_MASK_BITS if mask_bits is None else mask_bits)
    bad, no_data = bitmask(WARP_BAD, bits), bitmask(["NO_DATA"], bits)
    image, variance, mask = (da.asarray(a) for a in (image, variance, mask))
    sigma = psf_match_sigma(psf_fwhm, target_fwhm)
    margin = _margin(sigma)
    grid = _block_grid(tuple(target_shape), chunks)
    rows = []
    for y0, ny in zip(_starts(grid[0]), grid[0], strict=True):
        row = []
        for x0, nx in zip(_starts(grid[1]), grid[1], strict=True):
            box = input_box(wcs, image.shape, target_wcs, (y0, x0), (ny, nx), margin)
            if box is None:
                block = da.stack(
                    [
                        da.full((ny, nx), np.nan),
                        da.full((ny, nx), np.nan),
                        da.full((ny, nx), float(no_data)),
                    ]
                )
            else:
                ya, yb, xa, xb = box
                cut = (slice(ya, yb), slice(xa, xb))
                part = dask.delayed(_warp_arrays, pure=True)(
                    whole(image[cut]),
                    whole(variance[cut]),
                    whole(mask[cut]),
                    wcs.slice(cut).to_header_string(),
                    target_wcs.slice(
                        (slice(y0, y0 + ny), slice(x0, x0 + nx))
                    ).to_header_string(),
                    (ny, nx),
                    sigma,
                    bad,
                    no_data,
                )
                block = da.from_delayed(part, (3, ny, nx), dtype=np.float64)
            row.append(block)
        rows.append(row)
    stacked = da.block([[b for b in row] for row in rows])
    return {
        "image": stacked[0].astype(np.float32),
        "variance": stacked[1].astype(np.float32),
        "mask": stacked[2].astype(np.int32),
    }
