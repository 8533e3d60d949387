"""The fast median filter and mask against scipy and dipy, called directly."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from dipy.segment.mask import median_otsu
from scipy.ndimage import gaussian_filter, median_filter

from sciimg.kernels._median_fast import median_filter3d, median_otsu_mask


def _random(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return (rng.normal(size=shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 1000) + 1, shape).astype(
        dtype
    )


def _head(shape, seed=0, noise=40.0):
    """A smooth ellipsoid head with Rician-like noise and a dark background."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = sum((g / s) ** 2 for g, s in zip(grids, (0.8, 0.9, 0.7), strict=True)) < 1
    signal = gaussian_filter(inside * 800.0, 1.0) + 200.0 * inside * grids[0]
    real = signal + rng.normal(0, noise, shape)
    imag = rng.normal(0, noise, shape)
    return np.hypot(real, imag)


def _assert_same_median(vol, radius):
    ours = median_filter3d(vol, radius)
    ref = median_filter(vol, size=2 * radius + 1)
    assert ours.dtype == ref.dtype
    assert ours.shape == ref.shape
    assert np.array_equal(ours, ref)


@pytest.mark.parametrize("radius", [1, 2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8])
def test_random_data_matches_scipy(radius, dtype):
    _assert_same_median(_random((14, 17, 12), dtype), radius)


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_smooth_data_matches_scipy(radius):
    vol = gaussian_filter(_random((20, 16, 18), np.float64), 2.0)
    _assert_same_median(vol, radius)
    _assert_same_median(_head((22, 19, 16)).astype(np.float32), radius)


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_ties_and_constant_regions_match_scipy(radius):
    rng = np.random.default_rng(1)
    few = rng.integers(0, 3, (15, 13, 16)).astype(np.int16)
    _assert_same_median(few, radius)
    blocky = np.zeros((18, 14, 16), dtype=np.float32)
    blocky[4:12, 3:10, 5:] = 7.0
    blocky[:, :, :3] = -2.5
    blocky[9:, 9:, 9:] += rng.integers(0, 2, (9, 5, 7))
    _assert_same_median(blocky, radius)
    _assert_same_median(np.full((9, 8, 7), 3, dtype=np.uint8), radius)


@pytest.mark.parametrize(
    "shape", [(3, 20, 5), (1, 12, 9), (2, 2, 2), (1, 1, 1), (9, 1, 4)]
)
@pytest.mark.parametrize("radius", [1, 4])
def test_volumes_smaller_than_the_window(shape, radius):
    # Reflection repeats several times when the window outgrows an axis.
    _assert_same_median(_random(shape, np.float32, seed=2), radius)
    _assert_same_median(_random(shape, np.uint8, seed=3), radius)


def test_several_tiles_match_scipy():
    # Larger than one tile along every axis, with partial tiles at the end.
    vol = _head((41, 36, 35), seed=4).astype(np.float32)
    _assert_same_median(vol, 4)
    _assert_same_median(_random((45, 40, 39), np.int16, seed=5), 1)


def test_wide_windows_match_scipy():
    # From radius 13 on, tiles are renumbered and counted in int32.
    _assert_same_median(_random((6, 7, 5), np.float32, seed=6), 13)
    _assert_same_median(_random((5, 5, 6), np.int16, seed=7), 16)


def _brute_median(vol, radius):
    """Sort every window of the volume extended as scipy documents 'reflect'."""
    w = 2 * radius + 1
    index = []
    for n in vol.shape:
        i = np.arange(-radius, n + radius) % (2 * n)
        index.append(np.where(i >= n, 2 * n - 1 - i, i))
    padded = vol[np.ix_(*index)]
    windows = np.lib.stride_tricks.sliding_window_view(padded, (w, w, w))
    return np.sort(windows.reshape((*vol.shape, -1)), axis=-1)[..., w**3 // 2]


def test_axes_far_shorter_than_the_window_follow_reflect():
    # scipy reads outside the array when radius >= 4 * n on an axis of n >= 2;
    # the documented extension decides there instead.
    for shape, radius in (((2, 5, 3), 8), ((3, 2, 4), 12), ((1, 2, 1), 9)):
        vol = _random(shape, np.int16, seed=radius)
        assert np.array_equal(median_filter3d(vol, radius), _brute_median(vol, radius))
    vol = _random((7, 5, 6), np.float32, seed=10)
    assert np.array_equal(median_filter3d(vol, 3), _brute_median(vol, 3))


def test_any_layout_and_byte_order_match_scipy():
    vol = _random((11, 12, 13), np.float64, seed=11)
    _assert_same_median(np.asfortranarray(vol), 2)
    _assert_same_median(vol[::2, :, ::-1], 2)
    _assert_same_median(vol.astype(">f4"), 1)
    _assert_same_median(vol > 0, 1)


def test_radius_zero_is_a_copy():
    vol = _random((4, 5, 6), np.float32)
    out = median_filter3d(vol, 0)
    assert out is not vol
    assert np.array_equal(out, median_filter(vol, size=1))


def test_non_finite_values_do_not_fail():
    vol = _random((8, 9, 7), np.float64)
    vol[2, 3, 4] = np.nan
    vol[5, 5, 5] = np.inf
    vol[0, 0, 0] = -np.inf
    out = median_filter3d(vol, 1)
    assert out.shape == vol.shape
    # Far from the NaN the reference is well defined; there they agree.
    ref = median_filter(vol, size=3)
    far = np.ones(vol.shape, dtype=bool)
    far[1:4, 2:5, 3:6] = False
    assert np.array_equal(out[far], ref[far])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        median_filter3d(np.zeros((4, 4)), 1)
    with pytest.raises(ValueError):
        median_filter3d(np.zeros((4, 4, 4)), -1)
    with pytest.raises(TypeError):
        median_filter3d(np.zeros((4, 4, 4), dtype=complex), 1)


def _dipy_mask(vol, **kw):
    return median_otsu(vol, **kw)[1]


@pytest.mark.parametrize("numpass", [1, 2])
def test_mask_matches_dipy_on_small_64d(small_64d, numpass):
    data = np.asarray(nib.load(small_64d[0]).dataobj)
    bvals = np.loadtxt(small_64d[1])
    b0 = np.mean(data[..., bvals <= 10], axis=-1)
    for dilate in (None, 1):
        kw = {"median_radius": 4, "numpass": numpass, "dilate": dilate}
        assert np.array_equal(median_otsu_mask(b0, **kw), _dipy_mask(b0, **kw))


def test_mask_matches_dipy_on_s0_10():
    from dipy.data import get_fnames

    raw = np.asarray(nib.load(get_fnames(name="S0_10")).dataobj)[..., 0]
    for vol, radius in ((raw, 4), (raw.astype(np.float32), 2)):
        kw = {"median_radius": radius, "numpass": 2, "dilate": 1}
        assert np.array_equal(median_otsu_mask(vol, **kw), _dipy_mask(vol, **kw))


@pytest.mark.parametrize("numpass", [1, 2])
@pytest.mark.parametrize("dilate", [None, 1, 2])
@pytest.mark.parametrize("finalize_mask", [False, True])
def test_mask_matches_dipy_on_a_synthetic_head(numpass, dilate, finalize_mask):
    vol = _head((30, 34, 26), seed=8, noise=120.0).astype(np.float32)
    kw = {
        "median_radius": 3,
        "numpass": numpass,
        "dilate": dilate,
        "finalize_mask": finalize_mask,
    }
    ours = median_otsu_mask(vol, **kw)
    assert ours.dtype == bool
    assert np.array_equal(ours, _dipy_mask(vol, **kw))


def test_mask_defaults_match_dipy_with_the_same_settings():
    vol = _head((24, 28, 20), seed=9)
    kw = {"median_radius": 4, "numpass": 2, "dilate": 1, "finalize_mask": False}
    assert np.array_equal(median_otsu_mask(vol), _dipy_mask(vol, **kw))
