"""The GPU kernels' algorithms against the CPU kernels.

The GPU kernels are written against their input's namespace: given NumPy arrays
they run here, on any machine, and must give the CPU fast kernels' results
(which the other kernel tests hold to dipy and astropy) within the tolerances
of the GPU work: denoised ≤ 1e-5 of the maximum, FA ≤ 1e-5, masks identical,
co-adds ≤ 1e-5 of the spread. Tests marked ``gpu`` run the same through the
public kernels with CuPy arrays, where a GPU is present.
"""

from __future__ import annotations

import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.io.gradients import read_bvals_bvecs
from dipy.io.image import load_nifti

from sciimg import kernels
from sciimg.kernels import _clip_xp as gpu_astro
from sciimg.kernels import _gpu_neuro as gpu_neuro

TOL = 1e-5


def _load(fnames):
    data, _ = load_nifti(str(fnames[0]))
    bvals, bvecs = read_bvals_bvecs(str(fnames[1]), str(fnames[2]))
    return data.astype(np.float32), gradient_table(bvals, bvecs=bvecs)


@pytest.fixture(scope="module", params=["small_64d", "small_101d"])
def real(request):
    return _load(request.getfixturevalue(request.param))


def _blob(shape=(14, 12, 10), seed=0):
    """A bright ellipsoid touching two faces of the volume, with noise."""
    rng = np.random.default_rng(seed)
    i, j, k = np.indices(shape)
    inside = ((i / shape[0]) ** 2 + ((j - 6) / 5) ** 2 + ((k - 5) / 6) ** 2) < 1
    return (20 + 80 * inside + rng.normal(0, 5, shape)).astype(np.float32)


def _close(got, want, tol=TOL):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    scale = float(np.nanmax(np.abs(want))) or 1.0
    assert np.nanmax(np.abs(got - want), initial=0.0) <= tol * scale


def test_mean_b0_and_sigma(real):
    data, gtab = real
    b0s = data[..., gtab.b0s_mask]
    np.testing.assert_array_equal(gpu_neuro.mean_b0(b0s), kernels.mean_b0(b0s))
    np.testing.assert_array_equal(
        gpu_neuro.estimate_sigma(data[..., :4]), kernels.estimate_sigma(data[..., :4])
    )
    assert gpu_neuro.estimate_sigma(data[..., 0]).shape == (1,)


@pytest.mark.parametrize(("radius", "numpass", "dilate"), [(1, 1, None), (2, 2, 1)])
def test_mask_identical(real, radius, numpass, dilate):
    data, gtab = real
    for volume in (kernels.mean_b0(data[..., gtab.b0s_mask]), _blob()):
        args = {"median_radius": radius, "numpass": numpass, "dilate": dilate}
        want = kernels.median_otsu(volume, **args, require_signal=False)
        np.testing.assert_array_equal(gpu_neuro.median_otsu(volume, **args), want)


def test_mask_of_a_flat_volume():
    flat = np.full((6, 6, 6), 3.0)
    got = gpu_neuro.median_otsu(flat, median_radius=1, numpass=1, dilate=None)
    assert not got.any()  # nothing above the one value there is


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rician", [True, False])
def test_nlmeans_on_real_data(real, dtype, rician):
    data, gtab = real
    volume = data[..., -1].astype(dtype)
    mask = kernels.median_otsu(
        kernels.mean_b0(data[..., gtab.b0s_mask]),
        median_radius=1,
        numpass=1,
        dilate=1,
        require_signal=False,
    )
    sigma = float(kernels.estimate_sigma(volume[..., None])[0])
    args = {"patch_radius": 1, "block_radius": 3, "rician": rician}
    want = kernels.nlmeans(volume, sigma, mask, **args)
    got = gpu_neuro.nlmeans_classic(volume, sigma, mask, **args)
    assert got.dtype == want.dtype
    _close(got, want)


def test_nlmeans_sigma_map_mask_at_the_edges():
    volume = _blob().astype(np.float64)
    rng = np.random.default_rng(1)
    sigma = 5 * (1 + 0.2 * rng.random(volume.shape))
    mask = volume > 60  # touches two faces
    for patch, block in [(1, 2), (2, 3), (0, 1)]:
        args = {"patch_radius": patch, "block_radius": block}
        want = kernels.nlmeans(volume, sigma, mask, **args)
        _close(gpu_neuro.nlmeans_classic(volume, sigma, mask, **args), want)


def test_nlmeans_block_smaller_than_patch():
    volume = _blob((8, 8, 8)).astype(np.float64)
    args = {"patch_radius": 2, "block_radius": 1, "rician": False}
    want = kernels.nlmeans(volume, 5.0, None, **args)
    _close(gpu_neuro.nlmeans_classic(volume, 5.0, None, **args), want)
    with pytest.raises(ValueError, match="block_radius"):
        gpu_neuro.nlmeans_classic(volume[:3], 5.0, block_radius=3)


@pytest.mark.parametrize("method", ["WLS", "OLS"])
def test_tensor_fit(real, method):
    data, gtab = real
    mask = data[..., 0] > np.percentile(data[..., 0], 30)
    mask[0] = True  # the volume's edge, whatever is there
    want = kernels.fit_tensor(data, gtab, mask, fit_method=method)
    got = gpu_neuro.fit_tensor(data, gtab, mask, fit_method=method)
    _close(got[..., :3], want[..., :3], 1e-9)
    for name in ("fa", "md", "ad", "rd"):
        fa_got = kernels.derive_tensor_map(got, name)
        fa_want = kernels.derive_tensor_map(want, name)
        assert np.nanmax(np.abs(fa_got - fa_want)) <= TOL
    # Eigenvectors up to sign, where the eigenvalues are apart.
    apart = (np.diff(-want[..., :3], axis=-1) > 1e-6 * want[..., :1]).all(-1) & mask
    dots = np.einsum(
        "...ij,...ij->...j",
        got[apart][:, 3:].reshape(-1, 3, 3),
        want[apart][:, 3:].reshape(-1, 3, 3),
    )
    np.testing.assert_allclose(np.abs(dots), 1.0, atol=1e-6)
    assert not got[~mask].any()


@pytest.mark.parametrize("clip", ["variance", "stack"])
def test_coadd(clip):
    rng = np.random.default_rng(2)
    values = rng.normal(10, 1, (9, 31, 27))
    values[rng.random(values.shape) < 0.05] = 80  # outliers
    values[rng.random(values.shape) < 0.1] = np.nan  # flagged
    values[:, 0, :3] = np.nan  # no data at all
    variances = rng.uniform(0.5, 1.5, values.shape)
    saturated = rng.random(values.shape[1:]) < 0.1
    flags = {"sat": 2, "no_data": 256, "clipped": 512, "clip": clip}
    want = kernels.coadd_stack(values, variances, saturated, **flags)
    got = gpu_astro.coadd_stack(values, variances, saturated, **flags)
    _close(got[:2], want[:2])
    np.testing.assert_array_equal(got[2:], want[2:])
    parts = gpu_astro.clipped_mean(values, variances, clip=clip)
    for a, b in zip(
        parts, kernels.clipped_mean(values, variances, clip=clip), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_on_host_leaves_numpy_alone():
    assert kernels.on_host(np.add)(np.ones(2), 1).tolist() == [2.0, 2.0]


# ---- on a GPU -----------------------------------------------------------------


@pytest.mark.gpu
def test_public_kernels_on_cupy_blocks(small_64d):
    import cupy

    data, gtab = _load(small_64d)
    b0 = kernels.mean_b0(data[..., gtab.b0s_mask])
    b0_gpu = kernels.mean_b0(cupy.asarray(data[..., gtab.b0s_mask]))
    assert isinstance(b0_gpu, cupy.ndarray)
    np.testing.assert_allclose(b0_gpu.get(), b0, rtol=1e-6)
    args = {"median_radius": 2, "numpass": 2, "dilate": 1}
    mask = kernels.median_otsu(b0, **args)
    np.testing.assert_array_equal(
        kernels.median_otsu(cupy.asarray(b0), **args).get(), mask
    )
    volume = data[..., 10]
    sigma = kernels.estimate_sigma(volume[..., None])
    sigma_gpu = kernels.estimate_sigma(cupy.asarray(volume[..., None]))
    np.testing.assert_allclose(sigma_gpu.get(), sigma, rtol=1e-5)
    want = kernels.nlmeans(volume, float(sigma[0]), mask)
    got = kernels.nlmeans(cupy.asarray(volume), float(sigma[0]), cupy.asarray(mask))
    _close(got.get(), want)
    params = kernels.fit_tensor(cupy.asarray(data), gtab, cupy.asarray(mask))
    want = kernels.fit_tensor(data, gtab, mask)
    fa = kernels.derive_tensor_map(params.get(), "fa")
    assert np.nanmax(np.abs(fa - kernels.derive_tensor_map(want, "fa"))) <= TOL


@pytest.mark.gpu
def test_coadd_and_host_fallback_on_cupy():
    import cupy

    rng = np.random.default_rng(3)
    values = rng.normal(10, 1, (6, 64, 64))
    variances = np.ones_like(values)
    saturated = np.zeros((64, 64), bool)
    flags = {"sat": 2, "no_data": 256, "clipped": 512}
    want = kernels.coadd_stack(values, variances, saturated, **flags)
    got = kernels.coadd_stack(
        cupy.asarray(values), cupy.asarray(variances), cupy.asarray(saturated), **flags
    )
    _close(got.get(), want)
    # A kernel without a GPU implementation runs on the host, returns to the GPU.
    ref = kernels.mean_b0(cupy.asarray(values), implementation="reference")
    assert isinstance(ref, cupy.ndarray)


def _exposure(seed=5, n=96):
    """An exposure with flagged and saturated pixels, and a target grid turned
    by 10° and shifted, so that the warp interpolates everywhere."""
    from astropy.wcs import WCS

    rng = np.random.default_rng(seed)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix = [150.0, 2.0], [n / 2 + 0.5, n / 2 + 0.5]
    w.wcs.cd = [[-1e-4, 0], [0, 1e-4]]
    t = WCS(naxis=2)
    t.wcs.ctype = w.wcs.ctype
    t.wcs.crval, t.wcs.crpix = [150.0003, 2.0002], [n / 2, n / 2]
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    t.wcs.cd = (np.array([[-c, s], [s, c]]) * 1e-4).tolist()
    image = rng.normal(100, 5, (n, n))
    mask = np.zeros((n, n), np.int32)
    mask[10:13, 40:44] = 1  # bad
    mask[60, 20] = 2  # saturated
    planes = (image, np.full((n, n), 25.0), mask)
    return planes, w, t


def test_warp_on_the_planes_namespace_matches_reproject():
    """The warp the GPU runs is the CPU's code on the planes' namespace: under
    NumPy, in bands or not, it is reproject's warp."""
    from sciimg.astro import warp_footprint

    planes, w, t = _exposure()
    kw = {"sigma": 1.2, "bits": (1, 2, 256)}
    box = (0, 90, 4, 96)
    ref = kernels.warp(planes, w, (96, 96), t, box, implementation="reference", **kw)
    banded = warp_footprint(planes, w, (96, 96), t, box, band_pixels=2000, **kw)
    _close(banded[:2], ref[:2])
    np.testing.assert_array_equal(banded[2], ref[2])
    assert np.isnan(banded[0]).any() and banded[2].any()  # flags reach the warp


@pytest.mark.gpu
def test_warp_on_cupy_planes():
    import cupy

    from sciimg.astro import warp_footprint

    planes, w, t = _exposure()
    kw = {"sigma": 1.2, "bits": (1, 2, 256)}
    box = (0, 90, 4, 96)
    want = kernels.warp(planes, w, (96, 96), t, box, **kw)
    got = kernels.warp([cupy.asarray(p) for p in planes], w, (96, 96), t, box, **kw)
    assert isinstance(got, cupy.ndarray)
    _close(got.get()[:2], want[:2])
    np.testing.assert_array_equal(got.get()[2], want[2])
    # Several bands, each with its own cutout and transform.
    banded = warp_footprint(
        [cupy.asarray(p) for p in planes], w, (96, 96), t, box, band_pixels=2000, **kw
    )
    _close(banded.get()[:2], want[:2])
