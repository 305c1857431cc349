"""Numba kernel of BSREM's preconditioned step on the CPU (one pass over the image).

numpy forms the step of :func:`recon.algorithms.map.bsrem` (gradient, preconditioner, relaxation,
support and bounds) in about a dozen passes with as many temporaries; once the projector is
fast (a few ms per subset on small SPECT problems) those passes cost as much as the projections.
The arithmetic below is numpy's float32 expression in the same order, rounded after every
operation, so the result is the same to the bit (``tests/test_map.py`` compares them).
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(parallel=True, fastmath=False, cache=True, nogil=True, error_model="numpy")
def bsrem_step(
    x, back, sens, grad, grad_scale, has_grad, curvature, has_curvature, inv_sens, seen,
    alpha, delta, upper, out,
):  # fmt: skip
    """``out`` = the BSREM update of ``x`` (module docstring of :mod:`recon.algorithms.map`):

    ``step = back − sens − grad·grad_scale``, ``shifted = x + δ``; without the prior's curvature
    ``x + α·shifted·inv_sens·step``, with it ``x + α·shifted·step / (sens + shifted·curvature)``
    where the subset sees the voxel (``inv_sens > 0``) and ``x`` elsewhere; then 0 outside
    ``seen`` and clipped to ``[0, upper]`` (NaN stays NaN). Images float32 of one shape, ``seen``
    bool; placeholders where ``has_grad`` / ``has_curvature`` are False.
    """
    xf = x.reshape(-1)
    bf = back.reshape(-1)
    sf = sens.reshape(-1)
    gf = grad.reshape(-1)
    cf = curvature.reshape(-1)
    inf = inv_sens.reshape(-1)
    seenf = seen.reshape(-1)
    of = out.reshape(-1)
    zero = np.float32(0.0)
    for j in nb.prange(xf.size):
        xj = xf[j]
        step = bf[j] - sf[j]
        if has_grad:
            step = step - gf[j] * grad_scale
        shifted = xj + delta
        if not has_curvature:
            value = xj + ((alpha * shifted) * inf[j]) * step
        elif inf[j] > zero:
            value = xj + ((alpha * shifted) * step) / (sf[j] + shifted * cf[j])
        else:
            value = xj + zero
        if not seenf[j]:
            value = zero
        if value < zero:
            value = zero
        elif value > upper:
            value = upper
        of[j] = value
