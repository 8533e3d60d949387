"""Mask bits: LSST-style names for the bits of an exposure's integer mask plane."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from sciimg.io import DEFAULT_MASK_BITS

__all__ = ["BAD_FLAGS", "COADD_BITS", "bitmask", "whole"]

# The bits of a file that does not name its own are the reader's table,
# sciimg.io.DEFAULT_MASK_BITS, so that files, steps and the phantoms agree.

#: Bits of a coadd's mask plane: the input flags that matter downstream, plus
#: ``CLIPPED`` where at least one visit was rejected as an outlier.
COADD_BITS: dict[str, int] = {**DEFAULT_MASK_BITS, "CLIPPED": 9}

#: Flags whose pixels carry no usable signal: left out of an exposure's
#: background and of the stars that measure its PSF.
BAD_FLAGS = ("BAD", "SAT", "CR", "NO_DATA", "EDGE")


def bitmask(names: Iterable[str], bits: Mapping[str, int] | None = None) -> int:
    """The integer with the bits of ``names`` set (names a file lacks are skipped).

    Examples
    --------
    >>> bitmask(["BAD", "SAT"])
    3
    >>> bitmask(["CR", "UNKNOWN"], {"CR": 5})
    32
    """
    bits = DEFAULT_MASK_BITS if bits is None else bits
    value = 0
    for name in names:
        if name in bits:
            value |= 1 << int(bits[name])
    return value


def _native(a) -> np.ndarray:
    """C-contiguous native-endian float32, as sep requires (FITS is big-endian)."""
    return np.ascontiguousarray(np.asarray(a), dtype=np.float32)


def _flagged(mask: np.ndarray | None, value: int, shape) -> np.ndarray:
    """Boolean map of pixels with any of ``value``'s bits set."""
    if mask is None or value == 0:
        return np.zeros(shape, dtype=bool)
    return (np.asarray(mask).astype(np.int64) & value) != 0


def whole(array):
    """A dask array as one Delayed value, without re-optimising its graph.

    For functions that need a whole plane at once (sep's background, the
    detection), called through ``dask.delayed``.

    Passing a dask array straight to ``dask.delayed`` optimises (fuses) its graph
    into new task names, so work shared with other outputs would run twice.
    """
    import dask.array as da

    array = da.asarray(array)
    return (
        array.rechunk(tuple(-1 for _ in array.shape))
        .to_delayed(optimize_graph=False)
        .ravel()[0]
    )
