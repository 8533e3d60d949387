"""An item's stores as lazy writes, with each task attributed to its step."""

from __future__ import annotations

from dataclasses import replace

from sciimg.device import to_host
from sciimg.io import ZarrStoreWriter

__all__ = ["graph_keys", "store_images"]


def graph_keys(arrays) -> set:
    """Every task key of the graphs of ``arrays`` (dask collections)."""
    keys: set = set()
    for a in arrays:
        keys |= set(a.__dask_graph__().keys())
    return keys


def store_images(
    writer: ZarrStoreWriter, images, owners: dict, device: str = "cpu"
) -> list:
    """The lazy writes of ``images``, their tasks attributed to the ``write`` step.

    With ``device="gpu"`` the images come back to the host to be written. The
    unfinished store is removed if the writes cannot even be set up.
    """
    if device != "cpu":
        images = {
            name: replace(image, data=to_host(image.data, device))
            for name, image in images.items()
        }
    try:
        targets = writer.store_all(images)
    except BaseException:
        writer.abort()
        raise
    for key in graph_keys(targets):
        owners.setdefault(key, "write")
    return targets
