"""Source catalogs as Parquet or FITS tables, read and written without pandas.

astropy reads Parquet only through pandas, which sciimg does not need otherwise,
so Parquet goes through pyarrow here, and columns pass between NumPy and Arrow
as buffers (`sciimg.io.arrow_array`): pyarrow's own conversions import pandas
whenever it is installed. The files stay what astropy writes: the
same column types, string lengths under ``table::len::<name>`` and the table's
metadata as ECSV YAML under ``table_meta_yaml``, so ``Table.read`` gives back the
same units. Units and descriptions are also kept in each Arrow field's metadata,
where tools that know nothing of astropy (pyarrow, DuckDB, Polars) can see them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sciimg.errors import InputError
from sciimg.io._arrow_buffers import arrow_array, arrow_to_numpy
from sciimg.io._atomic import atomic_path
from sciimg.io._fits import is_fits
from sciimg.io._registry import read_magic

if TYPE_CHECKING:
    import pyarrow as pa
    from astropy.table import Table

__all__ = ["catalog_format", "read_catalog", "write_catalog"]

_PARQUET_MAGIC = b"PAR1"
_PARQUET_SUFFIXES = (".parquet", ".pq")
_FIELD_KEYS = ("unit", "description")


def catalog_format(path: str | Path) -> str | None:
    """``"parquet"`` or ``"fits"`` when ``path`` is a catalog file, else None.

    A FITS file counts as a catalog when it holds a table and no image data.

    Examples
    --------
    >>> catalog_format("/nonexistent/catalog.parquet") is None
    True
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        magic = read_magic(path, 4)
    except OSError:
        return None
    if magic == _PARQUET_MAGIC or path.name.lower().endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if is_fits(path) and _fits_holds_only_tables(path):
        return "fits"
    return None


def _fits_holds_only_tables(path: Path) -> bool:
    from astropy.io import fits

    try:
        with fits.open(path, lazy_load_hdus=True) as hdul:
            tables = images = 0
            for hdu in hdul:
                if isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
                    tables += 1
                elif hdu.header.get("NAXIS", 0) > 0:
                    images += 1
    except (OSError, ValueError, TypeError, IndexError, KeyError):
        return False
    return tables > 0 and images == 0


def _arrow_column(col) -> tuple[pa.Array, dict[bytes, bytes]]:
    from astropy.table import Column

    name = col.info.name
    if not isinstance(col, Column) or col.ndim != 1 or col.dtype.kind == "O":
        msg = f"column {name!r} is not a column of scalars; catalogs keep only those"
        raise ValueError(msg)
    mask = np.ma.getmaskarray(col) if getattr(col, "mask", None) is not None else None
    mask = mask if mask is not None and mask.any() else None
    array = arrow_array(np.asarray(col), mask)
    meta = {
        key.encode(): str(getattr(col.info, key)).encode()
        for key in _FIELD_KEYS
        if getattr(col.info, key, None) is not None
    }
    return array, meta


def _write_parquet(table: Table, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import meta

    fields, arrays = [], []
    schema_meta = {"table_meta_yaml": "\n".join(meta.get_yaml_from_table(table))}
    for name, col in table.columns.items():
        array, field_meta = _arrow_column(col)
        if col.dtype.kind in "US":
            # Arrow strings have no width; astropy reads it back from here.
            width = col.dtype.itemsize // (4 if col.dtype.kind == "U" else 1)
            schema_meta[f"table::len::{name}"] = str(width)
        fields.append(pa.field(name, array.type, metadata=field_meta or None))
        arrays.append(array)
    schema = pa.schema(
        fields, metadata={k.encode(): v.encode() for k, v in schema_meta.items()}
    )
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)


def write_catalog(table: Any, path: str | Path) -> Path:
    """Write a catalog to Parquet or FITS (by suffix), atomically, replacing any.

    Parameters
    ----------
    table : astropy.table.Table or mapping of columns
        Plain columns of scalars (numbers, booleans, strings), possibly masked,
        with their units and descriptions.
    path : str or Path
        ``.parquet`` (or ``.pq``) writes Parquet, ``.fits`` (or ``.fit``, ``.fts``)
        a FITS binary table.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile, os
    >>> from astropy.table import Table
    >>> t = Table({"ra": [150.0, 150.1], "patch": ["p-0", "p-1"]})
    >>> t["ra"].unit = "deg"
    >>> out = write_catalog(t, os.path.join(tempfile.mkdtemp(), "cat.parquet"))
    >>> back = read_catalog(out)
    >>> back["ra"].unit, back["patch"].dtype.str, len(back)
    (Unit("deg"), '<U3', 2)
    """
    from astropy.table import Table

    path = Path(path)
    name = path.name.lower()
    table = Table(table)  # Quantity columns become columns with units
    if name.endswith(_PARQUET_SUFFIXES):
        with atomic_path(path, suffix=".parquet") as tmp:
            _write_parquet(table, tmp)
    elif name.endswith((".fits", ".fit", ".fts")):
        with atomic_path(path, suffix=".fits") as tmp:
            table.write(tmp, format="fits")
    else:
        msg = f"{path}: a catalog is written as .parquet or .fits, not {path.suffix!r}"
        raise ValueError(msg)
    return path


def _numpy_column(name: str, chunked: pa.ChunkedArray, width: int | None):
    from astropy.table import Column, MaskedColumn

    values, mask = arrow_to_numpy(chunked, width)
    if mask is not None:
        return MaskedColumn(values, name=name, mask=mask)
    return Column(values, name=name)


def _read_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import Table
    from astropy.table import meta as table_meta

    try:
        # One file's row groups; read_table goes through pyarrow's datasets,
        # which import pandas.
        with pq.ParquetFile(path) as parquet:
            arrow = parquet.read()
    except (OSError, pa.ArrowException) as exc:
        raise InputError(path, f"is not a readable Parquet file ({exc})") from exc
    md = {k.decode(): v.decode() for k, v in (arrow.schema.metadata or {}).items()}
    header: dict[str, Any] = {}
    if "table_meta_yaml" in md:
        try:
            header = table_meta.get_header_from_yaml(md["table_meta_yaml"].split("\n"))
        except Exception:  # a foreign writer's YAML costs only the metadata
            header = {}
    described = {c["name"]: c for c in header.get("datatype", [])}
    table = Table(meta=dict(header.get("meta") or {}))
    for field in arrow.schema:
        width = md.get(f"table::len::{field.name}")
        col = _numpy_column(
            field.name, arrow[field.name], int(width) if width else None
        )
        extra = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        known = described.get(field.name, {})
        for key in ("unit", "description", "format", "meta"):
            value = extra.get(key, known.get(key))
            if value is not None:
                setattr(col, key, value)
        table.add_column(col)
    return table


def read_catalog(path: str | Path) -> Table:
    """Read a Parquet or FITS catalog into an astropy Table, with its units.

    Parquet is read with pyarrow alone (no pandas), from sciimg, astropy or
    other writers; string columns come back as fixed-width numpy strings, and
    columns with nulls as masked columns.

    Raises
    ------
    InputError
        The file is missing or is not a catalog.

    Examples
    --------
    See :func:`write_catalog`.
    """
    from astropy.table import Table
    from astropy.utils.exceptions import AstropyWarning

    path = Path(path)
    kind = catalog_format(path)
    if kind == "parquet":
        return _read_parquet(path)
    if kind == "fits":
        try:
            with warnings.catch_warnings():
                # Several tables: the first is the catalog, as astropy says.
                warnings.simplefilter("ignore", AstropyWarning)
                table = Table.read(path, format="fits")
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(path, f"is not a readable FITS table ({exc})") from exc
        # FITS strings are bytes; make them text, as Parquet's are.
        table.convert_bytestring_to_unicode()
        return table
    if not path.exists():
        raise InputError(path, "does not exist")
    raise InputError(path, "is not a catalog (a Parquet file or a FITS table)")
