"""Does an engine's output agree with the serial run's?

Neuro: the brain masks must be identical and FA equal within ``FA_TOL`` inside
them. Astro: every coadd equal within ``COADD_RTOL`` of the image's spread
where both have data, with the same pixels empty, and the catalogs' sources
matched one to one within ``MATCH_PX`` pixels and ``FLUX_RTOL`` in flux.

The tolerances allow for one real difference: sciimg's Dask coadd warps each
block of sky from a cutout (the warp and detection of the others are whole-patch),
which moves bicubic resampling by rounding only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FA_TOL = 1e-4
COADD_RTOL = 1e-4
MATCH_PX = 0.01
FLUX_RTOL = 1e-4


def compare_neuro(reference: Path, other: Path) -> dict[str, Any]:
    """Agreement of masks and FA maps, subject by subject."""
    problems: list[str] = []
    worst = 0.0
    subjects = sorted(p.name for p in Path(reference).iterdir() if p.is_dir())
    for s in subjects:
        ref, got = Path(reference) / s, Path(other) / s
        if not (got / "fa.npy").exists():
            problems.append(f"{s}: no output")
            continue
        m_ref, m_got = np.load(ref / "mask.npy"), np.load(got / "mask.npy")
        if m_ref.shape != m_got.shape or (m_ref != m_got).any():
            n = int((m_ref != m_got).sum())
            problems.append(f"{s}: masks differ in {n} voxels")
            continue
        diff = np.abs(np.load(ref / "fa.npy") - np.load(got / "fa.npy"))[m_ref]
        worst = max(worst, float(diff.max(initial=0.0)))
    if worst > FA_TOL:
        problems.append(f"FA differs by up to {worst:.2g} (tolerance {FA_TOL:g})")
    return {"agree": not problems, "problems": problems, "max_fa_diff": worst}


def compare_astro(reference: Path, other: Path) -> dict[str, Any]:
    """Agreement of coadd images and catalogs."""
    import pandas as pd

    problems: list[str] = []
    worst = 0.0
    patches = sorted(p.stem for p in (Path(reference) / "coadd").glob("*.npy"))
    for pid in patches:
        path = Path(other) / "coadd" / f"{pid}.npy"
        if not path.exists():
            problems.append(f"{pid}: no coadd")
            continue
        ref, got = np.load(Path(reference) / "coadd" / f"{pid}.npy"), np.load(path)
        if ref.shape != got.shape or (np.isnan(ref) != np.isnan(got)).any():
            problems.append(f"{pid}: coadd pixels with data differ")
            continue
        both = np.isfinite(ref)
        scale = float(np.std(ref[both])) if both.any() else 1.0
        worst = max(worst, float(np.abs(ref - got)[both].max(initial=0.0)) / scale)
    if worst > COADD_RTOL:
        problems.append(f"coadds differ by up to {worst:.2g} of the image's spread")
    cat_ref = pd.read_parquet(Path(reference) / "catalog.parquet")
    path = Path(other) / "catalog.parquet"
    cat = pd.read_parquet(path) if path.exists() else None
    matched = 0
    if cat is None:
        problems.append("no catalog")
    elif len(cat) != len(cat_ref):
        problems.append(f"{len(cat)} sources against {len(cat_ref)}")
    elif len(cat):
        matched = _matched(cat_ref, cat)
        if matched != len(cat_ref):
            problems.append(f"{len(cat_ref) - matched} sources differ")
    return {
        "agree": not problems,
        "problems": problems,
        "max_coadd_diff": worst,
        "sources": len(cat_ref),
        "matched": matched,
    }


def _matched(ref, got) -> int:
    """Sources of ``ref`` with a twin in ``got``: same patch, position and flux."""
    from scipy.spatial import cKDTree

    n = 0
    for patch, a in ref.groupby("patch"):
        b = got[got["patch"] == patch]
        if not len(b):
            continue
        dist, idx = cKDTree(b[["x", "y"]].to_numpy()).query(a[["x", "y"]].to_numpy())
        flux_a = a["flux"].to_numpy()
        flux_b = b["flux"].to_numpy()[idx]
        ok = (dist <= MATCH_PX) & np.isclose(flux_b, flux_a, rtol=FLUX_RTOL)
        n += int(ok.sum())
    return n
