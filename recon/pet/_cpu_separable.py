"""Numba kernels of the separable PET projector: one transaxial Joseph walk shared by all planes.

A sinogram of a cylindrical scanner is *separable*: the transaxial ends ``(x, y)`` of bin
``[plane, pair]`` depend only on its transaxial pair (view, radial) and its axial ends ``z`` only on
its plane. When the principal axis of a LOR is x or y (``max(|dx|, |dy|) ≥ |dz|``), everything
that :mod:`recon.pet._cpu`'s Joseph walk does along the principal axis depends on the pair alone:
which planes ``k`` are crossed, the segment parameter ``t`` of each crossing and the bilinear
index and weight along the other transaxial axis. Only the axial index ``e2 + t·g2`` (linear in
``t``) and the path-length weight ``vp·|d|/|dp|`` change from plane to plane. These kernels do the
transaxial part once per pair and apply it to every plane, so they compute exactly the sums of
the per-LOR walk (the same crossings, the same bilinear weights), in another order and in
float32.

Layout: the kernels read and write the image as ``(y, x, z + 3)``: z innermost (contiguous) and
padded with one zero plane below and two above, so that every axial index ``⌊f⌋ + 1`` and
``⌊f⌋ + 2`` of a clamped fraction ``f ∈ [−1, nz]`` is a valid, branch-free read whose padding holds
zero (the zero the per-LOR walk gives outside the image). Per crossing ``k`` the two image columns
along z that the bilinear footprint touches are blended once into one column (``nz + 3`` values,
in L1), and the per-plane loop then only interpolates linearly in that column. Values are stored
``(pair, plane)``: contiguous per pair.

LORs whose principal axis is z (very oblique: ``|dz| > max(|dx|, |dy|)``) and degenerate LORs get
weight 0 here; :mod:`recon.pet.separable` projects the former with the per-LOR kernels.
"""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

_JIT: dict[str, Any] = dict(
    parallel=True, fastmath=False, cache=True, nogil=True, error_model="numpy"
)
_HELPER: dict[str, Any] = dict(error_model="numpy", cache=True, inline="always")
#: Zero planes below (1) and above (2) the image along the padded z axis.
Z_PAD_BELOW = 1
Z_PAD_ABOVE = 2


@nb.njit(**_HELPER)
def _transaxial(grid, ny, nx, nzp, xy1, xy2, pair):
    """The transaxial walk of one pair (the x/y part of ``_cpu._lor_setup``).

    Returns ``(ok, k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, dxy2, adp, amax)``: planes
    ``k0..k1`` of the principal axis to visit, ``t = (c0 + k·vp)·inv_dp`` of plane ``k``, the
    fractional index ``e1 + t·g1`` along the other transaxial axis (``n1`` voxels, stride ``s1``
    in the padded image; ``sp`` that of the principal axis), the squared transaxial length
    ``dxy2``, ``|dp|`` and ``max(|dx|, |dy|)`` in float32 (the principal-axis test).
    """
    ax = xy1[pair, 0]
    ay = xy1[pair, 1]
    fdx = xy2[pair, 0] - ax  # float32 differences, as in the per-LOR walk
    fdy = xy2[pair, 1] - ay
    adx = abs(fdx)
    ady = abs(fdy)
    ddx = float(fdx)
    ddy = float(fdy)
    x0, y0 = float(grid.x0), float(grid.y0)
    dx, dy = float(grid.dx), float(grid.dy)
    if adx >= ady:
        ap, dp, op, vp, n_p, sp = float(ax), ddx, x0, dx, nx, nzp
        a1, d1, o1, v1, n1, s1 = float(ay), ddy, y0, dy, ny, nx * nzp
        amax = adx
    else:
        ap, dp, op, vp, n_p, sp = float(ay), ddy, y0, dy, ny, nx * nzp
        a1, d1, o1, v1, n1, s1 = float(ax), ddx, x0, dx, nx, nzp
        amax = ady
    c0 = op - ap
    inv_dp = 1.0 / dp
    e1 = (a1 - o1) / v1
    g1 = d1 / v1
    dxy2 = ddx * ddx + ddy * ddy
    ok = amax > 0.0
    t_lo = 0.0
    t_hi = 1.0
    if ok and g1 != 0.0:
        ta = (-1.0 - e1) / g1
        tb = (n1 - e1) / g1
        t_lo = max(t_lo, min(ta, tb))
        t_hi = min(t_hi, max(ta, tb))
    elif ok:
        ok = e1 > -1.0 and e1 < n1
    k0 = 0
    k1 = -1
    if ok and t_lo <= t_hi:
        ka = (t_lo * dp - c0) / vp
        kb = (t_hi * dp - c0) / vp
        k0 = int(min(max(np.floor(min(ka, kb)), 0.0), float(n_p)))
        k1 = int(max(min(np.ceil(max(ka, kb)), n_p - 1.0), -1.0))
    return ok, k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, dxy2, abs(dp), amax


@nb.njit(**_HELPER)
def _plane_tables(grid, z1, z2, amax, dxy2, vp, adp, e2, g2, weight):
    """Axial start index ``e2``, its change per unit ``t`` ``g2`` and the path-length weight of
    every plane of one pair (float32); weight 0 for planes whose principal axis is z."""
    z0 = float(grid.z0)
    dz = float(grid.dz)
    for p in range(z1.shape[0]):
        fdz = z2[p] - z1[p]
        ddz = float(fdz)
        e2[p] = (float(z1[p]) - z0) / dz
        g2[p] = ddz / dz
        if abs(fdz) > amax:  # principal axis z: left to the per-LOR walk
            weight[p] = 0.0
        else:
            weight[p] = vp * math.sqrt(dxy2 + ddz * ddz) / adp


@nb.njit(**_HELPER)
def _crossings(img, blend, nzp, k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, ts, i1s, at, w1s, cols):
    """The crossings of one pair's walk that touch the image, and their blended columns.

    For every plane ``k0..k1`` of the principal axis whose crossing ``t`` lies on the segment and
    whose bilinear footprint along the other transaxial axis meets the image: ``ts[m]`` = ``t``
    (float32), ``i1s[m]`` the index of the footprint's first column along the other transaxial
    axis, ``at[m]`` the offset of that column in the padded image, ``w1s[m]`` the weight of its
    second column and, when ``blend``, ``cols[m]`` = ``(1 − w1)·column(i1) + w1·column(i1 + 1)``
    of ``img`` (zero for a column outside the image). Returns the number ``m`` of crossings.
    """
    m = 0
    for k in range(k0, k1 + 1):
        t = (c0 + k * vp) * inv_dp
        if t < 0.0 or t > 1.0:
            continue
        f1 = e1 + t * g1
        fl1 = np.floor(f1)
        i1 = int(min(max(fl1, -2.0), float(n1)))
        in0 = 0 <= i1 < n1
        in1 = 0 <= i1 + 1 < n1
        if not (in0 or in1):
            continue
        w1 = f1 - fl1
        ts[m] = np.float32(t)
        a = k * sp + i1 * s1
        i1s[m] = i1
        at[m] = a
        w1s[m] = w1
        m += 1
        if not blend:
            continue
        b = a + s1
        u = np.float32(1.0 - w1)
        w = np.float32(w1)
        col = cols[m - 1]
        if in0 and in1:
            for z in range(nzp):
                col[z] = u * img[a + z] + w * img[b + z]
        elif in0:
            for z in range(nzp):
                col[z] = u * img[a + z]
        else:
            for z in range(nzp):
                col[z] = w * img[b + z]
    return m


# Only the order of the float32 sums over crossings may change (so that they vectorise, with
# gathers from the blended columns); every product is rounded as written.
@nb.njit(error_model="numpy", cache=True, fastmath={"reassoc"})
def _sum_planes(e2, g2, weight, ts, cols, m, nzf, out_row):
    """``out_row[p]`` = weight[p] · Σ_c linear interpolation of ``cols[c]`` at the axial index
    ``e2[p] + ts[c]·g2[p]`` (clamped to ``[−1, nz]``, where the padding holds zeros)."""
    flat = cols.reshape(-1)
    nzp = cols.shape[1]
    for p in range(e2.shape[0]):
        e = e2[p]
        g = g2[p]
        acc = np.float32(0.0)
        for c in range(m):
            f = e + ts[c] * g
            f = f if f > np.float32(-1.0) else np.float32(-1.0)
            f = f if f < nzf else nzf
            f = f + np.float32(Z_PAD_BELOW)  # ≥ 0: truncation is the floor
            j = np.int32(f)
            w = f - np.float32(j)
            i = c * nzp + j
            a = flat[i]
            acc += a + w * (flat[i + 1] - a)
        out_row[p] = acc * weight[p]


@nb.njit(error_model="numpy", cache=True)
def _spread_planes(e2, g2, y, n, ts, cols, m, nzf, index, part):
    """Transpose of :func:`_sum_planes` for the first ``n`` planes of ``(e2, g2, y)``: adds
    ``y[p]`` (weight included) times the interpolation weights into ``cols`` (zeroed here).

    Per plane, the indices and weights of all crossings are computed first (a loop that
    vectorises) into ``index`` and ``part``, then added (scalar; distinct rows, so no crossing
    waits for another's store)."""
    cols[:m] = 0.0
    flat = cols.reshape(-1)
    nzp = cols.shape[1]
    for p in range(n):
        e = e2[p]
        g = g2[p]
        v = y[p]
        for c in range(m):
            f = e + ts[c] * g
            f = f if f > np.float32(-1.0) else np.float32(-1.0)
            f = f if f < nzf else nzf
            f = f + np.float32(Z_PAD_BELOW)
            j = np.int32(f)
            index[c] = c * nzp + j
            part[c] = (f - np.float32(j)) * v
        for c in range(m):
            i = index[c]
            w = part[c]
            flat[i] += v - w
            flat[i + 1] += w


@nb.njit(**_JIT)
def separable_forward(image_t, grid, xy1, xy2, z1, z2, out):
    """``out[pair, plane]``: Joseph line integral of the LOR ``(xy1[pair], z1[plane])`` →
    ``(xy2[pair], z2[plane])`` through ``image_t`` (padded ``(y, x, z + 3)``, see the module
    docstring); 0 for LORs whose principal axis is z and degenerate ones."""
    ny, nx, nzp = image_t.shape
    nz = nzp - Z_PAD_BELOW - Z_PAD_ABOVE
    img = image_t.reshape(-1)
    n_planes = z1.shape[0]
    nzf = np.float32(nz)
    n_max = max(nx, ny)
    for pair in nb.prange(xy1.shape[0]):
        e2 = np.empty(n_planes, np.float32)
        g2 = np.empty(n_planes, np.float32)
        weight = np.empty(n_planes, np.float32)
        ts = np.empty(n_max, np.float32)
        i1s = np.empty(n_max, np.int64)
        at = np.empty(n_max, np.int64)
        w1s = np.empty(n_max, np.float64)
        cols = np.empty((n_max, nzp), np.float32)
        ok, k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, dxy2, adp, amax = _transaxial(
            grid, ny, nx, nzp, xy1, xy2, pair
        )
        row = out[pair]
        m = 0
        if ok:
            m = _crossings(
                img, True, nzp, k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, ts, i1s, at, w1s, cols
            )
        if m == 0:
            row[:] = 0.0
            continue
        _plane_tables(grid, z1, z2, amax, dxy2, vp, adp, e2, g2, weight)
        _sum_planes(e2, g2, weight, ts, cols, m, nzf, row)


@nb.njit(**_JIT)
def separable_back(values, grid, xy1, xy2, z1, z2, scratch):
    """Adjoint of :func:`separable_forward`: ``scratch[part]`` (padded ``(y, x, z + 3)`` partial
    images, overwritten) receive ``values[pair, plane]`` spread along the LORs. Part ``q`` handles
    pairs ``q, q + n_parts, …``; the caller sums the parts. Zero values are skipped."""
    n_parts, ny, nx, nzp = scratch.shape
    n_planes = z1.shape[0]
    nz = nzp - Z_PAD_BELOW - Z_PAD_ABOVE
    nzf = np.float32(nz)
    n_max = max(nx, ny)
    for q in nb.prange(n_parts):
        img = scratch[q].reshape(-1)
        img[:] = 0.0
        e2 = np.empty(n_planes, np.float32)
        g2 = np.empty(n_planes, np.float32)
        weight = np.empty(n_planes, np.float32)
        # The planes of a pair with a non-zero weighted value, compacted.
        ce2 = np.empty(n_planes, np.float32)
        cg2 = np.empty(n_planes, np.float32)
        cy = np.empty(n_planes, np.float32)
        index = np.empty(n_max, np.int32)
        part = np.empty(n_max, np.float32)
        ts = np.empty(n_max, np.float32)
        i1s = np.empty(n_max, np.int64)
        at = np.empty(n_max, np.int64)
        w1s = np.empty(n_max, np.float64)
        cols = np.empty((n_max, nzp), np.float32)
        for pair in range(q, xy1.shape[0], n_parts):
            ok, k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, dxy2, adp, amax = _transaxial(
                grid, ny, nx, nzp, xy1, xy2, pair
            )
            if not ok or k0 > k1:
                continue
            _plane_tables(grid, z1, z2, amax, dxy2, vp, adp, e2, g2, weight)
            n = 0
            for p in range(n_planes):
                y = values[pair, p] * weight[p]
                if y != 0.0:
                    ce2[n] = e2[p]
                    cg2[n] = g2[p]
                    cy[n] = y
                    n += 1
            if n == 0:
                continue
            # The crossings' geometry (no blended image columns).
            m = _crossings(
                img, False, nzp, k0, k1, c0, inv_dp, vp, sp, e1, g1, n1, s1, ts, i1s, at, w1s, cols
            )
            if m == 0:
                continue
            _spread_planes(ce2, cg2, cy, n, ts, cols, m, nzf, index, part)
            for c in range(m):
                i1 = i1s[c]
                a = at[c]
                col = cols[c]
                w1 = w1s[c]
                if 0 <= i1 < n1:
                    u = np.float32(1.0 - w1)
                    for z in range(nzp):
                        img[a + z] += u * col[z]
                if 0 <= i1 + 1 < n1:
                    w = np.float32(w1)
                    b = a + s1
                    for z in range(nzp):
                        img[b + z] += w * col[z]


@nb.njit(**_JIT)
def add_parts_unpadded(scratch, out_image):
    """``out_image[z, y, x] += Σ_q scratch[q, y, x, z + 1]`` (drops the padding)."""
    n_parts, ny, nx, nzp = scratch.shape
    nz = out_image.shape[0]
    for y in nb.prange(ny):
        for x in range(nx):
            for z in range(nz):
                acc = np.float32(0.0)
                for q in range(n_parts):
                    acc += scratch[q, y, x, z + Z_PAD_BELOW]
                out_image[z, y, x] += acc


@nb.njit(**_JIT)
def padded_transpose(image, out):
    """``out[y, x, z + 1] = image[z, y, x]``, zero in the padding (``out`` is ``(y, x, z + 3)``)."""
    nz, ny, nx = image.shape
    for y in nb.prange(ny):
        for x in range(nx):
            out[y, x, 0] = 0.0
            for z in range(nz):
                out[y, x, z + Z_PAD_BELOW] = image[z, y, x]
            for z in range(nz + Z_PAD_BELOW, nz + Z_PAD_BELOW + Z_PAD_ABOVE):
                out[y, x, z] = 0.0
