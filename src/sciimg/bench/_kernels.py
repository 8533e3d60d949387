"""The per-step kernels every benchmark engine runs: NumPy in, NumPy out.

They are the functions sciimg's own Dask steps apply to each chunk (which call
dipy, sep, astroscrappy and reproject), so that what a benchmark compares is the
engine that schedules them, not the science code. Each takes plain arrays and
picklable values, so Spark can ship it to its Python workers and DuckDB can call
it as a user-defined function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sciimg import kernels

# ----------------------------------------------------------------- neuroscience


def read_subject(dwi, bval=None, bvec=None) -> tuple[np.ndarray, ...]:
    """A subject's diffusion series ``(x, y, z, volume)``, b-values and b-vectors."""
    from sciimg.io import open_dwi

    image = open_dwi(dwi, bval=bval, bvec=bvec)
    data = np.asarray(image.data.compute(scheduler="sync"))
    return data, np.asarray(image.gtab.bvals), np.asarray(image.gtab.bvecs)


def gradient_table(bvals, bvecs):
    from sciimg.io import make_gtab

    return make_gtab(np.asarray(bvals), np.asarray(bvecs))


def b0_volumes(bvals, threshold: float) -> np.ndarray:
    """Indices of the b0 volumes."""
    from sciimg.neuro import b0_indices

    return b0_indices(bvals, threshold=threshold)


def _implementation(params: Mapping[str, Any]) -> str:
    return params.get("implementation", "fast")


def mean_b0(volumes: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of the b0 volumes, as :func:`sciimg.neuro.mean_b0` takes it."""
    return kernels.mean_b0(np.stack(volumes, axis=-1))


def brain_mask(b0: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """The ``median_otsu`` mask of the mean b0 volume."""
    return kernels.median_otsu(
        b0,
        median_radius=params["median_radius"],
        numpass=params["numpass"],
        dilate=params["dilate"],
        finalize_mask=params["finalize_mask"],
        implementation=_implementation(params),
    )


def denoise_volume(
    volume: np.ndarray, mask: np.ndarray, params: Mapping[str, Any]
) -> np.ndarray:
    """One volume: its noise sigma, then non-local means."""
    sigma = kernels.estimate_sigma(volume[..., None], n_coils=params["n_coils"])
    return kernels.nlmeans(
        volume,
        float(sigma[0]),
        mask,
        method=params["method"],
        patch_radius=params["patch_radius"],
        block_radius=params["block_radius"],
        rician=params["rician"],
        implementation=_implementation(params),
    )


def voxel_blocks(shape: Sequence[int], side: int) -> list[tuple[slice, ...]]:
    """Cubes of voxels (the last ones smaller) tiling a volume."""
    return [
        (slice(x, x + side), slice(y, y + side), slice(z, z + side))
        for x in range(0, shape[0], side)
        for y in range(0, shape[1], side)
        for z in range(0, shape[2], side)
    ]


def fit_fa(
    block: np.ndarray, mask: np.ndarray, bvals, bvecs, params: Mapping[str, Any]
) -> np.ndarray:
    """Tensor fit of a block of voxels; its FA, float32."""
    fit = kernels.fit_tensor(
        block,
        gradient_table(bvals, bvecs),
        mask,
        fit_method=params["fit_method"],
        implementation=_implementation(params),
    )
    return kernels.derive_tensor_map(fit, "fa").astype(np.float32)


# ------------------------------------------------------------------- astronomy


def _sync(value):
    import dask

    return dask.compute(value, scheduler="sync")[0]


def read_exposure(path, planes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An exposure's planes as arrays, with its header and mask bits."""
    from sciimg.io import open_exposure

    planes = dict(planes or {})
    exposure = open_exposure(path, **planes)
    return {
        "path": str(path),
        "image": _sync(exposure.image),
        "variance": None if exposure.variance is None else _sync(exposure.variance),
        "mask": None if exposure.mask is None else _sync(exposure.mask),
        "header": exposure.header.tostring(),
        "wcs": exposure.wcs.to_header_string(relax=True),
        "mask_bits": dict(exposure.mask_bits),
    }


def calibrate_exposure(exposure: Mapping[str, Any], params: Mapping[str, Any]):
    """Background, cosmic rays, zero point and PSF FWHM: sciimg's calibrate step."""
    from astropy.io.fits import Header

    from sciimg.io import Exposure
    from sciimg.pipeline.astro_steps import calibrate_step

    wcs = _wcs(exposure["wcs"])
    exp = Exposure(
        image=exposure["image"],
        variance=exposure["variance"],
        mask=exposure["mask"],
        wcs=wcs,
        header=Header.fromstring(exposure["header"]),
        mask_bits=exposure["mask_bits"],
        source=exposure["path"],
        id=Path(exposure["path"]).name,
    )
    out = _sync(calibrate_step(exp, **params))
    return {
        "image": out["image"],
        "variance": out["variance"],
        "mask": out["mask"],
        "psf_fwhm": float(out["psf_fwhm"]),
        "wcs": exposure["wcs"],
        "mask_bits": exposure["mask_bits"],
    }


def _wcs(header: str):
    from astropy.io.fits import Header
    from astropy.wcs import WCS

    return WCS(Header.fromstring(header))


def sky_map(footprints: Sequence[tuple[str, Sequence[int]]], params):
    """The sky map over ``(wcs header, shape)`` footprints."""
    from sciimg.pipeline.astro_steps import skymap_step

    return skymap_step([(_wcs(h), tuple(s)) for h, s in footprints], **params)


def patches_of(skymap, wcs_header: str, shape: Sequence[int]) -> list[str]:
    """Ids of the patches an exposure overlaps."""
    return [p.id for p in skymap.patches_for(_wcs(wcs_header), tuple(shape))]


def patch_members(
    skymap, footprints: Mapping[str, tuple[str, Sequence[int]]]
) -> dict[str, list[str]]:
    """Exposure ids per patch id, in id order, from ``{id: (wcs header, shape)}``."""
    members: dict[str, list[str]] = {}
    for eid in sorted(footprints):
        for pid in patches_of(skymap, *footprints[eid]):
            members.setdefault(pid, []).append(eid)
    return dict(sorted(members.items()))


def _warp_bits(mask_bits: Mapping[str, int] | None) -> dict[str, int]:
    from sciimg.astro import COADD_BITS, WARP_BAD, bitmask

    bits = {**COADD_BITS, **(mask_bits or {})}
    return {
        "bad": bitmask(WARP_BAD, bits),
        "sat": bitmask(["SAT"], bits),
        "no_data": bitmask(["NO_DATA"], bits),
        "clipped": bitmask(["CLIPPED"], bits),
    }


def warp_exposure(
    calexp: Mapping[str, Any],
    patch,
    target_fwhm: float | None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """A calibrated exposure warped onto a patch's grid, PSF-matched (float32).

    ``image`` and ``variance`` are NaN where the exposure is flagged or has no
    data; ``mask`` holds ``SAT`` where it saturated, as the co-add keeps it.
    """
    from sciimg.astro import footprint_box, psf_match_sigma

    wcs = _wcs(calexp["wcs"])
    shape = calexp["image"].shape
    bits = _warp_bits(calexp["mask_bits"])
    out = np.full((3, *patch.shape), np.nan, np.float32)
    out[2] = 0
    box = footprint_box(wcs, shape, patch.wcs, patch.shape)
    if box is not None:
        y0, y1, x0, x1 = box
        out[:, y0:y1, x0:x1] = kernels.warp(
            (calexp["image"], calexp["variance"], calexp["mask"]),
            wcs,
            shape,
            patch.wcs,
            box,
            sigma=psf_match_sigma(calexp["psf_fwhm"], target_fwhm),
            bits=(bits["bad"], bits["sat"], bits["no_data"]),
            implementation=_implementation(params or {}),
        )
    return {
        "image": out[0],
        "variance": out[1],
        "mask": np.where(out[2] != 0, bits["sat"], 0).astype(np.int32),
    }


def coadd_warps(
    warps: Sequence[Mapping[str, np.ndarray]],
    mask_bits: Mapping[str, int] | None,
    params: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """Clipped inverse-variance mean of a patch's warps: sciimg's ``coadd``."""
    bits = _warp_bits(mask_bits)
    saturated = np.zeros(warps[0]["mask"].shape, bool)
    for w in warps:
        saturated |= w["mask"] != 0
    out = kernels.coadd_stack(
        np.stack([w["image"] for w in warps]),
        np.stack([w["variance"] for w in warps]),
        saturated,
        sat=bits["sat"],
        no_data=bits["no_data"],
        clipped=bits["clipped"],
        nsigma=params["nsigma"],
        iterations=params["iterations"],
        clip=params["clip"],
        implementation=_implementation(params),
    )
    return {
        "image": out[0].astype(np.float32),
        "variance": out[1].astype(np.float32),
        "depth": out[2].astype(np.int16),
        "mask": out[3].astype(np.int32),
    }


def detect_sources(coadd: Mapping[str, np.ndarray], patch, params: Mapping[str, Any]):
    """Sources of one coadd (sep), inner region only: an astropy Table."""
    options = {k: v for k, v in params.items() if k not in ("qc", "implementation")}
    return kernels.detect_sources(
        np.asarray(coadd["image"]),
        np.asarray(coadd["variance"]),
        np.asarray(coadd["mask"]),
        wcs=patch.wcs,
        patch=patch,
        implementation=_implementation(params),
        **options,
    )


def target_fwhm(fwhms: Sequence[float | None], params: Mapping[str, Any]):
    """The PSF a patch's warps are matched to: configured, else the widest."""
    from sciimg.astro import target_psf_fwhm

    return target_psf_fwhm(fwhms, params.get("psf_fwhm"))


def patch_of(skymap, patch_id: str):
    """The patch ``patch-<column>-<row>`` of a sky map."""
    ix, iy = (int(v) for v in patch_id.split("-")[1:])
    return skymap.patch(iy, ix)
