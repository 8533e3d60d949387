"""Compiled per-voxel pieces of the tensor fit: the 3x3 eigen-decomposition.

dipy decomposes each tensor with ``numpy.linalg.eigh``, that is LAPACK's
``dsyevd`` on the lower triangle: a Householder reduction to tridiagonal form,
implicit QL/QR sweeps with Wilkinson shifts (``dsteqr``, which ``dstedc`` uses
for matrices this small), a selection sort and the back-transformation. The
sign of each eigenvector is whatever that sequence leaves, so to give dipy's
eigenvectors, signs included, the same steps are taken here for the 3x3 case,
in the reference LAPACK/BLAS order of operations, one voxel at a time and
without NumPy's per-matrix call overhead. Where OpenBLAS's kernels for the CPU
round as the reference BLAS does, the results equal NumPy's to the bit, tied
eigenvalues included. OpenBLAS picks other kernels on other CPUs (AVX-512 ones,
say), and NumPy's own results then move by an ulp or two: the eigenvalues agree
within a few ulps, and where eigenvalues tie (or exact zeros end the iterations
early) the signs and the basis of a tied eigenspace may differ, as NumPy's own
do between such CPUs. Matrices outside the range of the plain path (scaling,
NaN, no convergence) are left to NumPy.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_EPS = 2.0**-53  # dlamch('E'): relative machine precision, rounding mode
_EPS2 = _EPS * _EPS
_SAFMIN = 2.0**-1022  # dlamch('S')
_SAFMAX = 1.0 / _SAFMIN
_RTMIN = math.sqrt(_SAFMIN)
_RTMAX = math.sqrt(_SAFMAX / 2.0)
# dsteqr rescales a block whose largest entry is outside [_SSFMIN, _SSFMAX] and
# dsyevd a matrix outside [_RMIN, _RMAX]; such voxels go to numpy.linalg.eigh.
_SSFMAX = math.sqrt(_SAFMAX) / 3.0
_SSFMIN = math.sqrt(_SAFMIN) / _EPS2
_RMIN = math.sqrt(_SAFMIN / _EPS)
_RMAX = math.sqrt(1.0 / (_SAFMIN / _EPS))
_MAXSWEEPS = 3 * 30  # dsteqr gives up after 30 sweeps per eigenvalue


@njit(cache=True, nogil=True, error_model="numpy")
def _hypot1(x, y):  # pragma: no cover - compiled
    """dlapy2: sqrt(x**2 + y**2) without overflow, the library's way."""
    xa = abs(x)
    ya = abs(y)
    w = max(xa, ya)
    z = min(xa, ya)
    if z == 0.0:
        return w
    q = z / w
    return w * math.sqrt(1.0 + q * q)


@njit(cache=True, nogil=True, error_model="numpy")
def _givens(f, g):  # pragma: no cover - compiled
    """dlartg (LAPACK >= 3.10): c, s, r with c >= 0 and r carrying f's sign."""
    f1 = abs(f)
    g1 = abs(g)
    if g == 0.0:
        return 1.0, 0.0, f
    if f == 0.0:
        return 0.0, math.copysign(1.0, g), g1
    if _RTMIN < f1 < _RTMAX and _RTMIN < g1 < _RTMAX:
        d = math.sqrt(f * f + g * g)
        r = math.copysign(d, f)
        return f1 / d, g / r, r
    u = min(_SAFMAX, max(_SAFMIN, f1, g1))
    fs = f / u
    gs = g / u
    d = math.sqrt(fs * fs + gs * gs)
    r = math.copysign(d, f)
    return abs(fs) / d, gs / r, r * u


@njit(cache=True, nogil=True, error_model="numpy")
def _sym2(a, b, c):  # pragma: no cover - compiled
    """dlaev2: eigen-system of [[a, b], [b, c]] as (rt1, rt2, cs1, sn1)."""
    sm = a + c
    df = a - c
    adf = abs(df)
    tb = b + b
    ab = abs(tb)
    acmx, acmn = (a, c) if abs(a) > abs(c) else (c, a)
    if adf > ab:
        q = ab / adf
        rt = adf * math.sqrt(1.0 + q * q)
    elif adf < ab:
        q = adf / ab
        rt = ab * math.sqrt(1.0 + q * q)
    else:
        rt = ab * math.sqrt(2.0)
    if sm < 0.0:
        rt1 = 0.5 * (sm - rt)
        sgn1 = -1
        rt2 = (acmx / rt1) * acmn - (b / rt1) * b
    elif sm > 0.0:
        rt1 = 0.5 * (sm + rt)
        sgn1 = 1
        rt2 = (acmx / rt1) * acmn - (b / rt1) * b
    else:
        rt1 = 0.5 * rt
        rt2 = -0.5 * rt
        sgn1 = 1
    if df >= 0.0:
        cs = df + rt
        sgn2 = 1
    else:
        cs = df - rt
        sgn2 = -1
    if abs(cs) > ab:
        ct = -tb / cs
        sn1 = 1.0 / math.sqrt(1.0 + ct * ct)
        cs1 = ct * sn1
    elif ab == 0.0:
        cs1 = 1.0
        sn1 = 0.0
    else:
        tn = -cs / tb
        cs1 = 1.0 / math.sqrt(1.0 + tn * tn)
        sn1 = tn * cs1
    if sgn1 == sgn2:
        cs1, sn1 = -sn1, cs1
    return rt1, rt2, cs1, sn1


@njit(cache=True, nogil=True, error_model="numpy")
def _rotate(z, j, c, s):  # pragma: no cover - compiled
    """dlasr's step on columns j, j+1 of z (side R, variable pivot)."""
    if c != 1.0 or s != 0.0:
        for i in range(3):
            t = z[i, j + 1]
            z[i, j + 1] = c * t - s * z[i, j]
            z[i, j] = s * t + c * z[i, j]


@njit(cache=True, nogil=True, error_model="numpy")
def _tridiagonal_eig(d, e, z, cw, sw):  # pragma: no cover - compiled
    """dsteqr('I') for n = 3: d, e in place, z the eigenvectors; False if it
    would rescale or did not converge (the caller then defers to LAPACK)."""
    n = 3
    z[:] = 0.0
    z[0, 0] = z[1, 1] = z[2, 2] = 1.0
    jtot = 0
    l1 = 0
    while l1 < n:
        if l1 > 0:
            e[l1 - 1] = 0.0
        m = n - 1
        for mm in range(l1, n - 1):
            tst = abs(e[mm])
            if tst == 0.0:
                m = mm
                break
            if tst <= (math.sqrt(abs(d[mm])) * math.sqrt(abs(d[mm + 1]))) * _EPS:
                e[mm] = 0.0
                m = mm
                break
        lo = lsv = l1
        lend = lendsv = m
        l1 = m + 1
        if lend == lo:
            continue
        anorm = 0.0
        for i in range(lo, lend + 1):
            anorm = max(anorm, abs(d[i]))
        for i in range(lo, lend):
            anorm = max(anorm, abs(e[i]))
        if anorm == 0.0:
            continue
        if not (_SSFMIN <= anorm <= _SSFMAX):
            return False
        if abs(d[lend]) < abs(d[lo]):
            lend = lsv
            lo = lendsv
        if lend > lo:  # QL: deflate from the top
            while True:
                m = lend
                for mm in range(lo, lend):
                    tst = abs(e[mm]) ** 2
                    if tst <= (_EPS2 * abs(d[mm])) * abs(d[mm + 1]) + _SAFMIN:
                        m = mm
                        break
                if m < lend:
                    e[m] = 0.0
                p = d[lo]
                if m == lo:
                    d[lo] = p
                    lo += 1
                    if lo <= lend:
                        continue
                    break
                if m == lo + 1:
                    rt1, rt2, c, s = _sym2(d[lo], e[lo], d[lo + 1])
                    _rotate(z, lo, c, s)
                    d[lo] = rt1
                    d[lo + 1] = rt2
                    e[lo] = 0.0
                    lo += 2
                    if lo <= lend:
                        continue
                    break
                if jtot == _MAXSWEEPS:
                    break
                jtot += 1
                g = (d[lo + 1] - p) / (2.0 * e[lo])
                r = _hypot1(g, 1.0)
                g = d[m] - p + (e[lo] / (g + math.copysign(r, g)))
                s, c, p = 1.0, 1.0, 0.0
                for i in range(m - 1, lo - 1, -1):
                    f = s * e[i]
                    b = c * e[i]
                    c, s, r = _givens(g, f)
                    if i != m - 1:
                        e[i + 1] = r
                    g = d[i + 1] - p
                    r = (d[i] - g) * s + 2.0 * c * b
                    p = s * r
                    d[i + 1] = g + p
                    g = c * r - b
                    cw[i] = c
                    sw[i] = -s
                for j in range(m - 1, lo - 1, -1):
                    _rotate(z, j, cw[j], sw[j])
                d[lo] = d[lo] - p
                e[lo] = g
        else:  # QR: deflate from the bottom
            while True:
                m = lend
                for mm in range(lo, lend, -1):
                    tst = abs(e[mm - 1]) ** 2
                    if tst <= (_EPS2 * abs(d[mm])) * abs(d[mm - 1]) + _SAFMIN:
                        m = mm
                        break
                if m > lend:
                    e[m - 1] = 0.0
                p = d[lo]
                if m == lo:
                    d[lo] = p
                    lo -= 1
                    if lo >= lend:
                        continue
                    break
                if m == lo - 1:
                    rt1, rt2, c, s = _sym2(d[lo - 1], e[lo - 1], d[lo])
                    _rotate(z, lo - 1, c, s)
                    d[lo - 1] = rt1
                    d[lo] = rt2
                    e[lo - 1] = 0.0
                    lo -= 2
                    if lo >= lend:
                        continue
                    break
                if jtot == _MAXSWEEPS:
                    break
                jtot += 1
                g = (d[lo - 1] - p) / (2.0 * e[lo - 1])
                r = _hypot1(g, 1.0)
                g = d[m] - p + (e[lo - 1] / (g + math.copysign(r, g)))
                s, c, p = 1.0, 1.0, 0.0
                for i in range(m, lo):
                    f = s * e[i]
                    b = c * e[i]
                    c, s, r = _givens(g, f)
                    if i != m:
                        e[i - 1] = r
                    g = d[i] - p
                    r = (d[i + 1] - g) * s + 2.0 * c * b
                    p = s * r
                    d[i] = g + p
                    g = c * r - b
                    cw[i] = c
                    sw[i] = s
                for j in range(m, lo):
                    _rotate(z, j, cw[j], sw[j])
                d[lo] = d[lo] - p
                e[lo - 1] = g
        if jtot >= _MAXSWEEPS:
            return False
    # Selection sort into ascending order, swapping eigenvector columns.
    for i in range(n - 1):
        k = i
        p = d[i]
        for j in range(i + 1, n):
            if d[j] < p:
                k = j
                p = d[j]
        if k != i:
            d[k] = d[i]
            d[i] = p
            for r_ in range(3):
                z[r_, i], z[r_, k] = z[r_, k], z[r_, i]
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def _eigh_lower(
    a11, a21, a31, a22, a32, a33, w, v, d, e, z, cw, sw
):  # pragma: no cover
    """dsyevd('V', 'L') of one symmetric 3x3 (its lower triangle): ascending
    ``w``, the eigenvectors in the columns of ``v``; False where the plain path
    does not apply (the library would rescale, no convergence, NaN)."""
    anrm = max(abs(a11), abs(a21), abs(a31), abs(a22), abs(a32), abs(a33))
    if not np.isfinite(a11 + a21 + a31 + a22 + a32 + a33):
        return False  # NaN or inf: LAPACK's answer (an error) is NumPy's
    if anrm > _RMAX or 0.0 < anrm < _RMIN:
        return False
    # dsytd2 (lower): one reflector H = I - tau u u^T, u = (1, u2), acting on
    # rows/columns 2 and 3 and annihilating a31.
    tau = 0.0
    u2 = 0.0
    e1 = a21
    if a31 != 0.0:
        beta = -math.copysign(_hypot1(a21, abs(a31)), a21)
        tau = (beta - a21) / beta
        u2 = a31 * (1.0 / (a21 - beta))
        e1 = beta
        # A22 <- H A22 H = A22 - u w^T - w u^T, w = y - (tau/2)(y^T u) u,
        # y = tau A22 u; each product and sum in the order the library's
        # dsymv, ddot, daxpy and dsyr2 take them: with that order, even
        # tied eigenvalues get the library's eigenvectors.
        y1 = tau * a22 + tau * (a32 * u2)
        y2 = tau * a32 + (tau * u2) * a33
        alpha = -0.5 * tau * (y1 + y2 * u2)
        w1 = y1 + alpha
        w2 = y2 + alpha * u2
        a22 = (a22 - w1) - w1
        a32 = (a32 - w2) - w1 * u2
        a33 = (a33 - u2 * w2) - w2 * u2
    d[0] = a11
    d[1] = a22
    d[2] = a33
    e[0] = e1
    e[1] = a32
    if not _tridiagonal_eig(d, e, z, cw, sw):
        return False
    # dormtr: the eigenvectors of A are H applied to rows 2 and 3 of z.
    for j in range(3):
        if tau != 0.0:
            s = -tau * (z[1, j] + z[2, j] * u2)
            z[1, j] += s
            z[2, j] += s * u2
        for i in range(3):
            v[i, j] = z[i, j]
        w[j] = d[j]
    return True


@njit(cache=True, nogil=True)
def _scratch():  # pragma: no cover - compiled
    """Work arrays of _eigh_lower: d, e, z, and the rotations' c and s."""
    return np.empty(3), np.empty(2), np.empty((3, 3)), np.empty(2), np.empty(2)


@njit(cache=True, nogil=True, error_model="numpy")
def _eigh_many(t, w, v, ok):  # pragma: no cover - compiled
    """``numpy.linalg.eigh`` of each symmetric 3x3 ``t[k]`` (lower triangle):
    ``w[k]`` ascending, ``v[k][:, i]`` the eigenvectors; ``ok[k]`` False where
    this path does not apply and ``numpy.linalg.eigh`` must answer."""
    work = _scratch()
    for k in range(t.shape[0]):
        a = t[k]
        lower = (a[0, 0], a[1, 0], a[2, 0], a[1, 1], a[2, 1], a[2, 2])
        ok[k] = _eigh_lower(*lower, w[k], v[k], *work)


@njit(cache=True, nogil=True, error_model="numpy")
def _tensor_params(beta, idx, min_diffusivity, out, done):  # pragma: no cover
    """dipy's ``eig_from_lo_tri``: coefficients ``beta[k]`` (Dxx, Dxy, Dyy,
    Dxz, Dyz, Dzz, ...) to ``out[idx[k]]`` (evals descending and clipped, then
    evecs row by row).

    ``done[k]`` is False where dipy's own code must answer: the compiled
    eigen-solver does not apply, or eigenvalues tie (dipy's sort decides their
    order).
    """
    w = np.empty(3)
    v = np.empty((3, 3))
    work = _scratch()
    for k in range(beta.shape[0]):
        b = beta[k]  # Dxx, Dxy, Dyy, Dxz, Dyz, Dzz: the lower triangle
        solved = _eigh_lower(b[0], b[1], b[3], b[2], b[4], b[5], w, v, *work)
        if not solved or w[0] == w[1] or w[1] == w[2]:
            done[k] = False
            continue
        done[k] = True
        # eigh's order is ascending; dipy's is descending.
        row = out[idx[k]]
        for i in range(3):
            row[i] = max(w[2 - i], min_diffusivity)
            for j in range(3):
                row[3 + 3 * i + j] = v[i, 2 - j]
