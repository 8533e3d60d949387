"""The relational engine's astronomy plan (see :mod:`sciimg.bench._relational`).

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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sciimg.bench import _kernels as k
from sciimg.bench._outputs import StepClock, save_catalog, save_coadd
from sciimg.bench._relational import (
    _connect,
    _engine,
    _float,
    _pack,
    _udf,
    _unpack,
)
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
