"""FITS images written to Zarr and read back: data, dtype, affine, attrs and the
WCS come back as the file had them, and the stored array is astropy's."""

import json

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs import wcs as wcs_module

from sciimg.io import (
    image_names,
    open_fits,
    open_image,
    open_zarr,
    wcs_from_attrs,
    write_zarr,
)
from tests.io.fits_files import M13, SHAPE, write_exposure


def test_zarr_round_trip_keeps_data_dtype_wcs(tmp_path):
    path = tmp_path / "exp.fits"
    arrays = write_exposure(path)
    images = {
        "image": open_fits(path, hdu="IMAGE"),
        "m13": open_image(M13 / "m13.fits"),
    }
    store = write_zarr(tmp_path / "sky.zarr", images)
    assert sorted(image_names(store)) == ["image", "m13"]
    for name, src in images.items():
        back = open_zarr(store, name)
        assert back.dims == src.dims and back.dtype == src.dtype
        np.testing.assert_array_equal(back.data.compute(), src.data.compute())
        np.testing.assert_array_equal(back.affine, src.affine)
        assert back.zooms == src.zooms and back.attrs == src.attrs
        before, after = wcs_from_attrs(src.attrs), wcs_from_attrs(back.attrs)
        assert before.wcs.compare(after.wcs)
        assert after.to_header_string() == before.to_header_string()
    # The WCS rebuilt from attrs is the file's own, not a rounded copy.
    after = wcs_from_attrs(open_zarr(store, "image").attrs)
    ref = WCS(fits.getheader(path, "IMAGE"))
    assert ref.wcs.compare(after.wcs, cmp=wcs_module.WCSCOMPARE_ANCILLARY)
    np.testing.assert_array_equal(after.pixel_scale_matrix, ref.pixel_scale_matrix)
    np.testing.assert_array_equal(after.wcs.crval, ref.wcs.crval)
    np.testing.assert_array_equal(after.wcs.crpix, ref.wcs.crpix)
    assert after.pixel_to_world_values(3.5, 7) == ref.pixel_to_world_values(3.5, 7)
    meta = json.loads((store / "image" / "zarr.json").read_text())["attributes"]
    axes = meta["ome"]["multiscales"][0]["axes"]
    assert [(a["name"], a["unit"]) for a in axes] == [
        ("y", "arcsecond"),
        ("x", "arcsecond"),
    ]
    # Stored in FITS order: the array on disk is astropy's, byte for byte.
    import zarr

    stored = zarr.open_array(store / "image" / "0", mode="r")
    assert stored.shape == SHAPE
    np.testing.assert_array_equal(stored[...], arrays["IMAGE"])
