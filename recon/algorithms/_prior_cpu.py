"""Numba kernel of the pairwise priors (the CPU twin of ``kernels/prior.cu``: same arguments, same
order, same arithmetic; see that file for the formulas).

The entry point :func:`prior_terms` takes the prior's ``kind`` and the quantity ``what`` as
arguments, as the CUDA kernel does, and runs a kernel compiled for that pair: with both known at
compile time numba drops the other branches and the unused derivatives from the 26-neighbour loop,
which makes the gradient about three times faster than one kernel deciding per pair (BSREM
evaluates it for every subset).

Two loop layouts compute the same sums, bit for bit: along image rows (:func:`_by_rows`), which
skips each row's voxels outside the field of view (κ = 0), and along runs of whole planes
(:func:`_by_planes`), whose loops are long enough to vectorise well when rows are short. Images
with rows shorter than :data:`PLANE_LAYOUT_BELOW_NX` take the second. ``python
benchmarks/prior_kernels.py`` (2-core CPU, 2026-12-06): with 64-voxel rows the planes' gradient
is 1.2-1.4× faster (1.0-1.2× with a cylindrical field of view); with 128-voxel rows 1.0-1.07×
without a field of view and 0.8× with one, whose corners only the rows' layout skips.
"""

from __future__ import annotations

import functools
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


#: Rows shorter than this take the plane layout (module docstring; with a field of view the
#: two layouts cross near 96-voxel rows).
PLANE_LAYOUT_BELOW_NX = 96
# Voxels per task of the plane layout: whole rows of a plane, several thousand values so that
# each of the 26 loops runs long (1024-4096 measured alike).
_PLANE_CHUNK = 2048


def _by_rows(kind: int, what: int) -> Callable[..., None]:
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


def _by_planes(kind: int, what: int) -> Callable[..., None]:
    """The same sums as :func:`_by_rows`, each plane taken as one flat run of ``ny · nx`` voxels.

    Parallel over chunks of a plane (:data:`_PLANE_CHUNK` voxels); for each offset one loop
    runs over the whole chunk, the neighbour ``shift = dy · nx + dx`` voxels away. A neighbour
    across a row's end (``dx`` leaving the row) is computed and then dropped through
    ``inside[dx + 1]`` (False where ``x + dx`` leaves the row), so each voxel adds the same terms
    in the same order as in the rows' layout. Only the ends of a chunk where κ is 0 are skipped.
    """

    @nb.njit(**_JIT)
    def terms(x, kappa, has_kappa, weights, z_block, gamma, eps, inside, out):
        nz, ny, nx = x.shape
        n = ny * nx
        n_chunks = (n + _PLANE_CHUNK - 1) // _PLANE_CHUNK
        for task in nb.prange(nz * n_chunks):
            iz = task // n_chunks
            c0 = (task % n_chunks) * _PLANE_CHUNK
            c1 = min(n, c0 + _PLANE_CHUNK)
            acc = out[iz].reshape(n)
            acc[c0:c1] = np.float32(0.0)
            here = x[iz].reshape(n)
            kappa_here = kappa[iz].reshape(n) if has_kappa else kappa[0].reshape(1)
            if has_kappa:
                while c0 < c1 and kappa_here[c0] == 0:
                    c0 += 1
                while c1 > c0 and kappa_here[c1 - 1] == 0:
                    c1 -= 1
                if c0 == c1:
                    continue
            block = iz // z_block
            for dz in range(-1, 2):
                z = iz + dz
                if z < 0 or z >= nz or z // z_block != block:
                    continue
                there = x[z].reshape(n)
                kappa_there = kappa[z].reshape(n) if has_kappa else kappa[0].reshape(1)
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        if dz == 0 and dy == 0 and dx == 0:
                            continue
                        w0 = weights[(dz + 1) * 9 + (dy + 1) * 3 + (dx + 1)]
                        shift = dy * nx + dx
                        # Neighbours in the plane: rows 1 … for dy = −1, … ny − 2 for dy = +1.
                        lo = max(c0, nx if dy < 0 else 0, -shift)
                        hi = min(c1, n - nx if dy > 0 else n, n - shift)
                        if hi <= lo:
                            continue
                        keep = inside[dx + 1, lo:hi]
                        a_row = here[lo:hi]
                        b_row = there[lo + shift : hi + shift]
                        sums = acc[lo:hi]
                        if has_kappa:
                            ka = kappa_here[lo:hi]
                            kb = kappa_there[lo + shift : hi + shift]
                            for i in range(hi - lo):
                                pair = prior_pair(kind, a_row[i], b_row[i], gamma, eps)
                                term = w0 * ka[i] * kb[i] * pair[what]
                                sums[i] += term if keep[i] else np.float32(0.0)
                        else:
                            for i in range(hi - lo):
                                pair = prior_pair(kind, a_row[i], b_row[i], gamma, eps)
                                term = w0 * pair[what]
                                sums[i] += term if keep[i] else np.float32(0.0)

    return terms


@functools.lru_cache(maxsize=8)
def _row_ends(ny: int, nx: int) -> np.ndarray:
    """``inside[dx + 1, i]``: whether voxel ``i`` of a flat ``(ny, nx)`` plane has its ``dx``
    neighbour in the same row (read-only)."""
    ix = np.tile(np.arange(nx), ny)
    inside = np.stack([ix >= 1, np.ones(ny * nx, bool), ix + 1 < nx])
    inside.flags.writeable = False
    return inside


# Module-level names, so that the compilation notice (recon._jit) finds them.
quadratic_value = _by_rows(0, 0)
quadratic_gradient = _by_rows(0, 1)
quadratic_hessian = _by_rows(0, 2)
relative_difference_value = _by_rows(1, 0)
relative_difference_gradient = _by_rows(1, 1)
relative_difference_hessian = _by_rows(1, 2)
quadratic_value_planes = _by_planes(0, 0)
quadratic_gradient_planes = _by_planes(0, 1)
quadratic_hessian_planes = _by_planes(0, 2)
relative_difference_value_planes = _by_planes(1, 0)
relative_difference_gradient_planes = _by_planes(1, 1)
relative_difference_hessian_planes = _by_planes(1, 2)
_KERNELS = {
    (0, 0): quadratic_value,
    (0, 1): quadratic_gradient,
    (0, 2): quadratic_hessian,
    (1, 0): relative_difference_value,
    (1, 1): relative_difference_gradient,
    (1, 2): relative_difference_hessian,
}
_PLANE_KERNELS = {
    (0, 0): quadratic_value_planes,
    (0, 1): quadratic_gradient_planes,
    (0, 2): quadratic_hessian_planes,
    (1, 0): relative_difference_value_planes,
    (1, 1): relative_difference_gradient_planes,
    (1, 2): relative_difference_hessian_planes,
}


def prior_terms(
    x, kappa, has_kappa, weights, z_block, kind, gamma, eps, what, out, layout=None
) -> None:
    """Per-voxel sums of ``w kappa kappa`` times phi (``what`` 0), dphi/da (1) or d2phi/da2 (2)
    over the 26 neighbours inside the image and inside the voxel's block of ``z_block`` slices
    (the image's ``nz`` for one image); ``x``, ``kappa`` and ``out`` are (z, y, x). ``layout``
    "rows" or "planes" forces a loop layout (tests); default by the row length (module
    docstring)."""
    layout = _layout(x.shape[2], layout)
    kernel = kernel_for(kind, what, x.shape[2], layout)
    if layout == "planes":
        inside = _row_ends(x.shape[1], x.shape[2])
        kernel(x, kappa, has_kappa, weights, z_block, gamma, eps, inside, out)
    else:
        kernel(x, kappa, has_kappa, weights, z_block, gamma, eps, out)


def _layout(nx: int, layout: str | None) -> str:
    """``layout`` if forced, else the one for rows of ``nx`` voxels (module docstring)."""
    return layout or ("planes" if nx < PLANE_LAYOUT_BELOW_NX else "rows")


def kernel_for(kind: int, what: int, nx: int, layout: str | None = None) -> Any:
    """The compiled kernel :func:`prior_terms` runs for ``kind``, ``what`` and rows of ``nx``
    voxels (``layout`` "rows" or "planes" forces one)."""
    kernels = _PLANE_KERNELS if _layout(nx, layout) == "planes" else _KERNELS
    return kernels[(int(kind), int(what))]
