"""``manifest.parquet``: one row per item of a run, its metadata and its fate.

Every run writes it next to ``run.json``: the item's id and kind, what
happened to it (``done``, ``skipped``, ``failed``, ``interrupted``, or
``filtered`` when ``input.where`` left it out), its fingerprint, seconds,
error, store and input files, and the metadata read from its headers (the
columns ``input.where`` selects on): a NIfTI's shape, voxel size and b-values,
a FITS file's keywords. Any tool that reads Parquet reads it (pandas, DuckDB,
astropy, Spark).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sciimg.io import arrow_array, atomic_path

__all__ = ["MANIFEST", "write_manifest"]

#: The manifest's name in the output folder.
MANIFEST = "manifest.parquet"

#: Columns every row has, first, in this order.
FIRST = (
    "id",
    "kind",
    "status",
    "fingerprint",
    "seconds",
    "error",
    "step",
    "store",
    "device",
    "files",
)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _column(values: list[Any]):
    """An Arrow array of ``values``: one type per column, text where they mix."""
    import numpy as np

    present = [v for v in values if v is not None]
    kinds = {type(v) for v in present}
    mask = np.array([v is None for v in values], bool)
    if kinds <= {bool}:
        data = np.array([bool(v) for v in values], bool)
    elif kinds <= {int}:
        data = np.array([v or 0 for v in values], np.int64)
    elif kinds <= {int, float}:
        data = np.array([0.0 if v is None else float(v) for v in values], np.float64)
    else:
        data = np.array(["" if v is None else _text(v) for v in values], str)
    # Built from buffers: pyarrow's pa.array would import pandas (0.4 s).
    return arrow_array(data, mask if mask.any() else None)


def write_manifest(output: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` (dicts, keys as columns) to ``output/manifest.parquet``.

    Columns are the union of the rows' keys (the fixed ones first, then the
    metadata keys sorted); a row lacking a key holds null there.

    Examples
    --------
    >>> import tempfile, pyarrow.parquet as pq
    >>> out = write_manifest(Path(tempfile.mkdtemp()), [
    ...     {"id": "a", "kind": "exposure", "status": "done", "exptime": 60},
    ...     {"id": "b", "kind": "exposure", "status": "filtered", "exptime": 30.5}])
    >>> table = pq.read_table(out)
    >>> table.column("exptime").to_pylist(), str(table.schema.field("exptime").type)
    ([60.0, 30.5], 'double')
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = [k for k in FIRST if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys))
    arrays = [_column([r.get(k) for r in rows]) for k in keys]
    table = pa.Table.from_arrays(arrays, names=keys)
    path = Path(output) / MANIFEST
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    return path
