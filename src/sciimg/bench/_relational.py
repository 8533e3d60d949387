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

Astro (``ingest``, ``calibrate``, ``warp``, ``coadd``, ``detect``): ``ingest``
reads every row of ``files`` into ``exposures``, ``calibrate`` maps them to
``calexps``. ``warp`` builds the sky map in Python from the calexps' WCS and
shape (the UDFs that need it hold it in their closure), flat-maps each calexp
to the patches it overlaps (``overlaps``), aggregates the PSF FWHMs of each
patch's exposures, in id order, into its target (``patches``), and joins
``calexps``, ``overlaps`` and ``patches`` into ``warps``. ``coadd`` groups the
warps by patch in exposure order, with the mask bits of the patch's first
exposure; ``detect`` flat-maps every coadd into its sources (``sources``), from
which the per-patch catalogs are rebuilt as astropy Tables.

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
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sciimg.bench import _kernels as k
from sciimg.bench._outputs import StepClock, save_catalog, save_coadd, save_neuro
from sciimg.bench._serial import FIT_BLOCK
from sciimg.bench._workloads import Workload

if TYPE_CHECKING:
    import duckdb

#: Columns of a catalog (:func:`sciimg.bench._kernels.detect_sources`), as SQL types.
SOURCE_COLUMNS: dict[str, str] = {
    "id": "BIGINT",
    "patch": "VARCHAR",
    "x": "DOUBLE",
    "y": "DOUBLE",
    "ra": "DOUBLE",
    "dec": "DOUBLE",
    "flux": "DOUBLE",
    "flux_err": "DOUBLE",
    "snr": "DOUBLE",
    "a": "DOUBLE",
    "b": "DOUBLE",
    "theta": "DOUBLE",
    "kron_radius": "DOUBLE",
    "npix": "BIGINT",
    "peak": "DOUBLE",
    "flags": "BIGINT",
}

_PLANES = "STRUCT(image BLOB, variance BLOB, mask BLOB)"


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


# ------------------------------------------------------------------- astronomy


def _exposure_udfs(con: duckdb.DuckDBPyConnection, params: Mapping[str, Any]) -> None:
    def read_exposure(path: str) -> dict:
        e = k.read_exposure(path)
        return {
            "image": _pack(e["image"]),
            "variance": _pack(e["variance"]),
            "mask": _pack(e["mask"]),
            "header": e["header"],
            "wcs": e["wcs"],
            "mask_bits": json.dumps(e["mask_bits"]),
        }

    def calibrate_exposure(
        path: str,
        image: bytes,
        variance: bytes | None,
        mask: bytes | None,
        header: str,
        wcs: str,
        mask_bits: str | None,
    ) -> dict:
        exposure = {
            "path": path,
            "image": _unpack(image),
            "variance": _unpack(variance),
            "mask": _unpack(mask),
            "header": header,
            "wcs": wcs,
            "mask_bits": json.loads(mask_bits or "{}"),
        }
        c = k.calibrate_exposure(exposure, params["calibrate"])
        return {
            "image": _pack(c["image"]),
            "variance": _pack(c["variance"]),
            "mask": _pack(c["mask"]),
            "shape": list(np.shape(c["image"])),
            "psf_fwhm": c["psf_fwhm"],
            "wcs": c["wcs"],
            "mask_bits": json.dumps(c["mask_bits"]),
        }

    _udf(
        con,
        "read_exposure",
        read_exposure,
        ["VARCHAR"],
        "STRUCT(image BLOB, variance BLOB, mask BLOB, header VARCHAR, wcs VARCHAR, "
        "mask_bits JSON)",
    )
    _udf(
        con,
        "calibrate_exposure",
        calibrate_exposure,
        ["VARCHAR", "BLOB", "BLOB", "BLOB", "VARCHAR", "VARCHAR", "JSON"],
        "STRUCT(image BLOB, variance BLOB, mask BLOB, shape INTEGER[], "
        "psf_fwhm DOUBLE, wcs VARCHAR, mask_bits JSON)",
        nulls=True,
    )


def _patch_udfs(
    con: duckdb.DuckDBPyConnection, skymap: Any, params: Mapping[str, Any]
) -> dict[str, tuple[str, str, str | None, str | None]]:
    """Register the UDFs that need the sky map.

    Returns the dict that ``detect_sources`` fills with each catalog column's
    dtype kind, dtype, unit and description, to rebuild the tables from SQL.
    """
    columns: dict[str, tuple[str, str, str | None, str | None]] = {}

    def patches_of(wcs: str, shape: list[int]) -> list[str]:
        return k.patches_of(skymap, wcs, shape)

    def target_fwhm(fwhms: list[float | None]) -> float | None:
        return k.target_fwhm([_float(f) for f in fwhms], params["coadd"])

    def warp_exposure(
        image: bytes,
        variance: bytes | None,
        mask: bytes | None,
        psf_fwhm: float | None,
        wcs: str,
        mask_bits: str | None,
        patch: str,
        target: float | None,
    ) -> dict:
        calexp = {
            "image": _unpack(image),
            "variance": _unpack(variance),
            "mask": _unpack(mask),
            "psf_fwhm": _float(psf_fwhm),
            "wcs": wcs,
            "mask_bits": json.loads(mask_bits or "{}"),
        }
        w = k.warp_exposure(calexp, k.patch_of(skymap, patch), target)
        return {p: _pack(w[p]) for p in ("image", "variance", "mask")}

    def coadd_warps(warps: list[dict], mask_bits: str | None) -> dict:
        planes = [{p: _unpack(w[p]) for p in w} for w in warps]
        bits = None if mask_bits is None else json.loads(mask_bits)
        c = k.coadd_warps(planes, bits, params["coadd"])
        return {p: _pack(c[p]) for p in ("image", "variance", "mask")}

    def detect_sources(patch: str, coadd: dict) -> list[dict]:
        planes = {p: _unpack(coadd[p]) for p in ("image", "variance", "mask")}
        table = k.detect_sources(planes, k.patch_of(skymap, patch), params["detect"])
        if list(table.colnames) != list(SOURCE_COLUMNS):
            msg = f"detect_sources gave columns {table.colnames}, not {SOURCE_COLUMNS}"
            raise ValueError(msg)
        for name in SOURCE_COLUMNS:
            col = table[name]
            unit = None if col.unit is None else str(col.unit)
            columns[name] = (col.dtype.kind, col.dtype.str, unit, col.description)
        values = [table[name].tolist() for name in SOURCE_COLUMNS]
        return [
            dict(zip(SOURCE_COLUMNS, row, strict=True))
            for row in zip(*values, strict=True)
        ]

    sources = ", ".join(f"{n} {t}" for n, t in SOURCE_COLUMNS.items())
    _udf(con, "patches_of", patches_of, ["VARCHAR", "INTEGER[]"], "VARCHAR[]")
    _udf(con, "target_fwhm", target_fwhm, ["DOUBLE[]"], "DOUBLE")
    _udf(
        con,
        "warp_exposure",
        warp_exposure,
        ["BLOB", "BLOB", "BLOB", "DOUBLE", "VARCHAR", "JSON", "VARCHAR", "DOUBLE"],
        _PLANES,
        nulls=True,
    )
    _udf(con, "coadd_warps", coadd_warps, [f"{_PLANES}[]", "JSON"], _PLANES, nulls=True)
    _udf(
        con,
        "detect_sources",
        detect_sources,
        ["VARCHAR", _PLANES],
        f"STRUCT({sources})[]",
    )
    return columns


_ASTRO_INGEST = """
CREATE TABLE exposures AS
SELECT id, path, e.image, e.variance, e.mask, e.header, e.wcs, e.mask_bits
FROM (SELECT id, path, read_exposure(path) AS e FROM files)
"""

_ASTRO_CALIBRATE = """
CREATE TABLE calexps AS
SELECT id, c.image, c.variance, c.mask, c.shape, c.psf_fwhm, c.wcs, c.mask_bits
FROM (
    SELECT id, calibrate_exposure(path, image, variance, mask, header, wcs, mask_bits)
        AS c
    FROM exposures
)
"""

_ASTRO_OVERLAPS = """
CREATE TABLE "overlaps" AS
SELECT id AS exposure, unnest(patches_of(wcs, shape)) AS patch FROM calexps
"""

_ASTRO_PATCHES = """
CREATE TABLE patches AS
SELECT o.patch AS patch_id, count(*) AS exposures,
       target_fwhm(list(c.psf_fwhm ORDER BY o.exposure)) AS target_fwhm
FROM "overlaps" AS o JOIN calexps AS c ON c.id = o.exposure
GROUP BY o.patch
"""

_ASTRO_WARP = """
CREATE TABLE warps AS
SELECT p.patch_id AS patch, c.id AS exposure, c.mask_bits,
       warp_exposure(c.image, c.variance, c.mask, c.psf_fwhm, c.wcs, c.mask_bits,
                     p.patch_id, p.target_fwhm) AS warp
FROM calexps AS c
JOIN "overlaps" AS o ON o.exposure = c.id
JOIN patches AS p ON p.patch_id = o.patch
"""

_ASTRO_COADD = """
CREATE TABLE coadds AS
SELECT patch,
       coadd_warps(list(warp ORDER BY exposure), arg_min(mask_bits, exposure))
           AS coadd
FROM warps
GROUP BY patch
"""

_ASTRO_DETECT = """
CREATE TABLE sources AS
SELECT unnest(detect_sources(patch, coadd), recursive := true) FROM coadds
"""


def run_astro(
    workload: Workload, out: Path, params: dict[str, Any], *, workers: int = 1
) -> dict:
    """Run the astro pipeline as SQL statements on DuckDB.

    Parameters
    ----------
    workload : Workload
        An astro workload; its exposures are those of
        :func:`sciimg.io.discover_exposures`.
    out : Path
        Output folder, written with :func:`sciimg.bench._outputs.save_coadd` and
        :func:`~sciimg.bench._outputs.save_catalog`.
    params : dict
        Step parameters (:meth:`Workload.step_params`).
    workers : int
        DuckDB threads.

    Returns
    -------
    dict
        ``steps`` (seconds per step) and ``engine`` (DuckDB version, threads).
    """
    from sciimg.io import discover_exposures

    clock = StepClock()
    files = [(eid, str(path)) for eid, path in discover_exposures(workload.data)]
    with _connect(workers) as con:
        _exposure_udfs(con, params)
        con.execute("CREATE TABLE files(id VARCHAR PRIMARY KEY, path VARCHAR)")
        con.executemany("INSERT INTO files VALUES (?, ?)", files)
        with clock.step("ingest"):
            con.execute(_ASTRO_INGEST)
        with clock.step("calibrate"):
            con.execute(_ASTRO_CALIBRATE)
        con.execute("DROP TABLE exposures")
        with clock.step("warp"):
            footprints = con.execute(
                "SELECT wcs, shape FROM calexps ORDER BY id"
            ).fetchall()
            skymap = k.sky_map(
                [(wcs, tuple(shape)) for wcs, shape in footprints], params["skymap"]
            )
            columns = _patch_udfs(con, skymap, params)
            con.execute(_ASTRO_OVERLAPS)
            con.execute(_ASTRO_PATCHES)
            con.execute(_ASTRO_WARP)
        con.execute("DROP TABLE calexps")
        with clock.step("coadd"):
            con.execute(_ASTRO_COADD)
        con.execute("DROP TABLE warps")
        with clock.step("detect"):
            con.execute(_ASTRO_DETECT)
            tables = _catalogs(con, columns)
        for patch, image in con.execute(
            "SELECT patch, coadd.image FROM coadds ORDER BY patch"
        ).fetchall():
            save_coadd(out, patch, _unpack(image))
        save_catalog(out, tables)
    return {"steps": clock.as_dict(), "engine": _engine(workers)}


def _catalogs(
    con: duckdb.DuckDBPyConnection,
    columns: Mapping[str, tuple[str, str, str | None, str | None]],
) -> list:
    """Per-patch astropy Tables from the ``sources`` table, as detect made them."""
    from astropy.table import Table

    names = ", ".join(SOURCE_COLUMNS)
    rows = con.execute(f"SELECT {names} FROM sources ORDER BY patch, id").fetchall()
    by_patch: dict[str, list[tuple]] = {}
    for row in rows:
        by_patch.setdefault(row[1], []).append(row)
    tables = []
    for patch_rows in by_patch.values():
        values = dict(zip(SOURCE_COLUMNS, zip(*patch_rows, strict=True), strict=True))
        table = Table()
        for name in SOURCE_COLUMNS:
            kind, dtype, unit, description = columns[name]
            # Strings take the width of the longest; NULL floats were NaN.
            table[name] = np.asarray(values[name], dtype=str if kind == "U" else dtype)
            table[name].unit = unit
            table[name].description = description
        tables.append(table)
    return tables
