"""nlmeans_classic against dipy's classic non-local means, called directly."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from dipy.data import get_fnames
from dipy.denoise.nlmeans import nlmeans
from dipy.denoise.noise_estimate import estimate_sigma

from sciimg.kernels._nlmeans_fast import nlmeans_classic

# The bound asked of the kernel: relative to the largest value of dipy's result.
TOL = 1e-5


def _dipy(arr, sigma, mask=None, patch_radius=1, block_radius=5, rician=True):
    return nlmeans(
        arr,
        sigma,
        mask=mask,
        patch_radius=patch_radius,
        block_radius=block_radius,
        rician=rician,
        num_threads=1,
        method="classic",
    )


def _assert_close(fast: np.ndarray, ref: np.ndarray, tol: float = TOL) -> float:
    """Same shape and dtype, max |fast - ref| <= tol * max |ref|; the ratio."""
    assert fast.shape == ref.shape
    assert fast.dtype == ref.dtype
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    diff = np.nan_to_num(np.abs(fast.astype(np.float64) - ref.astype(np.float64)))
    scale = float(np.nanmax(np.abs(ref))) if ref.size else 0.0
    assert diff.max() <= tol * scale, (diff.max(), scale)
    return float(diff.max() / scale) if scale else 0.0


def _volume(shape, seed=0, dtype=np.float64):
    """Smooth structure plus Rician-like noise, so weights span a wide range."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float64)
    clean = 100 + 60 * np.sin(grid[0] / 2.5) * np.cos(grid[1] / 3.0) + 4 * grid[2]
    noisy = np.hypot(
        clean + 12 * rng.standard_normal(shape), 12 * rng.standard_normal(shape)
    )
    return noisy.astype(dtype)


def _edge_mask(shape, seed=1):
    """Random blob that covers every face of the volume, plus a hole."""
    rng = np.random.default_rng(seed)
    m = rng.random(shape) > 0.35
    m[0], m[-1], m[:, 0], m[:, :, -1] = True, True, True, True
    m[shape[0] // 2, 2:5, 2:5] = False
    return m


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rician", [True, False])
def test_scalar_sigma_matches_dipy(dtype, rician):
    vol = _volume((14, 16, 13), dtype=dtype)
    mask = _edge_mask(vol.shape)
    ref = _dipy(vol, 12.0, mask, block_radius=4, rician=rician)
    fast = nlmeans_classic(vol, 12.0, mask, block_radius=4, rician=rician)
    err = _assert_close(fast, ref)
    if dtype == np.float64 and not rician:
        # Only summation order differs from dipy.
        assert err < 1e-12
    # Voxels outside the mask are 0, as in dipy.
    assert not fast[~mask].any()


@pytest.mark.parametrize("rician", [True, False])
def test_sigma_map_matches_dipy(rician):
    vol = _volume((13, 12, 15), seed=3)
    rng = np.random.default_rng(4)
    sigma = 8 + 8 * rng.random(vol.shape)
    mask = _edge_mask(vol.shape, seed=5)
    ref = _dipy(vol, sigma, mask, block_radius=3, rician=rician)
    fast = nlmeans_classic(vol, sigma, mask, block_radius=3, rician=rician)
    _assert_close(fast, ref)


def test_sigma_map_float32_with_zeros_matches_dipy():
    # sigma 0 makes dipy's weights 0/0 = NaN for equal patches; its rule
    # (weights not summing to > 0 give 0) has to be followed exactly.
    vol = _volume((12, 12, 12), seed=6, dtype=np.float32)
    sigma = np.full(vol.shape, 10.0, dtype=np.float32)
    sigma[3:6, 4:8, 2:5] = 0.0
    ref = _dipy(vol, sigma, None, block_radius=2)
    fast = nlmeans_classic(vol, sigma, None, block_radius=2)
    _assert_close(fast, ref)
    # Patches wholly inside the zero block: dipy's rule sets them to 0.
    assert ref[4, 5, 3] == 0 and fast[4, 5, 3] == 0


def test_zero_sigma_gives_zeros_like_dipy():
    vol = _volume((9, 9, 9), seed=14)
    ref = _dipy(vol, 0.0, None, block_radius=2, rician=False)
    _assert_close(nlmeans_classic(vol, 0.0, block_radius=2, rician=False), ref)


def test_default_radii_mask_none_matches_dipy():
    vol = _volume((16, 14, 15), seed=7)
    ref = _dipy(vol, 15.0)
    fast = nlmeans_classic(vol, 15.0)
    _assert_close(fast, ref)


def test_empty_mask_gives_zeros_like_dipy():
    vol = _volume((12, 12, 12), seed=8, dtype=np.float32)
    mask = np.zeros(vol.shape, dtype=bool)
    ref = _dipy(vol, 10.0, mask, block_radius=3)
    fast = nlmeans_classic(vol, 10.0, mask, block_radius=3)
    _assert_close(fast, ref)
    assert not fast.any()


@pytest.mark.parametrize(
    ("shape", "patch_radius", "block_radius"),
    [((6, 7, 8), 1, 5), ((9, 8, 10), 2, 4), ((8, 9, 7), 2, 2), ((7, 8, 9), 0, 2)],
)
def test_small_volumes_and_patch_radii_match_dipy(shape, patch_radius, block_radius):
    # (6, 7, 8) is smaller than the 11**3 search block; the padding reflects
    # further than half the volume.
    vol = _volume(shape, seed=9)
    mask = _edge_mask(shape, seed=10)
    ref = _dipy(vol, 14.0, mask, patch_radius, block_radius)
    fast = nlmeans_classic(
        vol, 14.0, mask, patch_radius=patch_radius, block_radius=block_radius
    )
    _assert_close(fast, ref)


def test_patch_larger_than_block_gives_zeros_like_dipy():
    vol = _volume((8, 8, 8), seed=11)
    ref = _dipy(vol, 10.0, None, patch_radius=2, block_radius=1, rician=False)
    fast = nlmeans_classic(vol, 10.0, patch_radius=2, block_radius=1, rician=False)
    _assert_close(fast, ref)
    assert not fast.any()


def test_volume_not_larger_than_block_radius_is_refused():
    # dipy's padding indexes outside its array here (the result is garbage).
    vol = _volume((4, 5, 6), seed=12)
    with pytest.raises(ValueError, match="block_radius=5"):
        nlmeans_classic(vol, 10.0)
    with pytest.raises(ValueError, match="block_radius=5"):
        nlmeans_classic(_volume((6, 5, 7)), 10.0)


def test_input_checks():
    vol = _volume((8, 8, 8))
    with pytest.raises(ValueError, match="3-D"):
        nlmeans_classic(vol[0], 1.0)
    with pytest.raises(ValueError, match="mask"):
        nlmeans_classic(vol, 1.0, np.ones((8, 8, 7), bool), block_radius=2)
    with pytest.raises(ValueError, match="sigma"):
        nlmeans_classic(vol, np.ones((8, 8)), block_radius=2)
    with pytest.raises(ValueError, match="sigma"):
        nlmeans_classic(vol, "1", block_radius=2)
    with pytest.raises(ValueError, match="radii"):
        nlmeans_classic(vol, 1.0, patch_radius=-1, block_radius=2)


def test_views_scalar_arrays_and_constant_maps_match_dipy():
    vol = _volume((10, 13, 12), seed=13)
    view = vol.transpose(2, 0, 1)[:, ::-1]  # not contiguous
    ref = _dipy(view, 9.0, None, block_radius=3)
    _assert_close(nlmeans_classic(view, 9.0, block_radius=3), ref)
    _assert_close(nlmeans_classic(view, np.array([9.0]), block_radius=3), ref)
    constant = np.full(view.shape, 9.0)
    _assert_close(nlmeans_classic(view, constant, block_radius=3), ref)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dipy_small_64D_matches_dipy(dtype):
    fdata, fbval, _ = get_fnames(name="small_64D")
    data = np.asarray(nib.load(fdata).dataobj)
    bvals = np.loadtxt(fbval)
    mask = data[..., 0] > 0.2 * data[..., 0].max()
    for vol_index in (0, int(np.argmax(bvals > 0))):
        vol = np.ascontiguousarray(data[..., vol_index], dtype=dtype)
        sigma = float(estimate_sigma(vol)[0])
        for m in (mask, None):
            ref = _dipy(vol, sigma, m)
            fast = nlmeans_classic(vol, sigma, m)
            _assert_close(fast, ref)
