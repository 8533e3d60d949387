"""Co-addition against independent numpy/astropy clipped weighted means."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from astropy.stats import sigma_clip

from sciimg.astro import (
    COADD_BITS,
    WarpSource,
    clipped_mean,
    coadd,
    coadd_patch,
    warp,
)
from tests.astro.conftest import render, tan_wcs


def _stack(n=7, shape=(30, 40), seed=0):
    rng = np.random.default_rng(seed)
    var = rng.uniform(0.5, 2.0, (n, 1, 1)) * np.ones((n, *shape))
    x = 10 + rng.normal(0, np.sqrt(var))
    hits = rng.random((n, *shape)) < 0.03
    x[hits] += rng.uniform(20, 200, hits.sum())  # cosmic rays in single visits
    x[0, :3] = np.nan  # a visit without data in some rows
    return x, var


def _weighted(x, v, keep):
    w = np.where(keep, 1 / v, 0)
    return (w * np.where(keep, x, 0)).sum(0) / w.sum(0)


def test_stack_clipping_equals_astropy_sigma_clip():
    x, v = _stack(n=15)
    clipped = sigma_clip(
        np.ma.masked_invalid(x),
        sigma=3,
        maxiters=2,
        cenfunc="median",
        stdfunc="std",
        axis=0,
    )
    ref = _weighted(x, v, ~clipped.mask)
    mean, var, depth, _ = clipped_mean(x, v, clip="stack")
    np.testing.assert_allclose(mean, ref, rtol=1e-12)
    np.testing.assert_array_equal(depth, (~clipped.mask).sum(0))
    np.testing.assert_allclose(var, 1 / np.where(~clipped.mask, 1 / v, 0).sum(0))


def _variance_clip_reference(x, v, nsigma=3.0, iterations=2):
    """Per pixel, plainly: median then weighted mean, each value's own sigma."""
    _n, ny, nx = x.shape
    out = np.full((ny, nx), np.nan)
    for i in range(ny):
        for j in range(nx):
            vals, vars_ = x[:, i, j], v[:, i, j]
            keep = np.isfinite(vals)
            for it in range(iterations):
                if it == 0:
                    c = np.median(vals[keep])
                else:
                    c = np.sum(vals[keep] / vars_[keep]) / np.sum(1 / vars_[keep])
                new = keep & (np.abs(vals - c) <= nsigma * np.sqrt(vars_))
                if new.any():
                    keep = new
            out[i, j] = np.sum(vals[keep] / vars_[keep]) / np.sum(1 / vars_[keep])
    return out


@pytest.mark.parametrize("n", [3, 7])
def test_variance_clipping_equals_plain_loop(n):
    x, v = _stack(n=n, shape=(12, 15), seed=n)
    mean, *_ = clipped_mean(x, v)
    np.testing.assert_allclose(mean, _variance_clip_reference(x, v), rtol=1e-12)


def test_variance_clipping_removes_single_visit_outliers():
    x, v = _stack(n=5, seed=3)
    mean, *_ = clipped_mean(x, v)
    assert np.nanmax(np.abs(mean - 10)) < 3.0  # the hits were 20..200 high
    naive = np.nanmean(x, axis=0)
    assert np.nanmax(np.abs(naive - 10)) > 10


def test_dask_coadd_equals_numpy_on_uneven_chunks():
    x, v = _stack(n=6)
    m = np.zeros(x.shape, "i4")
    m[2, 5:9, 5:9] = 1 << COADD_BITS["SAT"]
    out = coadd(
        da.from_array(x, chunks=(2, 11, 13)),
        da.from_array(v, chunks=(3, 7, 40)),
        da.from_array(m, chunks=(6, 30, 9)),
    )
    valid = (m & (1 << COADD_BITS["SAT"])) == 0
    mean, _var, depth, clipped = clipped_mean(x, v, valid)
    np.testing.assert_allclose(out["image"].compute(), mean.astype("f4"))
    np.testing.assert_array_equal(out["depth"].compute(), depth)
    mask = out["mask"].compute()
    assert ((mask & (1 << COADD_BITS["SAT"])) != 0)[5:9, 5:9].all()
    assert (((mask & (1 << COADD_BITS["CLIPPED"])) != 0) == clipped).all()


def test_coadd_patch_equals_warp_then_coadd():
    """One warp per exposure, co-added block by block, gives the coadd of
    warp() + coadd()."""
    stars = [(30, 30, 2000), (70, 50, 1000), (50, 75, 800)]
    target = tan_wcs((90, 100), rotation=0.0)
    sources = []
    for k, (rot, shift, fwhm) in enumerate(
        [(0.3, (2.2, 1.1), 2.5), (-0.4, (-3.4, 0.6), 3.5), (0.1, (0.7, -2.9), 3.0)]
    ):
        w = tan_wcs((80, 90), rotation=rot, shift=shift)
        # Stars placed in sky coordinates, so every visit sees the same sky.
        sky = target.pixel_to_world_values(
            np.array([s[0] for s in stars]), np.array([s[1] for s in stars])
        )
        px, py = w.world_to_pixel_values(*sky)
        img = render(
            (80, 90),
            [(a, b, s[2]) for a, b, s in zip(px, py, stars, strict=True)],
            fwhm,
            sky_sigma=1.0,
            seed=k,
        )
        sources.append(
            WarpSource(
                img, np.ones((80, 90)), np.zeros((80, 90), "i4"), w, fwhm, f"v{k}"
            )
        )
    fused = coadd_patch(sources, target, (90, 100), chunks=(31, 37))
    warps = [
        warp(
            s.image,
            s.variance,
            s.mask,
            s.wcs,
            target,
            (90, 100),
            psf_fwhm=s.psf_fwhm,
            target_fwhm=3.5,
            chunks=(45, 50),
        )
        for s in sources
    ]
    ref = coadd(
        *(da.stack([w_[k] for w_ in warps]) for k in ("image", "variance", "mask"))
    )
    for name in ("image", "variance", "depth", "mask"):
        np.testing.assert_allclose(
            fused[name].compute(),
            ref[name].compute(),
            rtol=1e-4,
            atol=1e-4,
            equal_nan=True,
            err_msg=name,
        )
    depth = fused["depth"].compute()
    assert depth.max() == 3 and (depth == 0).any()


def _three_visits():
    target = tan_wcs((90, 100), rotation=0.0)
    sources = []
    for k, (rot, shift, fwhm) in enumerate(
        [(0.3, (2.2, 1.1), 2.5), (-0.4, (-3.4, 0.6), 3.5), (0.1, (0.7, -2.9), 3.0)]
    ):
        w = tan_wcs((80, 90), rotation=rot, shift=shift)
        img = render((80, 90), [(40, 40, 1500), (20, 60, 700)], fwhm, seed=k)
        mask = np.zeros((80, 90), "i4")
        mask[:, 30] = 1 << COADD_BITS["BAD"]
        mask[38:42, 38:42] |= 1 << COADD_BITS["SAT"]
        sources.append(WarpSource(img, np.full((80, 90), 2.0), mask, w, fwhm, f"v{k}"))
    return sources, target


def test_coadd_patch_reads_zarr_planes_inside_its_tasks(tmp_path):
    """Planes that read on slicing give the coadd of the same planes in memory."""
    import zarr

    sources, target = _three_visits()
    lazy = []
    for s in sources:
        planes = []
        for name in ("image", "variance", "mask"):
            data = getattr(s, name)
            z = zarr.create_array(
                tmp_path / s.id / name,
                shape=data.shape,
                chunks=(32, 32),
                dtype=data.dtype,
            )
            z[:] = data
            planes.append(z)
        lazy.append(WarpSource(*planes, s.wcs, s.psf_fwhm, s.id))
    ref = coadd_patch(sources, target, (90, 100), chunks=40)
    got = coadd_patch(lazy, target, (90, 100), chunks=40)
    # Nothing but the block tasks: no read runs ahead of them.
    assert len(got["image"].__dask_graph__()) < len(ref["image"].__dask_graph__())
    for name in ("image", "variance", "depth", "mask"):
        np.testing.assert_array_equal(
            got[name].compute(), ref[name].compute(), err_msg=name
        )


def test_coadd_patch_warps_each_exposure_once_into_scratch(tmp_path):
    """With a scratch folder each exposure is warped by one task into a file
    of its own, and the blocks read their boxes of those files: the coadd is
    the one whose warps stay in memory."""
    import dask

    sources, target = _three_visits()
    in_memory = coadd_patch(sources, target, (90, 100), chunks=40)
    scratch = tmp_path / "warps"
    on_disk = coadd_patch(sources, target, (90, 100), chunks=40, scratch=scratch)
    graph = dict(on_disk["image"].__dask_graph__())
    warps = [k for k in graph if str(k).startswith("warp-")]
    assert len(warps) == len(sources)  # one warp task per exposure
    computed = dask.compute(on_disk, in_memory)
    assert len(list(scratch.glob("*.npy"))) == len(sources)
    for name in ("image", "variance", "depth", "mask"):
        np.testing.assert_array_equal(
            computed[0][name], computed[1][name], err_msg=name
        )
    # A warp computed again (its worker lost) goes to a file of its own.
    dask.compute(on_disk["image"])
    assert len(list(scratch.glob("*.npy"))) == 2 * len(sources)


def test_coadd_patch_block_side_follows_the_memory_budget():
    """More exposures or less memory give smaller blocks, and the same coadd."""
    sources, target = _three_visits()
    big = coadd_patch(sources, target, (90, 100))
    # 3 exposures × 8 bytes × 64² = 96 KiB of stack, a quarter of the chunk:
    # blocks of 64 pixels.
    small = coadd_patch(sources, target, (90, 100), chunk_memory="384KiB")
    assert big["image"].chunks == ((90,), (100,))
    assert small["image"].chunks == ((64, 26), (64, 36))
    # Other cutouts resample to within rounding (1e-9 of values near 1000).
    for name in ("image", "variance", "depth", "mask"):
        np.testing.assert_allclose(
            small[name].compute(),
            big[name].compute(),
            rtol=1e-6,
            atol=1e-6,
            equal_nan=True,
            err_msg=name,
        )


def test_clipping_in_strips_equals_clipping_whole(monkeypatch):
    """The coadd works a few rows at a time; strip edges change nothing."""
    import sciimg.kernels._astro as mod

    x, v = _stack(n=9, shape=(23, 17), seed=3)
    m = np.zeros(x.shape, "i4")
    m[2, 5:9, 4:8] = 1 << COADD_BITS["SAT"]
    whole = {k: a.compute() for k, a in coadd(x, v, m).items()}
    monkeypatch.setattr(mod, "_STRIP_VALUES", 9 * 17 * 2 + 5)  # 2 rows per strip
    strips = {k: a.compute() for k, a in coadd(x, v, m).items()}
    for name, value in whole.items():
        np.testing.assert_array_equal(strips[name], value, err_msg=name)


def test_coadd_patch_whole_planes_equal_the_blocks():
    """Whole planes are the block chunks put together, blocks no exposure
    covers included."""
    import dask

    sources, target = _three_visits()
    shape = (200, 100)  # rows past the exposures' footprints: empty blocks
    blocks = coadd_patch(sources, target, shape, chunks=32)
    whole = coadd_patch(sources, target, shape, chunks=32, whole_planes=True)
    assert whole["image"].chunks == ((200,), (100,))
    got = {}
    for name in ("image", "variance", "depth", "mask"):
        a, got[name] = dask.compute(blocks[name], whole[name])
        assert a.dtype == got[name].dtype, name
        np.testing.assert_array_equal(a, got[name], err_msg=name)
    assert not got["depth"][160:].any() and np.isnan(got["image"][160:]).all()
    assert got["depth"].max() == 3
