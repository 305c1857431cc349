"""Numba kernel of one listmode EM subset on the CPU: forward, ratio and back projection fused.

An LM-OSEM subset needs ``Pᵀ(m ⊙ y/ȳ)`` with ``ȳ_i = m_i (P x)_i + a_i``. Done as two passes
(:mod:`recon.pet._cpu`'s ``joseph_tof_lm_forward`` then ``joseph_tof_lm_back``), every event's
Joseph walk is set up and interpolated twice, and the image lines it reads are cold again by the
time the back projection writes them. :func:`lm_ratio_back` walks each event once: it computes
the voxel indices and weights of every sample (:func:`_samples`, a branch-free loop that
vectorises), sums the forward projection from them, forms the event's ratio, and adds the ratio
along the same samples straight away, while they are in L1.

The samples are those of the two-pass kernels exactly: the same LOR set-up (``_lor_setup``,
float32 geometry) and planes (the TOF window of the event's bin), the bilinear footprint of
``_footprint`` (corners outside the image get weight 0 instead of a branch), the TOF weight of
``_tof_table_weight`` (table read and interpolated the same way), and the float64 products
grouped as there (``tof · Σ bilinear · image`` forward, ``bilinear · (tof · value)`` back). The
ratio is rounded like the two-pass path (float32 forward value, ``ȳ``, ratio and ``ratio · m``),
with the guard of ``recon.algorithms.em_update.em_ratio`` whose constants the caller passes in.
So each event's contribution is that of the two passes to the bit; only the sums over events
and threads may be in another order.

Back-projections add into per-thread partial images as in :mod:`recon.pet._cpu` (``scratch``:
``(n_parts, nz·ny·nx)`` float32, zero on entry; part ``p`` handles events ``p, p + n_parts, …``);
:func:`sum_parts` sums the parts and zeroes them for the next subset. CPU only: on a GPU the
two-pass kernels run (their back projection adds with atomicAdd; there is no L1 reuse to gain).
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from recon.pet._cpu import (
    _NO_WINDOW,
    PetTof,
    _lor_setup,
    _tof_window,
)

_JIT: dict[str, Any] = dict(
    parallel=True, fastmath=False, cache=True, nogil=True, error_model="numpy"
)
_HELPER: dict[str, Any] = dict(error_model="numpy", cache=True)
#: TOF arguments of a non-TOF call (valid values that are not read).
NON_TOF = PetTof(np.float32(1.0), np.float32(1.0), np.float32(1.0), np.int32(0))
NON_TOF_TABLE = np.zeros(2, np.float32)


@nb.njit(**_HELPER)
def _samples(lor, bw, reach, inv_step, table_max, ut, i00, i01, i10, i11, c00, c01, c10, c11):
    """The samples of one LOR's walk, planes ``k0..k1``, without branches (so that the loop
    vectorises): per plane ``q = k − k0`` the four voxel indices of the bilinear footprint and
    their weights (0 for a corner outside the image, whose index is clamped to a voxel of the
    image), and the table coordinate ``|s − b·w|·inv_step`` of the TOF weight, or −1 where the
    sample is not on the segment or beyond the reach (weight 0). Weights and indices are those
    of ``_cpu._footprint``, the conditions those of ``_cpu._walk`` and ``_tof_table_weight``."""
    n1 = lor.n1
    n2 = lor.n2
    fn1 = float(n1)
    fn2 = float(n2)
    s1 = lor.s1
    s2 = lor.s2
    sp = lor.sp
    c0 = lor.c0
    vp = lor.vp
    inv_dp = lor.inv_dp
    length = lor.length
    e1 = lor.e1
    g1 = lor.g1
    e2 = lor.e2
    g2 = lor.g2
    k0 = lor.k0
    for q in range(lor.k1 - k0 + 1):
        k = k0 + q
        t = (c0 + k * vp) * inv_dp
        d = abs((t - 0.5) * length - bw)
        ok = (t >= 0.0) & (t <= 1.0) & (d <= reach)
        ut[q] = d * inv_step if ok else -1.0
        f1 = e1 + t * g1
        f2 = e2 + t * g2
        fl1 = np.floor(f1)
        fl2 = np.floor(f2)
        w1 = f1 - fl1
        w2 = f2 - fl2
        fl1 = min(max(fl1, -2.0), fn1)  # the integer part _footprint clamps
        fl2 = min(max(fl2, -2.0), fn2)
        u1 = (1.0 - w1) if (fl1 >= 0.0) & (fl1 < fn1) else 0.0
        v1 = w1 if (fl1 >= -1.0) & (fl1 < fn1 - 1.0) else 0.0
        u2 = (1.0 - w2) if (fl2 >= 0.0) & (fl2 < fn2) else 0.0
        v2 = w2 if (fl2 >= -1.0) & (fl2 < fn2 - 1.0) else 0.0
        ia = int(min(max(fl1, 0.0), fn1 - 1.0)) * s1
        ib = int(min(max(fl1 + 1.0, 0.0), fn1 - 1.0)) * s1
        ja = k * sp + int(min(max(fl2, 0.0), fn2 - 1.0)) * s2
        jb = k * sp + int(min(max(fl2 + 1.0, 0.0), fn2 - 1.0)) * s2
        i00[q] = ja + ia
        i01[q] = ja + ib
        i10[q] = jb + ia
        i11[q] = jb + ib
        c00[q] = u1 * u2
        c01[q] = v1 * u2
        c10[q] = u1 * v2
        c11[q] = v1 * v2
    return lor.k1 - k0 + 1


@nb.njit(**_JIT)
def lm_ratio_back(
    image, grid, positions, crystal_a, crystal_b, tof_bin, factor, counts, additive, tof,
    use_tof, tof_table, tof_inv_step, ratio_floor, smallest, scratch,
):  # fmt: skip
    """``scratch[p]`` = part ``p`` of ``Pᵀ(m ⊙ r)`` over the events, ``r_i = y_i / max(ȳ_i,
    max(y_i·ratio_floor, smallest))`` and ``ȳ_i = m_i (P x)_i + a_i``.

    ``image`` (z, y, x) float32; ``positions`` (n_crystals, 3) float32 world mm; per event
    ``crystal_a``, ``crystal_b`` (int32), ``tof_bin`` (int, ignored unless ``use_tof``),
    ``factor`` ``m_i``, ``counts`` ``y_i`` and ``additive`` ``a_i`` (float32; ``additive`` of
    length 0 for none). ``tof``, ``tof_table`` and ``tof_inv_step`` as for
    ``joseph_tof_lm_forward`` (any valid values when ``use_tof`` is False: the walk then covers
    the whole LOR with TOF weight 1, as ``joseph_forward``).
    """
    img = image.reshape(-1)
    shape = image.shape
    n_parts = scratch.shape[0]
    n = crystal_a.shape[0]
    has_additive = additive.shape[0] == n and n > 0
    inv_step = float(tof_inv_step)
    last = tof_table.shape[0] - 2
    capacity = max(shape[0], max(shape[1], shape[2])) + 2
    for p in nb.prange(n_parts):
        part = scratch[p]
        end_a = np.empty((1, 3), np.float32)
        end_b = np.empty((1, 3), np.float32)
        ut = np.empty(capacity, np.float64)
        tw = np.empty(capacity, np.float64)
        index = np.empty((4, capacity), np.int64)
        coef = np.empty((4, capacity), np.float64)
        i00, i01, i10, i11 = index[0], index[1], index[2], index[3]
        c00, c01, c10, c11 = coef[0], coef[1], coef[2], coef[3]
        for i in range(p, n, n_parts):
            ca = crystal_a[i]
            cb = crystal_b[i]
            for d in range(3):
                end_a[0, d] = positions[ca, d]
                end_b[0, d] = positions[cb, d]
            b = int(tof_bin[i]) if use_tof else 0
            window = _tof_window(tof, b, b)
            s_lo = window.s_lo if use_tof else -_NO_WINDOW
            s_hi = window.s_hi if use_tof else _NO_WINDOW
            lor = _lor_setup(shape, grid, end_a, end_b, 0, s_lo, s_hi)
            if lor.k0 > lor.k1:
                continue  # the event's LOR misses the image (or its TOF window does)
            reach = window.reach if use_tof else np.inf
            m = _samples(
                lor, b * window.w, reach, inv_step, last, ut, i00, i01, i10, i11, c00, c01,
                c10, c11,
            )  # fmt: skip
            # TOF weights (table reads: a gather the loop above leaves out) and the forward sum.
            acc = 0.0
            for q in range(m):
                u = ut[q]
                w = 0.0
                if u >= 0.0:
                    w = 1.0
                    if use_tof:
                        j = min(int(u), last)
                        frac = u - j
                        w = tof_table[j] + frac * (tof_table[j + 1] - tof_table[j])
                tw[q] = w
                if w != 0.0:
                    acc += w * (
                        c00[q] * img[i00[q]] + c01[q] * img[i01[q]]
                        + c10[q] * img[i10[q]] + c11[q] * img[i11[q]]
                    )  # fmt: skip
            # Rounded as the two-pass path rounds: float32 projection, ȳ, ratio and ratio · m.
            expected = np.float32(acc * lor.weight) * factor[i]
            if has_additive:
                expected = expected + additive[i]
            y = counts[i]
            floor = y * ratio_floor
            if not floor > smallest:
                floor = smallest
            # ȳ below the floor takes the floor; a NaN ȳ stays NaN (check_finite reports it).
            denominator = expected if not expected < floor else floor
            value = (y / denominator) * factor[i]
            if value == 0.0:
                continue
            v = value * lor.weight
            for q in range(m):
                wv = tw[q] * v
                if wv != 0.0:
                    part[i00[q]] += c00[q] * wv
                    part[i01[q]] += c01[q] * wv
                    part[i10[q]] += c10[q] * wv
                    part[i11[q]] += c11[q] * wv


@nb.njit(**_JIT)
def sum_parts(scratch, out_image):
    """``out_image = Σ_p scratch[p]`` (summed in float64, as ``_cpu._add_parts`` adds them),
    and ``scratch`` zeroed for the next :func:`lm_ratio_back` (while its lines are in cache)."""
    flat = out_image.reshape(-1)
    for j in nb.prange(flat.size):
        acc = 0.0
        for p in range(scratch.shape[0]):
            acc += scratch[p, j]
            scratch[p, j] = 0.0
        flat[j] = acc
