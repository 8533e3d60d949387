"""What an engine writes, in one layout for all engines, and step timing.

Neuro: ``OUT/<subject>/mask.npy`` and ``fa.npy``. Astro: ``OUT/coadd/<patch>.npy``
(the coadd image) and ``OUT/catalog.parquet``. Every engine writes the same
layout, so that its outputs can be compared with the serial run's.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np


class StepClock:
    """Wall seconds per named step (summed over repeated entries)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def step(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}


def save_neuro(out: Path, subject: str, mask: np.ndarray, fa: np.ndarray) -> None:
    folder = Path(out) / subject
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "mask.npy", np.asarray(mask, dtype=bool))
    np.save(folder / "fa.npy", np.asarray(fa, dtype=np.float32))


def save_coadd(out: Path, patch: str, image: np.ndarray) -> None:
    folder = Path(out) / "coadd"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{patch}.npy", np.asarray(image, dtype=np.float32))


def save_catalog(out: Path, tables) -> int:
    """Merge per-patch catalogs (astropy Tables) into ``catalog.parquet``."""
    from astropy.table import Table, vstack

    tables = [t for t in tables if len(t)]
    table = vstack(tables, metadata_conflicts="silent") if tables else Table()
    Path(out).mkdir(parents=True, exist_ok=True)
    if len(table):
        table.sort(["patch", "y", "x"])
        table["id"] = np.arange(1, len(table) + 1)
    table.write(Path(out) / "catalog.parquet", format="parquet", overwrite=True)
    return len(table)
