"""Warps against reproject, PSF matching against SciPy, across uneven blocks."""

from __future__ import annotations

import numpy as np
import pytest
from reproject import reproject_interp
from scipy.ndimage import gaussian_filter

from sciimg.astro import psf_match_sigma, warp
from sciimg.io import DEFAULT_MASK_BITS
from tests.astro.conftest import tan_wcs


def test_warp_matches_reproject_across_uneven_blocks(star_field):
    shape, _, img = star_field
    w_in = tan_wcs(shape, rotation=0.4, shift=(3.3, -2.7))
    w_out = tan_wcs((80, 100), rotation=0.0)
    out = warp(
        img,
        np.ones(shape),
        np.zeros(shape, "i4"),
        w_in,
        w_out,
        (80, 100),
        chunks=(27, 33),
    )
    ref = reproject_interp(
        (img, w_in), w_out, shape_out=(80, 100), order="bicubic", return_footprint=False
    )
    got = out["image"].compute()
    both = np.isfinite(ref) & np.isfinite(got)
    assert both.sum() > 0.9 * got.size
    np.testing.assert_allclose(got[both], ref[both], atol=2e-4 * np.abs(ref).max())
    # Outside the input the warp has no data, flagged as such.
    nodata = 1 << DEFAULT_MASK_BITS["NO_DATA"]
    mask = out["mask"].compute()
    assert ((mask & nodata) != 0)[~np.isfinite(got)].all()


def test_psf_matching_is_a_gaussian_convolution(star_field):
    shape, _, img = star_field
    w = tan_wcs(shape)
    sigma = psf_match_sigma(3.0, 5.0)
    out = warp(
        img,
        np.ones(shape),
        np.zeros(shape, "i4"),
        w,
        w,
        shape,
        psf_fwhm=3.0,
        target_fwhm=5.0,
        chunks=(40, 50),
    )
    ref = gaussian_filter(img, sigma, mode="constant", truncate=4.0)
    inner = (slice(12, -12), slice(12, -12))
    np.testing.assert_allclose(out["image"].compute()[inner], ref[inner], atol=1e-3)


def test_matched_variance_predicts_the_noise():
    """Squared-kernel variance: the noise of matched white noise is predicted."""
    shape = (64, 64)
    w = tan_wcs(shape)
    rng = np.random.default_rng(7)
    stack = []
    for _ in range(150):
        noise = rng.normal(0, 2.0, shape)
        out = warp(
            noise,
            np.full(shape, 4.0),
            np.zeros(shape, "i4"),
            w,
            w,
            shape,
            psf_fwhm=2.0,
            target_fwhm=4.0,
        )
        stack.append(out["image"].compute()[16:-16, 16:-16])
    predicted = out["variance"].compute()[16:-16, 16:-16]
    measured = np.var(np.stack(stack), axis=0)
    assert measured.mean() == pytest.approx(predicted.mean(), rel=0.05)


def test_flagged_pixels_leave_no_trace(star_field):
    shape, _, img = star_field
    w = tan_wcs(shape)
    hit = img.copy()
    hit[40, 60:63] += 5000.0  # a cosmic ray, flagged
    mask = np.zeros(shape, "i4")
    mask[40, 60:63] = 1 << DEFAULT_MASK_BITS["CR"]
    kwargs = {"psf_fwhm": 3.0, "target_fwhm": 4.0}
    clean = warp(img, np.ones(shape), mask, w, w, shape, **kwargs)["image"].compute()
    dirty = warp(hit, np.ones(shape), mask, w, w, shape, **kwargs)["image"].compute()
    np.testing.assert_allclose(dirty, clean, equal_nan=True)
    # Filled from their neighbours for the convolution, still flagged for the coadd.
    out_mask = warp(hit, np.ones(shape), mask, w, w, shape, **kwargs)["mask"].compute()
    assert (out_mask[40, 60:63] & (1 << DEFAULT_MASK_BITS["CR"]) != 0).all()
