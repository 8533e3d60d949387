"""Chunk shapes derived from a memory budget rather than asked of the user."""

from __future__ import annotations

from collections.abc import Sequence

import dask
import numpy as np
from dask.array.core import normalize_chunks
from dask.utils import parse_bytes

__all__ = ["chunk_budget", "chunks_for"]


def chunk_budget(chunk_memory: int | str | None = None) -> int:
    """Bytes one chunk may take: ``chunk_memory`` or Dask's ``array.chunk-size``.

    Examples
    --------
    >>> chunk_budget("32MiB")
    33554432
    """
    if chunk_memory is None:
        chunk_memory = dask.config.get("array.chunk-size")
    return (
        parse_bytes(chunk_memory)
        if isinstance(chunk_memory, str)
        else int(chunk_memory)
    )


def chunks_for(
    shape: Sequence[int],
    dtype: np.dtype | str,
    *,
    chunk_memory: int | str | None = None,
    whole: Sequence[int] = (),
) -> tuple[tuple[int, ...], ...]:
    """Chunks for ``shape`` that fit ``chunk_memory``, the ``whole`` axes unsplit.

    The remaining axes are split as evenly as Dask's own ``"auto"`` rule would.
    If even one slab of the whole axes exceeds ``chunk_memory``, those axes are
    split too: a chunk that does not fit is worse than a less convenient one.

    Parameters
    ----------
    shape : sequence of int
        Array shape.
    dtype : dtype
        Element type, to turn bytes into elements.
    chunk_memory : int or str, optional
        Bytes per chunk (``"64MiB"``); default Dask's ``array.chunk-size``.
    whole : sequence of int
        Axes to keep in one piece (e.g. all gradient volumes for a tensor fit).

    Examples
    --------
    >>> chunks_for((100, 100, 50, 30), "f4", chunk_memory="8MiB", whole=(3,))[3]
    (30,)
    """
    limit = chunk_budget(chunk_memory)
    itemsize = np.dtype(dtype).itemsize
    whole = {a % len(shape) for a in whole}
    slab = itemsize * int(np.prod([shape[a] for a in whole], dtype=np.int64))
    if slab > limit:
        whole = set()
    spec = tuple(n if a in whole else "auto" for a, n in enumerate(shape))
    return normalize_chunks(spec, tuple(shape), limit=limit, dtype=np.dtype(dtype))
