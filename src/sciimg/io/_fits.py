"""FITS images (astropy), opened lazily as dask arrays with their WCS.

FITS stores its first axis (``NAXIS1``, x) fastest, so astropy gives arrays in numpy
order ``(..., y, x)``. An :class:`~sciimg.io.Image` is in NIfTI order (x first), so
its data is the transposed array; the Zarr writer reverses the axes again, so the
stored bytes are in FITS order. The WCS travels in ``Image.attrs`` as header
keywords (:func:`wcs_from_attrs` rebuilds it); pixel axes of the WCS are the Image's
axes, so ``wcs.pixel_to_world(i, j)`` takes Image indices as they are.
"""

from __future__ import annotations

import contextlib
import math
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sciimg.errors import InputError
from sciimg.io._chunks import chunks_for
from sciimg.io._image import Image, default_dims
from sciimg.io._registry import read_magic, register_reader

if TYPE_CHECKING:
    import dask.array as da
    from astropy.io.fits import HDUList, Header
    from astropy.wcs import WCS

__all__ = [
    "FitsReader",
    "describe_wcs",
    "fits_stem",
    "is_fits",
    "open_fits",
    "open_fits_images",
    "wcs_from_attrs",
]

_MAGIC = b"SIMPLE  ="
_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fits.fz")
_STEM_SUFFIXES = (".fits.gz", ".fits.fz", ".fit.gz", ".fts.gz", *_SUFFIXES, ".fz")
_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    zlib.error,
)
_BLOCK = 2880  # FITS files come in blocks of this many bytes
_RAW_DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_WCS_KEY = re.compile(r"(CTYPE|CRPIX|CRVAL|CDELT|CD\d+_\d+|PC\d+_\d+)\d*$")
_HIDDEN = ("", "COMMENT", "HISTORY")


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
    return magic.startswith(_MAGIC) or path.name.lower().endswith(_SUFFIXES)


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


class _FitsPixels:
    """Array-like over one HDU's pixels, in numpy order, for ``da.from_array``.

    It pickles as path, HDU index, shape and dtype (not an open file), opens the
    file once per process on first use, reads with ``hdu.section`` (plain, scaled
    and tile-compressed images alike), returns native byte order, and turns read
    failures into :class:`InputError` naming the file.
    """

    def __init__(
        self, path: Path, hdu: int, shape: tuple[int, ...], dtype: np.dtype
    ) -> None:
        self.path, self.hdu, self.shape = path, int(hdu), tuple(shape)
        self.dtype = np.dtype(dtype).newbyteorder("=")
        self.ndim = len(self.shape)
        self._hdul = self._image = None
        self._serial = self._primed = False
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "hdu": self.hdu,
            "shape": self.shape,
            "dtype": self.dtype,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["hdu"], state["shape"], state["dtype"])

    def _open(self):
        with self._lock:
            if self._image is None:
                from astropy.io import fits

                # astropy's default memmap=None still maps the file when it can;
                # memmap=True would refuse images with BSCALE/BZERO/BLANK.
                hdul = fits.open(self.path)
                image = hdul[self.hdu]
                if tuple(image.shape) != self.shape:
                    hdul.close()
                    raise InputError(
                        self.path,
                        f"HDU {self.hdu} changed since it was opened (shape "
                        f"{tuple(image.shape)}, was {self.shape})",
                    )
                with open(self.path, "rb") as f:
                    # A gzip'd file is one stream with one position: read in turn.
                    self._serial = f.read(len(_MAGIC)) != _MAGIC
                self._hdul, self._image = hdul, image
        return self._image

    def __getitem__(self, key):
        try:
            image = self._open()
            if self._serial or not self._primed:
                # The first read sets up astropy's memory map and table buffers,
                # which are not safe to create from several threads at once.
                with self._lock:
                    block = image.section[key]
                    self._primed = True
            else:
                block = image.section[key]
            return np.asarray(block, dtype=self.dtype)
        except InputError:
            raise
        except _READ_ERRORS as exc:
            raise InputError(
                self.path,
                f"cannot read pixels of HDU {self.hdu}, file is truncated or "
                f"damaged ({type(exc).__name__}: {exc})",
            ) from exc


def _pixel_dtype(header: Header) -> np.dtype:
    """The dtype astropy gives this image's pixels, from its header alone.

    Follows astropy: BZERO of 2**(n-1) with BSCALE 1 means unsigned integers (-128
    for signed bytes); any other scaling, or BLANK, gives floats.
    """
    bitpix = int(header["BITPIX"])
    raw = np.dtype(_RAW_DTYPES[bitpix])
    bscale, bzero = header.get("BSCALE", 1), header.get("BZERO", 0)
    if bitpix < 0 or (bscale == 1 and bzero == 0 and "BLANK" not in header):
        return raw.newbyteorder("=")
    if bscale == 1:
        if bitpix == 8 and bzero == -128:
            return np.dtype("i1")
        if bitpix > 8 and bzero == 1 << (bitpix - 1):
            return np.dtype(f"u{bitpix // 8}")
    return np.dtype("f4" if bitpix <= 16 else "f8")


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


def _lazy(
    path: Path,
    index: int,
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    budget: int | str | None,
) -> da.Array:
    """One HDU's pixels as a dask array in numpy order, whole rows per chunk."""
    import dask.array as da
    from dask.base import tokenize

    dtype = np.dtype(dtype).newbyteorder("=")
    # Whole rows (planes for cubes) are contiguous on disk: one read per chunk.
    last = len(shape) - 1
    whole = (last,) if len(shape) < 3 else (last - 1, last)
    chunks = chunks_for(shape, dtype, budget=budget, whole=whole)
    stat = path.stat()
    token = tokenize(
        str(path.resolve()), stat.st_size, stat.st_mtime_ns, index, dtype.str
    )
    return da.from_array(
        _FitsPixels(path, index, shape, dtype),
        chunks=chunks,
        name=f"fits-{token}",
        meta=np.empty((0,) * len(shape), dtype=dtype),
    )


def _read_wcs(
    path: Path, header: Header, hdul: HDUList | None, what: str
) -> WCS | None:
    """The header's WCS, or None when it has no WCS keywords at all."""
    from astropy.utils.exceptions import AstropyWarning
    from astropy.wcs import WCS

    if not any(_WCS_KEY.match(k) for k in header):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # astropy's own fixes
        try:
            return WCS(header, fobj=hdul)
        except (ValueError, KeyError, TypeError, MemoryError) as exc:
            raise InputError(path, f"{what} has an unreadable WCS ({exc})") from exc


def _json_scalar(value: Any) -> Any:
    from astropy.io.fits.card import Undefined

    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, Undefined):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else str(value)  # JSON has no NaN
    return str(value)  # complex values


def _header_dict(header: Header) -> dict[str, Any]:
    """Keyword → value (JSON scalars), without COMMENT/HISTORY cards."""
    from astropy.io.fits.verify import VerifyError

    out = {}
    for card in header.cards:
        if card.keyword in _HIDDEN:
            continue
        try:
            out[card.keyword] = _json_scalar(card.value)
        except (VerifyError, ValueError):
            continue  # a card astropy cannot parse even leniently
    return out


def _wcs_dict(wcs: WCS) -> dict[str, Any]:
    from astropy.wcs.wcs import WCSHDO_P17, WCSHDO_SIP, WCSHDO_all

    # 17 significant digits (astropy's default writes 14) so that the WCS rebuilt
    # from these keywords is the very same; WCSHDO_SIP keeps SIP distortions.
    header = wcs.to_header(relax=WCSHDO_all | WCSHDO_P17 | WCSHDO_SIP)
    return _header_dict(header)


def _geometry(wcs: WCS | None, ndim: int) -> tuple[np.ndarray, tuple[float, ...]]:
    """Affine (0-based pixel → intermediate world coordinates) and zooms (arcsec)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    nspace = min(ndim, 3)
    affine, zooms = np.eye(4), [1.0] * nspace
    if wcs is None:
        return affine, tuple(zooms)
    n = min(nspace, wcs.naxis)
    scale = np.asarray(wcs.pixel_scale_matrix, dtype=np.float64)[:n, :n]
    affine[:n, :n] = scale
    # CRPIX counts from 1; Image indices count from 0.
    affine[:n, 3] = -scale @ (np.asarray(wcs.wcs.crpix[:n], dtype=np.float64) - 1)
    if wcs.has_celestial:
        scales = proj_plane_pixel_scales(wcs)
        for axis in (wcs.wcs.lng, wcs.wcs.lat):
            if axis < nspace:
                zooms[axis] = float(scales[axis]) * 3600.0
    return affine, tuple(zooms)


def _image_from_hdu(
    path: Path, hdul: HDUList, index: int, *, budget: int | str | None
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
    data = _lazy(path, index, shape, dtype, budget=budget)
    return Image(
        data.transpose(tuple(reversed(range(len(shape))))),
        affine,
        default_dims(len(shape)),
        zooms,
        source=str(path),
        attrs=attrs,
    )


def open_fits(
    path: str | Path,
    *,
    hdu: int | str | None = None,
    budget: int | str | None = None,
) -> Image:
    """Open one image of a FITS file lazily; only headers are read.

    Parameters
    ----------
    path : str or Path
        A FITS file: plain, gzip-compressed (``.fits.gz``) or tile-compressed
        (``.fits.fz``); big-endian and BSCALE/BZERO-scaled pixels are handled.
    hdu : int or str, optional
        The HDU by index or EXTNAME; default the first one holding image data.
    budget : int or str, optional
        Bytes per chunk (default Dask's ``array.chunk-size``); chunks hold whole
        rows (whole planes of a cube) where they fit.

    Returns
    -------
    Image
        Axes in NIfTI order, ``("x", "y")`` or ``("x", "y", "z")``: the transpose
        of astropy's array. ``affine`` maps 0-based pixel indices to intermediate
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
    ((300, 300), ('x', 'y'), dtype('int16'), 'arcsecond')
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
        return _image_from_hdu(path, hdul, index, budget=budget)


def open_fits_images(
    path: str | Path, *, budget: int | str | None = None
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
            images[name] = _image_from_hdu(path, hdul, index, budget=budget)
        if not images:
            raise InputError(
                path, f"has no image data (extensions: {_extensions(hdul)})"
            )
    return images


def wcs_from_attrs(attrs: Mapping[str, Any]) -> WCS:
    """The WCS of an image opened from FITS, rebuilt from its ``attrs``.

    Works as well after a trip through a Zarr store, whose attributes keep the
    WCS keywords (at full precision, so the WCS is the same).

    Raises
    ------
    ValueError
        The attributes hold no WCS (the image had none).

    Examples
    --------
    >>> import astropy, os
    >>> data = os.path.join(os.path.dirname(astropy.__file__), "io", "fits", "hdu",
    ...                     "compressed", "tests", "data")
    >>> wcs = wcs_from_attrs(open_fits(os.path.join(data, "m13.fits")).attrs)
    >>> list(wcs.wcs.ctype)
    ['RA---TAN', 'DEC--TAN']
    """
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning
    from astropy.wcs import WCS

    keywords = attrs.get("wcs") or {}
    if not keywords:
        msg = "these attrs hold no WCS (the image had none, or was not FITS)"
        raise ValueError(msg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        return WCS(fits.Header(dict(keywords)))


def describe_wcs(image: Image) -> str | None:
    """A one-line summary of an image's celestial WCS, or None without one.

    Examples
    --------
    >>> import astropy, os
    >>> data = os.path.join(os.path.dirname(astropy.__file__), "io", "fits", "hdu",
    ...                     "compressed", "tests", "data")
    >>> describe_wcs(open_fits(os.path.join(data, "m13.fits")))
    'RA---TAN DEC--TAN (FK5), centre 250.422600 +36.460200 deg, 0.99972 x ...'
    """
    try:
        wcs = wcs_from_attrs(image.attrs)
    except ValueError:
        return None
    if not wcs.has_celestial or image.data.ndim < 2:
        return None
    cel = wcs.celestial
    nx, ny = image.shape[:2]
    ra, dec = (float(v) for v in cel.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
    sx, sy = image.zooms[:2]
    frame = cel.wcs.radesys or "ICRS"
    return (
        f"{' '.join(cel.wcs.ctype)} ({frame}), centre {ra:.6f} {dec:+.6f} deg, "
        f"{sx:.5g} x {sy:.5g} arcsec/pixel, "
        f"field {nx * sx / 60:.2f} x {ny * sy / 60:.2f} arcmin"
    )


class FitsReader:
    """Registry entry for FITS images (plain, gzip- or tile-compressed)."""

    name = "fits"
    description = "FITS (.fits, .fit, .fts, .fits.gz, .fits.fz) via astropy"

    def guess_can_open(self, path: Path, magic: bytes) -> bool:
        return _looks_like_fits(path, magic)

    def open(self, path: Path, **kwargs: Any) -> Image:
        return open_fits(path, **kwargs)


register_reader(FitsReader())
