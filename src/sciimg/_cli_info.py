"""``sciimg info``: what a file or store holds, as a person reads it.

Images get their shape, chunks and geometry; stores their images; collections
(``coadd.zarr``, ``calexp.zarr``) a line per member; catalogs their columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sciimg._console import fail as _fail
from sciimg._console import out
from sciimg.errors import InputError

if TYPE_CHECKING:
    from sciimg.io import Image

# numpy and sciimg.io are imported where used: --help and --version stay quick.

_DEG_TO_ARCSEC = 3600.0


def _say(text: str) -> None:
    out.print(text, highlight=False, soft_wrap=True)


def _number(value: float, width: int = 12) -> str:
    # Rounding noise of a header's quaternions (1e-19 mm) is zero to a reader.
    value = 0.0 if abs(value) < 1e-9 else float(value)
    return f"{value:>{width}.6g}"


def _matrix(rows) -> str:
    return "\n".join(" ".join(_number(v) for v in row) for row in rows)


def _key_value_table(title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    return table


def _geometry_rows(table: Table, img: Image) -> None:
    from sciimg.io import describe_wcs

    sky = describe_wcs(img)
    celestial = sky is not None or img.attrs.get("space_unit") == "arcsecond"
    if celestial:
        # A sky image's affine is in degrees, where 0.5" is 0.000139: the
        # pixel-to-sky matrix reads better in arcseconds.
        linear = img.affine[:2, :2] * _DEG_TO_ARCSEC
        table.add_row("pixel size (arcsec)", ", ".join(f"{z:.6g}" for z in img.zooms))
        table.add_row("affine linear part (arcsec)", _matrix(linear))
    else:
        table.add_row("voxel size (mm)", ", ".join(f"{z:.6g}" for z in img.zooms))
        table.add_row("affine (mm)", _matrix(img.affine))
    if sky is not None:
        table.add_row("wcs", sky)


def _image_table(name: str, img: Image) -> Table:
    table = _key_value_table(name)
    chunk = tuple(c[0] for c in img.data.chunks)
    table.add_row("shape", f"{img.shape}  ({', '.join(img.dims)})")
    table.add_row("dtype", str(img.dtype))
    table.add_row("chunks", f"{chunk}  ({img.data.npartitions} chunks)")
    _geometry_rows(table, img)
    if img.gtab is not None:
        import numpy as np

        shells = ", ".join(f"{b:g}" for b in np.unique(np.round(img.gtab.bvals, -2)))
        table.add_row(
            "gradients",
            f"{len(img.gtab.bvals)} volumes, "
            f"{int(img.gtab.b0s_mask.sum())} b0; shells {shells}",
        )
    if img.source:
        table.add_row("source", img.source)
    if "hdu" in img.attrs:  # read from FITS: say which HDU, and what it shows
        table.add_row("hdu", str(img.attrs["hdu"]))
        header = img.attrs.get("header") or {}
        seen = [
            f"{key} {header[key]}"
            for key in ("OBJECT", "FILTER", "EXPTIME", "MJD-OBS", "DATE-OBS")
            if header.get(key) not in (None, "")
        ]
        if seen:
            table.add_row("observation", ", ".join(seen))
    return table


def _about(attrs: dict[str, Any], *, names: bool = True) -> list[str]:
    """What a store's attributes say about it, in a few words each."""
    said = [f"{attrs['pipeline']} pipeline"] if "pipeline" in attrs else []
    if names:  # not in a collection's listing, where the member's name says it
        said += [
            f"{k} {attrs[k]}" for k in ("subject", "patch", "exposure") if k in attrs
        ]
    if isinstance(attrs.get("sources"), int):
        said.append(_plural(attrs["sources"], "source"))
    if isinstance(attrs.get("exposures"), list):
        said.append(_plural(len(attrs["exposures"]), "exposure"))
    if isinstance(attrs.get("psf_fwhm"), int | float):
        said.append(f"PSF FWHM {attrs['psf_fwhm']:.3g} px")
    if attrs.get("source"):
        said.append(f"from {attrs['source']}")
    return said


def _store_header(path: Path, kind: str, attrs: dict[str, Any], more=()) -> None:
    version = f"sciimg {attrs['version']}" if "version" in attrs else None
    words = [w for w in (kind, version, *more, *_about(attrs)) if w]
    _say(f"[bold]{path}[/bold]: {', '.join(words)}")


def _shape(img: Image) -> str:
    """Sizes x first, as FITS tools and NIfTI headers give them (width x
    height), whatever the array's order; then the other axes."""
    space = [img.dims.index(d) for d in ("x", "y", "z") if d in img.dims]
    order = space + [i for i in range(img.ndim) if i not in space]
    return " x ".join(str(img.shape[i]) for i in order)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _columns(rows: list[list[str]]) -> None:
    """Rows as aligned text lines, never wrapped: one line per member."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        _say("  " + "  ".join([*cells, row[-1]]).rstrip())


def _show_collection(path: Path, members: dict[str, str]) -> None:
    from sciimg.io import image_names, open_zarr, store_attrs

    stores = sorted(n for n, kind in members.items() if kind == "store")
    images = sorted(n for n, kind in members.items() if kind == "image")
    more = [_plural(len(stores), "store")] + (
        [_plural(len(images), "image")] * bool(images)
    )
    _store_header(path, "Zarr collection", store_attrs(path), more)
    rows = [["member", "shape", "images", "about"]]
    sources = counted = 0
    for name in stores:
        names = sorted(image_names(path / name))
        img = open_zarr(path / name, "image" if "image" in names else names[0])
        attrs = store_attrs(path / name)
        if isinstance(attrs.get("sources"), int):
            sources, counted = sources + attrs["sources"], counted + 1
        about = ", ".join(_about(attrs, names=False))
        rows.append([name, _shape(img), ", ".join(names), about])
    for name in images:
        img = open_zarr(path, name)
        rows.append([name, _shape(img), "(an image)", f"{img.dtype}"])
    _columns(rows)
    if counted:
        _say(f"{_plural(sources, 'source')} in {_plural(counted, 'member')}")
    _say(f"one member in full: sciimg info {path / (stores + images)[0]}")


def _show_store(path: Path) -> None:
    from sciimg.io import open_zarr, store_attrs, store_members

    members = store_members(path)
    if any(kind == "store" for kind in members.values()):
        _show_collection(path, members)
        return
    if members:
        more = [_plural(len(members), "image")]
        _store_header(path, "Zarr store", store_attrs(path), more)
        for name in sorted(members):
            out.print(_image_table(name, open_zarr(path, name)))
        return
    try:
        img = open_zarr(path)
    except InputError as exc:
        if store_attrs(path):  # a store sciimg made, whose items all failed
            _store_header(path, "Zarr store", store_attrs(path), ["no images"])
            return
        raise InputError(path, "is a Zarr group with no sciimg images") from exc
    _say(f"[bold]{path}[/bold]: Zarr image group")
    out.print(_image_table(path.name, img))


def _column_range(col) -> str:
    import numpy as np

    if col.dtype.kind in "US":
        return f"{len(np.unique(np.asarray(col)))} distinct"
    if col.dtype.kind not in "iuf":
        return ""
    values = np.ma.masked_invalid(np.ma.asarray(col, dtype=np.float64)).compressed()
    if not values.size:
        return "no values"
    return f"{values.min():.6g} to {values.max():.6g}"


def _show_catalog(path: Path, kind: str) -> None:
    import numpy as np

    from sciimg.io import read_catalog

    table = read_catalog(path)
    name = {"parquet": "Parquet", "fits": "FITS"}[kind]
    _say(
        f"[bold]{path}[/bold]: {name} catalog, {len(table)} rows, "
        f"{len(table.colnames)} columns"
    )
    listing = Table(title_justify="left")
    described = any(table[c].description for c in table.colnames)
    for col in ("column", "dtype", "unit", "range", "description")[: 4 + described]:
        listing.add_column(col, overflow="fold")
    for cname in table.colnames:
        col = table[cname]
        dtype = "string" if col.dtype.kind in "US" else col.dtype.name
        row = [cname, dtype, str(col.unit or ""), _column_range(col)]
        listing.add_row(*row, *([col.description or ""] if described else []))
    out.print(listing)
    names = set(table.colnames)
    if {"ra", "dec"} <= names and len(table):
        ra = np.asarray(table["ra"], dtype=np.float64)
        dec = np.asarray(table["dec"], dtype=np.float64)
        _say(
            f"sky: RA {np.nanmin(ra):.6f} to {np.nanmax(ra):.6f}, "
            f"Dec {np.nanmin(dec):+.6f} to {np.nanmax(dec):+.6f} deg"
        )
    if "flags" in names and table["flags"].dtype.kind in "iu" and len(table):
        flagged = int(np.count_nonzero(np.asarray(table["flags"])))
        _say(f"flags: {flagged} of {len(table)} rows flagged")
    if table.meta:
        shown = [f"{k}={v!s:.40}" for k, v in list(table.meta.items())[:6]]
        _say(f"metadata: {', '.join(shown)}")


def _show_fits(path: Path) -> None:
    from sciimg.io import open_fits_images

    found = open_fits_images(path)
    _say(f"[bold]{path}[/bold]: FITS, {len(found)} image HDU(s)")
    for name, img in found.items():
        title = f"{name} ({path.name})" if len(found) > 1 else str(path)
        out.print(_image_table(title, img))


def info(
    path: Annotated[Path, typer.Argument(help="A file, Zarr store or catalog.")],
) -> None:
    """Describe an image file, a Zarr store or collection, or a catalog.

    Images: shape, dtype, chunks, geometry. A collection (coadd.zarr,
    calexp.zarr) lists its members; name one (coadd.zarr/patch-0-0) for its
    images. Catalogs (.parquet, FITS tables): rows and columns with units.
    """
    from sciimg.io import catalog_format, is_fits, is_zarr_store, open_image

    try:
        if is_zarr_store(path):
            _show_store(path)
        elif kind := catalog_format(path):
            _show_catalog(path, kind)
        elif is_fits(path):
            _show_fits(path)
        else:
            out.print(_image_table(str(path), open_image(path)))
    except InputError as exc:
        _fail(str(exc))
