"""Each kernel of ``sciimg.kernels``: the reference library against sciimg's fast
implementation, on one thread, side by side in one run.

The data are an HCP-size phantom subject (``sciimg synth neuro --hcp``:
145×174×145 voxels, 287 volumes) with its brain mask, and a
4000×4072 CCD (``sciimg synth astro --ccd-shape 4000 4072``), written once into
``--data`` and reused. Each kernel runs once with the reference (dipy, astropy)
and, after a warm-up call that compiles it, with the fast implementation on the
same input; the table gives the CPU time per voxel (or value), the ratio and
the largest difference.

Usage::

    python benchmarks/kernels.py [--data bench-data] [--out kernels.json]
    python benchmarks/kernels.py --quick      # small shapes: a smoke run

Numba compiles each kernel on its first call and caches the machine code on disk
beside the module; ``--compile`` also times a first call in a fresh process with
an empty cache and with the cache filled.
"""

from __future__ import annotations

import os

# One thread everywhere: the figures are per core (Dask gives the parallelism).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from sciimg import kernels  # noqa: E402

CCD_SHAPE = (4000, 4072)


def _timed(func, *args, **kwargs):
    # CPU time of this (single-threaded) process: the figure per core, and one
    # that other work sharing the machine does not inflate as it does wall time.
    start = time.process_time()
    result = func(*args, **kwargs)
    return result, time.process_time() - start


def _sciimg() -> str:
    """The ``sciimg`` command of this Python's environment."""
    beside = Path(sys.executable).with_name("sciimg")
    return str(beside) if beside.exists() else "sciimg"


def _synth(kind: str, folder: Path, *args: str) -> Path:
    if not (folder / ".complete").exists():
        subprocess.run(
            [_sciimg(), "synth", kind, str(folder), "--overwrite", *args], check=True
        )
        (folder / ".complete").touch()
    return folder


def _subject(folder: Path, *args: str):
    from sciimg.io import open_dwi

    _synth("neuro", folder, "--subjects", "1", *args)
    dwi = open_dwi(folder / "sub-01" / "dwi" / "sub-01_dwi.nii.gz")
    return np.asarray(dwi.data.compute(scheduler="sync"), np.float32), dwi.gtab


def _one_shell(data, gtab):
    """The b0 volumes and the first shell: 90 directions of the HCP scheme."""
    from dipy.core.gradients import gradient_table

    shells = np.round(gtab.bvals[~gtab.b0s_mask], -2)
    keep = gtab.b0s_mask | (np.round(gtab.bvals, -2) == shells.min())
    table = gradient_table(gtab.bvals[keep], bvecs=gtab.bvecs[keep])
    return data[..., keep], table


def _row(kernel, unit, n, reference, fast, difference, note=""):
    return {
        "kernel": kernel,
        "unit": unit,
        "n": int(n),
        "reference_s": reference,
        "fast_s": fast,
        "reference_per_unit": reference / n,
        "fast_per_unit": fast / n,
        "ratio": reference / fast,
        "max_difference": difference,
        "note": note,
    }


def bench_mask(b0, radius):
    kw = {"median_radius": radius, "numpass": 2, "dilate": 1}
    kernels.median_otsu(b0[:24, :24, :24], **kw)  # compile
    ref, t_ref = _timed(kernels.median_otsu, b0, implementation="reference", **kw)
    fast, t_fast = _timed(kernels.median_otsu, b0, **kw)
    diff = int(np.count_nonzero(ref != fast))
    return ref, _row(
        "median_otsu", "voxel", b0.size, t_ref, t_fast, diff, "voxels different"
    )


def bench_nlmeans(volume, mask):
    sigma = float(kernels.estimate_sigma(volume[..., None])[0])
    kernels.nlmeans(volume[:16, :16, :16], sigma, mask[:16, :16, :16])  # compile
    ref, t_ref = _timed(
        kernels.nlmeans, volume, sigma, mask, implementation="reference"
    )
    fast, t_fast = _timed(kernels.nlmeans, volume, sigma, mask)
    scale = float(np.abs(ref).max())
    diff = float(np.abs(fast.astype(np.float64) - ref).max() / scale)
    return _row(
        "nlmeans classic (P1 B5 Rician)",
        "masked voxel",
        mask.sum(),
        t_ref,
        t_fast,
        diff,
        "relative to the volume's maximum",
    )


def bench_tensor(data, gtab, mask, n_voxels, method="WLS"):
    # dipy costs 26-285 µs a voxel: a slab of masked voxels gives the rate.
    where = np.flatnonzero(mask.ravel())[:n_voxels]
    block = data.reshape(-1, data.shape[-1])[where]
    kernels.fit_tensor(block[:64], gtab, fit_method=method)  # compile
    ref, t_ref = _timed(
        kernels.fit_tensor, block, gtab, fit_method=method, implementation="reference"
    )
    fast, t_fast = _timed(kernels.fit_tensor, block, gtab, fit_method=method)
    fa_ref = kernels.derive_tensor_map(ref, "fa")
    fa_fast = kernels.derive_tensor_map(fast, "fa")
    diff = float(np.nanmax(np.abs(fa_ref - fa_fast)))
    return _row(
        f"fit_tensor {method}, {data.shape[-1]} volumes",
        "voxel",
        len(where),
        t_ref,
        t_fast,
        diff,
        "FA, absolute",
    )


def _ccd_stack(folder: Path, shape, n: int, rows: int):
    from astropy.io import fits

    _synth(
        "astro", folder, "--visits", "1", "--ccds", "1", "--ccd-shape", *map(str, shape)
    )
    with fits.open(folder / "visit-0" / "ccd-0.fits") as hdul:
        image = np.asarray(hdul["IMAGE"].data[:rows], np.float64)
        variance = np.asarray(hdul["VARIANCE"].data[:rows], np.float64)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(n, *image.shape)) * np.sqrt(variance)
    values = (image + noise).astype(np.float32)
    hits = rng.random(values.shape) < 0.01  # cosmic rays and satellite trails
    values[hits] += (
        50
        * np.sqrt(variance.astype(np.float32)).repeat(n, 0).reshape(values.shape)[hits]
    )
    return values, np.broadcast_to(variance.astype(np.float32), values.shape)


def bench_clip(values, variances):
    from astropy.stats import sigma_clip

    def astropy_mean():
        clipped = sigma_clip(values, sigma=3, maxiters=2, axis=0, masked=True)
        return clipped.mean(axis=0)

    kw = {"nsigma": 3.0, "iterations": 2, "clip": "stack"}
    kernels.clipped_mean(values[:, :4, :4], variances[:, :4, :4], **kw)  # compile
    _, t_astropy = _timed(astropy_mean)
    ref, t_ref = _timed(
        kernels.clipped_mean, values, variances, implementation="reference", **kw
    )
    fast, t_fast = _timed(kernels.clipped_mean, values, variances, **kw)
    spread = float(np.nanmax(np.sqrt(ref[1])))
    diff = float(np.nanmax(np.abs(fast[0] - ref[0])) / spread)
    rows = [
        _row("clipped_mean vs sciimg NumPy", "value", values.size, t_ref, t_fast, diff),
        _row(
            "clipped_mean vs astropy sigma_clip",
            "value",
            values.size,
            t_astropy,
            t_fast,
            diff,
            "astropy: sigma_clip + mean, same stack",
        ),
    ]
    rows[0]["note"] = "mean, relative to its standard error"
    return rows


def bench_warp(folder: Path, shape):
    """One CCD onto a patch grid rotated by 0.3° and offset by a third of it,
    PSF-matched (FWHM 3 to 3.5 pixels): reproject against the fast warp."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from sciimg.astro import WARP_BAD, bitmask, footprint_box
    from sciimg.astro import psf_match_sigma as match
    from sciimg.io import DEFAULT_MASK_BITS

    _synth(
        "astro", folder, "--visits", "1", "--ccds", "1", "--ccd-shape", *map(str, shape)
    )
    with fits.open(folder / "visit-0" / "ccd-0.fits") as hdul:
        planes = tuple(
            np.asarray(hdul[name].data).astype(hdul[name].data.dtype.newbyteorder("="))
            for name in ("IMAGE", "VARIANCE", "MASK")
        )
        wcs = WCS(hdul["IMAGE"].header)
    target = wcs.deepcopy()
    turn = np.radians(0.3)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    target.wcs.cd = rotation @ wcs.pixel_scale_matrix
    target.wcs.crpix = wcs.wcs.crpix - np.array(shape[::-1]) / 3
    target_shape = tuple(int(n * 4 / 3) for n in shape)
    box = footprint_box(wcs, shape, target, target_shape)
    bits = tuple(
        bitmask(names, DEFAULT_MASK_BITS) for names in (WARP_BAD, ["SAT"], ["NO_DATA"])
    )
    kw = {"sigma": match(3.0, 3.5), "bits": bits}
    kernels.warp(
        tuple(p[:64, :64] for p in planes), wcs, (64, 64), target, (0, 8, 0, 8), **kw
    )
    ref, t_ref = _timed(
        kernels.warp, planes, wcs, shape, target, box, implementation="reference", **kw
    )
    fast, t_fast = _timed(kernels.warp, planes, wcs, shape, target, box, **kw)
    same = np.array_equal(np.isnan(ref[:2]), np.isnan(fast[:2])) and np.array_equal(
        ref[2], fast[2]
    )
    ok = np.isfinite(ref[0])
    diff = float(np.abs(fast[0][ok] - ref[0][ok]).max() / np.abs(ref[0][ok]).max())
    n = (box[1] - box[0]) * (box[3] - box[2])
    note = "of the largest value; flags " + ("identical" if same else "DIFFER")
    return _row("warp vs reproject_interp", "pixel", n, t_ref, t_fast, diff, note)


def compile_times() -> dict:
    """First call in a fresh process: with an empty numba cache, then cached."""
    code = (
        "import time, numpy as np; t = time.perf_counter();"
        "from sciimg import kernels;"
        "v = np.random.default_rng(0).normal(100, 5, (12, 12, 12)).astype('f4');"
        "kernels.nlmeans(v, 5.0, v > 0);"
        "print(time.perf_counter() - t)"
    )
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("empty cache", "cached"):
            result = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            out[label] = float(result.stdout.strip().splitlines()[-1])
    return out


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _print(rows) -> None:
    print("\n| kernel | reference | fast | ratio | max difference |")
    print("|---|---|---|---|---|")
    for r in rows:
        unit = r["unit"]
        slow = max(r["reference_per_unit"], r["fast_per_unit"])
        scale, tag = (1e9, "ns") if slow < 1e-6 else (1e6, "µs")
        print(
            f"| {r['kernel']} | {r['reference_per_unit'] * scale:.2f} {tag}/{unit} "
            f"({r['reference_s']:.1f} s) | {r['fast_per_unit'] * scale:.2f} "
            f"{tag}/{unit} ({r['fast_s']:.2f} s) | {r['ratio']:.1f}× | "
            f"{r['max_difference']:.2g} {r['note']} |"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("bench-data"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="small shapes")
    parser.add_argument("--compile", action="store_true", help="time compilation")
    parser.add_argument(
        "--only",
        default="mask,nlmeans,tensor,clip,warp",
        help="comma-separated subset",
    )
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    ccd = (400, 512) if args.quick else CCD_SHAPE
    rows = []
    if only & {"mask", "nlmeans", "tensor"}:
        rows.extend(_neuro_rows(args, only))
    if "clip" in only:
        values, variances = _ccd_stack(args.data / f"astro-{ccd[0]}", ccd, 24, 256)
        rows.extend(bench_clip(values, variances))
        del values, variances
    if "warp" in only:
        rows.append(bench_warp(args.data / f"astro-{ccd[0]}", ccd))
    _print(rows)
    result = {"machine": _machine(), "rows": rows}
    if args.compile:
        result["compile"] = compile_times()
        print(f"\nfirst call in a new process: {result['compile']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


def _neuro_rows(args, only) -> list[dict]:
    rows = []
    if args.quick:
        data, gtab = _subject(
            args.data / "neuro-quick", "--shape", "40", "48", "40", "--directions", "90"
        )
    else:  # the HCP scheme: 145×174×145, 17 b0 and 90 directions on 3 shells
        data, gtab = _subject(args.data / "neuro-hcp", "--hcp")
    b0 = kernels.mean_b0(data[..., gtab.b0s_mask])
    mask = kernels.median_otsu(b0, median_radius=4, numpass=2, dilate=1)
    print(
        f"{_machine()}\nvolume {data.shape}, {mask.mean():.0%} in the mask", flush=True
    )
    if "mask" in only:
        rows.append(bench_mask(b0, 4)[1])
    if "nlmeans" in only:
        first_dw = int(np.flatnonzero(~gtab.b0s_mask)[0])
        rows.append(bench_nlmeans(np.ascontiguousarray(data[..., first_dw]), mask))
    if "tensor" in only:
        n = 2000 if args.quick else 20000
        shell, shell_gtab = _one_shell(data, gtab)
        rows.append(bench_tensor(shell, shell_gtab, mask, n))
        rows.append(bench_tensor(shell, shell_gtab, mask, n, "OLS"))
        del shell
        rows.append(bench_tensor(data, gtab, mask, n))
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
