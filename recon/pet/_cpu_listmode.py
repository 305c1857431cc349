"""Numba kernel of one listmode EM subset on the CPU: forward, ratio and back projection fused.

An LM-OSEM subset needs ``Pᵀ(m ⊙ y/ȳ)`` with ``ȳ_i = m_i (P x)_i + a_i``. Done as two passes
(:mod:`recon.pet._cpu`'s ``joseph_tof_lm_forward`` then ``joseph_tof_lm_back``), every event's
Joseph walk is set up and interpolated twice, and the image columns it reads are cold again by
the time the back projection writes them. :func:`lm_ratio_back` walks each event once: it
records the voxel index and weight (bilinear × TOF bin weight) of every sample it reads while
summing the forward projection, forms the event's ratio, and adds the ratio along the recorded
samples straight away, while they are in L1.

The samples are those of the two-pass kernels exactly: the LOR set-up (``_lor_setup``, float32
geometry), the planes walked (the TOF window of the event's bin), the bilinear footprint and the
tabulated TOF weight are the same helpers. Only the grouping of the float64 products changes
(``(tof · bilinear) · value`` instead of ``tof · (bilinear · value)``): results agree with the
two passes to float64 rounding before the float32 stores, and the sums over events and threads
are in another order. The ratio is rounded like the two-pass path (float32 forward value, float32
``ȳ``, float32 ratio and ``ratio · m``), with the guard of ``recon.algorithms.em_update.em_ratio``
whose constants the caller passes in.

Back-projections add into per-thread partial images as in :mod:`recon.pet._cpu` (``scratch``:
``(n_parts, nz·ny·nx)`` float32, zeroed here; part ``p`` handles events ``p, p + n_parts, …``);
the caller sums the parts. CPU only: on a GPU the two-pass kernels run (atomicAdd back projection,
no L1 reuse to gain).
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from recon.pet._cpu import (
    _NO_WINDOW,
    PetSample,
    PetTof,
    _footprint,
    _lor_setup,
    _tof_table_weight,
    _tof_window,
)

_JIT: dict[str, Any] = dict(
    parallel=True, fastmath=False, cache=True, nogil=True, error_model="numpy"
)
#: TOF arguments of a non-TOF call (valid values that are not read).
NON_TOF = PetTof(np.float32(1.0), np.float32(1.0), np.float32(1.0), np.int32(0))
NON_TOF_TABLE = np.zeros(2, np.float32)


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
    capacity = 4 * (max(shape[0], max(shape[1], shape[2])) + 2)
    for p in nb.prange(n_parts):
        part = scratch[p]
        part[:] = 0.0
        end_a = np.empty((1, 3), np.float32)
        end_b = np.empty((1, 3), np.float32)
        index = np.empty(capacity, np.int64)
        coef = np.empty(capacity, np.float64)
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
            n1, s1, n2, s2 = lor.n1, lor.s1, lor.n2, lor.s2
            m = 0
            acc = 0.0
            for k in range(lor.k0, lor.k1 + 1):
                t = (lor.c0 + k * lor.vp) * lor.inv_dp
                if t < 0.0 or t > 1.0:
                    continue
                tw = 1.0
                if use_tof:
                    tw = _tof_table_weight(window, tof_table, inv_step, (t - 0.5) * lor.length, b)
                    if tw == 0.0:
                        continue
                base, i1, i2, w1, w2 = _footprint(lor, PetSample(k, t, 0.0))
                if 0 <= i2 < n2:
                    row = base + i2 * s2
                    if 0 <= i1 < n1:
                        c = (1.0 - w1) * (1.0 - w2) * tw
                        j = row + i1 * s1
                        index[m] = j
                        coef[m] = c
                        acc += c * img[j]
                        m += 1
                    if 0 <= i1 + 1 < n1:
                        c = w1 * (1.0 - w2) * tw
                        j = row + (i1 + 1) * s1
                        index[m] = j
                        coef[m] = c
                        acc += c * img[j]
                        m += 1
                if 0 <= i2 + 1 < n2:
                    row = base + (i2 + 1) * s2
                    if 0 <= i1 < n1:
                        c = (1.0 - w1) * w2 * tw
                        j = row + i1 * s1
                        index[m] = j
                        coef[m] = c
                        acc += c * img[j]
                        m += 1
                    if 0 <= i1 + 1 < n1:
                        c = w1 * w2 * tw
                        j = row + (i1 + 1) * s1
                        index[m] = j
                        coef[m] = c
                        acc += c * img[j]
                        m += 1
            if m == 0:
                continue  # the event's LOR misses the image: nothing to add
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
            for j in range(m):
                part[index[j]] += coef[j] * v


@nb.njit(**_JIT)
def sum_parts(scratch, out_image):
    """``out_image = Σ_p scratch[p]`` (summed in float64, as ``_cpu._add_parts`` adds them)."""
    flat = out_image.reshape(-1)
    for j in nb.prange(flat.size):
        acc = 0.0
        for p in range(scratch.shape[0]):
            acc += scratch[p, j]
        flat[j] = acc
