"""FITS files for the reader tests: processed exposures as survey pipelines write
them, the astropy test data, and the pixels and WCS astropy reads from a file."""

import warnings
from pathlib import Path

import astropy
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

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
