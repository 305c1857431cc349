"""Numba kernel of the pairwise priors (the CPU twin of ``kernels/prior.cu``: same arguments, same
order, same arithmetic; see that file for the formulas).

The entry point :func:`prior_terms` takes the prior's ``kind`` and the quantity ``what`` as
arguments, as the CUDA kernel does, and runs a kernel compiled for that pair: with both known at
compile time numba drops the other branches and the unused derivatives from the 26-neighbour loop,
which makes the gradient about three times faster than one kernel deciding per pair (BSREM
evaluates it for every subset).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba as nb
import numpy as np

_JIT: dict[str, Any] = dict(parallel=True, fastmath=False, cache=True, nogil=True)


@nb.njit(inline="always")
def prior_pair(kind, a, b, gamma, eps):
    """``phi``, ``dphi/da`` and ``d2phi/da2`` of one pair (a at the voxel, b its neighbour)."""
    u = a - b
    if kind == 0:
        return u * u, np.float32(2.0) * u, np.float32(2.0)
    au = abs(u)
    s = np.float32(1.0) if u > 0 else (np.float32(-1.0) if u < 0 else np.float32(0.0))
    d = a + b + gamma * au + eps
    m = a + np.float32(3.0) * b + gamma * au + np.float32(2.0) * eps
    inv = np.float32(1.0) / d
    phi = u * u * inv
    d1 = u * m * inv * inv
    d2 = np.float32(2.0) * (d * d - u * m * (np.float32(1.0) + gamma * s)) * inv * inv * inv
    return phi, d1, d2


def _specialised(kind: int, what: int) -> Callable[..., None]:
    """The kernel of one prior ``kind`` and one quantity ``what`` (compile-time constants).

    Parallel over image rows ``(z, y)``; for each of the 26 offsets the row's voxels are
    visited in one loop along x over contiguous slices, and each voxel's
    sum takes its neighbours in the same order as the CUDA kernel's per-voxel loop: the same
    float32 arithmetic, voxel by voxel. With ``kappa`` only the span of the row where it is
    non-zero is visited (outside the field of view the terms are 0).
    """

    @nb.njit(**_JIT)
    def terms(x, kappa, has_kappa, weights, z_block, gamma, eps, out):
        nz, ny, nx = x.shape
        for row in nb.prange(nz * ny):
            iz = row // ny
            iy = row % ny
            acc = out[iz, iy]
            acc[:] = np.float32(0.0)
            here = x[iz, iy]
            kappa_here = kappa[iz, iy] if has_kappa else kappa[0, 0]
            # A voxel with kappa 0 has no prior term (the CUDA kernel returns 0 there): only
            # the row's span from its first to its last kappa > 0 is computed.
            first, stop = 0, nx
            if has_kappa:
                while first < nx and kappa_here[first] == 0:
                    first += 1
                while stop > first and kappa_here[stop - 1] == 0:
                    stop -= 1
                if first == stop:
                    continue
            block = iz // z_block
            for dz in range(-1, 2):
                z = iz + dz
                if z < 0 or z >= nz or z // z_block != block:
                    continue
                for dy in range(-1, 2):
                    y = iy + dy
                    if y < 0 or y >= ny:
                        continue
                    there = x[z, y]
                    kappa_there = kappa[z, y] if has_kappa else kappa[0, 0]
                    for dx in range(-1, 2):
                        if dz == 0 and dy == 0 and dx == 0:
                            continue
                        w0 = weights[(dz + 1) * 9 + (dy + 1) * 3 + (dx + 1)]
                        lo = max(first, -dx)
                        n = min(stop, nx - dx) - lo
                        # Aligned slices, so that every index below is a plain 0 … n − 1.
                        a_row = here[lo : lo + n]
                        b_row = there[lo + dx : lo + dx + n]
                        sums = acc[lo : lo + n]
                        if has_kappa:
                            ka = kappa_here[lo : lo + n]
                            kb = kappa_there[lo + dx : lo + dx + n]
                            for i in range(n):
                                pair = prior_pair(kind, a_row[i], b_row[i], gamma, eps)
                                sums[i] += w0 * ka[i] * kb[i] * pair[what]
                        else:
                            for i in range(n):
                                pair = prior_pair(kind, a_row[i], b_row[i], gamma, eps)
                                sums[i] += w0 * pair[what]

    return terms


# Module-level names, so that the compilation notice (recon._jit) finds them.
quadratic_value = _specialised(0, 0)
quadratic_gradient = _specialised(0, 1)
quadratic_hessian = _specialised(0, 2)
relative_difference_value = _specialised(1, 0)
relative_difference_gradient = _specialised(1, 1)
relative_difference_hessian = _specialised(1, 2)
_KERNELS = {
    (0, 0): quadratic_value,
    (0, 1): quadratic_gradient,
    (0, 2): quadratic_hessian,
    (1, 0): relative_difference_value,
    (1, 1): relative_difference_gradient,
    (1, 2): relative_difference_hessian,
}


def prior_terms(x, kappa, has_kappa, weights, z_block, kind, gamma, eps, what, out) -> None:
    """Per-voxel sums of ``w kappa kappa`` times phi (``what`` 0), dphi/da (1) or d2phi/da2 (2)
    over the 26 neighbours inside the image and inside the voxel's block of ``z_block`` slices
    (the image's ``nz`` for one image); ``x``, ``kappa`` and ``out`` are (z, y, x)."""
    _KERNELS[(int(kind), int(what))](x, kappa, has_kappa, weights, z_block, gamma, eps, out)
