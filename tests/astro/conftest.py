"""Small sky images built in numpy, for checking the steps against references."""

from __future__ import annotations

import numpy as np
import pytest


def tan_wcs(
    shape=(96, 120), *, ra=150.0, dec=2.0, scale=0.5, rotation=0.0, shift=(0.0, 0.0)
):
    """A TAN WCS centred on the image, ``scale`` arcsec/px, rotated (degrees)."""
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [shape[1] / 2 + 0.5 + shift[0], shape[0] / 2 + 0.5 + shift[1]]
    c, s = np.cos(np.radians(rotation)), np.sin(np.radians(rotation))
    d = scale / 3600
    w.wcs.cd = [[-d * c, d * s], [d * s, d * c]]
    return w


def render(shape, stars, fwhm, *, sky_sigma=0.0, seed=0):
    """Gaussian stars (x, y, flux) on zero background, plus white noise."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    s = fwhm / 2.3548
    img = np.zeros(shape)
    for x, y, f in stars:
        img += (
            f
            / (2 * np.pi * s**2)
            * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s**2))
        )
    if sky_sigma:
        img += np.random.default_rng(seed).normal(0, sky_sigma, shape)
    return img


@pytest.fixture
def star_field():
    """A 96×120 field of 12 stars, FWHM 3 px, unit-variance noise."""
    rng = np.random.default_rng(42)
    stars = [
        (rng.uniform(10, 110), rng.uniform(10, 86), rng.uniform(300, 3000))
        for _ in range(12)
    ]
    shape = (96, 120)
    return shape, stars, render(shape, stars, 3.0, sky_sigma=1.0)
