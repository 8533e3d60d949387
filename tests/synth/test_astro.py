import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy.ndimage import median_filter

from sciimg.io import DEFAULT_MASK_BITS
from sciimg.synth import (
    make_sky_catalog,
    render_exposure,
    write_astro_survey,
)

SAT = 1 << DEFAULT_MASK_BITS["SAT"]
BAD = 1 << DEFAULT_MASK_BITS["BAD"]


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """Two visits of the default mosaic: 8 exposures of 256²."""
    return write_astro_survey(tmp_path_factory.mktemp("astro"), visits=2, seed=3)


@pytest.fixture(scope="module")
def truth(survey):
    return (
        pq.read_table(survey.catalog).to_pandas(),
        pq.read_table(survey.exposure_table).to_pandas(),
        pq.read_table(survey.cosmic_rays).to_pandas(),
    )


@pytest.fixture(scope="module")
def exposures(survey):
    """(header, wcs, image, mask, variance) of each exposure, in native order."""
    out = []
    for path in survey.exposures:
        with fits.open(path) as hdul:
            out.append(
                (
                    hdul[0].header,
                    WCS(hdul["IMAGE"].header),
                    hdul["IMAGE"].data.astype(np.float64),
                    hdul["MASK"].data.astype(np.int64),
                    hdul["VARIANCE"].data.astype(np.float64),
                )
            )
    return out


def _wcs(rotation_deg=0.0, scale=0.5, shape=(64, 64)):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    c, s = np.cos(np.deg2rad(rotation_deg)), np.sin(np.deg2rad(rotation_deg))
    w.wcs.cd = scale / 3600 * np.array([[-c, s], [s, c]])
    return w


def _source(kind, flux, *, major=0.0, minor=0.0, theta=0.0, dra=0.0, ddec=0.0):
    return Table(
        {
            "id": [1],
            "ra": [150.0 + dra / 3600],
            "dec": [2.0 + ddec / 3600],
            "flux": [flux],
            "kind": [kind],
            "sigma_major": [major],
            "sigma_minor": [minor],
            "theta": [theta],
        }
    )


def _sky_model(row, shape):
    ny, nx = shape
    x = np.arange(nx) - (nx - 1) / 2
    y = np.arange(ny) - (ny - 1) / 2
    return row.sky + row.sky_slope_x * x[None, :] + row.sky_slope_y * y[:, None]


def _moments(img):
    yy, xx = np.indices(img.shape)
    total = img.sum()
    xc, yc = (img * xx).sum() / total, (img * yy).sum() / total
    cxx = (img * (xx - xc) ** 2).sum() / total
    cyy = (img * (yy - yc) ** 2).sum() / total
    cxy = (img * (xx - xc) * (yy - yc)).sum() / total
    return xc, yc, cxx, cyy, cxy


def test_layout_and_truth_tables(survey, truth):
    root = survey.root
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert names == [
        "truth",
        "truth/catalog.parquet",
        "truth/cosmic_rays.parquet",
        "truth/exposures.parquet",
        "visit-0",
        *[f"visit-0/ccd-{c}.fits" for c in range(4)],
        "visit-1",
        *[f"visit-1/ccd-{c}.fits" for c in range(4)],
    ]  # and no temporary files left behind
    assert survey.exposure(1, 2) == root / "visit-1" / "ccd-2.fits"
    cat, exp, rays = truth
    assert list(cat.columns) == [
        "id", "ra", "dec", "flux", "mag", "kind", "sigma_major", "sigma_minor", "theta"
    ]  # fmt: skip
    assert cat["id"].dtype == np.int64 and cat["id"].is_unique
    assert all(cat[c].dtype == np.float64 for c in ("ra", "dec", "flux", "mag"))
    np.testing.assert_allclose(cat["mag"], 27.0 - 2.5 * np.log10(cat["flux"]))
    assert set(cat["kind"]) == {"star", "galaxy"}
    assert len(cat) == survey.n_stars + survey.n_galaxies
    gal = cat[cat["kind"] == "galaxy"]
    assert len(gal) >= 0.25 * len(cat)
    assert (gal["sigma_major"].between(0.5, 2.0)).all()
    ratio = gal["sigma_minor"] / gal["sigma_major"]
    assert ratio.between(0.4, 1.0).all()
    stars = cat[cat["kind"] == "star"]
    assert (stars[["sigma_major", "sigma_minor", "theta"]] == 0).all().all()
    assert cat["flux"].min() >= 200 and cat["flux"].max() <= 3e6
    assert list(exp[["visit", "ccd"]].itertuples(index=False, name=None)) == [
        (v, c) for v in range(2) for c in range(4)
    ]
    assert exp["path"].tolist() == [
        p.relative_to(root).as_posix() for p in survey.exposures
    ]
    for col in ("psf_fwhm", "magzero", "sky", "gain", "read_noise"):
        assert exp[col].dtype == np.float64
    assert exp["psf_fwhm"].between(2.5, 4.0).all()
    assert exp["magzero"].between(26.8, 27.2).all()
    assert exp["sky"].between(400, 1700).all()
    # PSF and zero point belong to the visit, not the CCD.
    assert (exp.groupby("visit")[["psf_fwhm", "magzero"]].nunique() == 1).all().all()
    assert list(rays.columns) == ["visit", "ccd", "x", "y", "adu"]
    assert len(rays) > 0 and rays["adu"].between(500, 5000).all()


def test_sources_on_the_mosaic(survey, truth, exposures):
    cat = truth[0]
    on = np.zeros(len(cat), bool)
    for hdr, wcs, image, *_ in exposures[:4]:  # visit 0
        x, y = wcs.world_to_pixel_values(cat["ra"], cat["dec"])
        ny, nx = image.shape
        on |= (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
        assert hdr["VISIT"] == 0
    assert 100 <= on.sum() <= 300


def test_fits_contract(survey, truth):
    exp = truth[1]
    for path, row in zip(survey.exposures, exp.itertuples(), strict=True):
        with fits.open(path) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
            assert isinstance(hdul[0], fits.PrimaryHDU) and hdul[0].data is None
            h0 = hdul[0].header
            assert (h0["VISIT"], h0["CCDNUM"]) == (row.visit, row.ccd)
            assert isinstance(h0["VISIT"], int) and isinstance(h0["CCDNUM"], int)
            assert h0["FILTER"] == "g" and h0["EXPTIME"] > 0 and h0["MJD-OBS"] > 5e4
            assert (h0["GAIN"], h0["RDNOISE"], h0["SATURATE"]) == (2.0, 5.0, 30000.0)
            assert h0["MAGZERO"] == pytest.approx(row.magzero, rel=1e-12)
            assert h0["PSFFWHM"] == pytest.approx(row.psf_fwhm, rel=1e-12)
            assert "truth" in h0.comments["PSFFWHM"]
            assert h0["SKYLEVEL"] == pytest.approx(row.sky, rel=1e-12)
            for ext, dtype in (("IMAGE", ">f4"), ("MASK", ">i4"), ("VARIANCE", ">f4")):
                h = hdul[ext].header
                assert hdul[ext].data.dtype.str == dtype  # big-endian, as FITS is
                assert hdul[ext].data.shape == (256, 256)
                assert (h["CTYPE1"], h["CTYPE2"]) == ("RA---TAN", "DEC--TAN")
                assert (h["RADESYS"], h["EQUINOX"]) == ("ICRS", 2000.0)
                assert (h["CRVAL1"], h["CRVAL2"]) == (150.0, 2.0)
                assert all(f"CD{i}_{j}" in h for i in (1, 2) for j in (1, 2))
                assert "PC1_1" not in h and "CDELT1" not in h
            assert hdul["IMAGE"].header["BUNIT"] == "adu"
            mask_hdr = hdul["MASK"].header
            assert {k: mask_hdr[f"MP_{k}"] for k in DEFAULT_MASK_BITS} == {
                "BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "NO_DATA": 8
            }  # fmt: skip
            used = np.bitwise_or.reduce(hdul["MASK"].data.ravel())
            assert used & ~(BAD | SAT) == 0  # EDGE, CR... are defined but unused
            w = WCS(hdul["IMAGE"].header)
            scale = np.sqrt(abs(np.linalg.det(w.wcs.cd))) * 3600
            assert scale == pytest.approx(0.5, rel=1e-9)
            assert np.linalg.det(w.wcs.cd) < 0  # east to the left of north


def _write_small(path, seed, **kwargs):
    return write_astro_survey(path, ccd_shape=(48, 64), ccds=2, seed=seed, **kwargs)


def _image_bytes(path):
    with fits.open(path) as hdul:
        return hdul["IMAGE"].data.tobytes()


def test_deterministic(tmp_path):
    a = _write_small(tmp_path / "a", 5, visits=2)
    b = _write_small(tmp_path / "b", 5, visits=2)
    c = _write_small(tmp_path / "c", 6, visits=2)
    one = _write_small(tmp_path / "one", 5, visits=1)
    for pa, pb, pc in zip(a.exposures, b.exposures, c.exposures, strict=True):
        assert _image_bytes(pa) == _image_bytes(pb)
        assert _image_bytes(pa) != _image_bytes(pc)
    # The sky and visit 0 do not depend on how many visits follow.
    assert _image_bytes(one.exposures[1]) == _image_bytes(a.exposures[1])
    cats = [pq.read_table(s.catalog) for s in (a, b, c, one)]
    assert cats[0].equals(cats[1]) and cats[0].equals(cats[3])
    assert not cats[0].equals(cats[2])
    assert pq.read_table(a.cosmic_rays).equals(pq.read_table(b.cosmic_rays))


def test_overwrite(tmp_path):
    _write_small(tmp_path, 1, visits=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _write_small(tmp_path, 1, visits=1)
    again = _write_small(tmp_path, 2, visits=1, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truth", "visit-0"]
    assert len(pq.read_table(again.exposure_table)) == 2


@pytest.mark.parametrize("magzero", [27.0, 26.8])
@pytest.mark.parametrize(
    ("kind", "shape"),
    [("star", {}), ("galaxy", {"major": 2.0, "minor": 0.8, "theta": 30.0})],
)
def test_render_integrates_to_flux(kind, shape, magzero):
    cat = _source(kind, 1.0e5, dra=0.31, ddec=-0.17, **shape)
    img = render_exposure(cat, _wcs(12.0), (64, 64), psf_fwhm=2.5, magzero=magzero)
    want = 1.0e5 * 10 ** (0.4 * (magzero - 27.0))
    assert img.sum() == pytest.approx(want, rel=5e-3)
    assert img.sum() == pytest.approx(want, rel=1e-5)  # in fact far better


@pytest.mark.parametrize(("theta", "along"), [(0.0, "y"), (90.0, "x"), (45.0, "-")])
def test_render_galaxy_shape(theta, along):
    """Covariance = intrinsic + PSF (+ 1/12 for pixel integration), PA east of north."""
    cat = _source("galaxy", 1.0e5, major=3.0, minor=1.5, theta=theta)
    psf = 3.0
    img = render_exposure(cat, _wcs(), (96, 96), psf_fwhm=psf)
    _, _, cxx, cyy, cxy = _moments(img)
    s2 = (psf / 2.3548200450309493) ** 2 + 1 / 12
    big, small = (3.0 / 0.5) ** 2 + s2, (1.5 / 0.5) ** 2 + s2
    if along == "y":  # north is +y
        want = (small, big, 0.0)
    elif along == "x":
        want = (big, small, 0.0)
    else:  # north-east: up and to the left (east is -x)
        want = ((big + small) / 2, (big + small) / 2, -(big - small) / 2)
    np.testing.assert_allclose((cxx, cyy, cxy), want, atol=2e-3 * big)


def test_noise_matches_variance(survey, truth, exposures):
    cat, exp, rays = truth
    for (_, wcs, image, mask, var), row in zip(
        exposures, exp.itertuples(), strict=True
    ):
        x, y = wcs.world_to_pixel_values(cat["ra"], cat["dec"])
        yy, xx = np.indices(image.shape)
        blank = mask == 0
        for sx, sy in zip(x, y, strict=True):
            if -20 < sx < image.shape[1] + 20 and -20 < sy < image.shape[0] + 20:
                blank &= (xx - sx) ** 2 + (yy - sy) ** 2 > 15**2
        here = rays[(rays["visit"] == row.visit) & (rays["ccd"] == row.ccd)]
        blank[here["y"], here["x"]] = False
        assert blank.sum() > 10_000
        resid = (image - _sky_model(row, image.shape))[blank]
        sigma = np.sqrt(var[blank].mean())
        assert resid.std() == pytest.approx(sigma, rel=0.05)
        assert abs(resid.mean()) < 0.05 * sigma
        # The variance plane is the model's: sky/gain + (rn/gain)².
        expect = _sky_model(row, image.shape)[blank] / 2.0 + (5.0 / 2.0) ** 2
        np.testing.assert_allclose(var[blank], expect, rtol=1e-3)


def _bright_isolated_stars(cat, wcs, image, mask, rays, magzero, psf_sigma):
    """Stars far from edges, neighbours, defects and cosmic rays; unsaturated."""
    x, y = wcs.world_to_pixel_values(cat["ra"], cat["dec"])
    adu = cat["flux"].to_numpy() * 10 ** (0.4 * (magzero - 27.0))
    r = int(np.ceil(4 * psf_sigma))
    ny, nx = image.shape
    for k in np.argsort(-adu):
        if cat["kind"].iloc[k] != "star" or adu[k] < 8e4:
            continue
        cx, cy = round(x[k]), round(y[k])
        if not (r <= cx < nx - r and r <= cy < ny - r):
            continue
        d2 = (x - x[k]) ** 2 + (y - y[k]) ** 2
        if np.any((d2 > 0) & (d2 < 20**2) & (adu > 1e-2 * adu[k])):
            continue
        win = (slice(cy - r, cy + r + 1), slice(cx - r, cx + r + 1))
        crs = (abs(rays["x"] - cx) <= r) & (abs(rays["y"] - cy) <= r)
        if mask[win].any() or crs.any() or image[win].max() > 25000:
            continue
        yield k, (x[k], y[k]), win


def test_star_centroid_and_psf_fwhm(survey, truth, exposures):
    cat, exp, rays = truth
    checked = 0
    for (hdr, wcs, image, mask, _), row in zip(
        exposures, exp.itertuples(), strict=True
    ):
        here = rays[(rays["visit"] == row.visit) & (rays["ccd"] == row.ccd)]
        sigma = hdr["PSFFWHM"] / 2.3548200450309493
        stars = _bright_isolated_stars(
            cat, wcs, image, mask, here, hdr["MAGZERO"], sigma
        )
        for _, (x0, y0), win in stars:
            stamp = (image - _sky_model(row, image.shape))[win]
            xc, yc, cxx, cyy, _ = _moments(stamp)
            xc += win[1].start
            yc += win[0].start
            assert abs(xc - x0) < 0.1 and abs(yc - y0) < 0.1
            fwhm = 2.3548200450309493 * np.sqrt((cxx + cyy) / 2 - 1 / 12)
            assert fwhm == pytest.approx(hdr["PSFFWHM"], rel=0.05)
            checked += 1
    assert checked >= 3


def test_cosmic_rays_elevated_and_unflagged(survey, truth, exposures):
    exp, rays = truth[1], truth[2]
    for (_, _, image, mask, _), row in zip(exposures, exp.itertuples(), strict=True):
        here = rays[(rays["visit"] == row.visit) & (rays["ccd"] == row.ccd)]
        local = median_filter(image, size=5)
        ys, xs = here["y"].to_numpy(), here["x"].to_numpy()
        assert (mask[ys, xs] == 0).all()
        assert (image[ys, xs] - local[ys, xs] > 0.5 * here["adu"].to_numpy()).all()
        assert len(set(zip(xs, ys, strict=True))) == len(here)


def test_saturation_and_bad_column(survey, truth, exposures):
    exp = truth[1]
    n_sat = 0
    for (hdr, _, image, mask, _), row in zip(exposures, exp.itertuples(), strict=True):
        sat = (mask & SAT) != 0
        np.testing.assert_array_equal(image >= hdr["SATURATE"], sat)
        assert (image[sat] == hdr["SATURATE"]).all()
        n_sat += sat.sum()
        bad = np.zeros(image.shape, bool)
        bad[row.bad_y0 : row.bad_y1, row.bad_x] = True
        assert row.bad_y1 - row.bad_y0 >= image.shape[0] // 2
        np.testing.assert_array_equal((mask & BAD) != 0, bad)
        assert (image[bad] == 0).all()
    assert n_sat > 0


def test_catalog_fluxes_span_detection_to_saturation():
    cat = make_sky_catalog(700, 300, size=(600.0, 600.0), seed=2)
    flux = np.asarray(cat["flux"])
    stars = np.asarray(cat["kind"]) == "star"
    # Faint sources outnumber bright ones; a few stars would saturate any visit.
    assert np.sum(flux < 1e3) > 1.5 * np.sum((flux >= 1e3) & (flux < 1e4))
    assert 2 <= np.sum(stars & (flux > 5e5)) <= 20
    assert np.sum(~stars & (flux > 5e5)) <= 1
