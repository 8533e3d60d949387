"""A FITS image's pixels read lazily: a dask array whose chunks each read their
rows from the file when computed (memory-mapped where the format allows)."""

from __future__ import annotations

import threading
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sciimg.errors import InputError
from sciimg.io._chunks import chunks_for

if TYPE_CHECKING:
    import dask.array as da
    from astropy.io.fits import Header

_MAGIC = b"SIMPLE  ="
_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    zlib.error,
)
_RAW_DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


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


def _lazy(
    path: Path,
    index: int,
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    chunk_memory: int | str | None,
) -> da.Array:
    """One HDU's pixels as a dask array in numpy order, whole rows per chunk."""
    import dask.array as da
    from dask.base import tokenize

    dtype = np.dtype(dtype).newbyteorder("=")
    # Whole rows (planes for cubes) are contiguous on disk: one read per chunk.
    last = len(shape) - 1
    whole = (last,) if len(shape) < 3 else (last - 1, last)
    chunks = chunks_for(shape, dtype, chunk_memory=chunk_memory, whole=whole)
    stat = path.stat()
    token = tokenize(
        str(path.resolve()), stat.st_size, stat.st_mtime_ns, index, dtype.str
    )
    return da.from_array(
        _FitsPixels(path, index, shape, dtype),
        chunks=chunks,
        name=f"fits-{token}",
        meta=np.empty((0,) * len(shape), dtype=dtype),
        # The reader is a path and an HDU number: in every chunk's task rather
        # than a task of its own that each chunk waits for.
        inline_array=True,
    )
