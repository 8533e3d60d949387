"""The astronomy kernels: fast against reference, called directly on one field."""

from __future__ import annotations

import numpy as np
import pytest

from sciimg import kernels
from sciimg.astro import (
    COADD_BITS,
    WARP_BAD,
    bitmask,
    calibrate,
    coadd,
    detect,
    footprint_box,
    input_box,
    psf_match_sigma,
)
from sciimg.io import DEFAULT_MASK_BITS
from tests.astro.conftest import render, tan_wcs

BITS = (bitmask(WARP_BAD), bitmask(["SAT"]), bitmask(["NO_DATA"]))


@pytest.fixture(scope="module")
def field():
    """A 96×120 star field with a cosmic ray, a saturated star and a NaN variance."""
    rng = np.random.default_rng(7)
    stars = [
        (rng.uniform(10, 110), rng.uniform(10, 86), rng.uniform(300, 3000))
        for _ in range(12)
    ]
    shape = (96, 120)
    img = render(shape, stars, 3.0, sky_sigma=1.0)
    mask = np.zeros(shape, "i4")
    mask[40, 60:63] = 1 << DEFAULT_MASK_BITS["CR"]
    img[40, 60:63] += 5000.0
    mask[20:23, 30:33] = 1 << DEFAULT_MASK_BITS["SAT"]
    var = np.full(shape, 2.0)
    var[70, 10] = np.nan
    return shape, img, var, mask


def _same_warp(fast, ref):
    np.testing.assert_array_equal(np.isnan(fast[0]), np.isnan(ref[0]))
    np.testing.assert_array_equal(np.isnan(fast[1]), np.isnan(ref[1]))
    np.testing.assert_array_equal(fast[2], ref[2])
    ok = np.isfinite(ref[0])
    assert ok.mean() > 0.5
    scale = np.abs(ref[0][ok]).max()
    np.testing.assert_allclose(fast[0][ok], ref[0][ok], rtol=0, atol=1e-5 * scale)
    ok = np.isfinite(ref[1])
    np.testing.assert_allclose(fast[1][ok], ref[1][ok], rtol=1e-5)


@pytest.mark.parametrize("sigma", [0.0, psf_match_sigma(2.5, 3.5)])
def test_warp_fast_equals_reproject(field, sigma):
    """Rotated, shifted target; flags, saturation and PSF matching; a box that
    reaches past the exposure on two sides."""
    shape, img, var, mask = field
    w_in = tan_wcs(shape, rotation=0.4, shift=(3.3, -2.7))
    w_out = tan_wcs((90, 110), rotation=-0.2, shift=(30.0, 21.0))
    box = footprint_box(w_in, shape, w_out, (90, 110))
    assert box[0] > 0 and box[2] > 0  # the exposure covers part of the grid
    args = ((img, var, mask), w_in, shape, w_out, box)
    kw = {"sigma": sigma, "bits": BITS}
    fast = kernels.warp(*args, **kw)
    ref = kernels.warp(*args, **kw, implementation="reference")
    assert fast.dtype == ref.dtype == np.float32
    assert (fast[2] != 0).any() and np.isnan(fast[0]).any()
    _same_warp(fast, ref)


def test_warp_of_a_cutout_and_of_planes_read_on_slicing(field):
    """Planes holding a cutout (``offset``) and planes that read on slicing give
    the warp of the whole exposure, in both implementations."""
    shape, img, var, mask = field
    w_in = tan_wcs(shape, rotation=1.0)
    w_out = tan_wcs((40, 40), shift=(6.0, -4.0))
    box = footprint_box(w_in, shape, w_out, (40, 40))

    class Lazy:  # a plane that reads on slicing, as a Zarr array does
        def __init__(self, a):
            self.a, self.shape = a, a.shape

        def __getitem__(self, cut):
            return self.a[cut]

    whole = kernels.warp((img, var, mask), w_in, shape, w_out, box, bits=BITS)
    # The input under the box, with reproject's margin for the splines.
    y0, y1, x0, x1 = box
    ya, yb, xa, xb = input_box(w_in, shape, w_out, (y0, x0), (y1 - y0, x1 - x0), 12)
    assert ya > 0 and xa > 0
    cut = (slice(ya, yb), slice(xa, xb))
    for impl in ("fast", "reference"):
        part = kernels.warp(
            tuple(Lazy(p[cut]) for p in (img, var, mask)),
            w_in,
            shape,
            w_out,
            box,
            bits=BITS,
            offset=(ya, xa),
            implementation=impl,
        )
        _same_warp(part, whole)


def test_coadd_stack_fast_equals_reference_and_the_dask_coadd():
    rng = np.random.default_rng(3)
    values = rng.normal(10.0, 1.0, (9, 40, 37)).astype(np.float32)
    values[2, 5:9, 3:7] += 40.0  # outliers the clip removes
    values[:, 30:, 30:] = np.nan  # no data at all
    values[4, ::3] = np.nan
    variances = np.full_like(values, 1.0)
    saturated = np.zeros((40, 37), bool)
    saturated[1, 1] = True
    bits = {"sat": 2, "no_data": 256, "clipped": 512}
    fast = kernels.coadd_stack(values, variances, saturated, **bits)
    ref = kernels.coadd_stack(
        values, variances, saturated, **bits, implementation="reference"
    )
    np.testing.assert_array_equal(fast[2:], ref[2:])
    np.testing.assert_array_equal(np.isnan(fast[:2]), np.isnan(ref[:2]))
    ok = np.isfinite(ref[0])
    np.testing.assert_allclose(fast[0][ok], ref[0][ok], rtol=0, atol=1e-5)
    np.testing.assert_allclose(fast[1][ok], ref[1][ok], rtol=1e-5)
    code = fast[3].astype(int)
    assert (code & 512).any() and (code & 256).any() and code[1, 1] & 2
    # The same stack through the Dask coadd (no data as a mask bit).
    masks = np.where(np.isnan(values), 1 << COADD_BITS["NO_DATA"], 0)
    dask_out = coadd(np.nan_to_num(values), variances, masks, mask_bits=COADD_BITS)
    np.testing.assert_array_equal(dask_out["depth"].compute(), fast[2])
    np.testing.assert_allclose(dask_out["image"].compute()[ok], fast[0][ok], 1e-6)


def test_calibrate_and_detect_kernels_are_the_libraries(field):
    """sep and astroscrappy are compiled already: both names are theirs."""
    shape, img, var, mask = field
    for name in ("calibrate_ccd", "detect_sources"):
        k = kernels.kernel(name)
        assert k.resolve(img) is k.resolve(img, "reference")
    got = kernels.calibrate_ccd(
        img.astype("f4") + 100, var, mask, mask_bits=DEFAULT_MASK_BITS, saturate=2500.0
    )
    lazy = calibrate(img.astype("f4") + 100, var, mask, saturate=2500.0)
    names = ("image", "variance", "mask", "background")
    for plane, name in zip(got, names, strict=True):
        np.testing.assert_array_equal(plane, lazy[name].compute())
    w = tan_wcs(shape)
    cat = kernels.detect_sources(got[0], got[1], got[2], wcs=w)
    direct = detect(got[0], got[1], got[2], wcs=w)
    assert len(cat) == len(direct) > 5
    np.testing.assert_array_equal(np.asarray(cat["x"]), np.asarray(direct["x"]))
