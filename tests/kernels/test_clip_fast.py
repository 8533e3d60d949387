"""The numba clipped co-add equals the NumPy reference, decision for decision."""

import itertools

import numpy as np
import pytest
from astropy.stats import sigma_clip

from sciimg.astro import clipped_mean as reference
from sciimg.kernels._clip_fast import _network, clipped_mean


def _stack(n, tail=(9, 7), seed=0, dtype=np.float64):
    """Noisy visits around 10, each value with its own variance; 5% cosmic rays."""
    rng = np.random.default_rng(seed)
    var = rng.uniform(0.5, 2.0, (n, *tail))
    x = 10 + rng.normal(0, np.sqrt(var))
    hits = rng.random(x.shape) < 0.05
    x[hits] += rng.uniform(5, 100, hits.sum())
    return x.astype(dtype), var.astype(dtype)


def _spoil(x, var, seed=0):
    """NaN and inf values, zero, negative, NaN and inf variances; pixel (0, 0)
    without any usable value."""
    rng = np.random.default_rng(seed)
    x, var = x.copy(), var.copy()
    for where, array, bad in (
        (0.04, x, np.nan),
        (0.02, x, np.inf),
        (0.02, x, -np.inf),
        (0.03, var, 0.0),
        (0.03, var, -1.0),
        (0.02, var, np.nan),
        (0.02, var, np.inf),
    ):
        array[rng.random(x.shape) < where] = bad
    x[:, 0, 0] = np.nan
    return x, var


def _assert_same(got, want):
    (mean, var, depth, clipped), (r_mean, r_var, r_depth, r_clipped) = got, want
    for a, r in ((mean, r_mean), (var, r_var)):
        assert a.dtype == np.float64
        assert a.shape == np.shape(r)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(r))
        np.testing.assert_allclose(a, r, rtol=1e-12)
    assert depth.dtype == np.asarray(r_depth).dtype
    assert clipped.dtype == np.bool_
    np.testing.assert_array_equal(depth, r_depth)
    np.testing.assert_array_equal(clipped, r_clipped)


def _both(*args, **kw):
    return clipped_mean(*args, **kw), reference(*args, **kw)


@pytest.mark.parametrize(
    ("n", "clip", "iterations", "nsigma"),
    list(
        itertools.product([1, 2, 3, 24], ["variance", "stack"], [1, 2, 5], [2.0, 3.0])
    ),
)
def test_random_stacks_equal_reference(n, clip, iterations, nsigma):
    x, var = _stack(n, seed=n)
    got, want = _both(x, var, clip=clip, iterations=iterations, nsigma=nsigma)
    _assert_same(got, want)
    if n == 24:
        assert want[3].any()  # the outliers were clipped


@pytest.mark.parametrize("clip", ["variance", "stack"])
@pytest.mark.parametrize("n", [3, 24])
def test_invalid_values_and_valid_mask_equal_reference(n, clip):
    x, var = _spoil(*_stack(n, seed=10 + n), seed=n)
    valid = np.random.default_rng(n).random(x.shape) > 0.1
    valid[:, 1, 1] = False  # a pixel where nothing is allowed
    for allowed in (None, valid):
        got, want = _both(x, var, allowed, clip=clip)
        _assert_same(got, want)
        assert got[2][0, 0] == 0 and np.isnan(got[0][0, 0])
    assert got[2][1, 1] == 0 and not got[3][1, 1]


@pytest.mark.parametrize("clip", ["variance", "stack"])
def test_pixels_never_clipped_empty(clip):
    # Two values whose spread is too small to reach either from their median:
    # every value would go, so the pixel keeps both.
    x = np.array([[0.0, 0.0, 5.0], [10.0, 1.0, 5.1]])
    var = np.full_like(x, 0.01)
    got, want = _both(x, var, clip=clip, nsigma=0.5)
    _assert_same(got, want)
    np.testing.assert_array_equal(got[2], [2, 2, 2])
    assert not got[3].any()


def test_float32_input_equals_reference():
    x, var = _stack(24, tail=(40, 33), seed=5, dtype=np.float32)
    for clip in ("variance", "stack"):
        _assert_same(*_both(x, var, clip=clip))


@pytest.mark.parametrize("tail", [(), (5,), (6, 4), (2, 3, 4), (0, 3)])
def test_trailing_shapes(tail):
    x, var = _stack(7, tail=tail, seed=len(tail))
    got, want = _both(x, var, clip="stack")
    _assert_same(got, want)
    assert all(a.shape == tail for a in got)


def test_broadcast_variances_and_integer_values():
    x, var = _stack(9, seed=2)
    _assert_same(*_both(x, var[:, :1, :1]))
    _assert_same(*_both(np.round(x).astype(np.int32), var))


def test_scalar_refused():
    with pytest.raises(ValueError, match="axis 0"):
        clipped_mean(np.float64(1.0), np.float64(1.0))


def test_sorting_network_sorts():
    # The 0-1 principle: a network that sorts every sequence of 0s and 1s sorts
    # everything.
    for n in range(1, 13):
        pairs = _network(n)
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        for i, j in pairs:
            lo, hi = (
                np.minimum(bits[:, i], bits[:, j]),
                np.maximum(bits[:, i], bits[:, j]),
            )
            bits[:, i], bits[:, j] = lo, hi
        assert (np.diff(bits, axis=1) >= 0).all(), n
    x = np.random.default_rng(0).integers(0, 9, (50, 100))
    for i, j in _network(100):
        x[:, [i, j]] = np.sort(x[:, [i, j]], axis=1)
    assert (np.diff(x, axis=1) >= 0).all()


def _astropy_kept(x, nsigma, iterations):
    clipped = sigma_clip(
        x, sigma=nsigma, maxiters=iterations, cenfunc="median", stdfunc="std", axis=0
    )
    return ~np.ma.getmaskarray(clipped)


@pytest.mark.parametrize("iterations", [1, 2])
def test_stack_clip_keeps_what_astropy_keeps(iterations):
    # Continuous values (no ties at a limit), outliers far out, no pixel clipped
    # empty: astropy's sigma_clip keeps exactly the same values.
    x, var = _stack(24, tail=(30, 30), seed=7)
    kept = _astropy_kept(x, 3.0, iterations)
    assert kept.any(0).all()
    got = clipped_mean(x, var, clip="stack", iterations=iterations)
    # The co-add of exactly astropy's values, unclipped: the same numbers only if
    # the kept values are the same.
    theirs = clipped_mean(x, var, kept, iterations=0)
    np.testing.assert_array_equal(got[2], kept.sum(0))
    np.testing.assert_array_equal(got[0], theirs[0])
    np.testing.assert_array_equal(got[1], theirs[1])


def test_where_astropy_differs():
    ones = np.ones((6, 1))
    # Clipped empty: astropy drops every value; here the pixel keeps both.
    x = np.array([[0.0], [1.0]])
    assert not _astropy_kept(x, 0.5, 2).any()
    assert clipped_mean(x, ones[:2], clip="stack", nsigma=0.5)[2][0] == 2
    # A value dropped in the first pass but inside the bounds of the last: 9 is
    # out of [1.1, 8.9] (median 5, std 3.9), then [2, 8, 8] give [5.2, 10.8].
    # astropy tests every value against the last bounds and takes 9 back; here,
    # as in the reference, a dropped value stays dropped.
    x = np.array([2.0, 8.0, 0.0, 9.0, 0.0, 8.0])[:, None]
    np.testing.assert_array_equal(_astropy_kept(x, 1.0, 2)[:, 0], [0, 1, 0, 1, 0, 1])
    got, want = _both(x, ones, clip="stack", nsigma=1.0)
    _assert_same(got, want)
    assert got[2][0] == 2 and got[0][0] == 8.0
