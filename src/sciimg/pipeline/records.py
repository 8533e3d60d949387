"""Commit records: an item is complete only when all its outputs are.

An item (a subject, an exposure, a patch) owns several outputs: its Zarr store,
and for some its NIfTI exports, its QC picture, its piece of the catalog. Each
is written under a temporary name and renamed into place, but together they
are not one rename. So every item has a record, ``<output>/.sciimg/items/
<kind>/<id>.json``, written (atomically) after all its outputs and removed
before any of them is rewritten. It lists the outputs and the fingerprint of
the config and input files that made them. An item is skipped by a rerun only
when its record is there, its fingerprint is current, and every output it
lists exists; otherwise the item is computed again, outputs and all.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sciimg.errors import OutputError
from sciimg.io import atomic_path, remove_path

__all__ = [
    "drop_record",
    "inside",
    "read_record",
    "sweep_temporaries",
    "write_record",
]


def inside(output: Path, *parts: str) -> Path:
    """``output / parts``, refused when it would lie outside ``output``.

    Item ids and result names become file names; one that climbs out of the
    output folder (``..``, an absolute path) must not write there.

    Examples
    --------
    >>> inside(Path("/out"), "sub-01", "fa.nii.gz")
    PosixPath('/out/sub-01/fa.nii.gz')
    >>> inside(Path("/out"), "../etc")
    Traceback (most recent call last):
    ...
    sciimg.errors.OutputError: ../etc: would be written outside /out
    """
    path = Path(os.path.normpath(Path(output, *parts)))
    if not path.is_relative_to(os.path.normpath(output)) or path == Path(output):
        raise OutputError("/".join(parts), f"would be written outside {output}")
    return path


def _record_path(output: Path, kind: str, item: str) -> Path:
    return inside(output, ".sciimg", "items", kind, f"{item}.json")


def read_record(
    output: Path,
    kind: str,
    item: str,
    fingerprint: str,
    required: list[str] | None = None,
) -> dict[str, Any] | None:
    """The record of a complete, current item, or None.

    Complete and current: the record exists, names this ``fingerprint``, and
    every output it lists exists, or of those only the ``required`` ones when
    the caller can remake the others from them (a NIfTI export from its store).
    """
    try:
        record = json.loads(_record_path(output, kind, item).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != fingerprint:
        return None
    outputs = record.get("outputs") or []
    needed = outputs if required is None else [o for o in outputs if o in required]
    if not all((output / o).exists() for o in needed):
        return None
    return record


def write_record(
    output: Path,
    kind: str,
    item: str,
    fingerprint: str,
    outputs: list[str],
    **extra: Any,
) -> None:
    """Say that ``item`` is complete: written last, after all its ``outputs``
    (paths relative to ``output``)."""
    record = {
        "kind": kind,
        "id": item,
        "fingerprint": fingerprint,
        "outputs": sorted(set(outputs)),
        "committed": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
    path = _record_path(output, kind, item)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")


def drop_record(output: Path, kind: str, item: str) -> None:
    """Say that ``item`` is no longer complete: called before any of its
    outputs is rewritten or removed."""
    with contextlib.suppress(FileNotFoundError):
        _record_path(output, kind, item).unlink()


def _is_store(path: Path) -> bool:
    """A Zarr group of images, not a group of stores: nothing a run leaves
    half-written lies inside it (stores are renamed into place whole)."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    sciimg = (meta.get("attributes") or {}).get("sciimg") or {}
    return not sciimg.get("collection")


def sweep_temporaries(output: Path, depth: int = 4) -> list[Path]:
    """Remove what an interrupted run left under temporary names (``.<name>.tmp-*``)
    in ``output`` and the folders below it, never inside a finished store.

    Call it only while holding the output's lock: the temporaries of a run that
    is still going look the same.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(output).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(".") and ".tmp-" in entry.name:
            remove_path(entry)
            removed.append(entry)
        elif (
            depth > 1
            and entry.is_dir()
            and not entry.is_symlink()
            and not _is_store(entry)
        ):
            removed += sweep_temporaries(entry, depth - 1)
    return removed
