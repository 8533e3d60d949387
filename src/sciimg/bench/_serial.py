"""The serial engine: a plain loop in one process, the script a scientist writes.

It is also the reference the other engines' outputs are compared with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sciimg.bench import _kernels as k
from sciimg.bench._outputs import StepClock, save_catalog, save_coadd, save_neuro
from sciimg.bench._workloads import Workload

#: Voxels per side of the blocks the tensor fit works on.
FIT_BLOCK = 16


def run_neuro(workload: Workload, out: Path, params: dict[str, Any]) -> dict:
    from sciimg.io import discover_subjects

    clock = StepClock()
    for subject in discover_subjects(workload.data):
        with clock.step("ingest"):
            data, bvals, bvecs = k.read_subject(subject.dwi, subject.bval, subject.bvec)
        with clock.step("mask"):
            idx = k.b0_volumes(bvals, params["mask"]["b0_threshold"])
            b0 = k.mean_b0([data[..., i] for i in idx])
            mask = k.brain_mask(b0, params["mask"])
        with clock.step("denoise"):
            denoised = np.stack(
                [
                    k.denoise_volume(data[..., v], mask, params["denoise"])
                    for v in range(data.shape[3])
                ],
                axis=-1,
            )
        with clock.step("dti"):
            fa = np.zeros(data.shape[:3], np.float32)
            for box in k.voxel_blocks(data.shape[:3], FIT_BLOCK):
                fa[box] = k.fit_fa(
                    denoised[box], mask[box], bvals, bvecs, params["dti"]
                )
        save_neuro(out, subject.id, mask, fa)
    return {"steps": clock.as_dict()}


def run_astro(workload: Workload, out: Path, params: dict[str, Any]) -> dict:
    from sciimg.io import discover_exposures

    clock = StepClock()
    calexps = {}
    for eid, path in discover_exposures(workload.data):
        with clock.step("ingest"):
            exposure = k.read_exposure(path)
        with clock.step("calibrate"):
            calexps[eid] = k.calibrate_exposure(exposure, params["calibrate"])
    with clock.step("warp"):
        skymap = k.sky_map(
            [(c["wcs"], c["image"].shape) for c in calexps.values()], params["skymap"]
        )
        members = k.patch_members(
            skymap, {e: (c["wcs"], c["image"].shape) for e, c in calexps.items()}
        )
        warps = {}
        for pid, eids in members.items():
            patch = k.patch_of(skymap, pid)
            fwhms = [calexps[e]["psf_fwhm"] for e in eids]
            fwhm = k.target_fwhm(fwhms, params["coadd"])
            warps[pid] = [k.warp_exposure(calexps[e], patch, fwhm) for e in eids]
    tables = []
    for pid, stack in warps.items():
        patch = k.patch_of(skymap, pid)
        bits = calexps[members[pid][0]]["mask_bits"]
        with clock.step("coadd"):
            coadd = k.coadd_warps(stack, bits, params["coadd"])
        with clock.step("detect"):
            tables.append(k.detect_sources(coadd, patch, params["detect"]))
        save_coadd(out, pid, coadd["image"])
    save_catalog(out, tables)
    return {"steps": clock.as_dict()}
