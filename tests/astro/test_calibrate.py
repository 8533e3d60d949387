"""Calibration against sep/astroscrappy called directly and the survey's truth."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import sep

from sciimg.astro import (
    calibrate,
    detect_cosmic_rays,
    estimate_background,
    measure_psf_fwhm,
)
from sciimg.errors import InputError
from sciimg.io import DEFAULT_MASK_BITS, open_exposure


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    from sciimg.synth import write_astro_survey

    return write_astro_survey(
        tmp_path_factory.mktemp("sky"), visits=3, ccds=2, ccd_shape=(256, 256), seed=4
    )


def _planes(survey, visit, ccd):
    exp = open_exposure(survey.exposure(visit, ccd))
    return exp, *(np.asarray(p) for p in (exp.image, exp.variance, exp.mask))


def test_background_equals_sep_and_follows_the_sky(survey):
    _exp, img, _var, mask = _planes(survey, 0, 0)
    bkg = estimate_background(img, mask, mesh=64)
    bad = (mask & 1) != 0  # the bad column
    ref = sep.Background(
        np.where(bad, 0, img).astype("f4"), mask=bad, bw=64, bh=64, fw=3, fh=3
    )
    np.testing.assert_allclose(bkg, ref.back(), rtol=1e-6)
    truth = pd.read_parquet(survey.exposure_table).query("visit == 0 and ccd == 0")
    row = truth.iloc[0]
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    cy, cx = (img.shape[0] - 1) / 2, (img.shape[1] - 1) / 2
    sky = row["sky"] + row["sky_slope_x"] * (xx - cx) + row["sky_slope_y"] * (yy - cy)
    # Faint wings of sources lift a mesh estimate a little; within 1% of the sky.
    assert np.median(np.abs(bkg - sky)) < 0.01 * row["sky"]


def test_cosmic_rays_found_without_eating_stars(survey):
    truth = pd.read_parquet(survey.cosmic_rays)
    found, total, false = 0, 0, 0
    for (visit, ccd), hits in truth.groupby(["visit", "ccd"]):
        exp, img, var, mask = _planes(survey, visit, ccd)
        header = exp.header
        flagged = detect_cosmic_rays(
            img,
            var,
            mask,
            gain=header["GAIN"],
            read_noise=header["RDNOISE"],
            saturate=header["SATURATE"],
        )
        found += flagged[hits["y"], hits["x"]].sum()
        total += len(hits)
        near = np.zeros(img.shape, bool)
        for x, y in zip(hits["x"], hits["y"], strict=True):
            near[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] = True
        false += (flagged & ~near).sum()
    assert found / total >= 0.95  # edges included: the CCD is mirrored for it
    assert false <= 0.3 * total  # a few undersampled star cores


def test_psf_fwhm_matches_truth(survey):
    table = pd.read_parquet(survey.exposure_table)
    for row in table.itertuples():
        _exp, img, var, mask = _planes(survey, row.visit, row.ccd)
        sub = img - estimate_background(img, mask)
        fwhm = measure_psf_fwhm(sub, mask, variance=var)
        assert fwhm == pytest.approx(row.psf_fwhm, rel=0.05)


def test_calibrate_scales_and_flags(survey):
    hits = pd.read_parquet(survey.cosmic_rays)
    visit, ccd = hits.groupby(["visit", "ccd"]).size().idxmax()
    hits = hits.query("visit == @visit and ccd == @ccd")
    exp, img, var, _mask = _planes(survey, visit, ccd)
    scale = 10 ** (0.4 * (27 - exp.header["MAGZERO"]))
    out = calibrate(
        da.from_array(img, chunks=100),
        exp.variance,
        exp.mask,
        scale=scale,
        gain=exp.header["GAIN"],
        read_noise=exp.header["RDNOISE"],
        saturate=exp.header["SATURATE"],
    )
    cal = out["image"].compute()
    np.testing.assert_allclose(out["variance"].compute(), var * scale**2, rtol=1e-6)
    np.testing.assert_allclose(
        cal + out["background"].compute(), img * scale, rtol=1e-5, atol=1e-2
    )
    cr = (out["mask"].compute() & (1 << DEFAULT_MASK_BITS["CR"])) != 0
    assert cr[hits["y"], hits["x"]].mean() >= 0.9
    assert abs(np.median(cal)) < 3 * np.sqrt(np.median(var)) * scale


def test_all_nan_exposure_is_a_one_line_error():
    img = da.full((64, 64), np.nan, dtype="f4")
    out = calibrate(
        img,
        da.ones((64, 64)),
        da.zeros((64, 64), dtype="i4"),
        source="visit-9/ccd-1.fits",
    )
    with pytest.raises(InputError, match=r"visit-9/ccd-1.fits: all pixels are NaN"):
        out["image"].compute()


def test_too_few_stars_for_the_psf():
    img = np.random.default_rng(0).normal(0, 1, (64, 64))
    with pytest.raises(InputError, match="cannot measure the PSF"):
        measure_psf_fwhm(img, source="blank.fits")


def test_cr_niter_from_the_config_reaches_astroscrappy(survey, monkeypatch):
    import astroscrappy

    from sciimg.errors import ConfigError
    from sciimg.pipeline import load_config
    from sciimg.pipeline.astro_steps import calibrate_step

    def config(**calib):
        raw = {"pipeline": "astro", "input": {"path": "d"}, "output": "o"}
        cfg = load_config({**raw, "steps": {"calibrate": calib}})
        return next(s.params for s in cfg.plan() if s.name == "calibrate")

    assert config()["cr_niter"] == 2
    params = config(cr_niter=3)
    with pytest.raises(ConfigError, match="cr_niter"):
        config(cr_niter=0)

    seen = []
    real = astroscrappy.detect_cosmics

    def spy(*args, **kwargs):
        seen.append(kwargs["niter"])
        return real(*args, **kwargs)

    monkeypatch.setattr(astroscrappy, "detect_cosmics", spy)
    exp = open_exposure(survey.exposure(0, 1))
    flagged = calibrate_step(exp, **params)["mask"].compute(scheduler="sync")
    assert seen == [3]
    # The flags are those of the same setting called directly (saturated pixels
    # flagged first, as calibrate does).
    _exp, img, var, mask = _planes(survey, 0, 1)
    sat = exp.header["SATURATE"]
    mask = np.where(img >= sat, mask | (1 << DEFAULT_MASK_BITS["SAT"]), mask)
    direct = detect_cosmic_rays(
        img,
        var,
        mask,
        background=estimate_background(img, mask),
        gain=exp.header["GAIN"],
        read_noise=exp.header["RDNOISE"],
        saturate=sat,
        niter=3,
    )
    cr = (flagged & (1 << DEFAULT_MASK_BITS["CR"])) != 0
    np.testing.assert_array_equal(cr, direct)
