"""Compiled loops behind :func:`sciimg.kernels._nlmeans_fast.nlmeans_classic`.

Everything here works on arrays already padded by the block radius ``B``
(reflection, as dipy pads), in padded coordinates. Offsets ``d`` of the moving
patch run over ``|d|_inf <= R = B - P``; only half of them are visited
(lexicographically positive ``d``): the patch distance is symmetric,
``SSD_d(x) == SSD_{-d}(x + d)``, so one distance serves both the centre ``x``
(neighbour ``x + d``) and the centre ``x + d`` (neighbour ``x``).

For one plane ``i`` of centres, a strip of ``TJ`` rows and one offset, the
squared differences of two rows are box-summed along ``k`` and the three
(``2P + 1``) planes are added into ``T``; the sum of ``2P + 1`` rows of ``T``
gives the distances of a row of centres. Direct sums (no running sums, no
integral images) keep every distance within a few ulps of dipy's.

Only the centres that matter are computed: per row, the bounding span of the
masked voxels, united with the span of the row whose voxels are this row's
neighbours under ``d``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# Contraction into fused multiply-adds only: no reassociation, so sums keep
# their order and the result stays within an ulp or two of unfused code.
_FM = {"contract"}

_LOG2E = 1.4426950408889634
# ln 2 split so that k * _LN2_HI is exact for |k| < 2**20 (fdlibm's split).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# 1.5 * 2**52: adding it rounds to an integer held in the low mantissa bits.
_SHIFTER = 6755399441055744.0
_SHIFTER_BITS = 0x4338000000000000
# Below this exp() would leave the normal range; dipy's weight is 0 to
# within 1e-307 there, which no sum of weights >= 1 can see.
_EXP_MIN = -708.0


@intrinsic
def _f64_bits(typingctx, x):
    """Reinterpret a float64 as int64 (a no-op move that loops vectorise)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, x):
    """Reinterpret an int64 as float64."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@njit(cache=True, fastmath=_FM)
def _exp_nonpos(x: float) -> float:
    """exp(x) for x <= 0 or NaN, branch-free so that row loops vectorise.

    libm's exp is a call LLVM cannot vectorise. Cody-Waite reduction
    ``x = k ln2 + r`` with ``|r| <= ln2 / 2`` and Taylor terms to ``r**12``
    (truncation < 2e-16 relative); ``2**k`` is built in the exponent bits.
    NaN stays NaN, -inf and anything below -708 give 0.
    """
    xc = _EXP_MIN if x < _EXP_MIN else x
    t = xc * _LOG2E + _SHIFTER
    kf = t - _SHIFTER
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    p = 1.0 / 479001600.0
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
    k = _f64_bits(t) - _SHIFTER_BITS
    scale = _bits_f64((k + 1023) << 52)
    return 0.0 if x < _EXP_MIN else p * scale


@njit(cache=True)
def _row_need(lo, hi, i, j, di, dj, dk):
    """Span of centres on row (i, j) whose own or neighbour's voxel is masked."""
    a = lo[i, j]
    b = hi[i, j]
    jd = j + dj
    if 0 <= jd < lo.shape[1]:
        a2 = lo[i + di, jd] - dk
        b2 = hi[i + di, jd] - dk
        if b2 > a2:
            if b > a:
                a = min(a, a2)
                b = max(b, b2)
            else:
                a = a2
                b = b2
    return a, b


@njit(cache=True, fastmath=_FM)
def _strip_distances(ap, i, j0, jf, jl, klo, khi, di, dj, dk, P, T, D):
    """Fill T[t, klo:khi] for the rows jf - P .. jl + P of the strip at j0.

    T[t, k] sums (a(y) - a(y + d))**2 over the (2P + 1) x 1 x (2P + 1)
    neighbourhood of y = (i, j0 - P + t, k) in (i, k); row sums over j follow.
    """
    for jj in range(jf - P, jl + P + 1):
        t = jj - j0 + P
        Tt = T[t]
        for k in range(klo, khi):
            Tt[k] = 0.0
        for a in range(-P, P + 1):
            r1 = ap[i + a, jj]
            r2 = ap[i + a + di, jj + dj]
            for k in range(klo - P, khi + P):
                v = r1[k] - r2[k + dk]
                D[k] = v * v
            for c in range(-P, P + 1):
                for k in range(klo, khi):
                    Tt[k] += D[k + c]


@njit(cache=True, fastmath=_FM)
def _row_ssd(T, t, P, a, b, ssd):
    """ssd[a:b] = sum of the rows t - P .. t + P of T."""
    for k in range(a, b):
        ssd[k] = T[t - P, k]
    for c in range(-P + 1, P + 1):
        Tc = T[t + c]
        for k in range(a, b):
            ssd[k] += Tc[k]


@njit(cache=True, fastmath=_FM)
def accumulate_scalar(ap, lo, hi, q, P, B, offsets, TJ, sw, swa):
    """Add the weights of all non-zero offsets into sw and swa (one sigma).

    ``w = exp(-SSD * q)`` with ``q = 1 / (patch volume * sqrt(2) * sigma**2)``;
    each weight is added to both voxels of its pair.
    """
    N0, N1, N2 = ap.shape
    T = np.empty((TJ + 2 * P, N2))
    D = np.empty(N2)
    ssd = np.empty(N2)
    w = np.empty(N2)
    nlo = np.empty(TJ, np.int64)
    nhi = np.empty(TJ, np.int64)
    for i in range(P, N0 - B):
        for j0 in range(P, N1 - P, TJ):
            j1 = min(j0 + TJ, N1 - P)
            for o in range(offsets.shape[0]):
                di = offsets[o, 0]
                dj = offsets[o, 1]
                dk = offsets[o, 2]
                jf = -1
                jl = -1
                klo = N2
                khi = 0
                for j in range(j0, j1):
                    a, b = _row_need(lo, hi, i, j, di, dj, dk)
                    nlo[j - j0] = a
                    nhi[j - j0] = b
                    if b > a:
                        if jf < 0:
                            jf = j
                        jl = j
                        klo = min(klo, a)
                        khi = max(khi, b)
                if jf < 0:
                    continue
                _strip_distances(ap, i, j0, jf, jl, klo, khi, di, dj, dk, P, T, D)
                for j in range(jf, jl + 1):
                    a = nlo[j - j0]
                    b = nhi[j - j0]
                    if b <= a:
                        continue
                    _row_ssd(T, j - j0 + P, P, a, b, ssd)
                    for k in range(a, b):
                        w[k] = _exp_nonpos(-ssd[k] * q)
                    ax = ap[i, j]
                    axd = ap[i + di, j + dj]
                    swx = sw[i, j]
                    swax = swa[i, j]
                    for k in range(a, b):
                        v = axd[k + dk]
                        swx[k] += w[k]
                        swax[k] += w[k] * (v * v)
                    swxd = sw[i + di, j + dj]
                    swaxd = swa[i + di, j + dj]
                    for k in range(a, b):
                        v = ax[k]
                        swxd[k + dk] += w[k]
                        swaxd[k + dk] += w[k] * (v * v)


@njit(cache=True, fastmath=_FM)
def accumulate_map(ap, lo, hi, q, P, B, offsets, TJ, sw, swa):
    """As :func:`accumulate_scalar` with a per-voxel ``q`` (a sigma map).

    The weight of centre x and neighbour x + d uses the moving patch's sigma,
    ``q[x + d]``; its mirror (centre x + d, neighbour x) uses ``q[x]``.
    """
    N0, N1, N2 = ap.shape
    T = np.empty((TJ + 2 * P, N2))
    D = np.empty(N2)
    ssd = np.empty(N2)
    w = np.empty(N2)
    nlo = np.empty(TJ, np.int64)
    nhi = np.empty(TJ, np.int64)
    for i in range(P, N0 - B):
        for j0 in range(P, N1 - P, TJ):
            j1 = min(j0 + TJ, N1 - P)
            for o in range(offsets.shape[0]):
                di = offsets[o, 0]
                dj = offsets[o, 1]
                dk = offsets[o, 2]
                jf = -1
                jl = -1
                klo = N2
                khi = 0
                for j in range(j0, j1):
                    a, b = _row_need(lo, hi, i, j, di, dj, dk)
                    nlo[j - j0] = a
                    nhi[j - j0] = b
                    if b > a:
                        if jf < 0:
                            jf = j
                        jl = j
                        klo = min(klo, a)
                        khi = max(khi, b)
                if jf < 0:
                    continue
                _strip_distances(ap, i, j0, jf, jl, klo, khi, di, dj, dk, P, T, D)
                for j in range(jf, jl + 1):
                    a = nlo[j - j0]
                    b = nhi[j - j0]
                    if b <= a:
                        continue
                    _row_ssd(T, j - j0 + P, P, a, b, ssd)
                    ax = ap[i, j]
                    axd = ap[i + di, j + dj]
                    qx = q[i, j]
                    qxd = q[i + di, j + dj]
                    swx = sw[i, j]
                    swax = swa[i, j]
                    for k in range(a, b):
                        wk = _exp_nonpos(-ssd[k] * qxd[k + dk])
                        v = axd[k + dk]
                        swx[k] += wk
                        swax[k] += wk * (v * v)
                    for k in range(a, b):
                        w[k] = _exp_nonpos(-ssd[k] * qx[k])
                    swxd = sw[i + di, j + dj]
                    swaxd = swa[i + di, j + dj]
                    for k in range(a, b):
                        v = ax[k]
                        swxd[k + dk] += w[k]
                        swaxd[k + dk] += w[k] * (v * v)
