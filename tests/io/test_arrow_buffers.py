"""Catalog columns between NumPy and Arrow through buffers, against pyarrow's
own conversions, and without importing pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from sciimg.io import arrow_array, arrow_to_numpy

COLUMNS = {
    "float64 big-endian": np.array([1.5, -2.0, np.inf, 3.25, 0.0], ">f8"),
    "float32": np.array([1.5, 2, 3, 4, 5], np.float32),
    "int16": np.array([1, -2, 3, 4, 32767], np.int16),
    "uint8": np.arange(5, dtype=np.uint8),
    "int64 big-endian": np.array([1, 2, 3, 4, 2**40], ">i8"),
    "bool": np.array([True, False, True, True, False]),
    "text": np.array(["a", "", "xyz", "ü", "b"]),
    "bytes": np.array([b"a", b"bc", b"", b"d", b"e"]),
}


def _theirs(values, mask):
    data = values.tolist() if values.dtype.kind in "US" else values
    if values.dtype.kind not in "US":
        data = values.astype(values.dtype.newbyteorder("<"))
    return pa.array(data, mask=mask)


@pytest.mark.parametrize("name", COLUMNS)
@pytest.mark.parametrize("masked", [False, True])
def test_to_arrow_equals_pyarrow(name, masked):
    values = COLUMNS[name]
    mask = np.array([False, True, False, False, True]) if masked else None
    ours = arrow_array(values, mask)
    assert ours.equals(_theirs(values, mask))
    assert ours.null_count == (2 if masked else 0)


@pytest.mark.parametrize("name", COLUMNS)
@pytest.mark.parametrize("masked", [False, True])
def test_to_numpy_round_trip_with_offsets_and_chunks(name, masked):
    values = COLUMNS[name]
    mask = np.array([False, True, False, False, True]) if masked else None
    array = _theirs(values, mask)
    # Slices start at an offset into their buffers, within a byte of bits.
    chunked = pa.chunked_array([array[1:], array[3:]])
    back, back_mask = arrow_to_numpy(chunked)
    expected = np.concatenate([values[1:], values[3:]])
    if masked:
        expected_mask = np.concatenate([mask[1:], mask[3:]])
        np.testing.assert_array_equal(back_mask, expected_mask)
        np.testing.assert_array_equal(back[~expected_mask], expected[~expected_mask])
        assert not back[expected_mask].astype(bool).any()  # zeros, empty strings
    else:
        assert back_mask is None
        np.testing.assert_array_equal(back, expected)
    assert back.dtype.kind == expected.dtype.kind


@pytest.mark.parametrize("kind", [pa.float32(), pa.bool_(), pa.string(), pa.int8()])
def test_empty_columns(kind):
    values, mask = arrow_to_numpy(pa.chunked_array([], kind))
    assert values.shape == (0,) and mask is None
    assert len(arrow_array(values)) == 0


def test_other_types_go_through_pyarrow():
    stamps = np.array(["2026-12-02T10:00", "2026-12-03T11:30"], "datetime64[s]")
    array = arrow_array(stamps)
    assert array.type == pa.timestamp("s")
    back, mask = arrow_to_numpy(pa.chunked_array([array]))
    np.testing.assert_array_equal(back, stamps)
    assert mask is None


def test_catalog_write_and_read_leave_pandas_unimported(tmp_path):
    pytest.importorskip("pandas")
    path = tmp_path / "cat.parquet"
    script = f"""
import sys
import numpy as np
from astropy.table import MaskedColumn, Table
from sciimg.io import read_catalog, write_catalog
t = Table({{"ra": [150.0, 150.5], "name": ["a", "bcd"], "ok": [True, False]}})
t["m"] = MaskedColumn([1.0, 2.0], mask=[False, True])
write_catalog(t, {str(path)!r})
back = read_catalog({str(path)!r})
assert back["m"].mask.tolist() == [False, True] and back["ok"].tolist() == [True, False]
print("pandas" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
