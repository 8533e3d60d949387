"""Scoring an astronomy run against the synthetic survey's truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sciimg.astro import COADD_BITS

FWHM_PER_SIGMA = 2.3548


@dataclass
class Score:
    completeness: float  # of isolated truth sources with expected S/N >= 25
    n_complete: int
    purity: float  # of detections with S/N >= 10
    n_pure: int
    flux_ratio: float  # median detected / true flux, isolated S/N >= 25
    noise_ratio: float  # blank-sky std / sqrt(variance plane)
    missed: list
    spurious: list


def _sky_offsets(ra, dec, ra0, dec0):
    """Small-angle offsets in arcsec (fine over a few arcmin)."""
    dx = (np.asarray(ra)[:, None] - np.asarray(ra0)[None]) * np.cos(
        np.radians(dec0[None])
    )
    dy = np.asarray(dec)[:, None] - np.asarray(dec0)[None]
    return np.hypot(dx, dy) * 3600


def score(output: Path, survey: Path) -> Score:
    import pandas as pd
    from astropy.table import Table

    from sciimg.io import open_zarr, store_attrs

    truth = pd.read_parquet(survey / "truth" / "catalog.parquet")
    visits = pd.read_parquet(survey / "truth" / "exposures.parquet")
    cat = Table.read(output / "catalog.parquet").to_pandas()
    # Per-visit calibrated sky variance per pixel (before any smoothing).
    v = visits.groupby("visit").first()
    calib = 10 ** (0.4 * (27.0 - v["magzero"]))
    sky_var = (
        (v["sky"] / v["gain"] + (v["read_noise"] / v["gain"]) ** 2) * calib**2
    ).to_numpy()
    mean_var = float(sky_var.mean())

    rows, blank = [], []
    coadd = output / "coadd.zarr"
    for group in sorted(
        p
        for p in coadd.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != "OME"
    ):
        attrs = store_attrs(group)
        from astropy.io.fits import Header
        from astropy.wcs import WCS

        wcs = WCS(Header.fromstring(attrs["wcs_header"]))
        scale_arcsec = (
            abs(wcs.wcs.cd[0, 0]) * 3600
            if wcs.wcs.has_cd()
            else abs(wcs.wcs.cdelt[0]) * 3600
        )
        image = open_zarr(group, "image").data.compute()
        var = open_zarr(group, "variance").data.compute()
        depth = open_zarr(group, "depth").data.compute()
        mask = open_zarr(group, "mask").data.compute()
        y0, y1, x0, x1 = attrs["inner"]
        sigma_t = attrs["psf_fwhm"] / FWHM_PER_SIGMA
        x, y = wcs.world_to_pixel_values(truth["ra"], truth["dec"])
        xi, yi = np.round(x).astype(int), np.round(y).astype(int)
        inner = (x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5)
        for k in np.flatnonzero(inner):
            d = int(depth[yi[k], xi[k]])
            gal = truth["kind"].iloc[k] == "galaxy"
            sa = truth["sigma_major"].iloc[k] / scale_arcsec if gal else 0.0
            sb = truth["sigma_minor"].iloc[k] / scale_arcsec if gal else 0.0
            area = 4 * np.pi * np.sqrt((sigma_t**2 + sa**2) * (sigma_t**2 + sb**2))
            snr = (
                truth["flux"].iloc[k] / np.sqrt(area * mean_var / max(d, 1))
                if d
                else 0.0
            )
            near = mask[max(yi[k] - 2, 0) : yi[k] + 3, max(xi[k] - 2, 0) : xi[k] + 3]
            sat = bool((near & (1 << COADD_BITS["SAT"])).any())
            rows.append((truth["id"].iloc[k], snr, d, sat, group.name))
        # Blank sky: full depth, no flags, far from every source bright enough
        # to matter.
        yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
        far = np.ones(image.shape, bool)
        bright = truth["flux"] > 0.3 * np.sqrt(mean_var)
        for px, py in zip(x[bright], y[bright], strict=True):
            if -30 < px < image.shape[1] + 30 and -30 < py < image.shape[0] + 30:
                far &= (xx - px) ** 2 + (yy - py) ** 2 > (6 * sigma_t + 8) ** 2
        ok = far & (depth == depth.max()) & (mask == 0) & np.isfinite(image)
        ok[:y0, :] = ok[y1:, :] = False
        ok[:, :x0] = ok[:, x1:] = False
        blank.append((image[ok], var[ok]))
    info = pd.DataFrame(rows, columns=["id", "snr", "depth", "sat", "patch"]).set_index(
        "id"
    )
    truth = truth.set_index("id")
    # Isolated: no other source brighter than a tenth of it within 5 arcsec.
    d = _sky_offsets(
        truth["ra"], truth["dec"], truth["ra"].to_numpy(), truth["dec"].to_numpy()
    )
    np.fill_diagonal(d, np.inf)
    f = truth["flux"].to_numpy()
    isolated = ~((d < 5.0) & (f[None, :] > 0.1 * f[:, None])).any(1)
    truth["isolated"] = isolated
    sel = info[(info["snr"] >= 25) & ~info["sat"]].index
    sel = [i for i in sel if truth.loc[i, "isolated"]]
    dt = _sky_offsets(
        truth.loc[sel, "ra"],
        truth.loc[sel, "dec"],
        cat["ra"].to_numpy(),
        cat["dec"].to_numpy(),
    )
    found = dt.min(1) < 1.0 if len(cat) else np.zeros(len(sel), bool)
    ratios = (
        cat["flux"].to_numpy()[dt.argmin(1)[found]]
        / truth.loc[sel, "flux"].to_numpy()[found]
    )
    strong = cat[cat["snr"] >= 10]
    ds = _sky_offsets(
        strong["ra"], strong["dec"], truth["ra"].to_numpy(), truth["dec"].to_numpy()
    )
    real = ds.min(1) < 1.5
    pix = np.concatenate([b[0] for b in blank])
    var = np.concatenate([b[1] for b in blank])
    return Score(
        completeness=float(found.mean()),
        n_complete=len(sel),
        purity=float(real.mean()),
        n_pure=len(strong),
        flux_ratio=float(np.median(ratios)),
        noise_ratio=float(np.std(pix) / np.sqrt(np.median(var))),
        missed=[sel[i] for i in np.flatnonzero(~found)],
        spurious=strong[~real][["x", "y", "patch", "snr", "flux"]].to_dict("records"),
    )
