"""FITS pixels as astropy decodes them: scaled and blank integers, big-endian data,
gzip files, tile-compressed images read window by window, and cubes."""

import pickle

import dask
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from sciimg.io import open_fits, open_image
from sciimg.io._fits_pixels import _FitsPixels
from tests.io.fits_files import astropy_data


def _scaled(kind):
    rng = np.random.default_rng(3)
    raw = rng.integers(-3000, 3000, (23, 37)).astype(">i2")
    hdu = fits.PrimaryHDU(raw.copy())
    if kind == "int16 scaled":
        hdu.header.update(BSCALE=0.25, BZERO=100.0)
    elif kind == "uint16":
        hdu.header.update(BSCALE=1, BZERO=32768)
    elif kind == "int16 blank":
        hdu.header.update(BSCALE=0.5, BLANK=int(raw[3, 4]))
    elif kind == "float32 scaled":
        hdu = fits.PrimaryHDU(rng.normal(size=(23, 37)).astype(">f4"))
        hdu.header.update(BSCALE=2.0, BZERO=-1.0)
    elif kind == "float64":
        hdu = fits.PrimaryHDU(rng.normal(size=(23, 37)).astype(">f8"))
    return hdu


@pytest.mark.parametrize(
    "kind", ["int16 scaled", "uint16", "int16 blank", "float32 scaled", "float64"]
)
def test_big_endian_scaled_like_astropy(tmp_path, kind):
    path = tmp_path / "scaled.fits"
    _scaled(kind).writeto(path)
    ref = astropy_data(path, 0)
    img = open_image(path, chunk_memory=37 * 8 * 4)
    assert img.dims == ("y", "x") and img.shape == (23, 37)
    assert img.dtype == ref.dtype.newbyteorder("=") and img.dtype.isnative
    assert img.data.numblocks[0] > 1  # chunks cut the rows unevenly
    got = img.data.compute()
    assert got.dtype.isnative
    np.testing.assert_array_equal(got, ref)


def test_gzip_fits(tmp_path):
    import gzip

    path = tmp_path / "scaled.fits"
    _scaled("int16 scaled").writeto(path)
    gz = tmp_path / "scaled.fits.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    img = open_image(gz, chunk_memory=37 * 4 * 3)
    np.testing.assert_array_equal(img.data.compute(), astropy_data(path, 0))


@pytest.mark.parametrize(
    ("dtype", "kwargs"),
    [("i2", {"compression_type": "RICE_1"}), ("u2", {"compression_type": "RICE_1"})],
)
def test_tile_compressed_rice(tmp_path, dtype, kwargs):
    data = np.random.default_rng(5).integers(0, 30000, (50, 61)).astype(dtype)
    path = tmp_path / "rice.fits.fz"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, tile_shape=(16, 16), **kwargs)]
    ).writeto(path)
    img = open_image(path, chunk_memory=61 * 2 * 7)
    assert img.attrs["hdu"] == "COMPRESSED_IMAGE" and img.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(img.data.compute(), data)
    # Any window, across tile edges, as dask may ask for it.
    pixels = _FitsPixels(path, 1, (50, 61), np.dtype(dtype))
    np.testing.assert_array_equal(pixels[13:37, 5:50], data[13:37, 5:50])
    copy = pickle.loads(pickle.dumps(pixels))
    np.testing.assert_array_equal(copy[3:4, 60:61], data[3:4, 60:61])


def test_threads_read_one_file_together(tmp_path):
    path = tmp_path / "rice.fits.fz"
    data = np.random.default_rng(6).integers(0, 999, (200, 64)).astype("i4")
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, tile_shape=(8, 64))]
    ).writeto(path)
    img = open_fits(path, chunk_memory=64 * 4 * 4)
    with dask.config.set(scheduler="threads", num_workers=8):
        for _ in range(3):
            np.testing.assert_array_equal(img.data.compute(), data)


def test_cube_is_z_y_x(tmp_path):
    w = WCS(naxis=3)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN", "FREQ"]
    w.wcs.cdelt = [-1 / 3600, 1 / 3600, 1e6]
    w.wcs.crpix = [5, 6, 1]
    w.wcs.crval = [10, 20, 1.4e9]
    cube = np.arange(4 * 6 * 7, dtype="f4").reshape(4, 6, 7)
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(cube, header=w.to_header()).writeto(path)
    img = open_fits(path)
    assert img.dims == ("z", "y", "x") and img.shape == (4, 6, 7)
    np.testing.assert_allclose(img.zooms, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(img.data.compute(), cube)
    assert img.affine[2, 2] == 1e6 and img.attrs["space_unit"] == "arcsecond"
