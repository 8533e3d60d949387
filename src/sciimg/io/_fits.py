"""FITS images (astropy), opened lazily as dask arrays with their WCS.

FITS stores its first axis (``NAXIS1``, x) fastest, so astropy gives arrays in numpy
order ``(..., y, x)``, and so does sciimg: a sky image's axes are ``("y", "x")``
(``("z", "y", "x")`` for a cube), its array is astropy's, and the Zarr store holds
the same bytes in the same order. The WCS travels in ``Image.attrs`` as header
keywords (:func:`wcs_from_attrs` rebuilds it); as everywhere in astropy, its pixel
axes are in FITS order, so ``wcs.pixel_to_world(x, y)`` takes ``data[y, x]``'s
indices reversed (``wcs.array_index_to_world(y, x)`` takes them as they are).
"""

from __future__ import annotations

import contextlib
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sciimg.errors import InputError
from sciimg.io._fits_pixels import _MAGIC, _READ_ERRORS, _lazy, _pixel_dtype
from sciimg.io._fits_wcs import _geometry, _header_dict, _read_wcs, _wcs_dict
from sciimg.io._image import Image, default_dims
from sciimg.io._registry import read_magic, register_reader

if TYPE_CHECKING:
    from astropy.io.fits import HDUList

__all__ = [
    "FitsReader",
    "fits_stem",
    "is_fits",
    "open_fits",
    "open_fits_images",
]

#: The names of FITS files: plain, gzipped, tile-compressed.
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fits.fz")
_STEM_SUFFIXES = (".fits.gz", ".fits.fz", ".fit.gz", ".fts.gz", *FITS_SUFFIXES, ".fz")
_BLOCK = 2880  # FITS files come in blocks of this many bytes


def fits_stem(path: str | Path) -> str:
    """A FITS file name without its suffix (``.fits.gz`` and ``.fits.fz`` count as one).

    Examples
    --------
    >>> fits_stem("visit-0410915_ccd05.fits.fz")
    'visit-0410915_ccd05'
    """
    name = Path(path).name
    for suffix in _STEM_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def _looks_like_fits(path: Path, magic: bytes) -> bool:
    return magic.startswith(_MAGIC) or path.name.lower().endswith(FITS_SUFFIXES)


def is_fits(path: str | Path) -> bool:
    """Whether ``path`` is a file the FITS reader would claim (header bytes or name).

    Examples
    --------
    >>> is_fits("/nonexistent/m13.fits")
    False
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        magic = read_magic(path, 80)
    except OSError:
        return False
    return _looks_like_fits(path, magic)


def _image_shape(hdu) -> tuple[int, ...] | None:
    """Numpy-order shape of an HDU holding image pixels, else None."""
    if not getattr(hdu, "is_image", False) or not hdu.header.get("NAXIS", 0):
        return None
    shape = tuple(int(n) for n in hdu.shape)
    return shape if shape and 0 not in shape else None


def _data_bytes(hdu) -> int:
    """Bytes of data the header promises, without the padding to whole blocks."""
    # A tile-compressed image is stored as a binary table; its size is the table's.
    table = getattr(hdu, "_bintable", None)
    return int((table if table is not None else hdu).size)


def _label(hdul: HDUList, index: int) -> str:
    name = hdul[index].name
    return f"HDU {index} ({name})" if name else f"HDU {index}"


def _extensions(hdul: HDUList) -> str:
    return ", ".join(h.name or f"#{i}" for i, h in enumerate(hdul) if i) or "none"


def _check_size(path: Path, hdul: HDUList) -> None:
    """Fail early on a truncated file, which astropy opens with a warning at most."""
    ends = [
        (i, info["datLoc"] + _data_bytes(hdu), info["datLoc"] + info["datSpan"])
        for i, hdu in enumerate(hdul)
        if (info := hdul.fileinfo(i)) is not None
    ]
    last = ends[-1][2]
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            # astropy stops quietly at a cut-off gzip stream, losing the HDUs after
            # it. The trailer holds the inflated size (mod 2**32): a whole file ends
            # with the last HDU, or a few blocks of padding after it.
            f.seek(-min(4, path.stat().st_size), 2)
            tail = f.read(4)
            isize = struct.unpack("<I", tail)[0] if len(tail) == 4 else -1
            extra = (isize - last) % 2**32
            if extra % _BLOCK or extra > 16 * _BLOCK:
                raise InputError(
                    path,
                    f"is truncated or damaged: its HDUs end at byte {last}, the gzip "
                    f"stream says {isize}",
                )
            return
        size = path.stat().st_size
        for i, need, _ in ends:
            if size < need:
                raise InputError(
                    path,
                    f"is truncated: {_label(hdul, i)} needs {need} bytes, "
                    f"file has {size}",
                )
        # astropy drops an HDU whose header is cut off, as if it were not there.
        f.seek(last)
        if f.read(9) == b"XTENSION=":
            raise InputError(
                path, f"is truncated: the header of HDU {len(hdul)} is cut off"
            )


@contextlib.contextmanager
def _open_hdulist(path: Path) -> Iterator[HDUList]:
    """The file's HDUs with every header read and checked; no pixels are read."""
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    if not path.exists():
        raise InputError(path, "does not exist")
    try:
        magic = read_magic(path, 80)
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not magic.startswith(_MAGIC):
        raise InputError(path, "is not a FITS file (no SIMPLE card at its start)")
    with warnings.catch_warnings():
        # Header fixes and truncation hints that astropy reports as warnings are
        # noise here: the checks below report what matters, as one-line errors.
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            hdul = fits.open(path)
            len(hdul)  # reads every header
        except _READ_ERRORS as exc:
            raise InputError(
                path,
                f"is not a readable FITS file, truncated or damaged "
                f"({type(exc).__name__}: {exc})",
            ) from exc
        try:
            _check_size(path, hdul)
            yield hdul
        finally:
            hdul.close()


def _find_hdu(path: Path, hdul: HDUList, key: int | str) -> int:
    """The index of the HDU named or numbered ``key``."""
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        if not 0 <= key < len(hdul):
            raise InputError(path, f"has no HDU {key} (it has {len(hdul)})")
        return int(key)
    try:
        return hdul.index_of(str(key))
    except KeyError:
        raise InputError(
            path, f"has no {key} extension (extensions: {_extensions(hdul)})"
        ) from None


def _image_from_hdu(
    path: Path, hdul: HDUList, index: int, *, chunk_memory: int | str | None
) -> Image:
    hdu = hdul[index]
    shape = _image_shape(hdu)
    if shape is None:
        kind = "a table" if hdu.header.get("XTENSION") else "empty"
        raise InputError(
            path, f"{_label(hdul, index)} holds no image data (it is {kind})"
        )
    header = hdu.header
    dtype = _pixel_dtype(header)
    wcs = _read_wcs(path, header, hdul, _label(hdul, index))
    affine, zooms = _geometry(wcs, len(shape))
    names = [h.name for h in hdul]
    label = hdu.name if index and hdu.name and names.count(hdu.name) == 1 else index
    attrs: dict[str, Any] = {
        "wcs": _wcs_dict(wcs) if wcs is not None else {},
        "header": _header_dict(header),
        "hdu": label,
    }
    if wcs is not None and wcs.has_celestial:
        attrs["space_unit"] = "arcsecond"
    data = _lazy(path, index, shape, dtype, chunk_memory=chunk_memory)
    return Image(
        data,
        affine,
        tuple(reversed(default_dims(len(shape)))),
        zooms,
        source=str(path),
        attrs=attrs,
    )


def open_fits(
    path: str | Path,
    *,
    hdu: int | str | None = None,
    chunk_memory: int | str | None = None,
) -> Image:
    """Open one image of a FITS file lazily; only headers are read.

    Parameters
    ----------
    path : str or Path
        A FITS file: plain, gzip-compressed (``.fits.gz``) or tile-compressed
        (``.fits.fz``); big-endian and BSCALE/BZERO-scaled pixels are handled.
    hdu : int or str, optional
        The HDU by index or EXTNAME; default the first one holding image data.
    chunk_memory : int or str, optional
        Bytes per chunk (default Dask's ``array.chunk-size``); chunks hold whole
        rows (whole planes of a cube) where they fit.

    Returns
    -------
    Image
        Axes in array order, ``("y", "x")`` or ``("z", "y", "x")``: astropy's
        array, as it is. ``affine`` maps 0-based pixel indices to intermediate
        world coordinates (degrees for celestial axes), the WCS's linear part, or
        is the identity without a WCS; ``zooms`` are pixel scales in arcseconds
        (1.0 without a celestial WCS). ``attrs`` hold ``"wcs"`` (its keywords,
        see :func:`wcs_from_attrs`), ``"header"`` (the HDU's keywords, without
        COMMENT/HISTORY), ``"hdu"`` (EXTNAME or index) and, with a celestial WCS,
        ``"space_unit": "arcsecond"``.

    Raises
    ------
    InputError
        Not a FITS file, truncated, no such HDU, or no image data in it.

    Examples
    --------
    >>> import astropy, os
    >>> data = os.path.join(os.path.dirname(astropy.__file__), "io", "fits", "hdu",
    ...                     "compressed", "tests", "data")
    >>> img = open_fits(os.path.join(data, "m13_rice.fits"))
    >>> img.shape, img.dims, img.dtype, img.attrs["space_unit"]
    ((300, 300), ('y', 'x'), dtype('int16'), 'arcsecond')
    >>> round(img.zooms[0], 3)
    1.0
    """
    path = Path(path)
    with _open_hdulist(path) as hdul:
        if hdu is not None:
            index = _find_hdu(path, hdul, hdu)
        else:
            found = [i for i, h in enumerate(hdul) if _image_shape(h) is not None]
            if not found:
                raise InputError(
                    path, f"has no image data (extensions: {_extensions(hdul)})"
                )
            index = found[0]
        return _image_from_hdu(path, hdul, index, chunk_memory=chunk_memory)


def open_fits_images(
    path: str | Path, *, chunk_memory: int | str | None = None
) -> dict[str, Image]:
    """Every image HDU of a FITS file, lazily, by lowercase EXTNAME.

    An HDU without a name is ``hdu<index>``; a name seen before gets ``_<index>``.

    Examples
    --------
    >>> import astropy, os
    >>> data = os.path.join(os.path.dirname(astropy.__file__), "io", "fits", "hdu",
    ...                     "compressed", "tests", "data")
    >>> list(open_fits_images(os.path.join(data, "m13_gzip.fits")))
    ['compressed_image']
    """
    path = Path(path)
    images: dict[str, Image] = {}
    with _open_hdulist(path) as hdul:
        for index, hdu in enumerate(hdul):
            if _image_shape(hdu) is None:
                continue
            name = hdu.name.lower() or f"hdu{index}"
            if name in images:
                name = f"{name}_{index}"
            images[name] = _image_from_hdu(path, hdul, index, chunk_memory=chunk_memory)
        if not images:
            raise InputError(
                path, f"has no image data (extensions: {_extensions(hdul)})"
            )
    return images


class FitsReader:
    """Registry entry for FITS images (plain, gzip- or tile-compressed)."""

    name = "fits"
    description = "FITS (.fits, .fit, .fts, .fits.gz, .fits.fz) via astropy"

    def guess_can_open(self, path: Path, magic: bytes) -> bool:
        return _looks_like_fits(path, magic)

    def open(self, path: Path, **kwargs: Any) -> Image:
        return open_fits(path, **kwargs)


register_reader(FitsReader())
