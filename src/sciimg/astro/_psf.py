"""The PSF's size on one calibrated CCD, from the half-light radii of its stars."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from sciimg.astro._masks import BAD_FLAGS, _flagged, _native, bitmask
from sciimg.constants import FWHM_PER_SIGMA
from sciimg.errors import InputError

__all__ = ["measure_psf_fwhm", "target_psf_fwhm"]


def measure_psf_fwhm(
    image,
    mask=None,
    *,
    variance=None,
    mask_bits: Mapping[str, int] | None = None,
    threshold: float = 10.0,
    min_stars: int = 3,
    source: str | None = None,
) -> float:
    """FWHM of the PSF in pixels, from the half-light radii of bright stars.

    Sources are found with sep at ``threshold`` σ; the stars are the tight group
    of the smallest half-light radii (galaxies are larger, blends larger still).
    For a Gaussian PSF the FWHM is twice the half-light radius (less the
    broadening by the pixels themselves).

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Background-subtracted.
    mask : array_like of int, optional
        Sources touching flagged pixels (saturated, bad) are not used.
    variance : array_like, optional
        Per-pixel noise; default the image's own background noise.
    threshold : float
        Detection threshold in σ; only bright stars measure the PSF well.
    min_stars : int
        Fewer usable stars than this is an error.
    source : str, optional
        Named in the error message.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:96, :96]
    >>> s = 3.0 / 2.3548
    >>> img = sum(5000 * np.exp(-((xx - x)**2 + (yy - y)**2) / (2 * s**2))
    ...           for x, y in [(20, 20), (70, 25), (30, 70), (75, 75)])
    >>> img = img + np.random.default_rng(0).normal(0, 5, img.shape)
    >>> bool(abs(measure_psf_fwhm(img) - 3.0) < 0.15)
    True
    """
    import sep

    data = _native(image)
    invalid = ~np.isfinite(data)
    flagged = _flagged(mask, bitmask(BAD_FLAGS, mask_bits), data.shape) | invalid
    data = np.where(invalid, 0, data).astype(np.float32)
    if variance is not None:
        err = np.sqrt(np.clip(_native(variance), 0, None)).astype(np.float32)
        err[~np.isfinite(err)] = 0
    else:
        err = float(sep.Background(data, mask=flagged).globalrms)
    objects = sep.extract(data, threshold, err=err, mask=flagged, minarea=5)
    if len(objects):
        x, y = objects["x"], objects["y"]
        inside = (x > 8) & (x < data.shape[1] - 9) & (y > 8) & (y < data.shape[0] - 9)
        objects = objects[(objects["flag"] == 0) & inside]
    if len(objects):
        radius, flags = sep.flux_radius(
            data,
            objects["x"],
            objects["y"],
            6.0 * objects["a"],
            0.5,
            normflux=_total(data, objects),
            subpix=5,
        )
        near_flag = _touches(flagged, objects)
        # Anything sharper than a 1.2-pixel FWHM is a cosmic ray or a hot pixel,
        # not a star.
        radius = radius[
            (flags == 0) & ~near_flag & np.isfinite(radius) & (radius > 0.6)
        ]
    else:
        radius = np.array([])
    if radius.size < min_stars:
        where = source or "image"
        raise InputError(
            where,
            f"cannot measure the PSF: {radius.size} usable stars above "
            f"{threshold:g} sigma (need {min_stars})",
        )
    # The stellar locus is the tight group at the small end of the radii.
    low = np.percentile(radius, 25)
    stars = radius[radius <= 1.2 * low]
    # A Gaussian's half-light radius is 1.1774 sigma; pixels add 1/12 px² to the
    # sigma² measured from pixel sums.
    sigma2 = (np.median(stars) / np.sqrt(2 * np.log(2))) ** 2 - 1.0 / 12.0
    return float(FWHM_PER_SIGMA * np.sqrt(max(sigma2, 0.0)))


def target_psf_fwhm(
    fwhms: Iterable[float | None], psf_fwhm: float | None = None
) -> float | None:
    """The PSF FWHM a patch's exposures are matched to before co-adding.

    ``psf_fwhm`` when given (a survey's fixed target); otherwise the widest PSF
    among the exposures, so that every one is blurred to it and none has to be
    sharpened; None when no PSF is known (no matching).

    Examples
    --------
    >>> target_psf_fwhm([3.1, None, 4.2]), target_psf_fwhm([3.1], 5.0)
    (4.2, 5.0)
    >>> target_psf_fwhm([None]) is None
    True
    """
    if psf_fwhm:
        return float(psf_fwhm)
    known = [float(f) for f in fwhms if f is not None]
    return max(known) if known else None


def _total(data: np.ndarray, objects) -> np.ndarray:
    """Total flux of each object in a generous circle (normalises flux_radius)."""
    import sep

    r = np.maximum(8.0 * objects["a"], 8.0)
    flux, _, _ = sep.sum_circle(data, objects["x"], objects["y"], r, subpix=5)
    return flux


def _touches(flagged: np.ndarray, objects, radius: int = 6) -> np.ndarray:
    out = np.zeros(len(objects), dtype=bool)
    for i, (x, y) in enumerate(zip(objects["x"], objects["y"], strict=True)):
        xi, yi = round(x), round(y)
        box = flagged[
            max(yi - radius, 0) : yi + radius + 1, max(xi - radius, 0) : xi + radius + 1
        ]
        out[i] = bool(box.any())
    return out
