"""The relational engine: a Myria-style plan of SQL statements on DuckDB.

One in-memory DuckDB connection per run, with ``SET threads = workers`` (and a
temporary folder it may spill to). Images live in ``BLOB`` columns (arrays in
NumPy's ``.npy`` format, so dtype and shape travel with them), metadata in
ordinary columns. Every step is one or more ``CREATE TABLE ... AS SELECT``
statements, timed inside its :meth:`StepClock.step`, that call the kernels of
:mod:`sciimg.bench._kernels` as Python scalar UDFs (row at a time, "native").
DuckDB has no Python aggregate UDFs, so an aggregate is ``udf(list(x ORDER BY
...))`` under ``GROUP BY``, and a flat-map is a UDF returning a list of structs
that is ``UNNEST``-ed.

Neuro (``ingest``, ``mask``, ``denoise``, ``dti``): ``ingest`` flat-maps every
row of ``subjects`` into ``volumes(subject, idx, bval, bvec, data)`` and
aggregates the b-values and b-vectors into ``gradients``. ``mask`` selects the
b0 volumes (``bval <= threshold``), aggregates them per subject in volume order
into their mean and computes the brain mask: ``masks(subject, mask)``.
``denoise`` joins ``volumes`` with ``masks`` and denoises every volume.
``dti`` flat-maps every denoised volume and every mask into blocks of
:data:`sciimg.bench._serial.FIT_BLOCK` voxels, groups the volume blocks by
``(subject, block)`` in volume order, joins the mask blocks and gradients and
fits the tensor; the FA blocks are assembled per subject in Python.

DuckDB turns a Python ``NaN`` returned by a UDF into ``NULL``; the UDFs map such
values back (a calexp's PSF FWHM, catalog columns), so results match the serial
engine's. ``overlaps`` is an SQL keyword, hence quoted.

Parallelism: DuckDB splits a table scan by row groups (122,880 rows), so a
per-row UDF over a table of a few hundred images (``denoise``, ``calibrate``,
``warp``) runs on one thread whatever ``threads`` is. Only hash-partitioned
operators (the ``GROUP BY`` of ``mask``, ``dti``, ``coadd``) can spread small
inputs over threads, one per radix partition that holds groups; and a Python
UDF holds the GIL except where its kernel releases it.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sciimg.bench import _kernels as k
from sciimg.bench._outputs import StepClock, save_neuro
from sciimg.bench._serial import FIT_BLOCK
from sciimg.bench._workloads import Workload

if TYPE_CHECKING:
    import duckdb


def _pack(array: np.ndarray | None) -> bytes | None:
    """An array as ``.npy`` bytes (None stays None: SQL NULL)."""
    if array is None:
        return None
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _unpack(blob: bytes | None) -> np.ndarray | None:
    """The array of :func:`_pack`'s bytes."""
    if blob is None:
        return None
    return np.load(io.BytesIO(blob), allow_pickle=False)


def _float(value: float | None) -> float:
    """A DOUBLE known never to be NULL: NULL is a NaN that DuckDB converted."""
    return float("nan") if value is None else float(value)


@contextmanager
def _connect(workers: int) -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh in-memory DuckDB connection with ``workers`` threads."""
    import duckdb

    if workers < 1:
        msg = f"workers must be at least 1, not {workers}"
        raise ValueError(msg)
    with tempfile.TemporaryDirectory(prefix="sciimg-duckdb-") as spill:
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"SET threads = {int(workers)}")
            con.execute("SET temp_directory = ?", [spill])
            yield con
        finally:
            con.close()


def _udf(
    con: duckdb.DuckDBPyConnection,
    name: str,
    function: Callable[..., Any],
    parameters: Sequence[str],
    returns: str,
    *,
    nulls: bool = False,
) -> None:
    """Register a deterministic row-at-a-time Python UDF with explicit SQL types.

    With ``nulls`` the function is called on NULL arguments too (they arrive as
    None); otherwise a NULL argument gives a NULL result without a call.
    """
    import duckdb

    sqltype = getattr(duckdb, "sqltype", None) or duckdb.type  # before DuckDB 2
    con.create_function(
        name,
        function,
        [sqltype(p) for p in parameters],
        sqltype(returns),
        type="native",
        null_handling="special" if nulls else "default",
        exception_handling="default",
        side_effects=False,
    )


def _engine(workers: int) -> dict[str, Any]:
    import duckdb

    return {"duckdb": duckdb.__version__, "threads": workers}


# ----------------------------------------------------------------- neuroscience


def _neuro_udfs(con: duckdb.DuckDBPyConnection, params: Mapping[str, Any]) -> None:
    def read_subject(dwi: str, bval: str | None, bvec: str | None) -> list[dict]:
        data, bvals, bvecs = k.read_subject(dwi, bval, bvec)
        return [
            {
                "idx": v,
                "bval": float(bvals[v]),
                "bvec": [float(c) for c in bvecs[v]],
                "data": _pack(data[..., v]),
            }
            for v in range(data.shape[3])
        ]

    def mean_b0(volumes: list[bytes]) -> bytes:
        return _pack(k.mean_b0([_unpack(v) for v in volumes]))

    def brain_mask(b0: bytes) -> bytes:
        return _pack(k.brain_mask(_unpack(b0), params["mask"]))

    def denoise_volume(volume: bytes, mask: bytes) -> bytes:
        return _pack(
            k.denoise_volume(_unpack(volume), _unpack(mask), params["denoise"])
        )

    def voxel_blocks(volume: bytes) -> list[dict]:
        array = _unpack(volume)
        boxes = k.voxel_blocks(array.shape[:3], FIT_BLOCK)
        return [{"block": i, "data": _pack(array[box])} for i, box in enumerate(boxes)]

    def fit_fa(
        series: list[bytes], mask: bytes, bvals: list[float], bvecs: list[list[float]]
    ) -> bytes:
        block = np.stack([_unpack(v) for v in series], axis=-1)
        fa = k.fit_fa(
            block, _unpack(mask), np.asarray(bvals), np.asarray(bvecs), params["dti"]
        )
        return _pack(fa)

    blocks = "STRUCT(block INTEGER, data BLOB)[]"
    _udf(
        con,
        "read_subject",
        read_subject,
        ["VARCHAR", "VARCHAR", "VARCHAR"],
        "STRUCT(idx INTEGER, bval DOUBLE, bvec DOUBLE[], data BLOB)[]",
        nulls=True,
    )
    _udf(con, "mean_b0", mean_b0, ["BLOB[]"], "BLOB")
    _udf(con, "brain_mask", brain_mask, ["BLOB"], "BLOB")
    _udf(con, "denoise_volume", denoise_volume, ["BLOB", "BLOB"], "BLOB")
    _udf(con, "voxel_blocks", voxel_blocks, ["BLOB"], blocks)
    _udf(con, "fit_fa", fit_fa, ["BLOB[]", "BLOB", "DOUBLE[]", "DOUBLE[][]"], "BLOB")


_NEURO_INGEST = """
CREATE TABLE volumes AS
SELECT subject, v.idx, v.bval, v.bvec, v.data
FROM (SELECT subject, unnest(read_subject(dwi, bval, bvec)) AS v FROM subjects)
"""

_NEURO_GRADIENTS = """
CREATE TABLE gradients AS
SELECT subject, list(bval ORDER BY idx) AS bvals, list(bvec ORDER BY idx) AS bvecs
FROM volumes
GROUP BY subject
"""

_NEURO_MASK = """
CREATE TABLE masks AS
SELECT subject, brain_mask(mean_b0(list(data ORDER BY idx))) AS mask
FROM volumes
WHERE bval <= ?
GROUP BY subject
"""

_NEURO_DENOISE = """
CREATE TABLE denoised AS
SELECT subject, v.idx, denoise_volume(v.data, m.mask) AS data
FROM volumes AS v JOIN masks AS m USING (subject)
"""

_NEURO_DTI = """
CREATE TABLE fa_blocks AS
WITH pieces AS (
    SELECT subject, idx, unnest(voxel_blocks(data)) AS piece FROM denoised
), series AS (
    SELECT subject, piece.block AS block, list(piece.data ORDER BY idx) AS series
    FROM pieces
    GROUP BY subject, piece.block
), mask_pieces AS (
    SELECT subject, unnest(voxel_blocks(mask)) AS piece FROM masks
)
SELECT s.subject, s.block, fit_fa(s.series, mp.piece.data, g.bvals, g.bvecs) AS fa
FROM series AS s
JOIN mask_pieces AS mp ON mp.subject = s.subject AND mp.piece.block = s.block
JOIN gradients AS g ON g.subject = s.subject
"""


def run_neuro(
    workload: Workload, out: Path, params: dict[str, Any], *, workers: int = 1
) -> dict:
    """Run the neuro pipeline as SQL statements on DuckDB.

    Parameters
    ----------
    workload : Workload
        A neuro workload; its subjects are those of
        :func:`sciimg.io.discover_subjects`.
    out : Path
        Output folder, written with :func:`sciimg.bench._outputs.save_neuro`.
    params : dict
        Step parameters (:meth:`Workload.step_params`).
    workers : int
        DuckDB threads.

    Returns
    -------
    dict
        ``steps`` (seconds per step) and ``engine`` (DuckDB version, threads).
    """
    from sciimg.io import discover_subjects

    clock = StepClock()
    subjects = [
        (s.id, str(s.dwi), _path(s.bval), _path(s.bvec))
        for s in discover_subjects(workload.data)
    ]
    with _connect(workers) as con:
        _neuro_udfs(con, params)
        con.execute(
            "CREATE TABLE subjects"
            "(subject VARCHAR PRIMARY KEY, dwi VARCHAR, bval VARCHAR, bvec VARCHAR)"
        )
        con.executemany("INSERT INTO subjects VALUES (?, ?, ?, ?)", subjects)
        with clock.step("ingest"):
            con.execute(_NEURO_INGEST)
            con.execute(_NEURO_GRADIENTS)
        with clock.step("mask"):
            con.execute(_NEURO_MASK, [float(params["mask"]["b0_threshold"])])
        _check_masks(con, params["mask"]["b0_threshold"])
        with clock.step("denoise"):
            con.execute(_NEURO_DENOISE)
        con.execute("DROP TABLE volumes")
        with clock.step("dti"):
            con.execute(_NEURO_DTI)
            masks = {
                s: _unpack(m)
                for s, m in con.execute("SELECT subject, mask FROM masks").fetchall()
            }
            fas = {s: np.zeros(m.shape[:3], np.float32) for s, m in masks.items()}
            boxes = {
                s: k.voxel_blocks(m.shape[:3], FIT_BLOCK) for s, m in masks.items()
            }
            rows = con.execute("SELECT subject, block, fa FROM fa_blocks").fetchall()
            for subject, block, fa in rows:
                fas[subject][boxes[subject][block]] = _unpack(fa)
        for subject in sorted(masks):
            save_neuro(out, subject, masks[subject], fas[subject])
    return {"steps": clock.as_dict(), "engine": _engine(workers)}


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _check_masks(con: duckdb.DuckDBPyConnection, threshold: float) -> None:
    """Fail as the serial engine does when a subject has no b0 volume."""
    missing = con.execute(
        "SELECT subject FROM subjects ANTI JOIN masks USING (subject) ORDER BY subject"
    ).fetchall()
    if missing:
        msg = f"no b0 volume (b-value <= {threshold}) for {missing[0][0]}"
        raise ValueError(msg)
