"""The geometry of a FITS image: its affine as the linear part of the WCS, the
identity without a WCS, and the choice of the HDU that is read."""

import numpy as np
import pytest
from astropy.io import fits

from sciimg.errors import InputError
from sciimg.io import open_fits, wcs_from_attrs
from tests.io.fits_files import file_wcs, write_exposure


def test_affine_is_linear_part_of_wcs(tmp_path):
    path = tmp_path / "exp.fits"
    write_exposure(path)
    img = open_fits(path)
    assert img.dims == ("y", "x") and img.shape == (30, 41)
    assert img.attrs["hdu"] == "IMAGE" and img.attrs["space_unit"] == "arcsecond"
    assert img.attrs["header"]["EXTNAME"] == "IMAGE"
    w = file_wcs(path)
    pixels = np.array([[0.0, 0.0], [40.0, 0.0], [3.0, 29.0], [20.5, 11.25]])
    # Intermediate world coordinates; with origin=0 astropy shifts imgcrd by -1 too.
    world = w.wcs.p2s(pixels + 1, 1)["imgcrd"]
    ijk1 = np.c_[pixels, np.zeros(len(pixels)), np.ones(len(pixels))]
    np.testing.assert_allclose((img.affine @ ijk1.T).T[:, :2], world, atol=1e-15)
    scales = np.sqrt((w.wcs.cd**2).sum(axis=0)) * 3600
    np.testing.assert_allclose(img.zooms, scales)
    # The Image's [j, i] are the WCS's pixel (x, y) = (i, j).
    back = wcs_from_attrs(img.attrs)
    assert back.pixel_to_world_values(3, 29) == w.pixel_to_world_values(3, 29)


def test_no_wcs_gives_identity(tmp_path):
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.ones((3, 4), dtype="i2")).writeto(path)
    img = open_fits(path)
    np.testing.assert_array_equal(img.affine, np.eye(4))
    assert img.zooms == (1.0, 1.0) and img.attrs["wcs"] == {}
    assert "space_unit" not in img.attrs
    with pytest.raises(ValueError, match="no WCS"):
        wcs_from_attrs(img.attrs)


def test_choose_hdu(tmp_path):
    path = tmp_path / "exp.fits"
    arrays = write_exposure(path)
    mask = open_fits(path, hdu="MASK")
    assert mask.attrs["hdu"] == "MASK" and mask.dtype == np.int32
    np.testing.assert_array_equal(mask.data.compute(), arrays["MASK"])
    assert open_fits(path, hdu=3).attrs["hdu"] == "VARIANCE"
    with pytest.raises(InputError, match=r"HDU 0 \(PRIMARY\) holds no image data"):
        open_fits(path, hdu=0)
    with pytest.raises(InputError, match="has no PSF extension"):
        open_fits(path, hdu="PSF")
    with pytest.raises(InputError, match="has no HDU 7"):
        open_fits(path, hdu=7)
