"""fit_tensor against dipy's TensorModel, both called on the same data."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.data import get_3shell_gtab, get_fnames
from dipy.io.gradients import read_bvals_bvecs
from dipy.reconst import dti

from sciimg.kernels._tensor_fast import (
    _coefficients,
    _decompose,
    _Design,
    _exp_neg,
    _log_clipped,
    fit_tensor,
)
from sciimg.kernels._tensor_numba import _eigh_many

METHODS = ("WLS", "OLS")


def dipy_params(data, gtab, mask=None, method="WLS"):
    return dti.TensorModel(gtab, fit_method=method).fit(data, mask=mask).model_params


def assert_like_dipy(ours: np.ndarray, ref: np.ndarray) -> int:
    """The tolerances of the task; returns how many voxels had their
    eigenvectors compared (those whose eigenvalues are well apart)."""
    assert ours.dtype == np.float64
    assert ours.shape == ref.shape
    ev, er = ours[..., :3], ref[..., :3]
    scale = np.abs(er).max(axis=-1)
    fitted = scale > 0
    np.testing.assert_array_equal(ours[~fitted], 0.0)
    tol = 1e-6 * scale[fitted]
    assert np.all(np.abs(ev - er)[fitted].max(axis=-1) <= tol)
    md = np.abs(dti.mean_diffusivity(ev) - dti.mean_diffusivity(er))[fitted]
    assert np.all(md <= tol)
    fa = dti.fractional_anisotropy(ev) - dti.fractional_anisotropy(er)
    assert np.abs(fa[fitted]).max(initial=0) <= 1e-5
    # Eigenvectors of well-separated eigenvalues: the same vectors, and the
    # same signs (the decomposition takes LAPACK's steps, as dipy's does).
    gap = np.minimum(er[..., 0] - er[..., 1], er[..., 1] - er[..., 2])
    apart = fitted & (gap > 1e-4 * np.where(fitted, scale, 1.0))
    vo = ours[..., 3:].reshape(*ours.shape[:-1], 3, 3)[apart]
    vr = ref[..., 3:].reshape(*ref.shape[:-1], 3, 3)[apart]
    dots = np.abs(np.einsum("nij,nij->nj", vo, vr))
    assert np.all(dots > 1 - 1e-9)
    np.testing.assert_allclose(vo, vr, rtol=0, atol=1e-6)
    return int(apart.sum())


def phantom(gtab, n_vox, seed, snr=25.0):
    """Random prolate-to-oblate tensors, S0 in [300, 1500], Rician noise."""
    rng = np.random.default_rng(seed)
    l1 = rng.uniform(0.8e-3, 2.5e-3, n_vox)
    l2 = l1 * rng.uniform(0.15, 1.0, n_vox)
    l3 = l2 * rng.uniform(0.5, 1.0, n_vox)
    q, _ = np.linalg.qr(rng.normal(size=(n_vox, 3, 3)))
    tensors = np.einsum("nij,nj,nkj->nik", q, np.c_[l1, l2, l3], q)
    adc = np.einsum("vi,nij,vj->nv", gtab.bvecs, tensors, gtab.bvecs)
    s0 = rng.uniform(300, 1500, n_vox)[:, None]
    signal = s0 * np.exp(-gtab.bvals * adc)
    sigma = s0 / snr
    return np.hypot(
        signal + sigma * rng.normal(size=signal.shape),
        sigma * rng.normal(size=signal.shape),
    )


@pytest.fixture(scope="module")
def shell3():
    """dipy's three-shell table (b 0/1000/2000/3500, 193 volumes), a phantom
    shaped (6, 5, 4) and damaged voxels: all zero, negative, partly zero."""
    gtab = get_3shell_gtab()
    data = phantom(gtab, 120, seed=1).reshape(6, 5, 4, -1)
    data[0, 0, 0] = 0.0
    data[0, 0, 1] = -5.0
    data[0, 0, 2, ::3] = 0.0
    data[5, 4, 3, 10:40] = -1.0
    return gtab, data


def load_real(name):
    fdata, fbval, fbvec = get_fnames(name=name)
    bvals, bvecs = read_bvals_bvecs(str(fbval), str(fbvec))
    return nib.load(fdata).get_fdata(), gradient_table(bvals, bvecs=bvecs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["small_64D", "small_101D"])
def test_real_data_like_dipy(name, method, dtype):
    data, gtab = load_real(name)
    data = data.astype(dtype)
    compared = assert_like_dipy(
        fit_tensor(data, gtab, fit_method=method),
        dipy_params(data, gtab, method=method),
    )
    assert compared > 0.9 * np.prod(data.shape[:-1])
    # A brain-like mask: the voxels whose b0 signal is above its median.
    b0 = data[..., gtab.b0s_mask].mean(axis=-1)
    mask = b0 > np.median(b0)
    assert_like_dipy(
        fit_tensor(data, gtab, mask, fit_method=method),
        dipy_params(data, gtab, mask, method=method),
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", METHODS)
def test_phantom_masks_like_dipy(shell3, method, dtype):
    gtab, data = shell3
    data = data.astype(dtype)
    rng = np.random.default_rng(7)
    edges = np.ones(data.shape[:-1], dtype=bool)
    edges[1:-1, 1:-1, 1:-1] = False  # the six faces of the block
    masks = {
        "none": None,
        "partial": rng.random(data.shape[:-1]) < 0.4,
        "edges": edges,
        "all": np.ones(data.shape[:-1], dtype=bool),
        "one voxel": np.arange(data[..., 0].size).reshape(data.shape[:-1]) == 7,
    }
    for name, mask in masks.items():
        ours = fit_tensor(data, gtab, mask, fit_method=method)
        compared = assert_like_dipy(ours, dipy_params(data, gtab, mask, method=method))
        assert compared > 0, name


@pytest.mark.parametrize("method", METHODS)
def test_empty_mask_gives_zeros(shell3, method):
    gtab, data = shell3
    empty = np.zeros(data.shape[:-1], dtype=bool)
    ours = fit_tensor(data, gtab, empty, fit_method=method)
    np.testing.assert_array_equal(ours, dipy_params(data, gtab, empty, method=method))
    assert ours.shape == (*data.shape[:-1], 12)
    assert not ours.any()


@pytest.mark.parametrize("method", METHODS)
def test_any_leading_shape(shell3, method):
    gtab, data = shell3
    flat = data.reshape(-1, data.shape[-1])
    ref = dipy_params(flat, gtab, method=method)
    ours2d = fit_tensor(flat, gtab, fit_method=method)
    assert_like_dipy(ours2d, ref)
    np.testing.assert_array_equal(
        fit_tensor(data, gtab, fit_method=method), ours2d.reshape(*data.shape[:-1], 12)
    )
    one = fit_tensor(flat[5], gtab, fit_method=method.lower())
    assert one.shape == (12,)
    assert_like_dipy(one[None], ref[5:6])
    # A strided (non-contiguous) view is read as it stands.
    view = data[:, ::2]
    assert_like_dipy(
        fit_tensor(view, gtab, fit_method=method),
        dipy_params(view, gtab, method=method),
    )


def test_integer_data_like_dipy():
    data, gtab = load_real("small_64D")
    data = data.astype(np.int16)[2:6, 2:6, 2:6]
    for method in METHODS:
        ours = fit_tensor(data, gtab, fit_method=method)
        assert_like_dipy(ours, dipy_params(data, gtab, method=method))


def test_rank_deficient_design_takes_dipys_route():
    """One shell and no b0: X is rank 6, the weighted normal equations are
    singular, and every voxel goes through dipy's pseudo-inverse."""
    rng = np.random.default_rng(3)
    bvecs = rng.normal(size=(30, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    gtab = gradient_table(np.full(30, 1000.0), bvecs=bvecs)
    data = phantom(gtab, 40, seed=4)
    for method in METHODS:
        ours = fit_tensor(data, gtab, fit_method=method)
        assert_like_dipy(ours, dipy_params(data, gtab, method=method))


def test_coefficients_are_dipys(shell3):
    """The weighted solve itself, before the eigen-decomposition."""
    gtab, data = shell3
    flat = data.reshape(-1, data.shape[-1])
    des = _Design(gtab)
    ours = _coefficients(flat, np.arange(len(flat)), True, des)
    clipped = np.maximum(flat, dti.MIN_POSITIVE_SIGNAL)
    ref, _ = dti.wls_fit_tensor(des.x, clipped, return_lower_triangular=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())


def test_nan_fails_as_dipy(shell3):
    gtab, data = shell3
    bad = data[:2, :2].copy()
    bad[0, 0, 1, 5] = np.nan
    for method in METHODS:
        with pytest.raises(np.linalg.LinAlgError):
            dipy_params(bad, gtab, method=method)
        with pytest.raises(np.linalg.LinAlgError):
            fit_tensor(bad, gtab, fit_method=method)


def test_refuses_bad_arguments(shell3):
    gtab, data = shell3
    for method in ("NLLS", "RESTORE", "LS", "", None):
        with pytest.raises(ValueError, match="fit_method"):
            fit_tensor(data, gtab, fit_method=method)
    with pytest.raises(ValueError, match="Mask"):
        fit_tensor(data, gtab, np.ones(data.shape[:-2], dtype=bool))
    with pytest.raises(ValueError, match="volumes"):
        fit_tensor(data[..., :-1], gtab)


def symmetric_sets(rng, n=3000):
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))

    def rotated(evals):
        return np.einsum("nij,nj,nkj->nik", q, evals, q)

    gauss = rng.normal(size=(n, 3, 3))
    ints = rng.integers(-3, 4, size=(n, 3, 3)).astype(float)
    diag = np.zeros((n, 3, 3))
    diag[:, [0, 1, 2], [0, 1, 2]] = rng.uniform(-1, 1, (n, 3))
    no_a31 = diag.copy()
    no_a31[:, 1, 0] = no_a31[:, 0, 1] = rng.normal(size=n)
    prolate = np.c_[rng.uniform(1, 2, n), np.full(n, 0.3), np.full(n, 0.3)] * 1e-3
    return {
        "gaussian": gauss + gauss.transpose(0, 2, 1),
        "tensors": rotated(np.sort(rng.uniform(0.1e-3, 3e-3, (n, 3)), axis=1)),
        "prolate (tied)": rotated(prolate),
        "isotropic (tied)": rotated(np.full((n, 3), 1e-3)),
        "integers": ints + ints.transpose(0, 2, 1),
        "diagonal": diag,
        "a31 = 0": no_a31,
        "tiny": 1e-19 * (gauss + gauss.transpose(0, 2, 1)),
        "zero": np.zeros((4, 3, 3)),
    }


def assert_same_eigensystem(w, v, ref_w, ref_v, *, signs=True, ulps=8, vec_tol=1e-10):
    """``(w, v)`` is ``numpy.linalg.eigh``'s ``(ref_w, ref_v)`` (eigenvectors in
    columns), up to the rounding of the BLAS kernels the CPU runs.

    OpenBLAS picks its kernels by CPU, so NumPy's own results differ by an ulp
    or two from one CPU to another. Eigenvalues agree within ``ulps`` of the
    largest. Where all three are apart, the eigenvectors agree, signs included
    (unless ``signs`` is false). Where two or three tie, or exact zeros split
    the iterations early (integer matrices), an ulp decides the path the
    iterations take, and so NumPy's own basis of a tied eigenspace and the
    signs differ between CPUs: pass ``signs=False`` for such matrices. Tied
    eigenspaces are compared by their projectors.
    """
    scale = np.abs(ref_w).max(axis=-1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    assert np.all(np.abs(w - ref_w) <= ulps * np.finfo(float).eps * scale)
    gap = 1e-6 * scale
    for k in range(len(w)):
        ties = np.abs(ref_w[k][:, None] - ref_w[k][None, :]) <= gap[k]
        up_to_sign = ties.sum() > 3 or not signs
        for j in range(3):
            group = np.flatnonzero(ties[j])
            if len(group) == 1:
                sign = np.sign(v[k][:, j] @ ref_v[k][:, j]) if up_to_sign else 1.0
                np.testing.assert_allclose(
                    sign * v[k][:, j], ref_v[k][:, j], atol=vec_tol
                )
            else:
                ours = v[k][:, group] @ v[k][:, group].T
                ref = ref_v[k][:, group] @ ref_v[k][:, group].T
                np.testing.assert_allclose(ours, ref, atol=vec_tol)
    np.testing.assert_allclose(
        np.einsum("nij,nik->njk", v, v),
        np.broadcast_to(np.eye(3), v.shape),
        atol=1e-13,
    )


def test_eigh_is_numpys():
    """Eigenvalues and eigenvectors, signs included, are numpy.linalg.eigh's
    (with tied eigenvalues too): the same LAPACK steps in the same order."""
    for name, mats in symmetric_sets(np.random.default_rng(11)).items():
        mats = np.ascontiguousarray(mats)
        w = np.empty(mats.shape[:2])
        v = np.empty(mats.shape)
        ok = np.empty(len(mats), dtype=bool)
        _eigh_many(mats, w, v, ok)
        assert ok.all(), name
        ref_w, ref_v = np.linalg.eigh(mats)
        generic = name in ("gaussian", "tensors", "tiny")
        try:
            assert_same_eigensystem(w, v, ref_w, ref_v, signs=generic)
        except AssertionError as exc:
            raise AssertionError(name) from exc


def test_eigh_defers_outside_its_range():
    mats = np.zeros((3, 3, 3))
    mats[0, 0, 0] = np.nan
    mats[1] = 1e200 * np.eye(3)  # LAPACK would rescale
    mats[2] = 1e-160 * np.eye(3)
    ok = np.empty(3, dtype=bool)
    _eigh_many(mats, np.empty((3, 3)), np.empty((3, 3, 3)), ok)
    assert not ok.any()


def test_decompose_is_eig_from_lo_tri():
    """dipy's post-processing: descending order, the min-diffusivity clip,
    and dipy's own sort where eigenvalues tie."""
    rng = np.random.default_rng(5)
    beta = rng.normal(scale=1e-3, size=(50, 7))
    beta[:10, :6] = [1e-3, 0, 1e-3, 0, 0, 1e-3]  # isotropic: three ties
    beta[10:20, :6] = [2e-3, 0, 5e-4, 0, 0, 5e-4]  # prolate: two ties
    beta[20:25, :6] = 0.0
    index = rng.permutation(80)[:50]
    params = np.zeros((80, 12))
    _decompose(beta, index, 1e-7, params)
    ref = dti.eig_from_lo_tri(beta, min_diffusivity=1e-7)
    ours = params[index]
    assert_same_eigensystem(
        ours[:, :3],
        ours[:, 3:].reshape(-1, 3, 3),
        ref[:, :3],
        ref[:, 3:].reshape(-1, 3, 3),
        signs=False,  # ties and zeros throughout
    )
    assert not np.delete(params, index, axis=0).any()


def test_log_and_exp_to_an_ulp():
    rng = np.random.default_rng(2)
    x = np.r_[10 ** rng.uniform(-6, 8, 20000), 1, 2, 0.5, np.sqrt(2), np.sqrt(0.5)]
    x = np.r_[x, 0.0, -3.0, -np.inf, np.inf, np.nan]
    out = np.empty_like(x)
    _log_clipped(x, 1e-4, out, np.empty(x.size, dtype=np.int64))
    ref = np.log(np.maximum(x, 1e-4))
    finite = np.isfinite(ref) & (ref != 0)
    ulp = np.spacing(np.abs(ref[finite]))
    assert np.all(np.abs(out[finite] - ref[finite]) <= ulp)
    np.testing.assert_array_equal(out[~finite], ref[~finite])
    y = np.r_[-rng.uniform(0, 700, 20000), 0.0, -0.5 * np.log(2), -708.0]
    out = np.empty_like(y)
    _exp_neg(y, out, np.empty(y.size, dtype=np.int64))
    np.testing.assert_allclose(out, np.exp(y), rtol=4.5e-16, atol=0)
