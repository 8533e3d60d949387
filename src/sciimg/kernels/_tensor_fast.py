"""Diffusion-tensor fits (WLS, OLS) that give dipy's ``TensorModel`` parameters.

dipy's weighted fit takes a pseudo-inverse (an SVD) of every voxel's weighted
design matrix; here the same weighted least-squares problem is solved through
its 7x7 normal equations, built with matrix products over a block of voxels
(BLAS) and solved one voxel at a time by a compiled Cholesky factorisation.
The few voxels where the normal equations are not trustworthy (near-singular
weighted design, overflowing weights) are handed back to dipy's own formula,
so every voxel gets dipy's answer to rounding. The eigen-decomposition follows
LAPACK's steps (``_tensor_numba``), so the eigenvectors carry dipy's signs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sciimg.kernels._tensor_numba import _tensor_params

__all__ = ["fit_tensor"]

# dipy.reconst.dti.MIN_POSITIVE_SIGNAL: signals are clipped to it before the log.
_MIN_SIGNAL = 0.0001
# dipy's wls/ols_fit_tensor clip eigenvalues at this over the largest b entry.
_EVAL_TOL = 1e-6
# exp() of more than this overflows: dipy's weights become inf there.
_EXP_MAX = float(np.log(np.finfo(np.float64).max))
# Smallest Cholesky pivot of the unit-diagonal normal matrix we still trust:
# the normal equations lose about eps / pivot, far inside the tolerance here.
_MIN_PIVOT = 1e-7
# Signal values per block of voxels: the block's arrays stay in cache.
_BLOCK_VALUES = 1 << 16
_METHODS = ("WLS", "OLS")


# Fused multiply-adds only: the range reductions below depend on the order of
# their operations, which reassociation could undo.
_FMA = {"contract"}
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_ROUND = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer
_ROUND_BITS = 0x4338000000000000  # its bit pattern


@njit(cache=True, nogil=True, fastmath=_FMA, error_model="numpy")
def _exp_neg(x, out, bits):  # pragma: no cover - compiled
    """out = exp(x) for x <= 0, to about 1 ulp, in SIMD-friendly loops
    (libm's exp is called one value at a time); x < -708 gives ~1e-308."""
    scale = bits.view(np.float64)
    for j in range(x.size):
        xj = max(x[j], -708.0)
        t = xj * 1.4426950408889634 + _ROUND
        k = t - _ROUND
        r = (xj - k * _LN2_HI) - k * _LN2_LO
        p = 1.0 / 479001600.0  # Taylor series of exp on |r| <= ln(2) / 2
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        out[j] = p
        scale[j] = t
    for j in range(x.size):  # 2**k from the integer left in t's low bits
        bits[j] = (bits[j] - _ROUND_BITS + 1023) << 52
    for j in range(x.size):
        out[j] *= scale[j]


@njit(cache=True, nogil=True, fastmath=_FMA, error_model="numpy")
def _log_clipped(x, floor, out, bits):  # pragma: no cover - compiled
    """out = log(max(x, floor)) for float64 x, floor > 0 normal, to 1 ulp (as
    NumPy's, to rounding), in SIMD-friendly loops."""
    mant = bits.view(np.float64)
    ubits = bits.view(np.uint64)
    expo = out.view(np.uint64)
    for j in range(x.size):
        mant[j] = max(x[j], floor)
    for j in range(x.size):
        # x = 2**e * m with m in [sqrt(1/2), sqrt(2)): shift the exponent
        # field by the bits of sqrt(1/2), as fdlibm's log does; e goes out
        # as the double 2**52 + 2048 + e (exact). Unsigned, all of it: AVX2
        # has no 64-bit arithmetic shift or integer-to-double conversion.
        b = ubits[j] + np.uint64(0x3FF0000000000000 - 0x3FE6A09E00000000)
        expo[j] = (b >> np.uint64(52)) + np.uint64(0x4330000000000000 - 1023 + 2048)
        ubits[j] = (b & np.uint64(0x000FFFFFFFFFFFFF)) + np.uint64(0x3FE6A09E00000000)
    for j in range(x.size):
        e = out[j] - 4503599627372544.0  # 2**52 + 2048
        f = mant[j] - 1.0
        sv = f / (2.0 + f)
        z = sv * sv
        # log(1 + f) = 2 atanh(s) = f - s (f - R), R = sum 2 z**k / (2k + 1)
        r = 2.0 / 21.0
        r = r * z + 2.0 / 19.0
        r = r * z + 2.0 / 17.0
        r = r * z + 2.0 / 15.0
        r = r * z + 2.0 / 13.0
        r = r * z + 2.0 / 11.0
        r = r * z + 2.0 / 9.0
        r = r * z + 2.0 / 7.0
        r = r * z + 2.0 / 5.0
        r = r * z + 2.0 / 3.0
        r *= z
        out[j] = e * _LN2_HI + ((f - sv * (f - r)) + e * _LN2_LO)
    for j in range(x.size):
        if not x[j] < np.inf:  # NaN and inf: as NumPy
            out[j] = np.log(max(x[j], floor))


@njit(cache=True, nogil=True, error_model="numpy")
def _log_rows(rows, idx, out):  # pragma: no cover - compiled
    """out[v] = log(max(rows[idx[v]], min_signal)), float64 rows."""
    bits = np.empty(rows.shape[1], dtype=np.int64)
    for v in range(idx.size):
        _log_clipped(rows[idx[v]], _MIN_SIGNAL, out[v], bits)


@njit(cache=True, nogil=True, error_model="numpy")
def _weigh(pred, logs, ok):  # pragma: no cover - compiled
    """pred <- w**2 = exp(2 pred) and logs <- w**2 logs, row by row.

    Each row's weights are divided by its largest (which leaves its weighted
    solution unchanged and keeps w**2 in range); ``ok`` is False where dipy's
    weights overflow (or are NaN): dipy's own formula then takes the voxel.
    """
    n = pred.shape[1]
    tmp = np.empty(n)
    bits = np.empty(n, dtype=np.int64)
    for v in range(pred.shape[0]):
        top = -np.inf
        good = True
        for j in range(n):
            top = max(top, pred[v, j])
            good &= pred[v, j] <= _EXP_MAX
        ok[v] = good
        for j in range(n):
            tmp[j] = 2.0 * (pred[v, j] - top)
        _exp_neg(tmp, pred[v], bits)
        for j in range(n):
            logs[v, j] *= pred[v, j]


@njit(cache=True, nogil=True, error_model="numpy")
def _solve_rows(a28, rhs, ok, beta):  # pragma: no cover - compiled
    """beta[v] = A_v^-1 rhs[v] where ok[v], A_v symmetric 7x7 packed (lower,
    row by row) in a28[v], by Cholesky.

    A is scaled to a unit diagonal first (Jacobi), which removes the spread
    between the b-value columns and the constant column. ok[v] turns False
    (beta[v] left as it was) where A is not safely positive definite.
    """
    s = np.empty((7, 7))
    d = np.empty(7)
    y = np.empty(7)
    for v in range(a28.shape[0]):
        if not ok[v]:
            continue
        good = True
        p = 0
        for k in range(7):
            for m in range(k + 1):
                s[k, m] = a28[v, p]
                p += 1
            good &= 0.0 < s[k, k] < np.inf
        if not good:
            ok[v] = False
            continue
        for k in range(7):
            d[k] = 1.0 / np.sqrt(s[k, k])
        for k in range(7):
            for m in range(k + 1):
                s[k, m] *= d[k] * d[m]
        for k in range(7):
            piv = s[k, k]
            for j in range(k):
                piv -= s[k, j] * s[k, j]
            good &= piv > _MIN_PIVOT
            inv = 1.0 / np.sqrt(piv)
            s[k, k] = inv  # the diagonal holds 1 / L[k, k]
            for i in range(k + 1, 7):
                acc = s[i, k]
                for j in range(k):
                    acc -= s[i, j] * s[k, j]
                s[i, k] = acc * inv
        if not good:
            ok[v] = False
            continue
        for k in range(7):
            acc = d[k] * rhs[v, k]
            for j in range(k):
                acc -= s[k, j] * y[j]
            y[k] = acc * s[k, k]
        for k in range(6, -1, -1):
            acc = y[k]
            for j in range(k + 1, 7):
                acc -= s[j, k] * y[j]
            y[k] = acc * s[k, k]
        for k in range(7):
            beta[v, k] = d[k] * y[k]


class _Design:
    """What depends only on the gradient table, computed once per call."""

    def __init__(self, gtab) -> None:
        from dipy.reconst.dti import design_matrix

        x = design_matrix(gtab)
        self.x = x
        self.xt = np.ascontiguousarray(x.T)
        # dipy's OLS is pinv(X) applied to the log-signal: one matrix for all.
        self.pinv_t = np.ascontiguousarray(np.linalg.pinv(x).T)
        # Products of design columns: X^T W^2 X is (w**2) @ xx, 28 values.
        rows, cols = np.tril_indices(7)
        self.xx = np.ascontiguousarray(x[:, rows] * x[:, cols])
        self.min_diffusivity = _EVAL_TOL / -x.min()


def _coefficients(
    flat: np.ndarray, index: np.ndarray, weighted: bool, des: _Design
) -> np.ndarray:
    """dipy's OLS or WLS coefficients (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz, -log S0)
    of the voxels ``flat[index]``.

    OLS is ``pinv(X) @ log``. WLS weights the volumes by ``w = exp(X b_ols)``
    and solves ``min |w (X b - log)|`` through its normal equations
    ``X^T W^2 X b = X^T W^2 log``.
    """
    n_vol = flat.shape[1]
    beta = np.empty((index.size, 7))
    ok = np.ones(index.size, dtype=np.bool_)
    step = max(16, _BLOCK_VALUES // n_vol)
    if flat.dtype == np.float64:
        flat = np.ascontiguousarray(flat)
        logs_buf = np.empty((min(step, index.size), n_vol))
    for start in range(0, index.size, step):
        part = slice(start, min(start + step, index.size))
        if flat.dtype == np.float64:
            logs = logs_buf[: part.stop - start]
            _log_rows(flat, index[part], logs)
        else:
            # dipy clips and takes the log in the data's own dtype (float32
            # stays float32, so its rounding is dipy's), then goes float64.
            logs = np.log(np.maximum(flat[index[part]], _MIN_SIGNAL))
            logs = logs.astype(np.float64)
        np.matmul(logs, des.pinv_t, out=beta[part])
        if weighted:
            w2 = beta[part] @ des.xt
            _weigh(w2, logs, ok[part])
            _solve_rows(w2 @ des.xx, logs @ des.x, ok[part], beta[part])
    bad = np.flatnonzero(~ok)
    if bad.size:
        # dipy's formula (beta holds the OLS fit there), for voxels whose
        # weighted design is near-singular or whose weights overflow (dipy
        # then fails as it does).
        x = des.x
        log_s = np.log(np.maximum(flat[index[bad]], _MIN_SIGNAL))
        w = np.exp(beta[bad] @ x.T)
        pinv = np.linalg.pinv(x * w[..., None])
        beta[bad] = np.einsum("...ij,...j", pinv, w * log_s)
    return beta


def _decompose(
    beta: np.ndarray, index: np.ndarray, min_diffusivity: float, params: np.ndarray
) -> None:
    """dipy's ``eig_from_lo_tri`` of ``beta[k]`` into ``params[index[k]]``."""
    done = np.empty(len(beta), dtype=np.bool_)
    _tensor_params(beta, index, min_diffusivity, params, done)
    rest = np.flatnonzero(~done)
    if rest.size:  # ties, or outside the compiled eigen-solver's range
        from dipy.reconst.dti import eig_from_lo_tri

        params[index[rest]] = eig_from_lo_tri(
            beta[rest], min_diffusivity=min_diffusivity
        )


def fit_tensor(
    data: np.ndarray,
    gtab,
    mask: np.ndarray | None = None,
    *,
    fit_method: str = "WLS",
) -> np.ndarray:
    """Fit the diffusion tensor by weighted or ordinary least squares.

    Gives ``dipy.reconst.dti.TensorModel(gtab, fit_method=fit_method)
    .fit(data, mask=mask).model_params`` to rounding, many times faster.

    Parameters
    ----------
    data : numpy.ndarray
        Signal, shape ``(..., n_volumes)``; any leading shape.
    gtab : dipy.core.gradients.GradientTable
        The gradient table of the ``n_volumes`` volumes.
    mask : numpy.ndarray, optional
        Boolean, shape ``data.shape[:-1]``: the voxels to fit. All when None.
    fit_method : {"WLS", "OLS"}
        Weighted least squares (dipy's default) or ordinary least squares.

    Returns
    -------
    numpy.ndarray
        float64, shape ``data.shape[:-1] + (12,)``: the three eigenvalues in
        descending order, then the eigenvector matrix flattened row by row
        (its column ``i`` belongs to eigenvalue ``i``), as dipy's
        ``TensorFit.model_params``. Voxels outside the mask are 0.

    Raises
    ------
    ValueError
        For another ``fit_method``, a mask of the wrong shape, or data whose
        number of volumes is not the gradient table's.

    Examples
    --------
    >>> import numpy as np
    >>> from dipy.core.gradients import gradient_table
    >>> bvecs = np.r_[[[0, 0, 0]], np.eye(3), np.sqrt(0.5) * np.array(
    ...     [[1, 1, 0], [1, 0, 1], [0, 1, 1]])]
    >>> gtab = gradient_table(np.r_[0, [1000] * 6], bvecs=bvecs)
    >>> signal = 100 * np.exp(-1000 * np.array([0, 1.7, .3, .3, 1, 1, .3]) * 1e-3)
    >>> params = fit_tensor(signal, gtab)
    >>> params.shape
    (12,)
    >>> np.round(params[:3] * 1e3, 3)
    array([1.7, 0.3, 0.3])
    """
    method = fit_method.upper() if isinstance(fit_method, str) else fit_method
    if method not in _METHODS:
        raise ValueError(f"fit_method must be one of {_METHODS}, not {fit_method!r}")
    data = np.asarray(data)
    shape, n_vol = data.shape[:-1], data.shape[-1]
    flat = data.reshape(-1, n_vol)
    index = None
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != shape:
            raise ValueError("Mask is not the same shape as data.")
        index = np.flatnonzero(mask)
    n_fit = len(flat) if index is None else index.size
    params = np.zeros((len(flat), 12))
    if n_fit:
        des = _Design(gtab)
        if n_vol != len(des.x):
            raise ValueError(f"data has {n_vol} volumes, gtab {len(des.x)}")
        if index is None:
            index = np.arange(n_fit)
        beta = _coefficients(flat, index, method == "WLS", des)
        _decompose(beta, index, des.min_diffusivity, params)
    return params.reshape(*shape, 12)
