"""Footprint warps against reproject and against the block-by-block warp."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs.utils import pixel_to_pixel
from reproject import reproject_interp

from sciimg.astro import bitmask, warp
from sciimg.astro._footprint import (
    FIT_TOLERANCE,
    _interp,
    _pixel_in,
    _Positions,
    footprint_box,
    warp_footprint,
)
from sciimg.astro._warp import WARP_BAD, psf_match_sigma
from sciimg.io import DEFAULT_MASK_BITS
from tests.astro.conftest import tan_wcs

BITS = (
    bitmask(WARP_BAD),
    bitmask(["SAT"]),
    bitmask(["NO_DATA"]),
)


@pytest.mark.parametrize("order", ["bicubic", "nearest-neighbor"])
def test_interpolation_equals_reproject_on_the_same_cutout(star_field, order):
    shape, _, img = star_field
    w_in = tan_wcs(shape, rotation=0.4, shift=(3.3, -2.7))
    w_out = tan_wcs((110, 140), rotation=-0.2, shift=(-1.4, 2.1))
    ref = reproject_interp(
        (img, w_in),
        w_out,
        shape_out=(110, 140),
        order=order,
        return_footprint=False,
        roundtrip_coords=False,
    )
    # The positions reproject computes: every output pixel, exactly.
    yy, xx = np.mgrid[:110, :140].astype(float)
    x_in, y_in = pixel_to_pixel(w_out, w_in, xx.ravel(), yy.ravel())
    pos = _Positions(np.array([y_in, x_in]), shape)
    got = _interp(img, pos, 3 if order == "bicubic" else 0).reshape(110, 140)
    assert np.isnan(got).any() and np.isfinite(got).sum() > 0.6 * got.size
    np.testing.assert_array_equal(got, ref)


def test_projective_fit_is_the_exact_transform():
    """Between TAN projections the fitted transform is within the tolerance of
    astropy's, far beyond what the bicubic resampling could tell apart."""
    w_out = tan_wcs((300, 400), rotation=0.0)
    for rotation, shift in [(0.4, (3.3, -2.7)), (-12.0, (40.0, 25.0)), (90.0, (0, 0))]:
        w_in = tan_wcs((250, 260), rotation=rotation, shift=shift, dec=-60.0)
        w_in.wcs.crval = [150.02, 2.01]
        fit = _pixel_in(w_in, w_out, (37, 11), (120, 350))
        exact = _pixel_in(w_in, w_out, (37, 11), (120, 350), exact=True)
        assert np.abs(fit - exact).max() < FIT_TOLERANCE / 100


def test_distorted_wcs_is_transformed_exactly():
    """A SIP distortion is not projective: the fit fails its check, and every
    pixel gets astropy's transform."""
    from astropy.wcs import Sip

    w_out = tan_wcs((100, 120))
    w_in = tan_wcs((100, 120), rotation=0.3)
    w_in.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    a = np.zeros((3, 3))
    a[2, 0] = 2e-5  # about a quarter of a pixel at the corners
    w_in.sip = Sip(a, np.zeros((3, 3)), None, None, w_in.wcs.crpix)
    got = _pixel_in(w_in, w_out, (0, 0), (100, 120))
    yy, xx = np.mgrid[:100, :120].astype(float)
    x_in, y_in = pixel_to_pixel(w_out, w_in, xx.ravel(), yy.ravel())
    np.testing.assert_array_equal(got, np.array([y_in, x_in]))


def _flagged_field(star_field):
    shape, _, img = star_field
    img = img.copy()
    mask = np.zeros(shape, "i4")
    mask[40, 60:63] = 1 << DEFAULT_MASK_BITS["CR"]
    img[40, 60:63] += 5000.0
    mask[20:23, 30:33] = 1 << DEFAULT_MASK_BITS["SAT"]
    var = np.full(shape, 2.0)
    var[70, 10] = np.nan
    return shape, img, var, mask


def test_footprint_warp_equals_the_block_warp(star_field):
    """One transform per band gives the pixels of the per-block warp (reproject
    on each block's cutout), flags and PSF matching included."""
    shape, img, var, mask = _flagged_field(star_field)
    w_in = tan_wcs(shape, rotation=0.4, shift=(3.3, -2.7))
    w_out = tan_wcs((90, 110), rotation=0.0, shift=(4.0, 1.0))
    kw = {"psf_fwhm": 2.5, "target_fwhm": 3.5}
    lazy = warp(img, var, mask, w_in, w_out, (90, 110), chunks=(31, 37), **kw)
    ref = {k: v.compute() for k, v in lazy.items()}
    box = footprint_box(w_in, shape, w_out, (90, 110))
    sigma = psf_match_sigma(2.5, 3.5)
    # Bands of 6 rows: their cutouts' edges differ from the blocks'.
    got = warp_footprint(
        (img, var, mask),
        w_in,
        shape,
        w_out,
        box,
        sigma=sigma,
        bits=BITS,
        band_pixels=700,
    )
    y0, y1, x0, x1 = box
    full = np.full((3, 90, 110), np.nan, np.float32)
    full[2] = 0
    full[:, y0:y1, x0:x1] = got
    flagged = (ref["mask"] & BITS[0]) != 0
    value = np.where(flagged, np.nan, ref["image"])
    np.testing.assert_array_equal(np.isnan(full[0]), np.isnan(value))
    np.testing.assert_array_equal(np.isnan(full[1]), np.isnan(ref["variance"]))
    np.testing.assert_array_equal(full[2] != 0, (ref["mask"] & BITS[1]) != 0)
    ok = np.isfinite(value)
    scale = np.abs(value[ok]).max()
    np.testing.assert_allclose(full[0][ok], value[ok], rtol=0, atol=1e-6 * scale)
    ok = np.isfinite(ref["variance"])
    np.testing.assert_allclose(full[1][ok], ref["variance"][ok], rtol=1e-6)
    assert (full[2] != 0).any() and np.isnan(full[0][ok]).any()


def test_footprint_box_holds_every_pixel_with_data():
    w_out = tan_wcs((200, 220))
    for rotation, shift in [(0.0, (30.5, -20.2)), (33.0, (-60.0, 45.0))]:
        w_in = tan_wcs((80, 90), rotation=rotation, shift=shift)
        _, footprint = reproject_interp(
            (np.ones((80, 90)), w_in), w_out, shape_out=(200, 220), order="bicubic"
        )
        y0, y1, x0, x1 = footprint_box(w_in, (80, 90), w_out, (200, 220))
        ys, xs = np.nonzero(footprint)
        assert y0 <= ys.min() and ys.max() < y1 and x0 <= xs.min() and xs.max() < x1
        # One pixel of slack on each side, not more.
        assert ys.min() - y0 <= 2 and y1 - ys.max() <= 3
        assert xs.min() - x0 <= 2 and x1 - xs.max() <= 3
    far = tan_wcs((80, 90), shift=(500.0, 0.0))
    assert footprint_box(far, (80, 90), w_out, (200, 220)) is None


def test_planes_holding_a_cutout_give_the_same_warp(star_field):
    """Planes cut to the input a footprint needs (``offset``), as the patch
    graph cuts dask arrays, warp as the whole exposure does."""
    from sciimg.astro._warp import _margin, input_box

    shape, img, var, mask = _flagged_field(star_field)
    w_in = tan_wcs(shape, rotation=0.4, shift=(3.3, -2.7))
    w_out = tan_wcs((40, 50), rotation=0.0, shift=(4.0, 1.0))
    box = footprint_box(w_in, shape, w_out, (40, 50))
    kw = {"sigma": 0.8, "bits": BITS, "band_pixels": 300}
    whole = warp_footprint((img, var, mask), w_in, shape, w_out, box, **kw)
    y0, y1, x0, x1 = box
    ya, yb, xa, xb = input_box(
        w_in, shape, w_out, (y0, x0), (y1 - y0, x1 - x0), _margin(0.8)
    )
    assert (yb - ya, xb - xa) < shape  # a cutout, not the whole exposure
    cut = (slice(ya, yb), slice(xa, xb))
    part = warp_footprint(
        (img[cut], var[cut], mask[cut]),
        w_in,
        shape,
        w_out,
        box,
        offset=(ya, xa),
        **kw,
    )
    np.testing.assert_array_equal(np.isnan(part), np.isnan(whole))
    ok = np.isfinite(whole)
    np.testing.assert_allclose(part[ok], whole[ok], rtol=1e-6, atol=1e-6)
