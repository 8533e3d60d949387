"""Collections: Zarr groups that hold sciimg stores (``calexp.zarr``), marked as
NGFF collections that list every image of their stores."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sciimg.io._ngff import collection_attrs, is_collection, is_image, series_attrs
from sciimg.io._zarr import SERIES_GROUP

__all__ = ["ensure_collection", "update_series"]


def ensure_collection(path: str | Path, attrs: Mapping[str, Any] | None = None) -> Path:
    """Open or create a group that holds stores, marked as a collection of images.

    For groups such as ``calexp.zarr``, whose members are sciimg stores made one
    by one. ``attrs`` are merged into the group's ``sciimg`` attributes; its list
    of images is written by :func:`update_series`.

    Examples
    --------
    >>> import dask.array as da, numpy as np, tempfile, os
    >>> root = ensure_collection(os.path.join(tempfile.mkdtemp(), "c.zarr"))
    >>> from sciimg.io import Image, write_zarr
    >>> img = Image(da.ones((4, 4), dtype="f4"), np.eye(4), ("x", "y"), (1.0, 1.0))
    >>> _ = write_zarr(root / "one", {"ones": img})
    >>> update_series(root)
    ['one/ones']
    """
    import zarr

    path = Path(path)
    group = zarr.open_group(path, mode="a", zarr_format=3)
    sciimg = {
        **dict(group.attrs.get("sciimg") or {}),
        **dict(attrs or {}),
        "collection": True,  # a group of stores, not a store of images
    }
    group.attrs.update({"ome": collection_attrs(), "sciimg": sciimg})
    if SERIES_GROUP not in group:
        group.create_group(SERIES_GROUP).attrs["ome"] = series_attrs([])
    return path


def update_series(path: str | Path) -> list[str]:
    """List every image of a collection (its stores' images too) in its ``OME`` group.

    Returns the paths written, relative to ``path``, in name order.

    Examples
    --------
    See :func:`ensure_collection`.
    """
    import zarr

    group = zarr.open_group(Path(path), mode="a", zarr_format=3)
    series: list[str] = []
    for name, child in sorted(group.groups()):
        # Hidden names are stores still being written.
        if name == SERIES_GROUP or name.startswith("."):
            continue
        if is_image(child.attrs):
            series.append(name)
        elif is_collection(child.attrs) and SERIES_GROUP in child:
            inner = child[SERIES_GROUP].attrs.get("ome") or {}
            series += [f"{name}/{s}" for s in inner.get("series") or []]
    group.require_group(SERIES_GROUP).attrs["ome"] = series_attrs(series)
    return series
