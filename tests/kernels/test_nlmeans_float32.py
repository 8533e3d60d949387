"""nlmeans_classic's float32 path (float32 input) against dipy in float64."""

from __future__ import annotations

import numpy as np
import pytest
from dipy.denoise.nlmeans import nlmeans
from numba import njit

import sciimg.kernels._nlmeans_fast as nlm_fast
from sciimg.kernels._nlmeans_fast import nlmeans_classic
from sciimg.kernels._nlmeans_numba32 import _exp32_nonpos

# Ten times tighter than the bound asked of the kernel (1e-5 of the maximum).
TOL = 1e-6


def _dipy(arr, sigma, mask=None, patch_radius=1, block_radius=5, rician=True):
    """dipy on the same values in float64, so the reference is not rounded."""
    return nlmeans(
        np.asarray(arr, dtype=np.float64),
        sigma,
        mask=mask,
        patch_radius=patch_radius,
        block_radius=block_radius,
        rician=rician,
        num_threads=1,
        method="classic",
    )


def _rel_err(fast: np.ndarray, ref: np.ndarray) -> float:
    assert fast.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    diff = np.nan_to_num(np.abs(fast.astype(np.float64) - ref))
    return float(diff.max() / np.nanmax(np.abs(ref)))


def _volume(shape, seed=0, level=100.0, noise=12.0):
    """float32 structure plus Rician noise; ``level`` sets the signal."""
    rng = np.random.default_rng(seed)
    g = np.indices(shape).astype(np.float64)
    clean = level * (1 + 0.6 * np.sin(g[0] / 2.5) * np.cos(g[1] / 3.0)) + 4 * g[2]
    noisy = np.hypot(
        clean + noise * rng.standard_normal(shape), noise * rng.standard_normal(shape)
    )
    return noisy.astype(np.float32)


def _mask(shape, seed=1):
    rng = np.random.default_rng(seed)
    m = rng.random(shape) > 0.3
    m[0], m[:, -1] = True, True
    return m


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls of the float32 accumulation."""
    seen = []
    real = nlm_fast.accumulate32

    def spy(*args):
        seen.append(args[0].dtype)
        return real(*args)

    monkeypatch.setattr(nlm_fast, "accumulate32", spy)
    return seen


@pytest.mark.parametrize("rician", [True, False])
@pytest.mark.parametrize(
    ("level", "noise"),
    [(100.0, 12.0), (3000.0, 20.0), (3e5, 2e4), (0.01, 1e-3)],
    ids=["plain", "mri-range", "x1000", "small"],
)
def test_float32_path_matches_dipy(calls, level, noise, rician):
    vol = _volume((14, 15, 13), level=level, noise=noise)
    mask = _mask(vol.shape)
    ref = _dipy(vol, noise, mask, block_radius=4, rician=rician)
    fast = nlmeans_classic(vol, noise, mask, block_radius=4, rician=rician)
    assert calls == [np.float32]
    assert fast.dtype == np.float32
    assert _rel_err(fast, ref) <= TOL
    assert not fast[~mask].any()


@pytest.mark.parametrize("rician", [True, False])
def test_float32_sigma_map_matches_dipy(calls, rician):
    vol = _volume((13, 12, 15), seed=3, level=2500.0, noise=25.0)
    rng = np.random.default_rng(4)
    sigma = (15 + 20 * rng.random(vol.shape)).astype(np.float32)
    mask = _mask(vol.shape, seed=5)
    ref = _dipy(vol, sigma, mask, block_radius=3, rician=rician)
    fast = nlmeans_classic(vol, sigma, mask, block_radius=3, rician=rician)
    assert calls == [np.float32]
    assert _rel_err(fast, ref) <= TOL


def test_float32_sigma_map_with_zeros_matches_dipy(calls):
    # 0 * inf = NaN weights where sigma is 0; dipy's rule makes those 0.
    vol = _volume((12, 12, 12), seed=6)
    sigma = np.full(vol.shape, 10.0, dtype=np.float32)
    sigma[3:6, 4:8, 2:5] = 0.0
    ref = _dipy(vol, sigma, None, block_radius=2)
    fast = nlmeans_classic(vol, sigma, None, block_radius=2)
    assert calls == [np.float32]
    assert _rel_err(fast, ref) <= TOL
    assert ref[4, 5, 3] == 0 and fast[4, 5, 3] == 0


@pytest.mark.parametrize(
    ("patch_radius", "block_radius"), [(2, 4), (0, 2), (1, 5), (3, 3)]
)
def test_float32_patch_radii_match_dipy(calls, patch_radius, block_radius):
    vol = _volume((9, 10, 11), seed=9, level=1500.0, noise=30.0)
    mask = _mask(vol.shape, seed=10)
    ref = _dipy(vol, 30.0, mask, patch_radius, block_radius)
    fast = nlmeans_classic(
        vol, 30.0, mask, patch_radius=patch_radius, block_radius=block_radius
    )
    assert calls == [np.float32]
    assert _rel_err(fast, ref) <= TOL


def test_float64_input_keeps_float64_path(calls):
    vol = _volume((10, 11, 12), seed=11).astype(np.float64)
    ref = _dipy(vol, 12.0, None, block_radius=3, rician=False)
    fast = nlmeans_classic(vol, 12.0, block_radius=3, rician=False)
    assert calls == []
    # Only summation order differs from dipy.
    assert _rel_err(fast, ref) <= 1e-12


def test_tiny_sigma_falls_back_to_float64(calls):
    # q = 1 / (27 sqrt(2) sigma**2) does not fit in float32 here.
    vol = _volume((9, 9, 9), seed=12)
    vol[2:7, 2:7, 2:7] = 50.0  # equal patches: weight 1, not NaN
    ref = _dipy(vol, 1e-21, None, block_radius=2, rician=False)
    fast = nlmeans_classic(vol, 1e-21, block_radius=2, rician=False)
    assert calls == []
    assert _rel_err(fast, ref) <= TOL


# Not cached: the test module's import name depends on how pytest is run.
@njit
def _exp32_all(x):
    out = np.empty_like(x)
    for k in range(x.size):
        out[k] = _exp32_nonpos(x[k])
    return out


def test_exp32_accuracy():
    x = np.concatenate(
        [-np.linspace(0, 87, 200_001), -np.geomspace(1e-30, 87, 10_001)]
    ).astype(np.float32)
    got = _exp32_all(x).astype(np.float64)
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(got / want - 1)) < 2e-7
    assert got[0] == 1.0
    special = np.array([-87.5, -200, -np.inf, np.nan, -0.0], dtype=np.float32)
    np.testing.assert_array_equal(_exp32_all(special), [0, 0, 0, np.nan, 1])
