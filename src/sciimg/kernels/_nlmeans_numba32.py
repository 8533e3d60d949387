"""float32 loops behind :func:`sciimg.kernels._nlmeans_fast.nlmeans_classic`.

The same algorithm as :func:`sciimg.kernels._nlmeans_numba.accumulate` (read
that module's notes first), for float32 input: patch distances and weights in
float32, twice as many per vector instruction as float64, while the sums of
the weights stay float64.

Why float32 is exact enough here, for data that are float32 already:

* a squared difference of two float32 values, and any sum of such squares,
  carries a relative error of a few float32 ulps (all terms are >= 0, nothing
  cancels), so ``q * SSD`` does too, and the weight ``exp(-q SSD)`` moves by
  at most ``|q SSD| e**(-|q SSD|) * (a few 6e-8) < 1e-7`` of the centre's own
  weight, 1;
* the float32 exponential is within 2e-7 of its value, relative, and its
  errors are not of one sign;
* ``q`` is passed as two float32 numbers: rounded to one, it would move all
  weights the same way (a slightly different sigma);
* weights below ``exp(-87)`` (float32's normal range) are dropped; there are
  fewer than ``(2 B + 1)**3`` of them, each under 2e-38 of the centre's weight,
  so the mean square moves by less than ``1e-33 max(arr)**2``.

The sums over offsets (``sw``, ``swa``) are float64, so nothing accumulates
beyond the error of a single weight. Typically the mean square moves by about
1e-9 of itself. The square root magnifies that where the Rician-corrected
mean square is near 0 (``sqrt(v + e) - sqrt(v)`` is up to ``sqrt(e)``): on an
HCP-size diffusion volume the largest difference from dipy was 6e-8 of the
maximum (3e-7 with a random sigma map, 5e-7 with sigma four times too large), in such
voxels.

float64 input is not sent here, so that it keeps dipy's result to float64
rounding: its values would first be rounded to float32, which alone moved the
result by 1e-7 of its maximum on that volume scaled to values near 3000.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from sciimg.kernels._nlmeans_numba import _row_need, _strip_distances

_FM = {"contract"}

_F0 = np.float32(0.0)
_LOG2E = np.float32(1.4426950408889634)
# ln 2 split so that k * _LN2_HI is exact for |k| < 2**8 (Cephes' expf split).
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
# 1.5 * 2**23: adding it rounds to an integer held in the low mantissa bits.
_SHIFTER = np.float32(12582912.0)
_SHIFTER_BITS = np.int32(0x4B400000)
_EXP_MIN = np.float32(-87.0)
# exp(r) on |r| <= ln2 / 2, interpolated at Chebyshev nodes, degree 6:
# 2e-8 relative in exact arithmetic; 1.7e-7 with the float32 reduction and
# evaluation, against float64 exp of the same float32 x.
_C0 = np.float32(1.0)
_C1 = np.float32(1.0)
_C2 = np.float32(0.5)
_C3 = np.float32(0.16666415333747864)
_C4 = np.float32(0.04166635125875473)
_C5 = np.float32(0.00837512593716383)
_C6 = np.float32(0.0013941108481958508)
_I127 = np.int32(127)
_I23 = np.int32(23)


@intrinsic
def _f32_bits(typingctx, x):
    """Reinterpret a float32 as int32."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, x):
    """Reinterpret the low 32 bits of an int64 as float32.

    (numba widens int32 arithmetic to int64; LLVM narrows it back.)
    """
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], ir.IntType(32))
        return builder.bitcast(low, ir.FloatType())

    return types.float32(types.int64), codegen


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _exp32_nonpos(x):
    """exp(x) in float32 for x <= 0 or NaN, branch-free (8 per AVX2 vector).

    As the float64 version: Cody-Waite reduction, a polynomial, ``2**k`` in the
    exponent bits. NaN stays NaN; below -87 (float32's normal range) gives 0.
    """
    xc = _EXP_MIN if x < _EXP_MIN else x
    t = xc * _LOG2E + _SHIFTER
    kf = t - _SHIFTER
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    r2 = r * r
    q0 = (_C0 + _C1 * r) + r2 * (_C2 + _C3 * r)
    q1 = (_C4 + _C5 * r) + r2 * _C6
    p = q0 + (r2 * r2) * q1
    k = _f32_bits(t) - _SHIFTER_BITS
    scale = _bits_f32((k + _I127) << _I23)
    return _F0 if x < _EXP_MIN else p * scale


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _weights3(t, r0, r1, r2, q, qlo, w, n):
    """w = exp(-(q + qlo) * (sum of three rows of t)): one sigma, patch radius 1.

    ``q + qlo`` is the float64 ``q`` to 2**-48: a float32 ``q`` alone would
    move every weight the same way (all by up to 6e-8 of its exponent).
    """
    for k in range(n):
        d = t[r0 + k] + t[r1 + k] + t[r2 + k]
        w[k] = _exp32_nonpos(-(d * q + d * qlo))


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _ssd3(t, r0, r1, r2, ssd, n):
    for k in range(n):
        ssd[k] = t[r0 + k] + t[r1 + k] + t[r2 + k]


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _ssd_add(t, r, ssd, n):
    for k in range(n):
        ssd[k] += t[r + k]


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _weights(ssd, q, qlo, w, n):
    for k in range(n):
        d = ssd[k]
        w[k] = _exp32_nonpos(-(d * q + d * qlo))


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _weights_map(ssd, q, q0, w, n):
    for k in range(n):
        w[k] = _exp32_nonpos(-ssd[k] * q[q0 + k])


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _add_weighted(sw, swa, o, w, a, ao, n):
    """sw[o:] += w; swa[o:] += w * a[ao:]**2, in float64 (sw, swa)."""
    for k in range(n):
        v = np.float64(a[ao + k])
        wk = np.float64(w[k])
        sw[o + k] += wk
        swa[o + k] += wk * (v * v)


@njit(cache=True, nogil=True, fastmath=_FM)
def accumulate32(ap, lo, hi, q, qlo, qmap, use_map, P, B, offsets, TJ, sw, swa):
    """float32 :func:`~sciimg.kernels._nlmeans_numba.accumulate`.

    ap, qmap, q and qlo are float32 (``q + qlo``: the one-sigma factor, split);
    sw and swa float64.
    """
    N0, N1, N2 = ap.shape
    s0 = N1 * N2
    s1 = N2
    a = ap.ravel()
    qf = qmap.ravel()
    swf = sw.ravel()
    swaf = swa.ravel()
    Tf = np.empty((TJ + 2 * P) * N2, np.float32)
    E = np.empty(N2, np.float32)
    ssd = np.empty(N2, np.float32)
    w = np.empty(N2, np.float32)
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
                    lo_j, hi_j = _row_need(lo, hi, i, j, di, dj, dk)
                    nlo[j - j0] = lo_j
                    nhi[j - j0] = hi_j
                    if hi_j > lo_j:
                        if jf < 0:
                            jf = j
                        jl = j
                        klo = min(klo, lo_j)
                        khi = max(khi, hi_j)
                if jf < 0:
                    continue
                m = di * s0 + dj * s1 + dk
                _strip_distances(a, s0, s1, P, jf, jl, j0, klo, khi, i, m, Tf, E)
                for j in range(jf, jl + 1):
                    lo_j = nlo[j - j0]
                    hi_j = nhi[j - j0]
                    if hi_j <= lo_j:
                        continue
                    n = np.uint64(hi_j - lo_j)
                    t = j - j0 + P
                    x = np.uint64(i * s0 + j * s1 + lo_j)
                    xd = x + np.uint64(m)
                    if P == 1:
                        r0 = np.uint64((t - 1) * N2 + lo_j)
                        r1 = np.uint64(t * N2 + lo_j)
                        r2 = np.uint64((t + 1) * N2 + lo_j)
                        if use_map:
                            _ssd3(Tf, r0, r1, r2, ssd, n)
                        else:
                            _weights3(Tf, r0, r1, r2, q, qlo, w, n)
                    else:
                        for e in range(n):
                            ssd[e] = _F0
                        for c in range(2 * P + 1):
                            _ssd_add(Tf, np.uint64((t - P + c) * N2 + lo_j), ssd, n)
                        if not use_map:
                            _weights(ssd, q, qlo, w, n)
                    if use_map:
                        _weights_map(ssd, qf, xd, w, n)
                    _add_weighted(swf, swaf, x, w, a, xd, n)
                    if use_map:
                        _weights_map(ssd, qf, x, w, n)
                    _add_weighted(swf, swaf, xd, w, a, x, n)


@njit(cache=True, nogil=True)
def pad_reflect32(arr, pad):
    """float32 copy of arr padded as :func:`~._nlmeans_numba.pad_reflect`."""
    n0, n1, n2 = arr.shape
    out = np.empty((n0 + 2 * pad, n1 + 2 * pad, n2 + 2 * pad), np.float32)
    for i in range(n0 + 2 * pad):
        si = abs(i - pad)
        si = 2 * (n0 - 1) - si if si >= n0 else si
        for j in range(n1 + 2 * pad):
            sj = abs(j - pad)
            sj = 2 * (n1 - 1) - sj if sj >= n1 else sj
            for k in range(n2 + 2 * pad):
                sk = abs(k - pad)
                sk = 2 * (n2 - 1) - sk if sk >= n2 else sk
                out[i, j, k] = arr[si, sj, sk]
    return out
