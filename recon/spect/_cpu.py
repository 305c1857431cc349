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
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_JIT = dict(parallel=True, fastmath=False, cache=True, nogil=True)


@nb.njit(inline="always")
def _sample_position(cos_t, sin_t, s0, delta, j, u, x0, y0, inv_delta):
    """Fractional (row, column) image index of depth sample ``j`` on the ray at offset ``u``."""
    s = s0 + j * delta
    px = u * cos_t + s * sin_t
    py = u * sin_t - s * cos_t
    return (py - y0) * inv_delta, (px - x0) * inv_delta


@nb.njit(inline="always")
def _bilinear(img2d, fy, fx):
    ny, nx = img2d.shape
    iy = math.floor(fy)
    ix = math.floor(fx)
    ty = fy - iy
    tx = fx - ix
    iy = int(iy)
    ix = int(ix)
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
    ny, nx = img2d.shape
    iy = math.floor(fy)
    ix = math.floor(fx)
    ty = fy - iy
    tx = fx - ix
    iy = int(iy)
    ix = int(ix)
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
def attenuation(mu, view_ids, cos_t, sin_t, s0, u_pos, x0, y0, inv_delta, delta, n_d, out_att):
    """Attenuation factors ``out_att[k, j, z, i] = exp(−∫μ)`` from each sample to the camera.

    The path integral sums the nearer samples and half of the sample's own voxel (midpoint rule),
    in mm times 1/mm.
    """
    n_views = view_ids.shape[0]
    nz = mu.shape[0]
    n_u = u_pos.shape[0]
    for kz in nb.prange(n_views * nz):
        k = kz // nz
        z = kz % nz
        v = view_ids[k]
        mu2d = mu[z]  # hoisted: slicing inside the sample loop costs more than the sample
        for i in range(n_u):
            path = 0.0
            for j in range(n_d - 1, -1, -1):
                fy, fx = _sample_position(
                    cos_t[v], sin_t[v], s0[v], delta, j, u_pos[i], x0, y0, inv_delta
                )
                half = 0.5 * delta * _bilinear(mu2d, fy, fx)
                path += half
                out_att[k, j, z, i] = math.exp(-path)
                path += half


@nb.njit(**_JIT)
def rotate_forward(
    image,
    att,
    att_rows,
    has_att,
    view_ids,
    cos_t,
    sin_t,
    s0,
    u_pos,
    x0,
    y0,
    inv_delta,
    delta,
    n_d,
    out_q,
):
    """Line-integral contribution of each rotated sample, ``Δ · image · attenuation`` (mm units)."""
    n_views = view_ids.shape[0]
    nz = image.shape[0]
    n_u = u_pos.shape[0]
    for kz in nb.prange(n_views * nz):
        k = kz // nz
        z = kz % nz
        v = view_ids[k]
        slice2d = image[z]
        att_row = att_rows[k]
        for j in range(n_d):
            for i in range(n_u):
                fy, fx = _sample_position(
                    cos_t[v], sin_t[v], s0[v], delta, j, u_pos[i], x0, y0, inv_delta
                )
                value = delta * _bilinear(slice2d, fy, fx)
                if has_att:
                    value *= att[att_row, j, z, i]
                out_q[k, j, z, i] = value


@nb.njit(**_JIT)
def rotate_back(
    q,
    att,
    att_rows,
    has_att,
    view_ids,
    cos_t,
    sin_t,
    s0,
    u_pos,
    x0,
    y0,
    inv_delta,
    delta,
    n_d,
    out_image,
):
    """Transpose of :func:`rotate_forward`: adds the back-rotated ``q`` into ``out_image``.

    Parallel over image slices, so no two threads write the same voxel.
    """
    n_views = view_ids.shape[0]
    nz = out_image.shape[0]
    n_u = u_pos.shape[0]
    for z in nb.prange(nz):
        target = out_image[z]
        for k in range(n_views):
            v = view_ids[k]
            att_row = att_rows[k]
            for j in range(n_d):
                for i in range(n_u):
                    value = delta * q[k, j, z, i]
                    if has_att:
                        value *= att[att_row, j, z, i]
                    if value != 0.0:
                        fy, fx = _sample_position(
                            cos_t[v], sin_t[v], s0[v], delta, j, u_pos[i], x0, y0, inv_delta
                        )
                        _bilinear_scatter(target, fy, fx, value)


@nb.njit(inline="always")
def _pass_u(src, dst, w):
    nz, n_u = src.shape
    c = 1.0 - 2.0 * w
    for z in range(nz):
        for i in range(n_u):
            left = src[z, i - 1] if i > 0 else 0.0
            right = src[z, i + 1] if i + 1 < n_u else 0.0
            dst[z, i] = c * src[z, i] + w * (left + right)


@nb.njit(inline="always")
def _pass_z(src, dst, w):
    nz, n_u = src.shape
    c = 1.0 - 2.0 * w
    for z in range(nz):
        for i in range(n_u):
            below = src[z - 1, i] if z > 0 else 0.0
            above = src[z + 1, i] if z + 1 < nz else 0.0
            dst[z, i] = c * src[z, i] + w * (below + above)


@nb.njit(inline="always")
def _blur(acc, tmp, w_u, n_u_passes, w_z, n_z_passes):
    """Apply the 3-tap passes of one blur step to ``acc`` in place (``tmp`` is scratch)."""
    for _ in range(n_u_passes):
        _pass_u(acc, tmp, w_u)
        acc[:, :] = tmp
    for _ in range(n_z_passes):
        _pass_z(acc, tmp, w_z)
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
            _blur(acc, tmp, blur_w[v, j, 0], blur_n[v, j, 0], blur_w[v, j, 1], blur_n[v, j, 1])
            acc += q[k, j]
        _blur(acc, tmp, blur_w[v, 0, 0], blur_n[v, 0, 0], blur_w[v, 0, 1], blur_n[v, 0, 1])
        out_planes[k] = acc


@nb.njit(**_JIT)
def blur_spread_back(planes, view_ids, blur_w, blur_n, out_q):
    """Transpose of :func:`blur_sum_forward`: spreads each plane back over the depth planes."""
    n_views, n_d, nz, n_u = out_q.shape
    for k in nb.prange(n_views):
        v = view_ids[k]
        acc = planes[k].copy()
        tmp = np.empty_like(acc)
        _blur(acc, tmp, blur_w[v, 0, 0], blur_n[v, 0, 0], blur_w[v, 0, 1], blur_n[v, 0, 1])
        out_q[k, n_d - 1] = acc
        for j in range(n_d - 1, 0, -1):
            _blur(acc, tmp, blur_w[v, j, 0], blur_n[v, j, 0], blur_w[v, j, 1], blur_n[v, j, 1])
            out_q[k, j - 1] = acc
