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

Mirror of the CUDA source: every kernel has the arguments of its CUDA twin in the same order, less
the sizes that numpy arrays carry (``n_lors``, and the image size in :class:`PetGrid`); the
back-projections take one more, trailing argument, ``scratch``. Each helper ``pet_x`` of the CUDA
source is ``_x`` here, and its structs are named tuples of the same names. The steps the CUDA
kernels give ``pet_walk`` as lambdas are ``_step_*`` functions here (numba passes no closures):
``_walk(lor, step, image, row, params, state)`` calls ``state = step(lor, sample, image, row,
params, state)`` per sample. The geometry of a LOR is computed in float32 from the float32 inputs,
as on the GPU (so both pick the same principal axis; numba's ``float()`` keeps float32), its
samples, interpolation and TOF weights in float64.

Forward kernels overwrite their output and run in parallel over LORs. Back-projections add into
``out_image`` without races: ``scratch`` is a float32 array ``(n_parts, nz·ny·nx)`` (contents
ignored), one partial image per part; part ``p`` handles LORs ``p, p + n_parts, …`` (interleaved,
so sorted inputs still balance) and writes only its own partial image, and the parts are summed
into ``out_image`` at the end. ``n_parts = numba.get_num_threads()`` gives one image per thread.
(The thread count is read by the caller: numba cannot cache a function that asks for it.)
"""

from __future__ import annotations

import math
import sys
from collections import namedtuple
from typing import Any

import numba as nb
import numpy as np

# error_model="numpy": IEEE division (x/0 = ±inf) instead of Python's ZeroDivisionError checks.
_JIT: dict[str, Any] = dict(
    parallel=True, fastmath=False, cache=True, nogil=True, error_model="numpy"
)
# The walk and what it does per sample are inlined by numba (2x faster than leaving the per-sample
# interpolation to LLVM); the helpers called once per LOR, or dominated by erfc, are not: inlining
# them only slows compiling.
_INLINE: dict[str, Any] = dict(inline="always", error_model="numpy")
_HELPER: dict[str, Any] = dict(error_model="numpy", cache=True)
_SQRT2 = math.sqrt(2.0)
_NO_WINDOW = 3.0e38  # a window bound that clips nothing (the non-TOF kernels)

# Kernel parameters (``PetGrid`` less the image size, which the image array carries).
PetGrid = namedtuple("PetGrid", "x0 y0 z0 dx dy dz")
PetTof = namedtuple("PetTof", "width sigma n_sigmas max_bin")
# One LOR along its principal axis, one plane crossing, a bilinear footprint, the TOF set-up.
PetLor = namedtuple("PetLor", "k0 k1 c0 inv_dp vp sp e1 g1 n1 s1 e2 g2 n2 s2 length weight")
PetSample = namedtuple("PetSample", "k t s")
PetFootprint = namedtuple("PetFootprint", "base i1 i2 w1 w2")
PetTofWindow = namedtuple("PetTofWindow", "w k reach b_first b_last s_lo s_hi")


# ---------------------------------------------------------------------------------- the walk
@nb.njit(**_INLINE)
def _clip_axis(e, g, n, t_lo, t_hi):
    """Narrow ``[t_lo, t_hi]`` to where the index ``e + t·g`` lies in ``[−1, n]``."""
    if g == 0.0:
        return e > -1.0 and e < n, t_lo, t_hi
    ta = (-1.0 - e) / g
    tb = (n - e) / g
    return True, max(t_lo, min(ta, tb)), min(t_hi, max(ta, tb))


@nb.njit(**_HELPER)
def _lor_setup(shape, grid, xstart, xend, i, s_lo, s_hi):
    """Principal axis, planes and weight of LOR ``i`` (``pet_lor_setup``).

    A point of the LOR is ``xstart + t·(xend − xstart)``; plane ``k`` sits at
    ``t = (c0 + k·vp)·inv_dp``, and there the fractional indices along the secondary axes are
    ``e1 + t·g1`` and ``e2 + t·g2`` (element strides ``s1``, ``s2``; the plane's own offset is
    ``k·sp``). The planes ``k0..k1`` to visit are those around the part of the segment that can
    touch the image and whose samples lie at signed distances ``[s_lo, s_hi]`` from the midpoint
    (one plane of margin; the walk keeps only samples on the segment). A degenerate LOR, or one
    that misses the image or the window, gets ``k0 > k1`` and weight 0.

    Returns
    -------
    PetLor
    """
    nz, ny, nx = shape
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
    x0, y0, z0 = float(grid.x0), float(grid.y0), float(grid.z0)
    dx, dy, dz = float(grid.dx), float(grid.dy), float(grid.dz)
    if adx >= ady and adx >= adz:
        ap, dp, op, vp, n_p, sp = float(ax), ddx, x0, dx, nx, sx
        a1, d1, o1, v1, n1, s1 = float(ay), ddy, y0, dy, ny, sy
        a2, d2, o2, v2, n2, s2 = float(az), ddz, z0, dz, nz, sz
    elif ady >= adz:
        ap, dp, op, vp, n_p, sp = float(ay), ddy, y0, dy, ny, sy
        a1, d1, o1, v1, n1, s1 = float(ax), ddx, x0, dx, nx, sx
        a2, d2, o2, v2, n2, s2 = float(az), ddz, z0, dz, nz, sz
    else:
        ap, dp, op, vp, n_p, sp = float(az), ddz, z0, dz, nz, sz
        a1, d1, o1, v1, n1, s1 = float(ax), ddx, x0, dx, nx, sx
        a2, d2, o2, v2, n2, s2 = float(ay), ddy, y0, dy, ny, sy
    c0 = op - ap
    inv_dp = 1.0 / dp
    e1 = (a1 - o1) / v1
    g1 = d1 / v1
    e2 = (a2 - o2) / v2
    g2 = d2 / v2
    weight = np.float64(vp * length / abs(dp))  # float64, like the 0.0 of a LOR with no walk
    empty = PetLor(0, -1, c0, inv_dp, vp, sp, e1, g1, n1, s1, e2, g2, n2, s2, length, 0.0)
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
    k0 = int(min(max(np.floor(min(ka, kb)), 0.0), float(n_p)))
    k1 = int(max(min(np.ceil(max(ka, kb)), n_p - 1.0), -1.0))
    return PetLor(k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, e2, g2, n2, s2, length, weight)


@nb.njit(**_INLINE)
def _walk(lor, step, image, row, params, state):
    """The Joseph walk (``pet_walk``): ``state = step(lor, sample, image, row, params, state)``
    for every plane ``k0..k1`` whose crossing lies on the segment; returns the last ``state``.

    ``image`` (the flat image) and ``row`` (the LOR's TOF values, or None) are the arrays the step
    reads or writes; ``params`` holds its scalars. Arrays travel as arguments, never inside a tuple:
    numba 0.68's parallel loops lose writes made through an array unpacked from a tuple in inlined
    code.
    """
    for k in range(lor.k0, lor.k1 + 1):
        t = (lor.c0 + k * lor.vp) * lor.inv_dp
        if t < 0.0 or t > 1.0:
            continue
        state = step(lor, PetSample(k, t, (t - 0.5) * lor.length), image, row, params, state)
    return state


# ------------------------------------------------------------------- bilinear interpolation
@nb.njit(**_INLINE)
def _footprint(lor, sample):
    """Plane offset, corner ``(i1, i2)`` and far-corner weights of a sample's bilinear footprint."""
    f1 = lor.e1 + sample.t * lor.g1
    f2 = lor.e2 + sample.t * lor.g2
    fl1 = np.floor(f1)
    fl2 = np.floor(f2)
    # Clamping the integer part keeps the cast defined; the weights use the true fraction.
    i1 = int(min(max(fl1, -2.0), float(lor.n1)))
    i2 = int(min(max(fl2, -2.0), float(lor.n2)))
    return PetFootprint(sample.k * lor.sp, i1, i2, f1 - fl1, f2 - fl2)


@nb.njit(**_INLINE)
def _bilinear(img, lor, sample):
    base, i1, i2, w1, w2 = _footprint(lor, sample)
    n1, s1, n2, s2 = lor.n1, lor.s1, lor.n2, lor.s2
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
def _bilinear_scatter(img, lor, sample, value):
    """Transpose of :func:`_bilinear`: adds ``value`` times the interpolation weights."""
    base, i1, i2, w1, w2 = _footprint(lor, sample)
    n1, s1, n2, s2 = lor.n1, lor.s1, lor.n2, lor.s2
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


# ------------------------------------------------------------------------------ TOF weights
@nb.njit(**_HELPER)
def _tof_window(tof, b_first, b_last):
    """The TOF set-up of one LOR (``pet_tof_window``): bins ``b_first..b_last`` (value ``j`` is
    bin ``b_first + j``), ``k = 1/(√2σ)``, ``reach = n_sigmas·σ + w/2``, and the signed distances
    ``[s_lo, s_hi]`` from the midpoint where those bins' weights can be non-zero."""
    w = float(tof.width)
    sigma = float(tof.sigma)
    reach = float(tof.n_sigmas) * sigma + 0.5 * w
    return PetTofWindow(
        w, 1.0 / (_SQRT2 * sigma), reach, b_first, b_last, b_first * w - reach, b_last * w + reach
    )


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


@nb.njit(**_INLINE)
def _tof_table_weight(window, table, inv_step, s, b):
    """Listmode weight of bin ``b`` for a sample at ``s`` from the projector's table of
    ``f(|s − b·w|)``, interpolated linearly (``pet_tof_table_weight``): no erfc per sample."""
    d = abs(s - b * window.w)
    if d > window.reach:
        return 0.0
    u = d * inv_step
    j = min(int(u), table.size - 2)
    frac = u - j
    return table[j] + frac * (table[j + 1] - table[j])


@nb.njit(**_INLINE)
def _tof_bins(window, s, step, row, value, state):
    """``state = step(j, weight, row, value, state)`` for every bin ``b_first + j`` of the window
    within reach of a sample at ``s`` (``pet_tof_bins``); neighbours share the erfc of an edge."""
    w = window.w
    b_lo = max(window.b_first, int(np.floor((s - window.reach) / w)))
    b_hi = min(window.b_last, int(np.ceil((s + window.reach) / w)))
    lo = (b_lo - 0.5) * w
    tail_lo = _tof_tail(lo, s, window.k)
    for b in range(b_lo, b_hi + 1):
        hi = (b + 0.5) * w
        tail_hi = _tof_tail(hi, s, window.k)
        if abs(s - b * w) <= window.reach:
            weight = _tof_bin(s, lo, hi, tail_lo, tail_hi)
            state = step(b - window.b_first, weight, row, value, state)
        lo = hi
        tail_lo = tail_hi
    return state


@nb.njit(**_INLINE)
def _add_to_bin(j, weight, row, v, state):
    row[j] += weight * v
    return state


@nb.njit(**_INLINE)
def _add_bin(j, weight, row, unused, acc):
    return acc + weight * row[j]


# ------------------------------------------------------------------ per-sample kernel steps
@nb.njit(**_INLINE)
def _step_forward(lor, sample, img, row, params, acc):
    return acc + _bilinear(img, lor, sample)


@nb.njit(**_INLINE)
def _step_back(lor, sample, img, row, value, state):
    _bilinear_scatter(img, lor, sample, value)
    return state


@nb.njit(**_INLINE)
def _step_tof_sino_forward(lor, sample, img, row, window, state):
    v = _bilinear(img, lor, sample)
    if v != 0.0:
        _tof_bins(window, sample.s, _add_to_bin, row, v, 0)
    return state


@nb.njit(**_INLINE)
def _step_tof_sino_back(lor, sample, img, row, window, state):
    v = _tof_bins(window, sample.s, _add_bin, row, 0, 0.0)
    if v != 0.0:
        _bilinear_scatter(img, lor, sample, v * lor.weight)
    return state


@nb.njit(**_INLINE)
def _step_tof_lm_forward(lor, sample, img, row, params, acc):
    window, b, table, inv_step = params
    v = _bilinear(img, lor, sample)
    if v != 0.0:
        acc += _tof_table_weight(window, table, inv_step, sample.s, b) * v
    return acc


@nb.njit(**_INLINE)
def _step_tof_lm_back(lor, sample, img, row, params, state):
    window, b, value, table, inv_step = params
    w = _tof_table_weight(window, table, inv_step, sample.s, b)
    if w != 0.0:
        _bilinear_scatter(img, lor, sample, w * value)
    return state


@nb.njit(**_JIT)
def _add_parts(scratch, out_image):
    """``out_image += Σ_p scratch[p]`` (the partial images of a back-projection)."""
    flat = out_image.reshape(-1)
    for j in nb.prange(flat.size):
        acc = 0.0
        for p in range(scratch.shape[0]):
            acc += scratch[p, j]
        flat[j] += acc


# ---------------------------------------------------------------------------------- non-TOF
@nb.njit(**_JIT)
def joseph_forward(image, grid, xstart, xend, out_values):
    """``out_values[i]`` = line integral of ``image`` along LOR ``i`` (mm × image units)."""
    img = image.reshape(-1)
    for i in nb.prange(xstart.shape[0]):
        lor = _lor_setup(image.shape, grid, xstart, xend, i, -_NO_WINDOW, _NO_WINDOW)
        out_values[i] = _walk(lor, _step_forward, img, None, None, 0.0) * lor.weight


@nb.njit(**_JIT)
def joseph_back(values, grid, xstart, xend, out_image, scratch):
    """Adjoint of :func:`joseph_forward`: adds ``values[i]`` along LOR ``i`` into ``out_image``."""
    n_parts = scratch.shape[0]
    for p in nb.prange(n_parts):
        img = scratch[p]
        img[:] = 0.0
        for i in range(p, xstart.shape[0], n_parts):  # interleaved: sorted inputs still balance
            if values[i] != 0.0:
                lor = _lor_setup(out_image.shape, grid, xstart, xend, i, -_NO_WINDOW, _NO_WINDOW)
                _walk(lor, _step_back, img, None, values[i] * lor.weight, 0)
    _add_parts(scratch, out_image)


# ------------------------------------------------------------------------ TOF, sinogram mode
@nb.njit(**_JIT)
def joseph_tof_sino_forward(image, grid, xstart, xend, tof, out_values):
    """``out_values[i, b + max_bin]``: every TOF bin ``b`` of LOR ``i``, one walk per LOR."""
    img = image.reshape(-1)
    for i in nb.prange(xstart.shape[0]):
        out = out_values[i]
        out[:] = 0.0
        window = _tof_window(tof, -tof.max_bin, tof.max_bin)
        lor = _lor_setup(image.shape, grid, xstart, xend, i, window.s_lo, window.s_hi)
        if lor.k0 <= lor.k1:
            _walk(lor, _step_tof_sino_forward, img, out, window, 0)
            for j in range(out.shape[0]):
                out[j] *= lor.weight


@nb.njit(**_JIT)
def joseph_tof_sino_back(values, grid, xstart, xend, tof, out_image, scratch):
    """Adjoint of :func:`joseph_tof_sino_forward`."""
    n_parts = scratch.shape[0]
    for p in nb.prange(n_parts):
        img = scratch[p]
        img[:] = 0.0
        window = _tof_window(tof, -tof.max_bin, tof.max_bin)
        for i in range(p, xstart.shape[0], n_parts):
            lor = _lor_setup(out_image.shape, grid, xstart, xend, i, window.s_lo, window.s_hi)
            _walk(lor, _step_tof_sino_back, img, values[i], window, 0)
    _add_parts(scratch, out_image)


# ------------------------------------------------------------------------ TOF, listmode mode
@nb.njit(**_JIT)
def joseph_tof_lm_forward(
    image, grid, xstart, xend, tof, tof_bin, tof_table, tof_inv_step, out_values
):
    """``out_values[i]``: LOR ``i`` projected into its own TOF bin ``tof_bin[i]``.

    Only the planes within reach of that bin are walked; the bin weights come from ``tof_table``
    (``f(d)`` every ``1/tof_inv_step`` mm, see ``LorProjector``), as on the GPU.
    """
    img = image.reshape(-1)
    inv_step = float(tof_inv_step)
    for i in nb.prange(xstart.shape[0]):
        b = int(tof_bin[i])
        window = _tof_window(tof, b, b)
        lor = _lor_setup(image.shape, grid, xstart, xend, i, window.s_lo, window.s_hi)
        params = (window, b, tof_table, inv_step)
        out_values[i] = _walk(lor, _step_tof_lm_forward, img, None, params, 0.0) * lor.weight


@nb.njit(**_JIT)
def joseph_tof_lm_back(
    values, grid, xstart, xend, tof, tof_bin, tof_table, tof_inv_step, out_image, scratch
):
    """Adjoint of :func:`joseph_tof_lm_forward`."""
    inv_step = float(tof_inv_step)
    n_parts = scratch.shape[0]
    for p in nb.prange(n_parts):
        img = scratch[p]
        img[:] = 0.0
        for i in range(p, xstart.shape[0], n_parts):
            if values[i] != 0.0:
                b = int(tof_bin[i])
                window = _tof_window(tof, b, b)
                lor = _lor_setup(out_image.shape, grid, xstart, xend, i, window.s_lo, window.s_hi)
                params = (window, b, values[i] * lor.weight, tof_table, inv_step)
                _walk(lor, _step_tof_lm_back, img, None, params, 0)
    _add_parts(scratch, out_image)


# ---------------------------------------------------------------------------- kernel dispatch
class CpuKernels:
    """Runs the kernels above for a ``LorProjector`` (same methods as ``_gpu.GpuKernels``)."""

    def __init__(self) -> None:
        from recon._jit import announce_compilation

        announce_compilation(sys.modules[__name__], "PET")

    @staticmethod
    def _grid(proj: Any) -> PetGrid:
        return PetGrid(*(np.float32(v) for v in proj._geometry))

    @staticmethod
    def _tof(proj: Any) -> PetTof:
        w, sigma, n_sigmas = (np.float32(v) for v in proj._tof_params)
        return PetTof(w, sigma, n_sigmas, np.int32(proj.max_bin))

    @staticmethod
    def _scratch(image: Any, n_lors: int) -> np.ndarray:
        """One partial image per thread (fewer for very few LORs); see the module docstring."""
        n_parts = max(1, min(nb.get_num_threads(), int(n_lors)))
        return np.empty((n_parts, image.size), np.float32)

    # ------------------------------------------------------------------ non-TOF
    def forward(self, proj: Any, image: Any, xs: Any, xe: Any, out: Any) -> None:
        joseph_forward(image, self._grid(proj), xs, xe, out)

    def back(self, proj: Any, values: Any, xs: Any, xe: Any, image: Any) -> None:
        joseph_back(values, self._grid(proj), xs, xe, image, self._scratch(image, xs.shape[0]))

    # ------------------------------------------------------------------ TOF, sinogram
    def tof_sino_forward(self, proj: Any, image: Any, xs: Any, xe: Any, out: Any) -> None:
        joseph_tof_sino_forward(image, self._grid(proj), xs, xe, self._tof(proj), out)

    def tof_sino_back(self, proj: Any, values: Any, xs: Any, xe: Any, image: Any) -> None:
        scratch = self._scratch(image, xs.shape[0])
        joseph_tof_sino_back(values, self._grid(proj), xs, xe, self._tof(proj), image, scratch)

    # ------------------------------------------------------------------ TOF, listmode
    def tof_lm_forward(
        self, proj: Any, image: Any, xs: Any, xe: Any, tof_bin: Any, out: Any
    ) -> None:
        table, inv_step = proj.tof_table
        joseph_tof_lm_forward(
            image, self._grid(proj), xs, xe, self._tof(proj), tof_bin, table,
            np.float32(inv_step), out,
        )  # fmt: skip

    def tof_lm_back(
        self, proj: Any, values: Any, xs: Any, xe: Any, tof_bin: Any, image: Any
    ) -> None:
        scratch = self._scratch(image, xs.shape[0])
        table, inv_step = proj.tof_table
        joseph_tof_lm_back(
            values, self._grid(proj), xs, xe, self._tof(proj), tof_bin, table,
            np.float32(inv_step), image, scratch,
        )  # fmt: skip
