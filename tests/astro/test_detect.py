"""Detection against sep and photutils called directly on the same image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sep

from sciimg.astro import COADD_BITS, FLAG_SATURATED, detect, make_skymap
from tests.astro.conftest import render, tan_wcs


@pytest.fixture
def field():
    rng = np.random.default_rng(5)
    shape = (200, 240)
    stars = [
        (rng.uniform(12, 228), rng.uniform(12, 188), 10 ** rng.uniform(2.3, 4))
        for _ in range(40)
    ]
    return shape, stars, render(shape, stars, 3.5, sky_sigma=2.0, seed=1) + 50.0


def _match(x, y, tx, ty, radius=1.5):
    d = np.hypot(x[:, None] - tx[None], y[:, None] - ty[None])
    return d.min(1) < radius, d.argmin(1)


def test_same_sources_as_sep_directly(field):
    _shape, _, img = field
    cat = detect(img, threshold=5.0, minarea=5, background_mesh=64)
    bkg = sep.Background(img.astype("f8"), bw=64, bh=64, fw=3, fh=3)
    sub = img - bkg.back()
    objs = sep.extract(
        sub, 5.0, err=bkg.rms(), minarea=5, deblend_nthresh=32, deblend_cont=0.005
    )
    assert len(cat) == len(objs)
    np.testing.assert_allclose(cat["x"], objs["x"])
    np.testing.assert_allclose(cat["y"], objs["y"])
    kron, _ = sep.kron_radius(
        sub, objs["x"], objs["y"], objs["a"], objs["b"], objs["theta"], 6.0
    )
    flux, _, _ = sep.sum_ellipse(
        sub,
        objs["x"],
        objs["y"],
        objs["a"],
        objs["b"],
        objs["theta"],
        2.5 * kron,
        subpix=1,
    )
    big = kron * np.sqrt(objs["a"] * objs["b"]) * 2.5 >= 3.5
    np.testing.assert_allclose(np.asarray(cat["flux"])[big], flux[big], rtol=1e-10)


def test_fluxes_and_positions_against_photutils_and_truth(field):
    from photutils.background import Background2D
    from photutils.segmentation import SourceCatalog, detect_sources

    _shape, stars, img = field
    cat = detect(img)
    bkg = Background2D(img, 64, filter_size=3)
    sub = img - bkg.background
    segm = detect_sources(sub, 5.0 * bkg.background_rms, n_pixels=5)
    pcat = SourceCatalog(sub, segm)
    px, py = pcat.x_centroid, pcat.y_centroid
    found, idx = _match(np.asarray(cat["x"]), np.asarray(cat["y"]), px, py)
    assert found.mean() > 0.9
    tx, ty, tf = (np.array(c) for c in zip(*stars, strict=True))
    ok, j = _match(np.asarray(cat["x"]), np.asarray(cat["y"]), tx, ty, radius=1.0)
    bright = ok & (np.asarray(cat["snr"]) > 50)
    assert bright.sum() >= 10
    ratio = np.asarray(cat["flux"])[bright] / tf[j[bright]]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    pk = np.asarray(pcat.kron_flux)
    pf = pk[idx[bright & found]]
    assert np.median(np.asarray(cat["flux"])[bright & found] / pf) == pytest.approx(
        1.0, abs=0.05
    )


def test_patch_keeps_only_its_inner_sources(field):
    shape, _stars, img = field
    w = tan_wcs(shape)
    sm = make_skymap([(w, shape)], patch_size=100, border=20)
    total = 0
    seen = []
    full = detect(img, wcs=w)
    for patch in sm.patches():
        # The patch's cut of the image (the image is on the sky map's grid only
        # approximately, so cut it through the WCS).
        from reproject import reproject_interp

        cut = reproject_interp(
            (img, w), patch.wcs, shape_out=patch.shape, return_footprint=False
        )
        cat = detect(cut, wcs=patch.wcs, patch=patch)
        assert set(cat["patch"]) <= {patch.id}
        total += len(cat)
        seen.extend(zip(cat["ra"], cat["dec"], strict=True))
    # Each source of the image is listed once over all patches (give or take
    # the few that sit on an inner edge, shared by the resampling).
    assert abs(total - len(full)) <= 3
    ra, dec = np.array(seen).T
    d = (
        np.hypot(
            (ra[:, None] - ra[None]) * np.cos(np.radians(2)), dec[:, None] - dec[None]
        )
        * 3600
    )
    np.fill_diagonal(d, np.inf)
    assert (d.min(1) > 1.0).all()


def test_saturated_and_empty_images():
    img = render((64, 64), [(32, 32, 5e5)], 3.0, sky_sigma=1.0)
    mask = np.zeros(img.shape, "i4")
    core = img > 2e4
    img[core] = 2e4
    mask[core] = 1 << COADD_BITS["SAT"]
    cat = detect(img, mask=mask)
    assert len(cat) == 1 and cat["flags"][0] & FLAG_SATURATED
    assert (
        len(detect(np.random.default_rng(0).normal(0, 1, (64, 64)), threshold=6)) == 0
    )


def test_real_m13_image_through_the_reader():
    """astropy's bundled M13 image: the FITS reader, then detection vs sep."""
    import astropy

    from sciimg.io import open_exposure

    path = Path(astropy.__file__).parent / "io/fits/hdu/compressed/tests/data/m13.fits"
    exp = open_exposure(path, image=0, mask=None, variance=None)
    img = exp.image.compute().astype("f8")
    cat = detect(img, wcs=exp.wcs, threshold=10.0)
    bkg = sep.Background(img, bw=64, bh=64, fw=3, fh=3)
    objs = sep.extract(img - bkg.back(), 10.0, err=bkg.rms(), minarea=5)
    assert len(cat) == len(objs) > 20
    ra, _dec = exp.wcs.pixel_to_world_values(objs["x"], objs["y"])
    np.testing.assert_allclose(cat["ra"], ra)
    # M13 is at RA 250.42, Dec +36.46.
    assert np.median(cat["ra"]) == pytest.approx(250.42, abs=0.1)
    assert np.median(cat["dec"]) == pytest.approx(36.46, abs=0.1)


def test_empty_aperture_noise_factor():
    """White noise needs no correction; smoothed noise needs 1/sqrt(sum k²)."""
    from scipy.ndimage import gaussian_filter

    from sciimg.astro._detect import noise_factor

    rng = np.random.default_rng(3)
    white = rng.normal(0, 1, (700, 700))
    free = np.zeros(white.shape, bool)
    radii = np.array([2.0, 4.0, 12.0])
    np.testing.assert_allclose(
        noise_factor(white, np.ones(white.shape), free, radii), 1.0, atol=0.1
    )
    sigma = 1.5
    smooth = gaussian_filter(white, sigma)
    impulse = np.zeros((61, 61))
    impulse[30, 30] = 1
    kernel = gaussian_filter(impulse, sigma)
    per_pixel = (kernel**2).sum()  # variance of a smoothed unit-noise pixel
    factor = noise_factor(smooth, np.full(white.shape, per_pixel), free, radii)
    # Exact: a disk sum of smoothed noise weighs each input pixel by the disk
    # convolved with the kernel.
    yy, xx = np.mgrid[-30:31, -30:31]
    disk = (xx**2 + yy**2 <= 12**2).astype(float)
    weights = gaussian_filter(disk, sigma, mode="constant")
    expected = np.sqrt((weights**2).sum() / (per_pixel * disk.sum()))
    assert factor[-1] == pytest.approx(expected, rel=0.12)
    assert factor[0] < factor[1] < factor[2]
