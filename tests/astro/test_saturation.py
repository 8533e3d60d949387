"""Saturated pixels and unusable variance planes, from FITS files as surveys write
them, checked against the pixels read directly with astropy."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from sciimg.errors import InputError
from sciimg.io import open_exposure
from sciimg.pipeline.astro_steps import CalibrateParams, calibrate_step
from tests.io.fits_files import write_exposure

SAT = 1 << 1  # the SAT bit of LSST's planes, which the test files name


def _calibrated_mask(path) -> np.ndarray:
    params = CalibrateParams(cosmic_rays=False).model_dump()
    return np.asarray(calibrate_step(open_exposure(path), **params)["mask"])


def _edit(path, hdu, key=None, value=None, data=None) -> None:
    with fits.open(path, mode="update") as hdul:
        if key is not None:
            hdul[hdu].header[key] = value
        if data is not None:
            data(hdul[hdu].data)


def test_pixels_at_or_above_saturate_are_flagged(tmp_path):
    path = tmp_path / "ccd.fits"
    write_exposure(path)

    def bright_block(image):
        image[5:12, 20:30] = 65000.0
        image[20, 3] = 30000.0  # exactly at the level
        image[21, 3] = 29999.0  # just below it

    _edit(path, "IMAGE", data=bright_block)
    _edit(path, 0, "SATURATE", 30000)
    with fits.open(path) as hdul:
        image = hdul["IMAGE"].data.astype("f4")
        before = hdul["MASK"].data.astype("i4")
        level = hdul[0].header["SATURATE"]
    mask = _calibrated_mask(path)
    over = image >= level
    assert over.sum() == 71
    assert np.all(mask[over] & SAT)
    # Elsewhere SAT is where the file had it, and no input bit is lost.
    np.testing.assert_array_equal(mask[~over] & SAT, before[~over] & SAT)
    assert np.all((mask & before) == before)
    assert not mask[21, 3] & SAT or before[21, 3] & SAT


@pytest.mark.parametrize("key", ["SATLEVEL", None])
def test_satlevel_is_read_and_no_level_flags_nothing(tmp_path, key):
    path = tmp_path / "ccd.fits"
    write_exposure(path)
    _edit(path, 0, "SATURATE", 0.0)  # 0: level unknown, as some telescopes write
    if key:
        _edit(path, 0, key, 100.0)  # the image is ~N(100, 5)
    with fits.open(path) as hdul:
        image = hdul["IMAGE"].data.astype("f4")
        before = hdul["MASK"].data.astype("i4")
    mask = _calibrated_mask(path)
    expected = (before & SAT) | np.where(image >= 100.0, SAT, 0) if key else before
    np.testing.assert_array_equal(mask & SAT, expected & SAT)


def test_a_saturation_level_that_is_no_number(tmp_path):
    path = tmp_path / "ccd.fits"
    write_exposure(path)
    _edit(path, 0, "SATURATE", "high")
    with pytest.raises(InputError) as info:
        _calibrated_mask(path)
    assert str(info.value) == f"{path}: SATURATE = 'high' is not a number"


@pytest.mark.parametrize(
    ("fill", "problem"),
    [
        (np.nan, "VARIANCE plane is all NaN"),
        (0.0, "VARIANCE plane has no positive values (1230 zero or negative, 0 NaN"),
        (-4.0, "VARIANCE plane has no positive values (1230 zero or negative"),
    ],
)
def test_an_unusable_variance_plane_is_named(tmp_path, fill, problem):
    path = tmp_path / "ccd.fits"
    write_exposure(path)

    def fill_variance(variance):
        variance[:] = fill

    _edit(path, "VARIANCE", data=fill_variance)
    with pytest.raises(InputError) as info:
        _calibrated_mask(path)
    assert str(info.value).startswith(f"{path}: {problem}")


def test_a_variance_plane_with_some_gaps_passes(tmp_path):
    path = tmp_path / "ccd.fits"
    write_exposure(path)

    def gaps(variance):
        variance[:, :10] = np.nan  # an amplifier that read nothing

    _edit(path, "VARIANCE", data=gaps)
    assert _calibrated_mask(path).shape == (30, 41)
