"""The WCS of FITS images: read from headers, kept as JSON keywords in an
image's attributes (and so in Zarr stores), rebuilt, and described."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sciimg.errors import InputError

if TYPE_CHECKING:
    from astropy.io.fits import HDUList, Header
    from astropy.wcs import WCS

    from sciimg.io._image import Image

__all__ = ["describe_wcs", "wcs_from_attrs"]

_WCS_KEY = re.compile(r"(CTYPE|CRPIX|CRVAL|CDELT|CD\d+_\d+|PC\d+_\d+)\d*$")
_HIDDEN = ("", "COMMENT", "HISTORY")


def _read_wcs(
    path: Path, header: Header, hdul: HDUList | None, what: str
) -> WCS | None:
    """The header's WCS, or None when it has no WCS keywords at all."""
    from astropy.utils.exceptions import AstropyWarning
    from astropy.wcs import WCS

    if not any(_WCS_KEY.match(k) for k in header):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # astropy's own fixes
        try:
            return WCS(header, fobj=hdul)
        except (ValueError, KeyError, TypeError, MemoryError) as exc:
            raise InputError(path, f"{what} has an unreadable WCS ({exc})") from exc


def _json_scalar(value: Any) -> Any:
    from astropy.io.fits.card import Undefined

    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, Undefined):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else str(value)  # JSON has no NaN
    return str(value)  # complex values


def _header_dict(header: Header) -> dict[str, Any]:
    """Keyword → value (JSON scalars), without COMMENT/HISTORY cards."""
    from astropy.io.fits.verify import VerifyError

    out = {}
    for card in header.cards:
        if card.keyword in _HIDDEN:
            continue
        try:
            out[card.keyword] = _json_scalar(card.value)
        except (VerifyError, ValueError):
            continue  # a card astropy cannot parse even leniently
    return out


def _wcs_dict(wcs: WCS) -> dict[str, Any]:
    from astropy.wcs.wcs import WCSHDO_P17, WCSHDO_SIP, WCSHDO_all

    # 17 significant digits (astropy's default writes 14) so that the WCS rebuilt
    # from these keywords is the very same; WCSHDO_SIP keeps SIP distortions.
    header = wcs.to_header(relax=WCSHDO_all | WCSHDO_P17 | WCSHDO_SIP)
    return _header_dict(header)


def _geometry(wcs: WCS | None, ndim: int) -> tuple[np.ndarray, tuple[float, ...]]:
    """Affine (0-based pixel → intermediate world coordinates) and zooms (arcsec)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    nspace = min(ndim, 3)
    affine, zooms = np.eye(4), [1.0] * nspace
    if wcs is None:
        return affine, tuple(zooms)
    n = min(nspace, wcs.naxis)
    scale = np.asarray(wcs.pixel_scale_matrix, dtype=np.float64)[:n, :n]
    affine[:n, :n] = scale
    # CRPIX counts from 1; Image indices count from 0.
    affine[:n, 3] = -scale @ (np.asarray(wcs.wcs.crpix[:n], dtype=np.float64) - 1)
    if wcs.has_celestial:
        scales = proj_plane_pixel_scales(wcs)
        for axis in (wcs.wcs.lng, wcs.wcs.lat):
            if axis < nspace:
                zooms[axis] = float(scales[axis]) * 3600.0
    return affine, tuple(zooms)


def wcs_from_attrs(attrs: Mapping[str, Any]) -> WCS:
    """The WCS of an image opened from FITS, rebuilt from its ``attrs``.

    Works as well after a trip through a Zarr store, whose attributes keep the
    WCS keywords (at full precision, so the WCS is the same).

    Raises
    ------
    ValueError
        The attributes hold no WCS (the image had none).

    Examples
    --------
    >>> import astropy, os
    >>> data = os.path.join(os.path.dirname(astropy.__file__), "io", "fits", "hdu",
    ...                     "compressed", "tests", "data")
    >>> from sciimg.io import open_fits
    >>> wcs = wcs_from_attrs(open_fits(os.path.join(data, "m13.fits")).attrs)
    >>> list(wcs.wcs.ctype)
    ['RA---TAN', 'DEC--TAN']
    """
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning
    from astropy.wcs import WCS

    keywords = attrs.get("wcs") or {}
    if not keywords:
        msg = "these attrs hold no WCS (the image had none, or was not FITS)"
        raise ValueError(msg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        return WCS(fits.Header(dict(keywords)))


def describe_wcs(image: Image) -> str | None:
    """A one-line summary of an image's celestial WCS, or None without one.

    Examples
    --------
    >>> import astropy, os
    >>> data = os.path.join(os.path.dirname(astropy.__file__), "io", "fits", "hdu",
    ...                     "compressed", "tests", "data")
    >>> from sciimg.io import open_fits
    >>> describe_wcs(open_fits(os.path.join(data, "m13.fits")))
    'RA---TAN DEC--TAN (FK5), centre 250.422600 +36.460200 deg, 0.99972 x ...'
    """
    try:
        wcs = wcs_from_attrs(image.attrs)
    except ValueError:
        return None
    if not wcs.has_celestial or image.data.ndim < 2:
        return None
    cel = wcs.celestial
    nx, ny = (image.shape[image.dims.index(axis)] for axis in ("x", "y"))
    ra, dec = (float(v) for v in cel.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
    sx, sy = image.zooms[:2]
    frame = cel.wcs.radesys or "ICRS"
    return (
        f"{' '.join(cel.wcs.ctype)} ({frame}), centre {ra:.6f} {dec:+.6f} deg, "
        f"{sx:.5g} x {sy:.5g} arcsec/pixel, "
        f"field {nx * sx / 60:.2f} x {ny * sy / 60:.2f} arcmin"
    )
