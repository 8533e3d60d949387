"""Processed FITS exposures (IMAGE, MASK and VARIANCE extensions) opened with
``open_exposure``: pixels, chunks, mask planes, WCS and headers against astropy."""

import pickle

import numpy as np
import pytest

from sciimg.errors import InputError
from sciimg.io import DEFAULT_MASK_BITS, open_exposure
from tests.io.fits_files import (
    LSST_BITS,
    M13,
    SHAPE,
    astropy_data,
    file_wcs,
    write_exposure,
)


def test_exposure_matches_astropy(tmp_path):
    path = tmp_path / "visit-0410915_ccd05.fits"
    arrays = write_exposure(path)
    exp = open_exposure(path, chunk_memory=41 * 4 * 7)  # 7 rows of 41 columns a chunk
    assert exp.id == "visit-0410915_ccd05" and exp.source == str(path)
    assert exp.image.chunks[0][:2] == (7, 7) and exp.image.chunks[0][-1] == 2
    for plane, arr, dtype in (
        ("image", exp.image, "float32"),
        ("mask", exp.mask, "int32"),
        ("variance", exp.variance, "float32"),
    ):
        assert arr.dtype == np.dtype(dtype) and arr.dtype.isnative, plane
        assert arr.chunks == exp.image.chunks
        got = arr.compute()
        assert got.dtype == np.dtype(dtype) and got.dtype.isnative
        np.testing.assert_array_equal(got, arrays[plane.upper()])
        np.testing.assert_array_equal(got, astropy_data(path, plane.upper()))
    assert exp.shape == SHAPE
    assert exp.mask_bits == LSST_BITS
    assert exp.mask_value("BAD", "NO_DATA") == 1 + 256
    assert exp.wcs.has_celestial and exp.wcs.naxis == 2
    np.testing.assert_array_equal(exp.wcs.wcs.cd, file_wcs(path).wcs.cd)
    # Exposure keywords from the primary HDU, image ones from IMAGE.
    assert exp.header["VISIT"] == 410915 and exp.header["MJD-OBS"] == 57070.07
    assert exp.header["EXTNAME"] == "IMAGE" and exp.header["NAXIS1"] == 41


def test_exposure_pickles_and_opens_lazily(tmp_path):
    path = tmp_path / "exp.fits"
    arrays = write_exposure(path)
    exp = open_exposure(path, chunk_memory=2000)
    again = pickle.loads(pickle.dumps(exp))
    assert again.mask_bits == exp.mask_bits and again.id == exp.id
    np.testing.assert_array_equal(again.variance.compute(), arrays["VARIANCE"])
    # Opening read no pixels: with the file gone, only reading them fails.
    fresh = open_exposure(path)
    path.unlink()
    with pytest.raises(InputError, match=r"exp\.fits") as info:
        fresh.image.compute()
    assert "\n" not in str(info.value)


def test_exposure_planes_optional_and_by_index(tmp_path):
    path = tmp_path / "exp.fits"
    arrays = write_exposure(path, mask_keywords=False)
    exp = open_exposure(path, image=1, mask=None, variance="variance")
    assert exp.mask is None and exp.mask_bits == DEFAULT_MASK_BITS
    np.testing.assert_array_equal(exp.variance.compute(), arrays["VARIANCE"])
    # The MASK names no planes: the argument, else the LSST defaults.
    assert open_exposure(path).mask_bits == DEFAULT_MASK_BITS
    assert open_exposure(path, mask_bits={"BAD": 5}).mask_bits == {"BAD": 5}


def test_mask_bits_argument_overrides_header(tmp_path):
    path = tmp_path / "exp.fits"
    write_exposure(path)
    bits = open_exposure(path, mask_bits={"CR": 9, "SUSPECT": 10}).mask_bits
    assert bits == {**LSST_BITS, "CR": 9, "SUSPECT": 10}


def test_compressed_exposure(tmp_path):
    path = tmp_path / "exp.fits.fz"
    arrays = write_exposure(path, compress=True)
    exp = open_exposure(
        path, chunk_memory=41 * 4 * 5
    )  # 5-row chunks across 16-row tiles
    np.testing.assert_array_equal(exp.image.compute(), arrays["IMAGE"])
    np.testing.assert_array_equal(exp.image.compute(), astropy_data(path, "IMAGE"))


def test_single_hdu_exposure_m13():
    exp = open_exposure(M13 / "m13.fits", image=0, mask=None, variance=None)
    assert exp.shape == (300, 300) and exp.image.dtype == np.float32
    ref = astropy_data(M13 / "m13.fits", 0)
    np.testing.assert_array_equal(exp.image.compute(), ref.astype("f4"))
    assert exp.wcs.has_celestial and exp.header["CTYPE1"] == "RA---TAN"
