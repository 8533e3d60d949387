import json
import pickle
import shutil
import warnings
from pathlib import Path

import astropy
import dask
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs import wcs as wcs_module
from rich.console import Console
from typer.testing import CliRunner

from sciimg.errors import InputError
from sciimg.io import (
    DEFAULT_MASK_BITS,
    image_names,
    list_readers,
    open_exposure,
    open_fits,
    open_image,
    open_zarr,
    wcs_from_attrs,
    write_zarr,
)
from sciimg.io._fits_pixels import _FitsPixels

ASTROPY = Path(astropy.__file__).parent
M13 = ASTROPY / "io/fits/hdu/compressed/tests/data"
DSS = ASTROPY / "wcs/tests/data/dss.14.29.56-62.41.05.fits.gz"
LSST_BITS = {"BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "NO_DATA": 8}
SHAPE = (30, 41)  # (y, x): 41 columns so that chunks come out uneven


def tan_header():
    """TAN WCS keywords with a rotated CD matrix, as survey pipelines write them."""
    header = fits.Header()
    header.update(
        CTYPE1="RA---TAN",
        CTYPE2="DEC--TAN",
        CRVAL1=150.11916666666667,
        CRVAL2=2.2058333333333335,
        CRPIX1=20.733333333333334,
        CRPIX2=15.12345678901234,
        CD1_1=-7.2916666666667123e-05,
        CD1_2=1.234567890123457e-06,
        CD2_1=1.1e-06,
        CD2_2=7.29e-05,
        RADESYS="ICRS",
    )
    return header


def file_wcs(path, hdu="IMAGE"):
    """The WCS as astropy reads it from the file."""
    return WCS(fits.getheader(path, hdu))


def write_exposure(
    path,
    *,
    planes=("IMAGE", "MASK", "VARIANCE"),
    shapes=None,
    with_wcs=True,
    mask_keywords=True,
    image_dtype=">f4",
    mask_dtype=">i4",
    compress=False,
):
    """A processed exposure as the synthetic survey writes it; returns the arrays."""
    rng = np.random.default_rng(7)
    primary = fits.PrimaryHDU()
    primary.header.update(
        VISIT=410915,
        CCDNUM=5,
        EXPTIME=86.0,
        FILTER="g",
        GAIN=4.1,
        RDNOISE=5.3,
        SATURATE=52000.0,
        MAGZERO=24.31,
    )
    primary.header["MJD-OBS"] = 57070.07
    wcs_header = tan_header() if with_wcs else fits.Header()
    hdus, arrays = [primary], {}
    for name in planes:
        shape = (shapes or {}).get(name, SHAPE)
        header = wcs_header.copy()
        if name == "MASK":
            data = rng.integers(0, 512, shape).astype(mask_dtype)
            if mask_keywords:
                for bit_name, bit in LSST_BITS.items():
                    header[f"HIERARCH MP_{bit_name}"] = bit
        elif name == "VARIANCE":
            data = rng.uniform(20, 30, shape).astype(">f4")
        else:
            data = rng.normal(100, 5, shape).astype(image_dtype)
        arrays[name] = data
        if compress and name == "IMAGE":
            hdu = fits.CompImageHDU(
                data.astype("f4"),
                header=header,
                name=name,
                quantize_level=0.0,
                compression_type="GZIP_2",
                tile_shape=(16, 16),
            )
        else:
            hdu = fits.ImageHDU(data, header=header, name=name)
        hdus.append(hdu)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy on HIERARCH for MP_NO_DATA
        fits.HDUList(hdus).writeto(path, overwrite=True)
    return arrays


def astropy_data(path, hdu):
    with fits.open(path, memmap=False) as hdul:
        return np.array(hdul[hdu].data)


# ---- exposures -------------------------------------------------------------


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


# ---- plain, scaled, big-endian and compressed images ------------------------


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


# ---- geometry ----------------------------------------------------------------


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


# ---- real data shipped with astropy --------------------------------------------


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


# ---- Zarr round trip -------------------------------------------------------------


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


# ---- command line ------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    from sciimg import _cli_files, _cli_info, _console
    from sciimg import cli as module

    # A wide console, so that no table cell is folded across lines.
    wide = Console(width=250)
    for printing in (module, _cli_files, _cli_info):
        monkeypatch.setattr(printing, "out", wide)
    monkeypatch.setattr(_console, "err", Console(width=250, stderr=True))
    runner = CliRunner()
    return lambda *args: runner.invoke(module.app, [str(a) for a in args])


def test_cli_info_and_ingest_fits(tmp_path, cli):
    path = tmp_path / "exp.fits"
    arrays = write_exposure(path)
    info = cli("info", path)
    assert info.exit_code == 0, info.output
    for text in (
        "3 image HDU(s)",
        "image (exp.fits)",
        "mask (exp.fits)",
        "variance (exp.fits)",
        "float32",
        "RA---TAN DEC--TAN (ICRS)",
        "arcsec/pixel",
    ):
        assert text in info.output, info.output
    store = tmp_path / "exp.zarr"
    run = cli("ingest", path, M13 / "m13_rice.fits", "--out", store)
    assert run.exit_code == 0, run.output
    # One entry per file: the exposure a group of its HDUs, m13 an image.
    assert sorted(image_names(store)) == ["exp", "m13_rice"]
    assert sorted(image_names(store / "exp")) == ["image", "mask", "variance"]
    for name in ("image", "mask", "variance"):
        back = open_zarr(store / "exp", name)
        np.testing.assert_array_equal(back.data.compute(), arrays[name.upper()])
    again = cli("info", store / "m13_rice")
    assert again.exit_code == 0 and "RA---TAN DEC--TAN (FK5)" in again.output
    twice = cli("ingest", path, path, "--out", tmp_path / "twice.zarr")
    assert twice.exit_code == 2 and "would be stored as 'exp'" in twice.output
    m13 = tmp_path / "m13.fits"
    with fits.open(M13 / "m13.fits") as hdul:
        hdul[0].header.update(FILTER="r", EXPTIME=30.0)
        hdul.writeto(m13)
    shown = cli("info", m13)
    assert shown.exit_code == 0, shown.output
    for text in ("1 image HDU", "int16", "(300, 300)", "FILTER r, EXPTIME 30.0"):
        assert text in shown.output, shown.output
    bad = cli("info", tmp_path / "twice.zarr")
    assert bad.exit_code == 2 and "does not exist" in bad.output
