"""Numba kernel of the pairwise priors (the CPU twin of ``kernels/prior.cu``: same arguments, same
order, same arithmetic; see that file for the formulas)."""

from __future__ import annotations

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


@nb.njit(**_JIT)
def prior_terms(x, kappa, has_kappa, weights, kind, gamma, eps, what, out):
    """Per-voxel sums of ``w kappa kappa`` times phi (``what`` 0), dphi/da (1) or d2phi/da2 (2)
    over the 26 neighbours inside the image; ``x``, ``kappa`` and ``out`` are (z, y, x)."""
    nz, ny, nx = x.shape
    for iz in nb.prange(nz):
        for iy in range(ny):
            for ix in range(nx):
                a = x[iz, iy, ix]
                kj = kappa[iz, iy, ix] if has_kappa else np.float32(1.0)
                acc = np.float32(0.0)
                for dz in range(-1, 2):
                    z = iz + dz
                    if z < 0 or z >= nz:
                        continue
                    for dy in range(-1, 2):
                        y = iy + dy
                        if y < 0 or y >= ny:
                            continue
                        for dx in range(-1, 2):
                            xx = ix + dx
                            if xx < 0 or xx >= nx or (dz == 0 and dy == 0 and dx == 0):
                                continue
                            kk = kappa[z, y, xx] if has_kappa else np.float32(1.0)
                            w = weights[(dz + 1) * 9 + (dy + 1) * 3 + (dx + 1)] * kj * kk
                            phi, d1, d2 = prior_pair(kind, a, x[z, y, xx], gamma, eps)
                            if what == 0:
                                acc += w * phi
                            elif what == 1:
                                acc += w * d1
                            else:
                                acc += w * d2
                out[iz, iy, ix] = acc
