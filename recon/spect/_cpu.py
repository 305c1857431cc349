"""Numba kernels of the SPECT projector (the CPU twin of ``kernels/spect.cu``).

The projector samples the image, for every view, on a rotated grid ``[depth j, ray u, slice z]``
by bilinear interpolation in the transverse plane (depth ``j`` runs from the far side, ``j = 0``,
towards the camera), multiplies each sample by ``Δ`` and by its attenuation factor ``exp(−∫μ)``
from the sample to the camera, blurs every depth plane by the collimator response of its distance
and sums over depth. The blur is applied incrementally from the far plane to the near one
("Gaussian diffusion"): the running sum is widened by the *difference* in response variance between
neighbouring planes with cheap 3-tap passes, so each plane gets exactly the variance of its own
distance. A pass adds at most 1/2 pixel² with unit stride; a wide response (σ of at least 4 pixels
at the far side, where that saves a quarter of the passes: a septal-penetration tail) takes passes
whose outer taps lie ``s`` pixels apart, s² times the variance each, after unit passes of variance
s² that fill the gaps (:func:`recon.spect.model._pass_strides`): its cost grows with σ rather
than with σ².

Layout (z innermost). Rotation about the z axis moves every slice alike, so the bilinear
footprint and weights of a (view, depth, u) sample are computed once and applied to a whole
column along z. The kernels therefore work on the image as ``(y, x, z)`` and keep their planes
as ``[u, z]``; the fused kernels transpose at their boundary (tiled, in parallel, as the first
or last loop of the same call). Every inner loop runs along contiguous z and is vectorised by
LLVM, attenuation included (:func:`recon.spect._fastexp.exp_neg`, float32).

Fused per view. :func:`project_views` and :func:`backproject_views` run rotation, attenuation and
the response blur of one view at a time, one depth plane at a time, so nothing larger than a few
``[u, z]`` planes leaves the cache. Attenuation factors come from the model's cache (rows of
:func:`attenuation`, the views that fit in its budget) or, for the other views, are computed on
the fly from the μ-map with the same bilinear footprint as the image sample:

* the back-projection spreads near to far, so it keeps the running path ``N`` from the camera:
  ``path_j = N + Δμ_j / 2``, ``N += Δμ_j`` — the arithmetic of :func:`attenuation`;
* the projection sums far to near, so it first adds up the whole path ``T = Σ Δμ_j`` of each ray
  and keeps the running far part ``C``: ``path_j = (T − C) − Δμ_j / 2``, ``C += Δμ_j`` (float32:
  ``T`` is a few units, so this differs from the near-to-far sum by ~1e-7 relative).

:func:`backproject_views` is the transpose of :func:`project_views`; it runs a static partition of
the views per thread, each thread adding into its own image; these are summed in order (no races,
and the same result for the same number of threads).

Mirror of the CUDA source. The GPU keeps the stages as separate kernels over all samples
(``spect_attenuation``, ``spect_rotate_forward`` / ``spect_rotate_back`` and the blur kernels, on
the same ``[view, depth, u, z]`` layout so that threads along z read contiguous memory), because
a GPU wants many threads per view rather than cache reuse. :func:`attenuation` has the arguments
of ``spect_attenuation`` in the same order, less the sizes that numpy arrays carry (those in the
CUDA ``SpectGrid``), and with the arrays of the CUDA ``SpectViews`` (``view_ids, cos_t, sin_t, s0,
u_pos``) in its place; the fused kernels take the same arguments as the stages they fuse.
``_sample_position``, ``_blur_pass`` and ``_blur_step`` are ``spect_sample_position``,
``spect_blur_pass`` and ``spect_blur_step`` of the CUDA source, and ``_footprint`` with
``_bilinear_column`` computes what ``spect_bilinear`` computes, for every z at once (corners
outside the image get weight 0 instead of being skipped: the same sums). The arithmetic is the
same float32 arithmetic, except that the CPU uses :func:`exp_neg` where CUDA uses ``expf`` (both
within 2 ulp of ``exp``) and that the GPU's ``spect_rotate_back`` gathers per voxel where the
CPU scatters per sample.
"""

from __future__ import annotations

import sys
from collections import namedtuple
from typing import Any

import numba as nb
import numpy as np

from recon.spect._fastexp import exp_neg

_JIT: dict[str, Any] = dict(parallel=True, fastmath=False, cache=True, nogil=True)
# Kernels with two parallel loops in sequence (the views, and a transpose before or after them):
# loop fusion off, as the second loop reads what the first wrote.
_JIT_STAGED: dict[str, Any] = dict(_JIT, parallel={"fusion": False})

# Kernel parameters (``SpectGrid`` less the sizes, which the arrays carry), float32.
SpectGrid = namedtuple("SpectGrid", "x0 y0 delta inv_delta")

_F = np.float32
_ZERO = _F(0.0)
_HALF = _F(0.5)
_ONE = _F(1.0)
_TWO = _F(2.0)


# ------------------------------------------------------------------------------------ sampling
@nb.njit(inline="always")
def _sample_position(grid, cos_t, sin_t, s0, u_pos, v, j, i):
    """Fractional (row, column) image index of depth sample ``j`` on ray ``i`` of view ``v``."""
    u = u_pos[i]
    s = s0[v] + _F(j) * grid.delta
    px = u * cos_t[v] + s * sin_t[v]
    py = u * sin_t[v] - s * cos_t[v]
    return (py - grid.y0) * grid.inv_delta, (px - grid.x0) * grid.inv_delta


@nb.njit(inline="always")
def _footprint(fy, fx, ny, nx):
    """Bilinear footprint of a sample: its corner rows/columns (clamped into the image) and the
    four weights, zero for corners outside the image; ``inside`` is False when all four are."""
    fly = np.floor(fy)
    flx = np.floor(fx)
    ty = fy - fly
    tx = fx - flx
    iy = int(fly)
    ix = int(flx)
    y0_in = 0 <= iy < ny
    y1_in = 0 <= iy + 1 < ny
    x0_in = 0 <= ix < nx
    x1_in = 0 <= ix + 1 < nx
    w00 = (_ONE - ty) * (_ONE - tx) if (y0_in and x0_in) else _ZERO
    w01 = (_ONE - ty) * tx if (y0_in and x1_in) else _ZERO
    w10 = ty * (_ONE - tx) if (y1_in and x0_in) else _ZERO
    w11 = ty * tx if (y1_in and x1_in) else _ZERO
    y0 = min(max(iy, 0), ny - 1)
    y1 = min(max(iy + 1, 0), ny - 1)
    x0 = min(max(ix, 0), nx - 1)
    x1 = min(max(ix + 1, 0), nx - 1)
    inside = (y0_in or y1_in) and (x0_in or x1_in)
    return inside, y0, y1, x0, x1, w00, w01, w10, w11


@nb.njit(inline="always")
def _bilinear_column(vol, y0, y1, x0, x1, w00, w01, w10, w11, out):
    """``out[z]`` = bilinear interpolation of the ``(y, x, z)`` volume at every z of a footprint."""
    r00 = vol[y0, x0]
    r01 = vol[y0, x1]
    r10 = vol[y1, x0]
    r11 = vol[y1, x1]
    for z in range(out.shape[0]):
        out[z] = w00 * r00[z] + w01 * r01[z] + w10 * r10[z] + w11 * r11[z]


@nb.njit(inline="always")
def _bilinear_scatter_column(vol, y0, y1, x0, x1, w00, w01, w10, w11, values):
    """Transpose of :func:`_bilinear_column`: adds ``values[z]`` into the footprint's columns."""
    r00 = vol[y0, x0]
    r01 = vol[y0, x1]
    r10 = vol[y1, x0]
    r11 = vol[y1, x1]
    for z in range(values.shape[0]):
        value = values[z]
        r00[z] += w00 * value
        r01[z] += w01 * value
        r10[z] += w10 * value
        r11[z] += w11 * value


# ------------------------------------------------------------------------------------- layout
_TILE = 16  # x per tile of the transposes: 64-byte rows of the (z, y, x) side


@nb.njit(inline="always")
def _to_yxz_row(volume, out, y):
    """``out[y, x, z] = volume[z, y, x]`` for one y, tiled along x."""
    nz, _, nx = volume.shape
    for x0 in range(0, nx, _TILE):
        x1 = min(x0 + _TILE, nx)
        for z in range(nz):
            for x in range(x0, x1):
                out[y, x, z] = volume[z, y, x]


@nb.njit(inline="always")
def _sum_to_zyx_row(parts, out, y):
    """``out[z, y, x] = Σ_p parts[p, y, x, z]`` for one y (summed in order of p)."""
    n_parts, _, nx, nz = parts.shape
    for x0 in range(0, nx, _TILE):
        x1 = min(x0 + _TILE, nx)
        for z in range(nz):
            for x in range(x0, x1):
                total = parts[0, y, x, z]
                for p in range(1, n_parts):
                    total += parts[p, y, x, z]
                out[z, y, x] = total


@nb.njit(**_JIT)
def to_yxz(volume, out):
    """``out[y, x, z] = volume[z, y, x]``: a ``(z, y, x)`` volume in the kernels' layout."""
    for y in nb.prange(volume.shape[1]):
        _to_yxz_row(volume, out, y)


# ---------------------------------------------------------------------------------- attenuation
@nb.njit(**_JIT)
def attenuation(mu, grid, view_ids, cos_t, sin_t, s0, u_pos, out_att):
    """Attenuation factors ``out_att[k, j, i, z] = exp(−∫μ)`` from each sample to the camera.

    ``mu`` is ``(y, x, z)`` in 1/mm. The path integral sums the nearer samples and half of the
    sample's own step (midpoint rule), in mm times 1/mm, near to far.
    """
    n_views, n_d, n_u, nz = out_att.shape
    ny, nx = mu.shape[0], mu.shape[1]
    for ki in nb.prange(n_views * n_u):
        k = ki // n_u
        i = ki % n_u
        v = view_ids[k]
        near = np.zeros(nz, np.float32)
        m = np.empty(nz, np.float32)
        for j in range(n_d - 1, -1, -1):
            fy, fx = _sample_position(grid, cos_t, sin_t, s0, u_pos, v, j, i)
            inside, y0, y1, x0, x1, w00, w01, w10, w11 = _footprint(fy, fx, ny, nx)
            out = out_att[k, j, i]
            if not inside:
                for z in range(nz):
                    out[z] = exp_neg(near[z])
                continue
            _bilinear_column(mu, y0, y1, x0, x1, w00, w01, w10, w11, m)
            for z in range(nz):
                d = grid.delta * m[z]
                out[z] = exp_neg(near[z] + _HALF * d)
                near[z] += d


# ----------------------------------------------------------------------------------------- blur
@nb.njit(inline="always")
def _blur_pass(src, dst, w, axis, stride):
    """One 3-tap pass ``[w, 1 − 2w, w]`` with its outer taps ``stride`` pixels from the centre,
    along u (axis 0) or z (axis 1) of a ``[u, z]`` plane, zero outside. Along u the taps are
    whole rows; along z the middle of each row is taken as aligned slices indexed from 0, so
    that the inner loops vectorise whatever the stride."""
    n_u, nz = src.shape
    c = _ONE - _TWO * w
    if axis == 0:
        for i in range(n_u):
            s = src[i]
            d = dst[i]
            if stride <= i < n_u - stride:
                lo_row = src[i - stride]
                hi_row = src[i + stride]
                for z in range(nz):
                    d[z] = c * s[z] + w * (lo_row[z] + hi_row[z])
            else:
                for z in range(nz):
                    lo = src[i - stride, z] if i >= stride else _ZERO
                    hi = src[i + stride, z] if i + stride < n_u else _ZERO
                    d[z] = c * s[z] + w * (lo + hi)
    elif stride == 1:
        for i in range(n_u):
            _z_pass_row(src[i], dst[i], c, w)
    else:
        for i in range(n_u):
            _z_strided_row(src[i], dst[i], c, w, stride)


@nb.njit(inline="always")
def _z_pass_row(t, d, c, w):
    """The unit pass along z of one row ``t`` into ``d`` (zero outside). Its constant offsets
    make it faster than :func:`_z_strided_row` with stride 1 (0.16 vs 0.23-0.29 s for a 128³
    ME projection), which is why unit passes keep it."""
    nz = t.shape[0]
    if nz == 1:
        d[0] = c * t[0] + w * (_ZERO + _ZERO)
        return
    d[0] = c * t[0] + w * (_ZERO + t[1])
    for z in range(1, nz - 1):
        d[z] = c * t[z] + w * (t[z - 1] + t[z + 1])
    d[nz - 1] = c * t[nz - 1] + w * (t[nz - 2] + _ZERO)


@nb.njit(inline="always")
def _z_strided_row(t, d, c, w, stride):
    """The pass along z of one row ``t`` into ``d`` with outer taps ``stride`` apart (zero
    outside): the middle as aligned slices indexed from 0 (so it vectorises), then the edges."""
    nz = t.shape[0]
    m = nz - 2 * stride
    if m > 0:
        centre = t[stride : stride + m]
        lo = t[0:m]
        hi = t[2 * stride : 2 * stride + m]
        out = d[stride : stride + m]
        for k in range(m):
            out[k] = c * centre[k] + w * (lo[k] + hi[k])
    for z in range(min(stride, nz)):  # the lower tap outside
        upper = t[z + stride] if z + stride < nz else _ZERO
        d[z] = c * t[z] + w * (_ZERO + upper)
    for z in range(max(stride, nz - stride), nz):  # the upper tap outside
        d[z] = c * t[z] + w * (t[z - stride] + _ZERO)


@nb.njit(inline="always")
def _blur_step(planes, cur, blur_w, blur_n, blur_s, v, j):
    """Apply blur step ``j`` of view ``v`` (its 3-tap passes) to the running plane of every
    response component.

    ``planes[c, cur[c]]`` is component ``c``'s running plane and ``planes[c, 1 − cur[c]]`` its
    scratch; each pass writes the scratch and the two swap.
    """
    for c in range(planes.shape[0]):
        for axis in range(2):
            for part in range(2):  # unit-stride passes, then strided ones
                w = blur_w[c, v, j, axis, part]
                stride = blur_s[c, v, j, axis, part]
                for _ in range(blur_n[c, v, j, axis, part]):
                    _blur_pass(planes[c, cur[c]], planes[c, 1 - cur[c]], w, axis, stride)
                    cur[c] = 1 - cur[c]


# ------------------------------------------------------------------------------ fused projector
@nb.njit(**_JIT_STAGED)
def project_views(
    image,
    image_yxz,
    mu,
    grid,
    view_ids,
    cos_t,
    sin_t,
    s0,
    u_pos,
    att,
    att_rows,
    has_att,
    blur_w,
    blur_n,
    blur_s,
    blur_weights,
    out_planes,
):
    """``out_planes[k, i, z]``: view ``k`` projected (rotate, attenuate, blur, sum over depth).

    ``image`` is ``(z, y, x)``; it is first transposed into the scratch ``image_yxz``, the layout
    of ``mu``. ``att[att_rows[k]]`` holds the cached factors
    ``[depth, u, z]`` of view ``k`` or, where ``att_rows[k] < 0``, they are computed from ``mu``.
    ``blur_w[c, v, j, a, p]`` / ``blur_n[…]`` / ``blur_s[…]`` hold the weight, number and
    stride of the 3-tap passes of part ``p`` (0: unit stride, 1: the view's stride) on
    axis ``a`` (0 = u, 1 = z) of response component ``c`` for step ``j`` of view ``v``; step
    ``j ≥ 1`` widens the running sum from plane ``j − 1`` to plane ``j``, and entry ``j = 0`` holds
    the final blur of the nearest plane. The components are summed with ``blur_weights``.
    """
    n_views, n_u, nz = out_planes.shape
    n_comp, n_d = blur_w.shape[0], blur_w.shape[2]
    ny, nx = image_yxz.shape[0], image_yxz.shape[1]
    for y in nb.prange(ny):
        _to_yxz_row(image, image_yxz, y)
    for k in nb.prange(n_views):
        v = view_ids[k]
        row = att_rows[k] if has_att else 0
        on_the_fly = has_att and row < 0
        planes = np.zeros((n_comp, 2, n_u, nz), np.float32)
        cur = np.zeros(n_comp, np.int64)
        sample = np.empty(nz, np.float32)
        m = np.empty(nz, np.float32)
        total = np.zeros((n_u if on_the_fly else 1, nz), np.float32)
        far = np.zeros((n_u if on_the_fly else 1, nz), np.float32)
        if on_the_fly:  # the whole path of each ray, T = Σ Δμ_j
            for j in range(n_d):
                for i in range(n_u):
                    fy, fx = _sample_position(grid, cos_t, sin_t, s0, u_pos, v, j, i)
                    inside, y0, y1, x0, x1, w00, w01, w10, w11 = _footprint(fy, fx, ny, nx)
                    if inside:
                        _bilinear_column(mu, y0, y1, x0, x1, w00, w01, w10, w11, m)
                        t = total[i]
                        for z in range(nz):
                            t[z] += grid.delta * m[z]
        for j in range(n_d):
            if j > 0:
                _blur_step(planes, cur, blur_w, blur_n, blur_s, v, j)
            for i in range(n_u):
                fy, fx = _sample_position(grid, cos_t, sin_t, s0, u_pos, v, j, i)
                inside, y0, y1, x0, x1, w00, w01, w10, w11 = _footprint(fy, fx, ny, nx)
                if not inside:
                    continue
                _bilinear_column(image_yxz, y0, y1, x0, x1, w00, w01, w10, w11, sample)
                if on_the_fly:
                    _bilinear_column(mu, y0, y1, x0, x1, w00, w01, w10, w11, m)
                    t = total[i]
                    c_far = far[i]
                    for z in range(nz):
                        d = grid.delta * m[z]
                        a = exp_neg((t[z] - c_far[z]) - _HALF * d)
                        c_far[z] += d
                        sample[z] = grid.delta * sample[z] * a
                elif has_att:
                    a_row = att[row, j, i]
                    for z in range(nz):
                        sample[z] = grid.delta * sample[z] * a_row[z]
                else:
                    for z in range(nz):
                        sample[z] = grid.delta * sample[z]
                for c in range(n_comp):
                    acc = planes[c, cur[c], i]
                    for z in range(nz):
                        acc[z] += sample[z]
        _blur_step(planes, cur, blur_w, blur_n, blur_s, v, 0)
        out = out_planes[k]
        if n_comp == 1:
            out[:, :] = planes[0, cur[0]]
        else:
            out[:, :] = blur_weights[0] * planes[0, cur[0]]
            for c in range(1, n_comp):
                out += blur_weights[c] * planes[c, cur[c]]


@nb.njit(**_JIT_STAGED)
def backproject_views(
    planes_in,
    mu,
    grid,
    view_ids,
    cos_t,
    sin_t,
    s0,
    u_pos,
    att,
    att_rows,
    has_att,
    blur_w,
    blur_n,
    blur_s,
    blur_weights,
    parts,
    out_image,
):
    """Transpose of :func:`project_views`: ``out_image`` (``(z, y, x)``) = the back-projection of
    ``planes_in[k, i, z]``. View ``k`` is added into the zeroed scratch ``parts[k mod P]`` (``P``
    images ``(y, x, z)``, one per parallel task), which are then summed and transposed."""
    n_views, n_u, nz = planes_in.shape
    n_comp, n_d = blur_w.shape[0], blur_w.shape[2]
    n_parts, ny, nx = parts.shape[0], parts.shape[1], parts.shape[2]
    for p in nb.prange(n_parts):
        target = parts[p]
        planes = np.empty((n_comp, 2, n_u, nz), np.float32)
        cur = np.zeros(n_comp, np.int64)
        q_sum = np.empty((n_u, nz), np.float32)
        values = np.empty(nz, np.float32)
        m = np.empty(nz, np.float32)
        near = np.empty((n_u, nz), np.float32)
        for k in range(p, n_views, n_parts):
            v = view_ids[k]
            row = att_rows[k] if has_att else 0
            on_the_fly = has_att and row < 0
            near[:, :] = _ZERO
            for c in range(n_comp):
                planes[c, 0] = planes_in[k]
                cur[c] = 0
            _blur_step(planes, cur, blur_w, blur_n, blur_s, v, 0)
            for j in range(n_d - 1, -1, -1):
                if j < n_d - 1:
                    _blur_step(planes, cur, blur_w, blur_n, blur_s, v, j + 1)
                if n_comp == 1:
                    q = planes[0, cur[0]]  # no copy: the weight is 1
                else:
                    q = q_sum
                    q[:, :] = blur_weights[0] * planes[0, cur[0]]
                    for c in range(1, n_comp):
                        q += blur_weights[c] * planes[c, cur[c]]
                for i in range(n_u):
                    fy, fx = _sample_position(grid, cos_t, sin_t, s0, u_pos, v, j, i)
                    inside, y0, y1, x0, x1, w00, w01, w10, w11 = _footprint(fy, fx, ny, nx)
                    if not inside:
                        continue
                    q_row = q[i]
                    if on_the_fly:
                        _bilinear_column(mu, y0, y1, x0, x1, w00, w01, w10, w11, m)
                        n_row = near[i]
                        for z in range(nz):
                            d = grid.delta * m[z]
                            a = exp_neg(n_row[z] + _HALF * d)
                            n_row[z] += d
                            values[z] = grid.delta * q_row[z] * a
                    elif has_att:
                        a_row = att[row, j, i]
                        for z in range(nz):
                            values[z] = grid.delta * q_row[z] * a_row[z]
                    else:
                        for z in range(nz):
                            values[z] = grid.delta * q_row[z]
                    _bilinear_scatter_column(target, y0, y1, x0, x1, w00, w01, w10, w11, values)
    for y in nb.prange(ny):
        _sum_to_zyx_row(parts, out_image, y)


# ---------------------------------------------------------------------------- kernel dispatch
_NO_ATT = np.zeros((1, 1, 1, 1), np.float32)
_NO_MU = np.zeros((1, 1, 1), np.float32)
_NO_ROWS = np.zeros(1, np.int32)


class CpuKernels:
    """Runs the kernels above for a ``SpectModel`` (same methods as ``_gpu.GpuKernels``)."""

    def __init__(self) -> None:
        from recon._jit import announce_compilation

        announce_compilation(sys.modules[__name__], "SPECT")

    @staticmethod
    def _grid(model: Any) -> SpectGrid:
        delta = model._delta
        return SpectGrid(*np.array([model._x0, model._y0, delta, 1.0 / delta], np.float32))

    @staticmethod
    def _views(model: Any, ids: Any) -> tuple:
        """``(view_ids, cos_t, sin_t, s0, u_pos)``: ``SpectViews`` of the CUDA source."""
        t = model._tables
        return ids, t["cos_t"], t["sin_t"], t["s0"], t["u_pos"]

    @staticmethod
    def _att(model: Any, att: Any, rows: Any, n: int) -> tuple:
        """``(mu, att, att_rows, has_att)``; placeholders when there is no attenuation."""
        if model._mu_t is None:
            return _NO_MU, _NO_ATT, _NO_ROWS, False
        if att is None:  # nothing cached: every view on the fly
            return model._mu_t, _NO_ATT, np.full(n, -1, np.int32), True
        return model._mu_t, att, rows, True

    def attenuation(self, model: Any, mu: Any, ids: Any, out: Any) -> None:
        attenuation(mu, self._grid(model), *self._views(model, ids), out)

    def project(self, model: Any, x: Any, att: Any, rows: Any, ids: Any, planes: Any) -> None:
        """``planes[k]`` ``[u, z]``: the views ``ids`` of the ``(z, y, x)`` image ``x``."""
        n = int(ids.shape[0])
        mu, att, rows, has_att = self._att(model, att, rows, n)
        views = self._views(model, ids)
        nz, ny, nx = x.shape
        x_yxz = np.empty((ny, nx, nz), np.float32)
        grid = self._grid(model)
        project_views(x, x_yxz, mu, grid, *views, att, rows, has_att, *model._blur_stack, planes)

    @staticmethod
    def to_yxz(volume: Any) -> Any:
        """A ``(z, y, x)`` volume in the kernels' layout: contiguous float32 ``(y, x, z)``."""
        volume = np.asarray(volume, np.float32)
        out = np.empty((volume.shape[1], volume.shape[2], volume.shape[0]), np.float32)
        to_yxz(volume, out)
        return out

    def backproject(self, model: Any, planes: Any, att: Any, rows: Any, ids: Any) -> Any:
        """The ``(z, y, x)`` back-projection of ``planes`` (views ``ids``, ``[u, z]``)."""
        n = int(ids.shape[0])
        mu, att, rows, has_att = self._att(model, att, rows, n)
        views = self._views(model, ids)
        n_parts = max(1, min(nb.get_num_threads(), n))
        nz, ny, nx = model.grid.shape
        parts = np.zeros((n_parts, ny, nx, nz), np.float32)
        image = np.empty((nz, ny, nx), np.float32)
        grid = self._grid(model)
        tables = model._blur_stack
        backproject_views(planes, mu, grid, *views, att, rows, has_att, *tables, parts, image)
        return image
