"""A FITS header's keywords as plain metadata: what says something about the
exposure, not how the file is laid out or its WCS."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["fits_keywords"]

#: Keywords that describe the file's layout or its WCS, not the exposure.
_LAYOUT = re.compile(
    r"(COMMENT|HISTORY|SIMPLE|BITPIX|NAXIS\d*|EXTEND|XTENSION|PCOUNT|GCOUNT|"
    r"EXTNAME|EXTVER|CHECKSUM|DATASUM|BSCALE|BZERO|BUNIT|WCSAXES|WCSNAME|"
    r"CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|PV\d_\d+|"
    r"LONPOLE|LATPOLE|RADESYS|EQUINOX|[AB]P?_\d+_\d+|[AB]P?_ORDER|MP_\w+)"
)


def fits_keywords(*headers: Any) -> dict[str, Any]:
    """The scalar keywords of ``headers`` (later ones win), named as Python
    names: lower case, ``-`` as ``_`` (``MJD-OBS`` is ``mjd_obs``).

    Examples
    --------
    >>> from astropy.io import fits
    >>> h = fits.Header({"NAXIS": 2, "EXPTIME": 60.0, "FILTER": "g", "MJD-OBS": 6e4,
    ...                  "CRVAL1": 150.0})
    >>> fits_keywords(h)
    {'exptime': 60.0, 'filter': 'g', 'mjd_obs': 60000.0}
    """
    out: dict[str, Any] = {}
    for header in headers:
        for key, value in header.items():
            if key and not _LAYOUT.fullmatch(key) and _scalar(value):
                out[key.lower().replace("-", "_")] = value
    return out


def _scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | str)
