"""NumPy columns to Arrow arrays and back through their buffers.

pyarrow's conversions (``pa.array``, ``to_numpy``, ``fill_null``) import pandas
whenever it is installed, which costs a catalog-writing run 0.4 s. Columns of
numbers, booleans and strings are built from, and read into, their Arrow
buffers here instead: a validity bitmap, then the values (bit-packed booleans;
offsets and UTF-8 bytes for strings). Other types go through pyarrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["arrow_array", "arrow_to_numpy"]


def _bits(flags: np.ndarray):
    import pyarrow as pa

    return pa.py_buffer(np.packbits(flags, bitorder="little"))


def _unbits(buffer, offset: int, length: int) -> np.ndarray:
    packed = np.frombuffer(buffer, np.uint8)
    return np.unpackbits(packed, count=offset + length, bitorder="little")[
        offset:
    ].astype(bool)


def arrow_array(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """A 1-D NumPy array as an Arrow array; ``mask`` marks nulls.

    Strings become Arrow strings (bytes: binary) with their trailing NULs
    dropped, as NumPy gives them; numbers keep their type, little-endian.

    Examples
    --------
    >>> arrow_array(np.array([1.5, 2.0]), np.array([False, True])).to_pylist()
    [1.5, None]
    >>> arrow_array(np.array(["a", "bcd"])).type
    DataType(string)
    """
    import pyarrow as pa

    n = len(values)
    nulls = int(mask.sum()) if mask is not None else 0
    valid = _bits(~mask) if nulls else None
    kind = values.dtype.kind
    if kind in "US":
        items = values.tolist()
        data = [v.encode() for v in items] if kind == "U" else items
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum([len(v) for v in data], out=offsets[1:])
        buffers = [valid, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
        kind_ = pa.string() if kind == "U" else pa.binary()
        return pa.Array.from_buffers(kind_, n, buffers, null_count=nulls)
    if kind == "b":
        return pa.Array.from_buffers(pa.bool_(), n, [valid, _bits(values)], nulls)
    if kind in "iuf":
        # Parquet is little-endian; FITS tables arrive big-endian.
        data = np.ascontiguousarray(values, values.dtype.newbyteorder("<"))
        kind_ = pa.from_numpy_dtype(data.dtype)
        return pa.Array.from_buffers(kind_, n, [valid, pa.py_buffer(data)], nulls)
    return pa.array(values, mask=mask if nulls else None)


def arrow_to_numpy(
    chunked: pa.ChunkedArray, width: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """An Arrow column as a NumPy array, and its null mask (None without nulls).

    Strings and bytes become fixed-width NumPy strings, ``width`` wide or as
    wide as the longest; nulls are ``""`` and ``0`` under the mask.

    Examples
    --------
    >>> import pyarrow as pa
    >>> values, mask = arrow_to_numpy(pa.chunked_array([["a", None, "bcd"]]))
    >>> values.tolist(), mask.tolist()
    (['a', '', 'bcd'], [False, True, False])
    """
    import pyarrow as pa

    kind = chunked.type
    if pa.types.is_dictionary(kind):
        chunked = chunked.cast(kind.value_type)
        kind = kind.value_type
    array = chunked.combine_chunks()
    n, offset = len(array), array.offset
    buffers = array.buffers()
    mask = None
    if array.null_count:
        mask = ~_unbits(buffers[0], offset, n)
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if text or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        empty = "" if text else b""
        items = [empty if v is None else v for v in array.to_pylist()]
        width = width or max((len(v) for v in items), default=1) or 1
        return np.array(items, dtype=f"{'U' if text else 'S'}{width}"), mask
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if pa.types.is_boolean(kind) or numeric:
        dtype = np.dtype(kind.to_pandas_dtype())  # NumPy's; pandas is not asked
        if n == 0:  # an empty array may have no buffers at all
            values = np.empty(0, dtype)
        elif numeric:
            values = np.frombuffer(buffers[1], dtype, n, offset * dtype.itemsize)
            values = values.copy()
        else:
            values = _unbits(buffers[1], offset, n)
    else:
        filled = array.fill_null(pa.scalar(0, kind)) if mask is not None else array
        return filled.to_numpy(zero_copy_only=False), mask
    if mask is not None:
        values[mask] = 0  # what lay under a null is not data
    return values, mask
