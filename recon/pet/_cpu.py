"""Numba kernels of the PET line-integral projector (the CPU twin of ``kernels/pet.cu``).

Joseph's method (P. M. Joseph, "An improved algorithm for reprojecting rays through pixel images",
IEEE Trans. Med. Imaging 1(3):192-196, 1982): the LOR from ``xstart`` to ``xend`` is walked plane
by plane along its principal axis ``p`` (the largest ``|component|`` of ``xend − xstart``; ties go
to x, then y), the image is interpolated bilinearly in the two other axes (zero outside the image),
and each plane contributes with weight ``voxel_p · |d| / |d_p|``, the path length between two
planes, so a line through an image of ones over L mm gives L. Only planes whose crossing lies on
the segment ``[xstart, xend]`` count.

TOF: a sample at signed distance ``s`` from the LOR midpoint (positive towards ``xend``) contributes
to TOF bin ``b`` (centre ``b·w``) with the integral of a Gaussian (standard deviation σ) over the
bin, ``½[erf((hi − s)/(√2σ)) − erf((lo − s)/(√2σ))]`` with ``lo, hi = (b ∓ ½)·w``, and with 0 where
``|s − b·w| > n_sigmas·σ + w/2``. The TOF kernels clip their walk to the part of the LOR where
that weight can be non-zero.

Every kernel has the arguments of its CUDA twin in the same order, less the sizes that numpy arrays
carry (``nz, ny, nx``, ``n_lors``); the back-projections take one more, trailing argument,
``scratch``. Positions are computed in float64 from the float32 inputs (the direction
``xend − xstart`` itself in float32, as on the GPU, so both pick the same principal axis).

Forward kernels overwrite their output and run in parallel over LORs. Back-projections add into
``out_image`` without races: ``scratch`` is a float32 array ``(n_parts, nz·ny·nx)`` (contents
ignored), one partial image per part; part ``p`` handles LORs ``p, p + n_parts, …`` (interleaved,
so sorted inputs still balance) and writes only its own partial image, and the parts are summed
into ``out_image`` at the end. ``n_parts = numba.get_num_threads()`` gives one image per thread.
(The thread count is read by the caller: numba cannot cache a function that asks for it.)
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

# error_model="numpy": IEEE division (x/0 = ±inf) instead of Python's ZeroDivisionError checks.
_JIT = dict(parallel=True, fastmath=False, cache=True, nogil=True, error_model="numpy")
# The per-sample interpolation is inlined by numba (2x faster than leaving it to LLVM); the other
# helpers are called once per LOR or are dominated by erfc, and inlining them only slows compiling.
_INLINE = dict(inline="always", error_model="numpy")
_HELPER = dict(error_model="numpy", cache=True)
_SQRT2 = math.sqrt(2.0)


@nb.njit(**_INLINE)
def _clip_axis(e, g, n, t_lo, t_hi):
    """Narrow ``[t_lo, t_hi]`` to where the index ``e + t·g`` lies in ``[−1, n]``."""
    if g == 0.0:
        return e > -1.0 and e < n, t_lo, t_hi
    ta = (-1.0 - e) / g
    tb = (n - e) / g
    return True, max(t_lo, min(ta, tb)), min(t_hi, max(ta, tb))


@nb.njit(**_HELPER)
def walk(xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, s_lo, s_hi):
    """Geometry of LOR ``i`` along its principal axis, and the planes ``k0..k1`` to visit.

    ``pet_lor_setup`` + ``pet_clip_window`` + ``pet_plane_range`` of the CUDA source in one
    function. Plane ``k`` sits at segment parameter ``t = (c0 + k·vp)·inv_dp``; there the fractional
    indices along the secondary axes are ``e1 + t·g1`` and ``e2 + t·g2`` (element strides ``s1``,
    ``s2``; the plane's own offset is ``k·sp``). Only samples whose signed distance from the LOR
    midpoint lies in ``[s_lo, s_hi]`` are kept (``±inf``: the whole LOR). A degenerate LOR, or one
    that misses the image or the window, gets ``k0 > k1`` and weight 0.

    Returns
    -------
    tuple
        ``(k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, e2, g2, n2, s2, length, weight)``.
    """
    ax = xstart[i, 0]
    ay = xstart[i, 1]
    az = xstart[i, 2]
    # float32 differences, as on the GPU, so that both pick the same principal axis.
    fdx = xend[i, 0] - ax
    fdy = xend[i, 1] - ay
    fdz = xend[i, 2] - az
    adx = abs(fdx)
    ady = abs(fdy)
    adz = abs(fdz)
    ddx = float(fdx)
    ddy = float(fdy)
    ddz = float(fdz)
    length = math.sqrt(ddx * ddx + ddy * ddy + ddz * ddz)
    sx = 1
    sy = nx
    sz = nx * ny
    if adx >= ady and adx >= adz:
        ap, dp, op, vp, n_p, sp = float(ax), ddx, float(x0), float(dx), nx, sx
        a1, d1, o1, v1, n1, s1 = float(ay), ddy, float(y0), float(dy), ny, sy
        a2, d2, o2, v2, n2, s2 = float(az), ddz, float(z0), float(dz), nz, sz
    elif ady >= adz:
        ap, dp, op, vp, n_p, sp = float(ay), ddy, float(y0), float(dy), ny, sy
        a1, d1, o1, v1, n1, s1 = float(ax), ddx, float(x0), float(dx), nx, sx
        a2, d2, o2, v2, n2, s2 = float(az), ddz, float(z0), float(dz), nz, sz
    else:
        ap, dp, op, vp, n_p, sp = float(az), ddz, float(z0), float(dz), nz, sz
        a1, d1, o1, v1, n1, s1 = float(ax), ddx, float(x0), float(dx), nx, sx
        a2, d2, o2, v2, n2, s2 = float(ay), ddy, float(y0), float(dy), ny, sy
    c0 = op - ap
    inv_dp = 1.0 / dp
    e1 = (a1 - o1) / v1
    g1 = d1 / v1
    e2 = (a2 - o2) / v2
    g2 = d2 / v2
    weight = vp * length / abs(dp)
    empty = (0, -1, c0, inv_dp, vp, sp, e1, g1, n1, s1, e2, g2, n2, s2, length, 0.0)
    if not length > 0.0:
        return empty
    ok1, t_lo, t_hi = _clip_axis(e1, g1, n1, 0.0, 1.0)
    ok2, t_lo, t_hi = _clip_axis(e2, g2, n2, t_lo, t_hi)
    if not (ok1 and ok2 and t_lo <= t_hi):
        return empty
    t_lo = max(t_lo, 0.5 + s_lo / length)
    t_hi = min(t_hi, 0.5 + s_hi / length)
    if not t_lo <= t_hi:
        return empty
    ka = (t_lo * dp - c0) / vp
    kb = (t_hi * dp - c0) / vp
    kmin = min(max(np.floor(min(ka, kb)), 0.0), float(n_p))
    kmax = max(min(np.ceil(max(ka, kb)), n_p - 1.0), -1.0)
    return (int(kmin), int(kmax), c0, inv_dp, vp, sp, e1, g1, n1, s1, e2, g2, n2, s2, length,
            weight)  # fmt: skip


@nb.njit(**_INLINE)
def _bilinear(img, base, f1, n1, s1, f2, n2, s2):
    fl1 = np.floor(f1)
    fl2 = np.floor(f2)
    w1 = f1 - fl1
    w2 = f2 - fl2
    # Clamping the integer part keeps the cast defined; the weights use the true fraction.
    i1 = int(min(max(fl1, -2.0), float(n1)))
    i2 = int(min(max(fl2, -2.0), float(n2)))
    acc = 0.0
    if 0 <= i2 < n2:
        b = base + i2 * s2
        if 0 <= i1 < n1:
            acc += (1.0 - w1) * (1.0 - w2) * img[b + i1 * s1]
        if 0 <= i1 + 1 < n1:
            acc += w1 * (1.0 - w2) * img[b + (i1 + 1) * s1]
    if 0 <= i2 + 1 < n2:
        b = base + (i2 + 1) * s2
        if 0 <= i1 < n1:
            acc += (1.0 - w1) * w2 * img[b + i1 * s1]
        if 0 <= i1 + 1 < n1:
            acc += w1 * w2 * img[b + (i1 + 1) * s1]
    return acc


@nb.njit(**_INLINE)
def _bilinear_scatter(img, base, f1, n1, s1, f2, n2, s2, value):
    """Transpose of :func:`_bilinear`: adds ``value`` times the interpolation weights."""
    fl1 = np.floor(f1)
    fl2 = np.floor(f2)
    w1 = f1 - fl1
    w2 = f2 - fl2
    i1 = int(min(max(fl1, -2.0), float(n1)))
    i2 = int(min(max(fl2, -2.0), float(n2)))
    if 0 <= i2 < n2:
        b = base + i2 * s2
        if 0 <= i1 < n1:
            img[b + i1 * s1] += (1.0 - w1) * (1.0 - w2) * value
        if 0 <= i1 + 1 < n1:
            img[b + (i1 + 1) * s1] += w1 * (1.0 - w2) * value
    if 0 <= i2 + 1 < n2:
        b = base + (i2 + 1) * s2
        if 0 <= i1 < n1:
            img[b + i1 * s1] += (1.0 - w1) * w2 * value
        if 0 <= i1 + 1 < n1:
            img[b + (i1 + 1) * s1] += w1 * w2 * value


@nb.njit(**_HELPER)
def _tof_tail(edge, s, k):
    """Gaussian mass beyond a bin edge, on the side away from ``s``: ``½ erfc(|edge − s|·k)``."""
    return 0.5 * math.erfc(abs(edge - s) * k)


@nb.njit(**_HELPER)
def _tof_bin(s, lo, hi, tail_lo, tail_hi):
    """Mass over the bin ``[lo, hi]`` from the tail masses at its edges (``pet_tof_bin``).

    This never subtracts two numbers close to 1, so far tails keep their relative precision.
    """
    if lo >= s:
        return tail_lo - tail_hi
    if hi <= s:
        return tail_hi - tail_lo
    return 1.0 - tail_lo - tail_hi


@nb.njit(**_HELPER)
def tof_weight(s, b, w, k, reach):
    """Integral over TOF bin ``b`` (width ``w``) of a Gaussian centred on ``s``.

    ``k = 1/(√2σ)``; zero where ``|s − b·w| > reach = n_sigmas·σ + w/2``.
    """
    if abs(s - b * w) > reach:
        return 0.0
    lo = (b - 0.5) * w
    hi = (b + 0.5) * w
    return _tof_bin(s, lo, hi, _tof_tail(lo, s, k), _tof_tail(hi, s, k))


@nb.njit(**_HELPER)
def _tof_spread(s, v, b_lo, b_hi, max_bin, w, k, reach, out):
    """``out[b + max_bin] += weight(s, b)·v`` for ``b_lo..b_hi``; neighbours share an edge."""
    lo = (b_lo - 0.5) * w
    tail_lo = _tof_tail(lo, s, k)
    for b in range(b_lo, b_hi + 1):
        hi = (b + 0.5) * w
        tail_hi = _tof_tail(hi, s, k)
        if abs(s - b * w) <= reach:
            out[b + max_bin] += _tof_bin(s, lo, hi, tail_lo, tail_hi) * v
        lo = hi
        tail_lo = tail_hi


@nb.njit(**_HELPER)
def _tof_gather(s, val, b_lo, b_hi, max_bin, w, k, reach):
    """Transpose of :func:`_tof_spread`: ``Σ_b weight(s, b)·val[b + max_bin]``."""
    lo = (b_lo - 0.5) * w
    tail_lo = _tof_tail(lo, s, k)
    acc = 0.0
    for b in range(b_lo, b_hi + 1):
        hi = (b + 0.5) * w
        tail_hi = _tof_tail(hi, s, k)
        if abs(s - b * w) <= reach:
            acc += _tof_bin(s, lo, hi, tail_lo, tail_hi) * val[b + max_bin]
        lo = hi
        tail_lo = tail_hi
    return acc


@nb.njit(**_HELPER)
def _tof_constants(tof_width, tof_sigma, n_sigmas):
    w = float(tof_width)
    sigma = float(tof_sigma)
    return w, 1.0 / (_SQRT2 * sigma), float(n_sigmas) * sigma + 0.5 * w


# ---------------------------------------------------------------------------------- non-TOF
@nb.njit(**_JIT)
def joseph_forward(image, x0, y0, z0, dx, dy, dz, xstart, xend, out_values):
    """``out_values[i]`` = line integral of ``image`` along LOR ``i`` (mm × image units)."""
    nz, ny, nx = image.shape
    img = image.reshape(-1)
    for i in nb.prange(xstart.shape[0]):
        k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, e2, g2, n2, s2, length, weight = walk(
            xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, -np.inf, np.inf
        )
        acc = 0.0
        for k in range(k0, k1 + 1):
            t = (c0 + k * vp) * inv_dp
            if t < 0.0 or t > 1.0:
                continue
            acc += _bilinear(img, k * sp, e1 + t * g1, n1, s1, e2 + t * g2, n2, s2)
        out_values[i] = acc * weight


@nb.njit(**_JIT)
def joseph_back(values, x0, y0, z0, dx, dy, dz, xstart, xend, out_image, scratch):
    """Adjoint of :func:`joseph_forward`: adds ``values[i]`` along LOR ``i`` into ``out_image``."""
    nz, ny, nx = out_image.shape
    n = xstart.shape[0]
    n_parts = scratch.shape[0]
    for p in nb.prange(n_parts):
        img = scratch[p]
        img[:] = 0.0
        for i in range(p, n, n_parts):  # interleaved: sorted inputs still balance
            if values[i] == 0.0:
                continue
            k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, e2, g2, n2, s2, length, weight = walk(
                xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, -np.inf, np.inf
            )
            value = values[i] * weight
            for k in range(k0, k1 + 1):
                t = (c0 + k * vp) * inv_dp
                if t < 0.0 or t > 1.0:
                    continue
                _bilinear_scatter(img, k * sp, e1 + t * g1, n1, s1, e2 + t * g2, n2, s2, value)
    flat = out_image.reshape(-1)
    for j in nb.prange(flat.size):
        acc = 0.0
        for p in range(n_parts):
            acc += scratch[p, j]
        flat[j] += acc


# ------------------------------------------------------------------------ TOF, sinogram mode
@nb.njit(**_JIT)
def joseph_tof_sino_forward(
    image, x0, y0, z0, dx, dy, dz, xstart, xend, tof_width, tof_sigma, n_sigmas, max_bin,
    out_values,
):  # fmt: skip
    """``out_values[i, b + max_bin]``: every TOF bin ``b`` of LOR ``i``, one walk per LOR."""
    nz, ny, nx = image.shape
    img = image.reshape(-1)
    w, k_erf, reach = _tof_constants(tof_width, tof_sigma, n_sigmas)
    mb = int(max_bin)
    edge = mb * w + reach
    for i in nb.prange(xstart.shape[0]):
        out = out_values[i]
        out[:] = 0.0
        k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, e2, g2, n2, s2, length, weight = walk(
            xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, -edge, edge
        )
        for k in range(k0, k1 + 1):
            t = (c0 + k * vp) * inv_dp
            if t < 0.0 or t > 1.0:
                continue
            v = _bilinear(img, k * sp, e1 + t * g1, n1, s1, e2 + t * g2, n2, s2)
            if v == 0.0:
                continue
            s = (t - 0.5) * length
            b_lo = max(-mb, int(np.floor((s - reach) / w)))
            b_hi = min(mb, int(np.ceil((s + reach) / w)))
            _tof_spread(s, v, b_lo, b_hi, mb, w, k_erf, reach, out)
        for b in range(out.shape[0]):
            out[b] *= weight


@nb.njit(**_JIT)
def joseph_tof_sino_back(
    values, x0, y0, z0, dx, dy, dz, xstart, xend, tof_width, tof_sigma, n_sigmas, max_bin,
    out_image, scratch,
):  # fmt: skip
    """Adjoint of :func:`joseph_tof_sino_forward`."""
    nz, ny, nx = out_image.shape
    n = xstart.shape[0]
    w, k_erf, reach = _tof_constants(tof_width, tof_sigma, n_sigmas)
    mb = int(max_bin)
    edge = mb * w + reach
    n_parts = scratch.shape[0]
    for p in nb.prange(n_parts):
        img = scratch[p]
        img[:] = 0.0
        for i in range(p, n, n_parts):
            val = values[i]
            k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, e2, g2, n2, s2, length, weight = walk(
                xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, -edge, edge
            )
            for k in range(k0, k1 + 1):
                t = (c0 + k * vp) * inv_dp
                if t < 0.0 or t > 1.0:
                    continue
                s = (t - 0.5) * length
                b_lo = max(-mb, int(np.floor((s - reach) / w)))
                b_hi = min(mb, int(np.ceil((s + reach) / w)))
                v = _tof_gather(s, val, b_lo, b_hi, mb, w, k_erf, reach)
                if v == 0.0:
                    continue
                _bilinear_scatter(img, k * sp, e1 + t * g1, n1, s1, e2 + t * g2, n2, s2, v * weight)
    flat = out_image.reshape(-1)
    for j in nb.prange(flat.size):
        acc = 0.0
        for p in range(n_parts):
            acc += scratch[p, j]
        flat[j] += acc


# ------------------------------------------------------------------------ TOF, listmode mode
@nb.njit(**_JIT)
def joseph_tof_lm_forward(
    image, x0, y0, z0, dx, dy, dz, xstart, xend, tof_width, tof_sigma, n_sigmas, tof_bin,
    out_values,
):  # fmt: skip
    """``out_values[i]``: LOR ``i`` projected into its own TOF bin ``tof_bin[i]``.

    Only the planes within reach of that bin are walked.
    """
    nz, ny, nx = image.shape
    img = image.reshape(-1)
    w, k_erf, reach = _tof_constants(tof_width, tof_sigma, n_sigmas)
    for i in nb.prange(xstart.shape[0]):
        b = int(tof_bin[i])
        c = b * w
        k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, e2, g2, n2, s2, length, weight = walk(
            xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, c - reach, c + reach
        )
        acc = 0.0
        for k in range(k0, k1 + 1):
            t = (c0 + k * vp) * inv_dp
            if t < 0.0 or t > 1.0:
                continue
            v = _bilinear(img, k * sp, e1 + t * g1, n1, s1, e2 + t * g2, n2, s2)
            if v == 0.0:
                continue
            acc += tof_weight((t - 0.5) * length, b, w, k_erf, reach) * v
        out_values[i] = acc * weight


@nb.njit(**_JIT)
def joseph_tof_lm_back(
    values, x0, y0, z0, dx, dy, dz, xstart, xend, tof_width, tof_sigma, n_sigmas, tof_bin,
    out_image, scratch,
):  # fmt: skip
    """Adjoint of :func:`joseph_tof_lm_forward`."""
    nz, ny, nx = out_image.shape
    n = xstart.shape[0]
    w, k_erf, reach = _tof_constants(tof_width, tof_sigma, n_sigmas)
    n_parts = scratch.shape[0]
    for p in nb.prange(n_parts):
        img = scratch[p]
        img[:] = 0.0
        for i in range(p, n, n_parts):
            if values[i] == 0.0:
                continue
            b = int(tof_bin[i])
            c = b * w
            k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, e2, g2, n2, s2, length, weight = walk(
                xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, c - reach, c + reach
            )
            value = values[i] * weight
            for k in range(k0, k1 + 1):
                t = (c0 + k * vp) * inv_dp
                if t < 0.0 or t > 1.0:
                    continue
                tw = tof_weight((t - 0.5) * length, b, w, k_erf, reach)
                if tw == 0.0:
                    continue
                _bilinear_scatter(img, k * sp, e1 + t * g1, n1, s1, e2 + t * g2, n2, s2, tw * value)
    flat = out_image.reshape(-1)
    for j in nb.prange(flat.size):
        acc = 0.0
        for p in range(n_parts):
            acc += scratch[p, j]
        flat[j] += acc
