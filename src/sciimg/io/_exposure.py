"""Processed survey exposures: image, mask and variance planes of one FITS file.

The layout is that of LSST/HiTS processed exposures: a primary HDU without data
holding the exposure keywords (``VISIT``, ``CCDNUM``, ``MJD-OBS``, ``EXPTIME``,
``FILTER``, ``GAIN``, ...), then extensions ``IMAGE`` (float32, celestial WCS),
``MASK`` (int32 bit planes, named by ``MP_<NAME> = <bit>`` keywords) and
``VARIANCE`` (float32). Arrays stay in numpy order ``(y, x)``, as sep, reproject
and astropy expect them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sciimg.errors import InputError
from sciimg.io._fits import (
    _find_hdu,
    _image_shape,
    _label,
    _lazy,
    _open_hdulist,
    _pixel_dtype,
    fits_stem,
)
from sciimg.io._fits_wcs import _read_wcs

if TYPE_CHECKING:
    import dask.array as da
    from astropy.io.fits import HDUList, Header
    from astropy.wcs import WCS

__all__ = ["DEFAULT_MASK_BITS", "Exposure", "open_exposure"]

#: LSST's mask planes (name → bit index), used when the MASK header names none.
DEFAULT_MASK_BITS: dict[str, int] = {
    "BAD": 0,
    "SAT": 1,
    "INTRP": 2,
    "CR": 3,
    "EDGE": 4,
    "NO_DATA": 8,
}

_DTYPES = {"image": "f4", "mask": "i4", "variance": "f4"}


@dataclass
class Exposure:
    """One processed exposure, lazily: pixel planes, WCS and keywords.

    Picklable, so it can be sent to Dask workers; the planes read their file
    there, chunk by chunk.

    Parameters
    ----------
    image : dask.array.Array
        float32 pixels, numpy order ``(y, x)``.
    variance : dask.array.Array or None
        float32 variance per pixel, same shape; None if not opened.
    mask : dask.array.Array or None
        int32 bit mask, same shape; None if not opened.
    wcs : astropy.wcs.WCS
        The image's celestial WCS (pixel axes ``x, y``, as astropy has them).
    header : astropy.io.fits.Header
        The image extension's keywords, then those of the primary HDU that the
        extension does not set.
    mask_bits : dict of str to int
        Mask plane name → bit index.
    source : str
        The file.
    id : str
        The file name without its FITS suffix.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from astropy.io import fits
    >>> from astropy.wcs import WCS
    >>> exp = Exposure(da.zeros((4, 5), dtype="f4"), None, None, WCS(naxis=2),
    ...                fits.Header(), dict(DEFAULT_MASK_BITS), "x.fits", "x")
    >>> exp.shape, exp.mask_value("BAD", "SAT")
    ((4, 5), 3)
    """

    image: da.Array
    variance: da.Array | None
    mask: da.Array | None
    wcs: WCS
    header: Header
    mask_bits: dict[str, int]
    source: str
    id: str

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return tuple(self.image.shape)

    def mask_value(self, *names: str) -> int:
        """The mask value with the named planes' bits set (``mask & value``)."""
        missing = [n for n in names if n not in self.mask_bits]
        if missing:
            msg = f"unknown mask planes {missing}; have {sorted(self.mask_bits)}"
            raise KeyError(msg)
        return sum(1 << self.mask_bits[n] for n in set(names))


def _header_bits(header: Header) -> dict[str, int]:
    return {
        key[3:]: int(value)
        for key, value in header.items()
        if key.startswith("MP_") and isinstance(value, int) and 0 <= value < 32
    }


def _merged_header(hdul: HDUList, index: int) -> Header:
    header = hdul[index].header.copy()
    if index:
        # Structural keywords (SIMPLE, NAXIS...) of the primary are left out.
        header.extend(hdul[0].header, strip=True, unique=True)
    return header


def open_exposure(
    path: str | Path,
    *,
    image: str | int = "IMAGE",
    mask: str | int | None = "MASK",
    variance: str | int | None = "VARIANCE",
    mask_bits: Mapping[str, int] | None = None,
    chunk_memory: int | str | None = None,
) -> Exposure:
    """Open a processed exposure lazily, checking it from its headers alone.

    Parameters
    ----------
    path : str or Path
        A FITS file (plain, ``.fits.gz`` or tile-compressed ``.fits.fz``).
    image, mask, variance : str or int or None
        Each plane's EXTNAME or HDU index; None leaves the mask or variance out.
    mask_bits : mapping of str to int, optional
        Mask plane bit indices, overriding those the MASK header names
        (``MP_<NAME>`` keywords); without either, :data:`DEFAULT_MASK_BITS`.
    chunk_memory : int or str, optional
        Bytes per chunk (default Dask's ``array.chunk-size``); every plane gets the
        same chunks.

    Returns
    -------
    Exposure
        Planes cast to float32 (image, variance) and int32 (mask), native byte
        order; nothing is read yet.

    Raises
    ------
    InputError
        One line naming the file: not FITS, truncated, a plane missing or not
        2-D, planes of different shapes, a float mask, no celestial WCS.

    Examples
    --------
    >>> import astropy, os
    >>> data = os.path.join(os.path.dirname(astropy.__file__), "io", "fits", "hdu",
    ...                     "compressed", "tests", "data")
    >>> exp = open_exposure(os.path.join(data, "m13.fits"), image=0, mask=None,
    ...                     variance=None)
    >>> exp.id, exp.shape, exp.image.dtype, exp.wcs.has_celestial
    ('m13', (300, 300), dtype('float32'), True)
    """
    path = Path(path)
    keys = {"image": image, "mask": mask, "variance": variance}
    with _open_hdulist(path) as hdul:
        where = {
            plane: _find_hdu(path, hdul, key)
            for plane, key in keys.items()
            if key is not None
        }
        shapes = {}
        for plane, index in where.items():
            label = _label(hdul, index)
            shape = _image_shape(hdul[index])
            if shape is None:
                raise InputError(path, f"{label} holds no image data")
            if len(shape) != 2:
                raise InputError(
                    path, f"{label} is {len(shape)}-D; an exposure plane must be 2-D"
                )
            shapes[plane] = shape
        if len(set(shapes.values())) > 1:
            sizes = ", ".join(
                f"{_label(hdul, where[p])} {s[0]}×{s[1]}" for p, s in shapes.items()
            )
            raise InputError(path, f"has planes of different shapes: {sizes}")
        if "mask" in where:
            found = _pixel_dtype(hdul[where["mask"]].header)
            if found.kind not in "iu" or found.itemsize > 4:
                raise InputError(
                    path,
                    f"{_label(hdul, where['mask'])} holds {found} pixels; a bit "
                    f"mask must be integers of at most 32 bits",
                )
        label = _label(hdul, where["image"])
        wcs = _read_wcs(path, hdul[where["image"]].header, hdul, label)
        if wcs is None or not wcs.has_celestial:
            raise InputError(path, f"{label} has no celestial WCS")
        if wcs.naxis != 2 or not wcs.is_celestial:
            wcs = wcs.celestial
        header = _merged_header(hdul, where["image"])
        bits = _header_bits(hdul[where["mask"]].header) if "mask" in where else {}
    if mask_bits is not None:
        bits = {**bits, **{str(k): int(v) for k, v in mask_bits.items()}}
    elif not bits:
        bits = dict(DEFAULT_MASK_BITS)
    planes = {
        plane: _lazy(
            path,
            index,
            shapes[plane],
            np.dtype(_DTYPES[plane]),
            chunk_memory=chunk_memory,
        )
        for plane, index in where.items()
    }
    return Exposure(
        image=planes["image"],
        variance=planes.get("variance"),
        mask=planes.get("mask"),
        wcs=wcs,
        header=header,
        mask_bits=bits,
        source=str(path),
        id=fits_stem(path),
    )
