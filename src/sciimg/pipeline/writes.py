"""An item's stores as lazy writes, with each task attributed to its step."""

from __future__ import annotations

from sciimg.io import ZarrStoreWriter

__all__ = ["graph_keys", "store_images"]


def graph_keys(arrays) -> set:
    """Every task key of the graphs of ``arrays`` (dask collections)."""
    keys: set = set()
    for a in arrays:
        keys |= set(a.__dask_graph__().keys())
    return keys


def store_images(writer: ZarrStoreWriter, images, owners: dict) -> list:
    """The lazy writes of ``images``, their tasks attributed to the ``write`` step.

    The unfinished store is removed if the writes cannot even be set up.
    """
    try:
        targets = writer.store_all(images)
    except BaseException:
        writer.abort()
        raise
    for key in graph_keys(targets):
        owners.setdefault(key, "write")
    return targets
