"""Compiled loops behind :func:`sciimg.kernels._nlmeans_fast.nlmeans_classic`.

Everything here works on arrays already padded by the block radius ``B``
(reflection, as dipy pads), in padded coordinates. Offsets ``d`` of the moving
patch run over ``|d|_inf <= R = B - P``; only half of them are visited
(lexicographically positive ``d``): the patch distance is symmetric,
``SSD_d(x) == SSD_{-d}(x + d)``, so one distance serves both the centre ``x``
(neighbour ``x + d``) and the centre ``x + d`` (neighbour ``x``).

For one plane ``i`` of centres, a strip of ``TJ`` rows and one offset, the
squared differences of two rows are summed over the ``2P + 1`` planes and
box-summed along ``k`` into ``T``; the sum of ``2P + 1`` rows of ``T`` gives the
distances of a row of centres. Direct sums (no running sums, no integral
images) keep every distance within a few ulps of dipy's.

The row loops index flat (raveled) arrays with unsigned offsets: numba adds a
negative-index select to every signed index it cannot prove non-negative,
which stops LLVM from vectorising, and slicing would cost two atomic
reference-count updates per slice. The row helpers are inlined by numba
(``inline="always"``): called, they would go through a function pointer per
row, and inlined they take the caller's fastmath flags.

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
# their order; on a real HCP-size block it moved the result by 4e-16 of its
# maximum against unfused code.
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
# exp(r) on |r| <= ln2 / 2: interpolation at Chebyshev nodes (near minimax),
# degree 10, worst relative error 4.4e-16; Taylor needs degree 12 for that.
_C0 = 1.0
_C1 = 1.0000000000000082
_C2 = 0.5000000000000007
_C3 = 0.16666666666535124
_C4 = 0.04166666666655708
_C5 = 0.008333333392275138
_C6 = 0.001388888893799261
_C7 = 0.0001984116205484801
_C8 = 2.4801497503334765e-05
_C9 = 2.764353309810589e-06
_C10 = 2.762914972978124e-07


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


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _exp_nonpos(x: float) -> float:
    """exp(x) for x <= 0 or NaN, branch-free so that row loops vectorise.

    libm's exp is a call LLVM cannot vectorise. Cody-Waite reduction
    ``x = k ln2 + r`` with ``|r| <= ln2 / 2``, then a degree-10 polynomial
    (relative error <= 4.5e-16 against numpy's exp); ``2**k`` is built in the
    exponent bits. NaN stays NaN, -inf and anything below -708 give 0.
    """
    xc = _EXP_MIN if x < _EXP_MIN else x
    t = xc * _LOG2E + _SHIFTER
    kf = t - _SHIFTER
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    # Estrin's scheme: a shallower dependency chain than Horner's.
    r2 = r * r
    r4 = r2 * r2
    q0 = (_C0 + _C1 * r) + r2 * (_C2 + _C3 * r)
    q1 = (_C4 + _C5 * r) + r2 * (_C6 + _C7 * r)
    q2 = (_C8 + _C9 * r) + r2 * _C10
    p = q0 + r4 * (q1 + r4 * q2)
    k = _f64_bits(t) - _SHIFTER_BITS
    scale = _bits_f64((k + 1023) << 52)
    return 0.0 if x < _EXP_MIN else p * scale


_U1 = np.uint64(1)
_U2 = np.uint64(2)


@njit(cache=True, nogil=True, inline="always")
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


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _sq_diff3(a, s0, s1, s2, m, e, n):
    """e[k] = sum over 3 planes of (a[s + k] - a[s + m + k])**2."""
    for k in range(n):
        u = a[s0 + k] - a[s0 + m + k]
        v = a[s1 + k] - a[s1 + m + k]
        z = a[s2 + k] - a[s2 + m + k]
        e[k] = u * u + v * v + z * z


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _add_sq_diff(a, s, m, e, n):
    for k in range(n):
        v = a[s + k] - a[s + m + k]
        e[k] += v * v


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _box3(e, t, t0, n):
    for k in range(n):
        t[t0 + k] = e[k] + e[k + _U1] + e[k + _U2]


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _box_add(e, c, t, t0, n):
    for k in range(n):
        t[t0 + k] += e[k + c]


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _box_first(e, t, t0, n):
    for k in range(n):
        t[t0 + k] = e[k]


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _ssd3(t, r0, r1, r2, ssd, n):
    for k in range(n):
        ssd[k] = t[r0 + k] + t[r1 + k] + t[r2 + k]


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _weights3(t, r0, r1, r2, q, w, n):
    """w = exp(-q * (sum of three rows of t)): one sigma, patch radius 1."""
    for k in range(n):
        w[k] = _exp_nonpos(-(t[r0 + k] + t[r1 + k] + t[r2 + k]) * q)


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _ssd_add(t, r, ssd, n):
    for k in range(n):
        ssd[k] += t[r + k]


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _weights(ssd, q, w, n):
    for k in range(n):
        w[k] = _exp_nonpos(-ssd[k] * q)


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _weights_map(ssd, q, q0, w, n):
    for k in range(n):
        w[k] = _exp_nonpos(-ssd[k] * q[q0 + k])


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _add_weighted(sw, swa, o, w, a, ao, n):
    """sw[o:] += w; swa[o:] += w * a[ao:]**2 (a: the neighbour's values)."""
    for k in range(n):
        v = a[ao + k]
        sw[o + k] += w[k]
        swa[o + k] += w[k] * (v * v)


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _strip_distances(a, s0, s1, P, jf, jl, j0, klo, khi, i, m, Tf, E):
    """T rows for the strip rows jf - P .. jl + P, columns klo .. khi.

    ``T[t, k]`` sums ``(a(y) - a(y + d))**2`` over the ``(2P + 1) x 1 x (2P + 1)``
    neighbourhood in ``(i, k)`` of ``y = (i, j0 - P + t, k)``; ``m`` is the flat
    offset of ``d``. E holds the plane sums before the box sum along ``k``.
    """
    n = np.uint64(khi - klo)
    w = np.uint64(khi - klo + 2 * P)
    width = np.uint64(s1)
    mu = np.uint64(m)
    for jj in range(jf - P, jl + P + 1):
        t0 = np.uint64(jj - j0 + P) * width + np.uint64(klo)
        row = (i - P) * s0 + jj * s1 + klo - P
        if P == 1:
            r = np.uint64(row)
            _sq_diff3(a, r, r + np.uint64(s0), r + np.uint64(2 * s0), mu, E, w)
            _box3(E, Tf, t0, n)
        else:
            for e in range(w):
                E[e] = 0.0
            for p in range(2 * P + 1):
                _add_sq_diff(a, np.uint64(row + p * s0), mu, E, w)
            _box_first(E, Tf, t0, n)
            for c in range(1, 2 * P + 1):
                _box_add(E, np.uint64(c), Tf, t0, n)


@njit(cache=True, nogil=True, fastmath=_FM)
def accumulate(ap, lo, hi, q, qmap, use_map, P, B, offsets, TJ, sw, swa):
    """Add the weights of all non-zero offsets into sw and swa.

    ``w = exp(-SSD * q)`` with ``q = 1 / (patch volume * sqrt(2) * sigma_bar**2)``,
    one number, or per voxel (``qmap``, the moving patch's) if ``use_map``;
    each distance serves both voxels of its pair. ap, qmap, sw and swa share
    one padded shape; lo, hi are the masked spans per (i, j) row.
    """
    N0, N1, N2 = ap.shape
    s0 = N1 * N2
    s1 = N2
    a = ap.ravel()
    qf = qmap.ravel()
    swf = sw.ravel()
    swaf = swa.ravel()
    Tf = np.empty((TJ + 2 * P) * N2)
    E = np.empty(N2)
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
                            _weights3(Tf, r0, r1, r2, q, w, n)
                    else:
                        for e in range(n):
                            ssd[e] = 0.0
                        for c in range(2 * P + 1):
                            _ssd_add(Tf, np.uint64((t - P + c) * N2 + lo_j), ssd, n)
                        if not use_map:
                            _weights(ssd, q, w, n)
                    # centre x, neighbour x + d: the moving patch is at x + d
                    if use_map:
                        _weights_map(ssd, qf, xd, w, n)
                    _add_weighted(swf, swaf, x, w, a, xd, n)
                    # centre x + d, neighbour x: the moving patch is at x
                    if use_map:
                        _weights_map(ssd, qf, x, w, n)
                    _add_weighted(swf, swaf, xd, w, a, x, n)


@njit(cache=True, nogil=True)
def pad_reflect(arr, pad):
    """float64 copy of arr padded by ``pad`` with reflection (edge not repeated).

    numpy's ``reflect`` mode, which is dipy's padding while every dimension
    exceeds ``pad``.
    """
    n0, n1, n2 = arr.shape
    out = np.empty((n0 + 2 * pad, n1 + 2 * pad, n2 + 2 * pad))
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


@njit(cache=True, nogil=True)
def finish(ap, mask, sw, swa, q, qmap, use_map, sigma, s0, rician, pad, out):
    """out = dipy's result from the weight sums (padded) of every centre.

    Adds the centre offset (distance 0, weight ``exp(-0 * q)``: 1, or NaN where
    sigma is 0 as in dipy), divides, leaves 0 where the weights do not sum to
    a positive number (dipy's rule, which also catches NaN), then subtracts the
    Rician bias ``2 sigma**2`` everywhere (also outside the mask, as dipy does),
    clips at 0 and takes the square root. ``sigma`` is a map unless its size
    is 0, then ``s0`` is used.
    """
    n0, n1, n2 = out.shape
    sigma_map = sigma.size > 0
    w0s = np.exp(-0.0 * q)
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                v = 0.0
                if mask[i, j, k]:
                    x = np.float64(ap[i + pad, j + pad, k + pad])
                    w0 = (
                        np.exp(-0.0 * qmap[i + pad, j + pad, k + pad])
                        if use_map
                        else w0s
                    )
                    tw = sw[i + pad, j + pad, k + pad] + w0
                    if tw > 0:
                        v = (swa[i + pad, j + pad, k + pad] + w0 * (x * x)) / tw
                if rician:
                    s = sigma[i, j, k] if sigma_map else s0
                    v -= 2 * (s * s)
                    if v < 0:
                        v = 0.0
                out[i, j, k] = np.sqrt(v)
