"""Numba kernel of single-scatter simulation (the CPU twin of ``kernels/sss.cu``).

For every detector pair (A, B), the sum over scatter points S of Watson's single-scatter integrand
(C. C. Watson, D. Newport, M. E. Casey 1996; C. C. Watson, IEEE Trans. Nucl. Sci. 47 (2000) 1587;
TOF: C. C. Watson, IEEE Trans. Nucl. Sci. 54 (2007) 1679); the formula, the TOF placement and the
layout of every argument are documented in ``kernels/sss.cu``.

Mirror of the CUDA source: :func:`sss_pairs` has the arguments of its CUDA twin in the same order,
less the sizes that numpy arrays carry (``n_pairs``, ``n_det``, ``n_points``, ``n_lut``); the
helpers ``sss_x`` are ``_x`` here and ``SssTof`` is a named tuple of the same fields. The CUDA
kernel computes in float32; this one in float64 from the same float32 inputs. Pairs run in
parallel; ``out`` is added to, as on the GPU.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numba as nb
import numpy as np

_JIT = dict(parallel=True, fastmath=False, cache=True, nogil=True, error_model="numpy")
_INLINE = dict(inline="always", error_model="numpy")

#: Maximum TOF bins of the kernels' output (``SSS_MAX_TOF`` of the CUDA source).
MAX_TOF = 128

SssTof = namedtuple("SssTof", "n_tof width n_edges step")


@nb.njit(**_INLINE)
def _lut(lut, c):
    """``(factor, mu_ratio)`` at cos θ = ``c``, interpolated linearly in the table."""
    n_lut = lut.shape[0]
    x = (c + 1.0) * 0.5 * (n_lut - 1)
    x = min(max(x, 0.0), float(n_lut - 1))
    k = min(int(x), n_lut - 2)
    w = x - k
    factor = lut[k, 0] + w * (lut[k + 1, 0] - lut[k, 0])
    mu_ratio = lut[k, 1] + w * (lut[k + 1, 1] - lut[k, 1])
    return factor, mu_ratio


@nb.njit(**_INLINE)
def _cumulative(row, step, z):
    """Accumulated blurred emission of one (point, detector) row at ``z`` mm from the midpoint."""
    n_edges = row.shape[0]
    f = z / step + 0.5 * (n_edges - 1)
    if not f > 0.0:
        return float(row[0])
    if f >= n_edges - 1:
        return float(row[n_edges - 1])
    k = int(f)
    w = f - k
    return row[k] + w * (row[k + 1] - row[k])


@nb.njit(**_JIT)
def sss_pairs(
    det_a, det_b, det_pos, det_normal, point_pos, point_weight, att, emis, cum, lut, tof, out
):
    """Add each detector pair's single scatter over the given scatter points into ``out``.

    Parameters
    ----------
    det_a, det_b : int32 arrays (n_pairs,)
        Detector indices of each pair.
    det_pos, det_normal : float32 arrays (n_det, 3)
        Detector positions (world mm) and unit normals pointing into the ring.
    point_pos : float32 array (n_points, 3)
        Scatter points, world mm.
    point_weight : float32 array (n_points,)
        Volume × 511 keV attenuation coefficient of each point, mm³/mm.
    att, emis : float32 arrays (n_points, n_det)
        Attenuation (511 keV) and emission line integrals from each point to each detector.
    cum : float32 array (n_points, n_det, n_edges)
        Accumulated TOF-blurred emission profiles (TOF only; any 3-D array for non-TOF).
    lut : float32 array (n_lut, 2)
        ``(dσ/dΩ / σ_KN · ε(E')/ε(511), μ(E')/μ(511))`` at cos θ = −1 … 1.
    tof : SssTof
        ``n_tof`` (0: non-TOF), bin width, ``n_edges`` and spacing of ``cum``, mm.
    out : float32 array (n_pairs,) or (n_pairs, n_tof)
        Added to.
    """
    n_pairs = det_a.shape[0]
    n_points = point_pos.shape[0]
    n_tof = tof.n_tof
    width = float(tof.width)
    step = float(tof.step)
    half_bins = 0.5 * n_tof
    rows = out.reshape((n_pairs, max(n_tof, 1)))  # one typed view for either output shape
    for p in nb.prange(n_pairs):
        a = det_a[p]
        b = det_b[p]
        ax, ay, az = float(det_pos[a, 0]), float(det_pos[a, 1]), float(det_pos[a, 2])
        bx, by, bz = float(det_pos[b, 0]), float(det_pos[b, 1]), float(det_pos[b, 2])
        nax, nay, naz = float(det_normal[a, 0]), float(det_normal[a, 1]), float(det_normal[a, 2])
        nbx, nby, nbz = float(det_normal[b, 0]), float(det_normal[b, 1]), float(det_normal[b, 2])
        dx, dy, dz = bx - ax, by - ay, bz - az
        length = math.sqrt(dx * dx + dy * dy + dz * dz)
        if not length > 0.0:
            continue
        cos_a = (nax * dx + nay * dy + naz * dz) / length
        cos_b = -(nbx * dx + nby * dy + nbz * dz) / length
        if not (cos_a > 0.0 and cos_b > 0.0):
            continue
        norm = length * length / (cos_a * cos_b)
        acc = np.zeros(max(n_tof, 1))
        total = 0.0
        for s in range(n_points):
            sx, sy, sz = float(point_pos[s, 0]), float(point_pos[s, 1]), float(point_pos[s, 2])
            vax, vay, vaz = ax - sx, ay - sy, az - sz
            vbx, vby, vbz = bx - sx, by - sy, bz - sz
            ra2 = vax * vax + vay * vay + vaz * vaz
            rb2 = vbx * vbx + vby * vby + vbz * vbz
            ra = math.sqrt(ra2)
            rb = math.sqrt(rb2)
            if not (ra > 0.0 and rb > 0.0):
                continue
            inc_a = -(nax * vax + nay * vay + naz * vaz) / ra
            inc_b = -(nbx * vbx + nby * vby + nbz * vbz) / rb
            if not (inc_a > 0.0 and inc_b > 0.0):
                continue
            cos_theta = -(vax * vbx + vay * vby + vaz * vbz) / (ra * rb)
            factor, mu_ratio = _lut(lut, cos_theta)
            g = float(point_weight[s]) * inc_a * inc_b / (ra2 * rb2) * factor
            if not g > 0.0:
                continue
            att_a = float(att[s, a])
            att_b = float(att[s, b])
            keep_a = math.exp(-att_a - mu_ratio * att_b)  # annihilation on S-A
            keep_b = math.exp(-mu_ratio * att_a - att_b)  # annihilation on S-B
            if n_tof == 0:
                total += g * (keep_a * emis[s, a] + keep_b * emis[s, b])
                continue
            row_a = cum[s, a]
            row_b = cum[s, b]
            edge = -half_bins * width
            prev_a = _cumulative(row_a, step, -edge - 0.5 * rb)
            prev_b = _cumulative(row_b, step, edge - 0.5 * ra)
            for j in range(n_tof):
                edge = (j + 1 - half_bins) * width
                next_a = _cumulative(row_a, step, -edge - 0.5 * rb)
                next_b = _cumulative(row_b, step, edge - 0.5 * ra)
                acc[j] += g * (keep_a * (prev_a - next_a) + keep_b * (next_b - prev_b))
                prev_a = next_a
                prev_b = next_b
        if n_tof == 0:
            rows[p, 0] += norm * total
        else:
            for j in range(n_tof):
                rows[p, j] += norm * acc[j]
