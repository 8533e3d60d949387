"""The astronomy run's outputs: planes stored with their WCS, calibrated
exposures read back for co-addition, and the patches' catalogs merged."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sciimg.astro import WarpSource
from sciimg.io import (
    Image,
    open_zarr,
    read_catalog,
    remove_path,
    store_attrs,
    update_series,
    wcs_from_attrs,
    write_catalog,
)

__all__ = ["list_stores", "merge_catalogs", "open_calexp", "sky_image"]


def sky_image(data, wcs, source: str | None, attrs: dict | None = None) -> Image:
    """A (y, x) plane as an Image carrying its WCS."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    affine = np.eye(4)
    pc = wcs.wcs.get_pc() * wcs.wcs.get_cdelt()[:, None]
    affine[:2, :2] = pc
    affine[:2, 3] = -pc @ (np.asarray(wcs.wcs.crpix) - 1.0)
    scales = tuple(float(s) * 3600 for s in proj_plane_pixel_scales(wcs))
    header = {
        k: v for k, v in wcs.to_header().items() if k not in ("COMMENT", "HISTORY")
    }
    return Image(
        data,
        affine,
        ("y", "x"),
        scales,
        source=source,
        attrs={"wcs": header, "space_unit": "arcsecond", **(attrs or {})},
    )


def open_calexp(store: Path) -> WarpSource:
    import zarr

    # The planes go to the coadd as Zarr arrays (in (y, x) order, as stored), so
    # that each block task reads its own cutouts when it runs: no read runs ahead
    # of the blocks and piles up in memory.
    planes = {
        n: zarr.open_array(store / n / "0", mode="r")
        for n in ("image", "variance", "mask")
    }
    attrs = store_attrs(store)
    return WarpSource(
        planes["image"],
        planes["variance"],
        planes["mask"],
        wcs_from_attrs(open_zarr(store, "image").attrs),
        attrs.get("psf_fwhm"),
        attrs.get("exposure", store.name),
        attrs.get("mask_bits"),
    )


def list_stores(*roots: Path) -> None:
    """The collections list what they hold after this run's writes and removals."""
    for root in roots:
        update_series(root)


def merge_catalogs(output: Path, patches: list[str], summary: dict) -> None:
    """One catalog of all patches (each lists only its inner region's sources)."""
    from astropy.table import vstack

    tables = [read_catalog(output / "catalogs" / f"{p}.parquet") for p in patches]
    tables = [t for t in tables if len(t)]
    if not tables:
        summary["sources"] = 0
        # A merged catalog of an earlier run must not pass for this one's.
        remove_path(output / "catalog.parquet")
        remove_path(output / "catalog.fits")
        return
    table = vstack(tables, metadata_conflicts="silent")
    table["id"] = np.arange(1, len(table) + 1, dtype=np.int64)
    write_catalog(table, output / "catalog.parquet")
    write_catalog(table, output / "catalog.fits")
    summary["sources"] = len(table)
    summary["catalog"] = ["catalog.parquet", "catalog.fits"]
