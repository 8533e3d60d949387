"""Helpers for the tests of the astronomy runner on a real LocalCluster: the
config of a run, what a run reports and leaves on disk, and damaged exposures.

A tiny survey (3 visits of 2 CCDs, 128² each) on two sky patches keeps every run
to a few seconds. The PSF FWHM is read from the synthetic truth keyword, since a
128² CCD holds too few bright stars to measure it.
"""

import re
import shutil
import sys

import numpy as np
from astropy.io import fits
from astropy.table import Table

from sciimg.io import store_attrs
from sciimg.pipeline import load_config

STEPS = {
    "calibrate": {"psf_fwhm_key": "PSFFWHM"},
    "skymap": {"patch_size": 150, "border": 15},
    "detect": {"qc": False},  # QC pictures only where they are checked
}
QC = {"qc": True}
EXPOSURES = [f"visit-{v}_ccd-{c}" for v in range(3) for c in range(2)]
BAD = "visit-1_ccd-0"  # lies on both patches; each keeps other exposures
BAD_FILE = "visit-1/ccd-0.fits"
SCIIMG = [sys.executable, "-m", "sciimg"]


def quiet(message):
    pass


def _copy(survey, dest):
    shutil.copytree(survey, dest, ignore=shutil.ignore_patterns("truth"))
    return dest


def _raw(data, out, **steps):
    return {
        "pipeline": "astro",
        "input": {"path": str(data)},
        "output": str(out),
        "steps": {**STEPS, **steps},
    }


def _config(data, out, **steps):
    return load_config(_raw(data, out, **steps))


def _statuses(report, kind):
    return {s.id: s.status for s in report.subjects if s.kind == kind}


def _patches(out):
    """Patch id -> store attrs of every committed coadd."""
    root = out / "coadd.zarr"
    return {
        p.name: store_attrs(p)
        for p in sorted(root.iterdir())
        if p.is_dir() and not p.name.startswith(".") and p.name != "OME"
    }


def _temporaries(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if ".tmp-" in p.name)


def _catalog(out):
    return Table.read(out / "catalog.parquet").to_pandas()


# ---- damage done to one exposure file ---------------------------------------------


def _truncate(path):
    with fits.open(path) as hdul:
        info = hdul.fileinfo(hdul.index_of("IMAGE"))
    cut = info["datLoc"] + info["datSpan"] // 2  # in the middle of the pixels
    path.write_bytes(path.read_bytes()[:cut])


def _drop_variance(path):
    with fits.open(path, memmap=False) as hdul:
        kept = fits.HDUList([h.copy() for h in hdul if h.name != "VARIANCE"])
    kept.writeto(path, overwrite=True)


_WCS_KEYS = re.compile(
    r"(WCSAXES|CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CD\d_\d|PC\d_\d|RADESYS|EQUINOX)$"
)


def _strip_wcs(path):
    with fits.open(path, memmap=False) as hdul:
        header = hdul["IMAGE"].header
        for key in [k for k in header if _WCS_KEYS.match(k)]:
            del header[key]
        hdul.writeto(path, overwrite=True)


def _all_nan(path):
    with fits.open(path, memmap=False) as hdul:
        hdul["IMAGE"].data[:] = np.nan
        hdul.writeto(path, overwrite=True)
