"""Real FITS files shipped with astropy (M13 plain, gzip- and Rice-compressed; a
DSS plate with distortion): pixels and WCS as astropy reads them, and the reader
registry recognising FITS by its bytes."""

import json
import shutil
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from sciimg.errors import InputError
from sciimg.io import list_readers, open_image, wcs_from_attrs
from tests.io.fits_files import DSS, M13, astropy_data


@pytest.mark.parametrize("name", ["m13.fits", "m13_gzip.fits", "m13_rice.fits"])
def test_m13_like_astropy(name):
    path = M13 / name
    img = open_image(path, chunk_memory="40KiB")
    assert img.shape == (300, 300) and img.dtype == np.int16
    assert img.data.npartitions > 1
    ref_hdu = 0 if name == "m13.fits" else 1
    got = img.data.compute()
    np.testing.assert_array_equal(got, astropy_data(path, ref_hdu))
    if name != "m13_rice.fits":  # gzip tiles are lossless
        np.testing.assert_array_equal(got, astropy_data(M13 / "m13.fits", 0))
    wcs = wcs_from_attrs(img.attrs)
    assert wcs.has_celestial and img.attrs["space_unit"] == "arcsecond"
    np.testing.assert_allclose(img.zooms, (0.99972, 0.99972), atol=1e-5)
    with fits.open(path) as hdul:
        ref = WCS(hdul[ref_hdu].header)
    assert wcs.pixel_to_world_values(17, 250) == ref.pixel_to_world_values(17, 250)


def test_dss_with_distortion():
    if not DSS.exists():
        pytest.skip("this astropy ships without the DSS test file")
    img = open_image(DSS)
    assert img.shape == (100, 100) and img.attrs["space_unit"] == "arcsecond"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = WCS(fits.getheader(DSS))
        np.testing.assert_array_equal(img.data.compute(), fits.getdata(DSS))
    got = wcs_from_attrs(img.attrs).pixel_to_world_values([0, 50, 99], [0, 70, 99])
    np.testing.assert_allclose(got, ref.pixel_to_world_values([0, 50, 99], [0, 70, 99]))
    json.dumps(img.attrs)  # the header's odd cards still give plain JSON


def test_registry_claims_fits_by_bytes_first(tmp_path):
    assert "fits" in list_readers()
    odd = tmp_path / "frame.dat"
    shutil.copy(M13 / "m13.fits", odd)
    assert open_image(odd).shape == (300, 300)
    bad = tmp_path / "notes.fits"
    bad.write_text("hello")
    with pytest.raises(InputError, match=r"notes\.fits: is not a FITS file"):
        open_image(bad)
