"""Numba kernels of the SPECT projector (the CPU twin of ``kernels/spect.cu``).

The projector is split into two stages that both the CPU and the GPU implement with the same
arguments, in the same order, and with the same arithmetic:

1. *rotate* (``rotate_forward`` / ``rotate_back``): for every view, the image is sampled by bilinear
   interpolation in the transverse plane on a rotated grid ``q[view, depth, z, u]`` whose depth axis
   ``j`` runs from the far side (``j = 0``) towards the camera, and multiplied by the attenuation
   factor of that sample (``attenuation``), i.e. ``exp(−∫μ)`` from the sample to the camera;
2. *blur* (``blur_sum_forward`` / ``blur_spread_back``): the depth planes are blurred by the
   collimator response of their distance and summed. The blur is applied incrementally from the far
   plane to the near one ("Gaussian diffusion"): the running sum is widened by the *difference* in
   response variance between neighbouring planes with cheap 3-tap passes, so each plane gets exactly
   the variance of its own distance and the cost does not grow with the width of the response.

``rotate_back`` and ``blur_spread_back`` are the exact transposes of their forward twins.

Mirror of the CUDA source: every kernel has the arguments of its CUDA twin in the same order, less
the sizes that numpy arrays carry (those in :class:`SpectGrid`) and the blur's ``scratch``, and with
the arrays of the CUDA ``SpectViews`` (``view_ids, cos_t, sin_t, s0, u_pos``) in its place; each
helper ``spect_x`` of the CUDA source is ``_x`` here. ``rotate_back`` differs by
design: the GPU gathers per voxel (no atomics), the CPU scatters per image slice (no races).
"""

from __future__ import annotations

import math
import sys
from collections import namedtuple
from typing import Any

import numba as nb
import numpy as np

_JIT: dict[str, Any] = dict(parallel=True, fastmath=False, cache=True, nogil=True)

# Kernel parameters (``SpectGrid`` less the sizes, which the arrays carry).
SpectGrid = namedtuple("SpectGrid", "x0 y0 delta inv_delta")


# ------------------------------------------------------------------------------------ rotate
@nb.njit(inline="always")
def _sample_position(grid, cos_t, sin_t, s0, u_pos, v, j, i):
    """Fractional (row, column) image index of depth sample ``j`` on ray ``i`` of view ``v``."""
    u = u_pos[i]
    s = s0[v] + j * grid.delta
    px = u * cos_t[v] + s * sin_t[v]
    py = u * sin_t[v] - s * cos_t[v]
    return (py - grid.y0) * grid.inv_delta, (px - grid.x0) * grid.inv_delta


@nb.njit(inline="always")
def _footprint(fy, fx):
    """Corner ``(iy, ix)`` of a sample's bilinear footprint and the far corner's weights."""
    iy = math.floor(fy)
    ix = math.floor(fx)
    return int(iy), int(ix), fy - iy, fx - ix


@nb.njit(inline="always")
def _bilinear(img2d, fy, fx):
    ny, nx = img2d.shape
    iy, ix, ty, tx = _footprint(fy, fx)
    acc = 0.0
    if 0 <= iy < ny:
        if 0 <= ix < nx:
            acc += (1.0 - ty) * (1.0 - tx) * img2d[iy, ix]
        if 0 <= ix + 1 < nx:
            acc += (1.0 - ty) * tx * img2d[iy, ix + 1]
    if 0 <= iy + 1 < ny:
        if 0 <= ix < nx:
            acc += ty * (1.0 - tx) * img2d[iy + 1, ix]
        if 0 <= ix + 1 < nx:
            acc += ty * tx * img2d[iy + 1, ix + 1]
    return acc


@nb.njit(inline="always")
def _bilinear_scatter(img2d, fy, fx, value):
    """Transpose of :func:`_bilinear` (the CPU ``rotate_back``; the GPU gathers instead)."""
    ny, nx = img2d.shape
    iy, ix, ty, tx = _footprint(fy, fx)
    if 0 <= iy < ny:
        if 0 <= ix < nx:
            img2d[iy, ix] += (1.0 - ty) * (1.0 - tx) * value
        if 0 <= ix + 1 < nx:
            img2d[iy, ix + 1] += (1.0 - ty) * tx * value
    if 0 <= iy + 1 < ny:
        if 0 <= ix < nx:
            img2d[iy + 1, ix] += ty * (1.0 - tx) * value
        if 0 <= ix + 1 < nx:
            img2d[iy + 1, ix + 1] += ty * tx * value


@nb.njit(**_JIT)
def attenuation(mu, grid, view_ids, cos_t, sin_t, s0, u_pos, out_att):
    """Attenuation factors ``out_att[k, j, z, i] = exp(−∫μ)`` from each sample to the camera.

    The path integral sums the nearer samples and half of the sample's own voxel (midpoint rule),
    in mm times 1/mm.
    """
    n_views, n_d, nz, n_u = out_att.shape
    for kz in nb.prange(n_views * nz):
        k = kz // nz
        z = kz % nz
        v = view_ids[k]
        mu2d = mu[z]  # hoisted: slicing inside the sample loop costs more than the sample
        for i in range(n_u):
            path = 0.0
            for j in range(n_d - 1, -1, -1):
                fy, fx = _sample_position(grid, cos_t, sin_t, s0, u_pos, v, j, i)
                half = 0.5 * grid.delta * _bilinear(mu2d, fy, fx)
                path += half
                out_att[k, j, z, i] = math.exp(-path)
                path += half


@nb.njit(**_JIT)
def rotate_forward(image, grid, view_ids, cos_t, sin_t, s0, u_pos, att, att_rows, has_att, out_q):
    """Line-integral contribution of each rotated sample, ``Δ · image · attenuation`` (mm units)."""
    n_views, n_d, nz, n_u = out_q.shape
    for kz in nb.prange(n_views * nz):
        k = kz // nz
        z = kz % nz
        v = view_ids[k]
        slice2d = image[z]
        att_row = att_rows[k]
        for j in range(n_d):
            for i in range(n_u):
                fy, fx = _sample_position(grid, cos_t, sin_t, s0, u_pos, v, j, i)
                value = grid.delta * _bilinear(slice2d, fy, fx)
                if has_att:
                    value *= att[att_row, j, z, i]
                out_q[k, j, z, i] = value


@nb.njit(**_JIT)
def rotate_back(q, grid, view_ids, cos_t, sin_t, s0, u_pos, att, att_rows, has_att, out_image):
    """Transpose of :func:`rotate_forward`: adds the back-rotated ``q`` into ``out_image``.

    Parallel over image slices, so no two threads write the same voxel.
    """
    n_views, n_d, nz, n_u = q.shape
    for z in nb.prange(nz):
        target = out_image[z]
        for k in range(n_views):
            v = view_ids[k]
            att_row = att_rows[k]
            for j in range(n_d):
                for i in range(n_u):
                    value = grid.delta * q[k, j, z, i]
                    if has_att:
                        value *= att[att_row, j, z, i]
                    if value != 0.0:
                        fy, fx = _sample_position(grid, cos_t, sin_t, s0, u_pos, v, j, i)
                        _bilinear_scatter(target, fy, fx, value)


# -------------------------------------------------------------------------------------- blur
@nb.njit(inline="always")
def _blur_pass(src, dst, w, axis):
    """One 3-tap pass ``[w, 1 − 2w, w]`` along u (axis 0) or z (axis 1) of a (nz, n_u) plane."""
    nz, n_u = src.shape
    c = 1.0 - 2.0 * w
    for z in range(nz):
        for i in range(n_u):
            if axis == 0:
                lo = src[z, i - 1] if i > 0 else 0.0
                hi = src[z, i + 1] if i + 1 < n_u else 0.0
            else:
                lo = src[z - 1, i] if z > 0 else 0.0
                hi = src[z + 1, i] if z + 1 < nz else 0.0
            dst[z, i] = c * src[z, i] + w * (lo + hi)


@nb.njit(inline="always")
def _blur_step(acc, tmp, blur_w, blur_n, v, j):
    """Apply blur step ``j`` of view ``v`` (its 3-tap passes) to ``acc`` (``tmp``: scratch)."""
    for axis in range(2):
        for _ in range(blur_n[v, j, axis]):
            _blur_pass(acc, tmp, blur_w[v, j, axis], axis)
            acc[:, :] = tmp


@nb.njit(**_JIT)
def blur_sum_forward(q, view_ids, blur_w, blur_n, out_planes):
    """Blur every depth plane of ``q`` by its response and sum over depth into ``out_planes``.

    ``blur_w[v, j, a]`` / ``blur_n[v, j, a]`` hold the weight and number of 3-tap passes on axis
    ``a`` (0 = u, 1 = z) for step ``j`` of view ``v``; step ``j ≥ 1`` widens the running sum from
    plane ``j − 1`` to plane ``j``, and entry ``j = 0`` holds the final blur of the nearest plane.
    """
    n_views, n_d, nz, n_u = q.shape
    for k in nb.prange(n_views):
        v = view_ids[k]
        acc = q[k, 0].copy()
        tmp = np.empty_like(acc)
        for j in range(1, n_d):
            _blur_step(acc, tmp, blur_w, blur_n, v, j)
            acc += q[k, j]
        _blur_step(acc, tmp, blur_w, blur_n, v, 0)
        out_planes[k] = acc


@nb.njit(**_JIT)
def blur_spread_back(planes, view_ids, blur_w, blur_n, out_q):
    """Transpose of :func:`blur_sum_forward`: spreads each plane back over the depth planes."""
    n_views, n_d, nz, n_u = out_q.shape
    for k in nb.prange(n_views):
        v = view_ids[k]
        acc = planes[k].copy()
        tmp = np.empty_like(acc)
        _blur_step(acc, tmp, blur_w, blur_n, v, 0)
        out_q[k, n_d - 1] = acc
        for j in range(n_d - 1, 0, -1):
            _blur_step(acc, tmp, blur_w, blur_n, v, j)
            out_q[k, j - 1] = acc


# ---------------------------------------------------------------------------- kernel dispatch
_NO_ATT = np.zeros((1, 1, 1, 1), np.float32)
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
    def _att(att: Any, rows: Any) -> tuple[Any, Any, bool]:
        """``(att, att_rows, has_att)``; placeholders when there is no attenuation."""
        return (_NO_ATT, _NO_ROWS, False) if att is None else (att, rows, True)

    def attenuation(self, model: Any, mu: Any, ids: Any, out: Any) -> None:
        attenuation(mu, self._grid(model), *self._views(model, ids), out)

    def rotate_forward(self, model: Any, x: Any, att: Any, rows: Any, ids: Any, q: Any) -> None:
        views = self._views(model, ids)
        rotate_forward(x, self._grid(model), *views, *self._att(att, rows), q)

    def rotate_back(self, model: Any, q: Any, att: Any, rows: Any, ids: Any, image: Any) -> None:
        views = self._views(model, ids)
        rotate_back(q, self._grid(model), *views, *self._att(att, rows), image)

    @staticmethod
    def _blur_tables(model: Any, tables: Any) -> tuple[Any, Any]:
        """``(blur_w, blur_n)``: ``tables`` (one response component) or the model's."""
        return (model._tables["blur_w"], model._tables["blur_n"]) if tables is None else tables

    def blur_sum_forward(
        self, model: Any, q: Any, ids: Any, planes: Any, tables: Any = None
    ) -> None:
        blur_sum_forward(q, ids, *self._blur_tables(model, tables), planes)

    def blur_spread_back(
        self, model: Any, planes: Any, ids: Any, q: Any, tables: Any = None
    ) -> None:
        blur_spread_back(planes, ids, *self._blur_tables(model, tables), q)
