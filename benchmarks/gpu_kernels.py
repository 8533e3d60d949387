"""Each kernel with a GPU implementation: CPU fast (one thread) against the GPU,
side by side in one run, with the largest difference and the transfer cost.

The data are made in memory: an HCP-size phantom (145×174×145 voxels, the b0
volumes and one shell of 90 directions of the HCP scheme) with its brain mask,
a stack of 24 visits of 4000×4072 values with 1% outliers, and one CCD of that
size with flags for the warp. Each GPU kernel runs once to warm up (CuPy
compiles its kernels on first use), then is timed with the device
synchronised; host-device copies are timed apart.

Usage::

    python benchmarks/gpu_kernels.py [--out gpu-kernels.json] [--quick]
"""

from __future__ import annotations

import os

# One CPU thread: the CPU figures are per core, as in benchmarks/kernels.py.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from sciimg import kernels  # noqa: E402


def _cpu(func, *args, **kwargs):
    start = time.process_time()
    out = func(*args, **kwargs)
    return out, time.process_time() - start


def _gpu(func, *args, **kwargs):
    import cupy

    func(*args, **kwargs)  # warm-up: CuPy compiles on first use
    cupy.cuda.Device().synchronize()
    start = time.perf_counter()
    out = func(*args, **kwargs)
    cupy.cuda.Device().synchronize()
    return out, time.perf_counter() - start


def _host(a):
    if isinstance(a, tuple):
        return tuple(_host(x) for x in a)
    return a.get() if hasattr(a, "get") else a


def _row(name, unit, n, cpu_s, gpu_s, difference, note):
    return {
        "kernel": name,
        "unit": unit,
        "n": int(n),
        "cpu_fast_s": round(cpu_s, 4),
        "gpu_s": round(gpu_s, 5),
        "ratio": round(cpu_s / gpu_s, 1) if gpu_s else None,
        "max_difference": difference,
        "note": note,
    }


def _phantom(quick: bool):
    from dipy.core.gradients import gradient_table

    from sciimg.synth import make_neuro_phantom, multishell_gtab

    shape = (40, 48, 40) if quick else (145, 174, 145)
    full = multishell_gtab(shells=(1000,), directions=90, b0_every=16)
    phantom = make_neuro_phantom(shape, gtab=full, voxel_size=1.25)
    data = phantom.data.astype(np.float32)
    gtab = gradient_table(full.bvals, bvecs=full.bvecs)
    return data, gtab


def run(quick: bool) -> list[dict]:
    import cupy

    rows = []
    data, gtab = _phantom(quick)
    start = time.perf_counter()
    on_gpu = cupy.asarray(data)
    cupy.cuda.Device().synchronize()
    up = time.perf_counter() - start
    rows.append(_row("copy to GPU", "value", data.size, 0.0, up, 0, "whole series"))

    b0s = data[..., gtab.b0s_mask]
    b0, t_cpu = _cpu(kernels.mean_b0, b0s)
    got, t_gpu = _gpu(kernels.mean_b0, on_gpu[..., cupy.asarray(gtab.b0s_mask)])
    diff = float(np.abs(_host(got) - b0).max())
    rows.append(_row("mean_b0", "voxel", b0.size, t_cpu, t_gpu, diff, ""))

    kw = {"median_radius": 4, "numpass": 2, "dilate": 1}
    kernels.median_otsu(b0[:24, :24, :24], **kw, require_signal=False)  # compile
    mask, t_cpu = _cpu(kernels.median_otsu, b0, **kw)
    got, t_gpu = _gpu(kernels.median_otsu, cupy.asarray(b0), **kw)
    diff = int(np.count_nonzero(_host(got) != mask))
    rows.append(_row("median_otsu", "voxel", b0.size, t_cpu, t_gpu, diff, "voxels"))

    volume = data[..., -1]
    sig, t_cpu = _cpu(kernels.estimate_sigma, volume[..., None])
    got, t_gpu = _gpu(kernels.estimate_sigma, on_gpu[..., -1:])
    diff = float(np.abs(_host(got) - sig).max() / sig.max())
    rows.append(_row("estimate_sigma", "voxel", volume.size, t_cpu, t_gpu, diff, ""))

    sigma = float(sig[0])
    kernels.nlmeans(volume[:16, :16, :16], sigma, mask[:16, :16, :16])  # compile
    want, t_cpu = _cpu(kernels.nlmeans, volume, sigma, mask)
    one = cupy.ascontiguousarray(on_gpu[..., -1])
    got, t_gpu = _gpu(kernels.nlmeans, one, sigma, cupy.asarray(mask))
    diff = float(np.abs(_host(got) - want).max() / np.abs(want).max())
    n = int(mask.sum())
    rows.append(_row("nlmeans classic", "masked voxel", n, t_cpu, t_gpu, diff, ""))

    flat_mask = mask
    kernels.fit_tensor(data[:4, :4, :4], gtab, flat_mask[:4, :4, :4])  # compile
    want, t_cpu = _cpu(kernels.fit_tensor, data, gtab, flat_mask)
    got, t_gpu = _gpu(kernels.fit_tensor, on_gpu, gtab, cupy.asarray(flat_mask))
    fa_want = kernels.derive_tensor_map(want, "fa")
    fa_got = kernels.derive_tensor_map(_host(got), "fa")
    diff = float(np.nanmax(np.abs(fa_got - fa_want)))
    rows.append(_row("fit_tensor WLS", "masked voxel", n, t_cpu, t_gpu, diff, "FA"))

    start = time.perf_counter()
    _host(got)
    down = time.perf_counter() - start
    rows.append(_row("copy to host", "value", got.size, 0.0, down, 0, "tensor params"))

    rng = np.random.default_rng(0)
    ny, nx = (400, 408) if quick else (4000, 4072)
    stack = rng.normal(100, 5, (24, ny, nx))
    stack[rng.random(stack.shape) < 0.01] = 1000
    var = np.full_like(stack, 25.0)
    saturated = np.zeros((ny, nx), bool)
    flags = {"sat": 2, "no_data": 256, "clipped": 512}
    kernels.coadd_stack(stack[:, :8, :8], var[:, :8, :8], saturated[:8, :8], **flags)
    want, t_cpu = _cpu(kernels.coadd_stack, stack, var, saturated, **flags)
    args = [cupy.asarray(a) for a in (stack, var, saturated)]
    got, t_gpu = _gpu(kernels.coadd_stack, *args, **flags)
    spread = float(np.nanmax(want[0]) - np.nanmin(want[0]))
    diff = float(np.nanmax(np.abs(_host(got)[:2] - want[:2])) / spread)
    rows.append(_row("coadd_stack", "value", stack.size, t_cpu, t_gpu, diff, ""))
    del stack, var, args, got
    rows.append(_warp_row(rng, (ny, nx)))
    return rows


def _warp_row(rng, shape) -> dict:
    """One CCD with flags onto a grid turned by 0.3° and offset by a third of
    it, PSF-matched: the CPU fast warp against the same code on CuPy planes
    (pixel transform on the host, copied over once per band)."""
    import cupy
    from astropy.wcs import WCS

    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval, wcs.wcs.crpix = [150.0, 2.0], [nx / 2 + 0.5, ny / 2 + 0.5]
    wcs.wcs.cd = [[-5.6e-5, 0.0], [0.0, 5.6e-5]]
    target = wcs.deepcopy()
    turn = np.radians(0.3)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    target.wcs.cd = rotation @ wcs.pixel_scale_matrix
    target.wcs.crpix = wcs.wcs.crpix - np.array([nx, ny]) / 3
    mask = np.where(rng.random(shape) < 0.001, 1, 0).astype(np.int32)
    planes = (rng.normal(100, 5, shape), np.full(shape, 25.0), mask)
    box = (0, ny, 0, nx)
    kw = {"sigma": 1.0, "bits": (1, 2, 256)}
    small = tuple(p[:64, :64] for p in planes)
    kernels.warp(small, wcs, (64, 64), target, (0, 8, 0, 8), **kw)  # first-call costs
    want, t_cpu = _cpu(kernels.warp, planes, wcs, shape, target, box, **kw)
    on_gpu = [cupy.asarray(p) for p in planes]
    got, t_gpu = _gpu(kernels.warp, on_gpu, wcs, shape, target, box, **kw)
    got = _host(got)
    ok = np.isfinite(want[0])
    diff = float(np.abs(got[0][ok] - want[0][ok]).max() / np.abs(want[0][ok]).max())
    same = np.array_equal(np.isnan(got[:2]), np.isnan(want[:2]))
    note = "flags " + ("identical" if same else "DIFFER")
    return _row("warp", "pixel", ny * nx, t_cpu, t_gpu, diff, note)


def table(rows: list[dict]) -> str:
    lines = [
        "| kernel | n | CPU fast, 1 core (s) | GPU (s) | ratio | largest difference |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio']}×" if r["ratio"] and r["cpu_fast_s"] else "-"
        diff = f"{r['max_difference']:.2g} {r['note']}".strip()
        lines.append(
            f"| {r['kernel']} | {r['n']} {r['unit']}s | {r['cpu_fast_s']} | "
            f"{r['gpu_s']} | {ratio} | {diff} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="small shapes")
    args = parser.parse_args(argv)
    import cupy

    rows = run(args.quick)
    props = cupy.cuda.runtime.getDeviceProperties(0)
    print(f"GPU: {props['name'].decode()}; CuPy {cupy.__version__}")
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
