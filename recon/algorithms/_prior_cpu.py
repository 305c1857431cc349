"""Numba kernels of the pairwise priors (the CPU twin of ``kernels/prior.cu``: same arguments,
same pair arithmetic; see that file for the formulas).

The entry point :func:`prior_terms` takes the prior's ``kind`` and the quantity ``what`` as
arguments, as the CUDA kernel does, and runs a kernel compiled for that pair: with both known at
compile time numba drops the other branches and the unused derivatives from the neighbour loops,
which makes the gradient about three times faster than one kernel deciding per pair (BSREM
evaluates it for every subset).

Two loop layouts give the same per-voxel sums up to float32 rounding:

- ``"pairs"`` (:func:`_by_pairs`, the default): each unordered pair of neighbours is visited once,
  along flat runs of whole planes, and its one division serves both voxels' terms (the pair's
  ``d`` is symmetric). A voxel's own terms go to ``out``; its partners' to a plane buffer (same
  plane) and to a scratch image (the next plane), added at the end, so that no two threads write
  one voxel and each voxel's order of addition does not depend on where its plane sits in the
  image (stacked images give the same bits as each image alone).
- ``"rows"`` (:func:`_by_rows`): per voxel, its 26 neighbours in the CUDA kernel's order, along
  image rows, skipping each row's κ = 0 ends. Its sums equal the CUDA kernel's bit for bit (the
  compatibility-harness test checks that); it is the reference the pairs layout is tested against.

``python benchmarks/prior_kernels.py`` (2-core CPU, 2026-12-06,
``benchmarks/results/prior-kernels-cpu-20261206-220618.json``): the pairs layout's gradient is
1.1-1.45× faster than the rows' on 64-voxel rows and 1.0-1.3× on 128-voxel rows (no gain with a
cylindrical field of view there, whose κ = 0 corners only the rows' layout skips); its Hessian
diagonal 1.4-2.3× and its value 1.15-1.5×.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numba as nb
import numpy as np

from recon._memory import page_aligned_empty

_JIT: dict[str, Any] = dict(parallel=True, fastmath=False, cache=True, nogil=True)


@nb.njit(inline="always")
def pair_terms(kind, what, a, b, gamma, eps):
    """The terms of one neighbour pair for its two voxels: ``phi`` (``what`` 0), ``dphi/da``
    (1) or ``d2phi/da2`` (2) of the voxel holding ``a``, and the same of the voxel holding
    ``b`` (``phi(b, a)`` and its derivatives in ``b``). Each side is computed exactly as a
    per-voxel loop would compute it (``b − a`` is ``−(a − b)`` in floating point), sharing the
    symmetric denominator."""
    u = a - b
    if kind == 0:
        if what == 0:
            return u * u, u * u
        if what == 1:
            return np.float32(2.0) * u, -(np.float32(2.0) * u)
        return np.float32(2.0), np.float32(2.0)
    au = abs(u)
    d = a + b + gamma * au + eps
    inv = np.float32(1.0) / d
    if what == 0:
        phi = u * u * inv
        return phi, phi
    m_a = a + np.float32(3.0) * b + gamma * au + np.float32(2.0) * eps
    m_b = b + np.float32(3.0) * a + gamma * au + np.float32(2.0) * eps
    if what == 1:
        return u * m_a * inv * inv, -(u * m_b * inv * inv)
    s = np.float32(1.0) if u > 0 else (np.float32(-1.0) if u < 0 else np.float32(0.0))
    d2_a = np.float32(2.0) * (d * d - u * m_a * (np.float32(1.0) + gamma * s)) * inv * inv * inv
    d2_b = np.float32(2.0) * (d * d + u * m_b * (np.float32(1.0) - gamma * s)) * inv * inv * inv
    return d2_a, d2_b


#: The layout :func:`prior_terms` uses unless told (module docstring); tests and the benchmark
#: set it to compare layouts through the public API.
DEFAULT_LAYOUT = "pairs"


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
                                term = pair_terms(kind, what, a_row[i], b_row[i], gamma, eps)[0]
                                sums[i] += w0 * ka[i] * kb[i] * term
                        else:
                            for i in range(n):
                                term = pair_terms(kind, what, a_row[i], b_row[i], gamma, eps)[0]
                                sums[i] += w0 * term

    return terms


def _by_pairs(kind: int, what: int) -> Callable[..., None]:
    """The kernel of the pairs layout (module docstring) for one ``kind`` and ``what``.

    Parallel over planes (an image with fewer planes than CPU cores leaves cores idle; the rows'
    layout splits rows instead); each plane is one flat run of ``ny · nx`` voxels. For each of
    the 13 offsets that point forward (to the next voxel of the row, the next row, or the next
    plane: ``shift = dy · nx + dx`` within the plane) one loop visits the plane's voxels ``i``
    and their neighbours ``i + shift``; a pair across a row's end is computed and dropped
    through ``inside[dx + 1]`` (False where ``x + dx`` leaves the row). The voxel's term adds to
    ``out``, the neighbour's to ``back`` (same plane, added to ``out`` at the end of the plane)
    or to ``up`` (the next plane, added once every plane is done). Only the ends of a plane
    where κ is 0 are skipped: a pair whose lower voxel has κ = 0 adds 0 to both. Requires
    symmetric weights (``weights[k] == weights[26 − k]``).
    """

    @nb.njit(**_JIT)
    def terms(x, kappa, has_kappa, weights, z_block, gamma, eps, inside, out, up):
        for k in range(13):
            if weights[k] != weights[26 - k]:
                raise ValueError("the pairs layout needs symmetric neighbour weights")
        nz, ny, nx = x.shape
        n = ny * nx
        for task in nb.prange(nz):
            iz = np.int64(task)  # prange's index may be unsigned; iz + 1 must stay an integer
            acc = out[iz].reshape(n)
            acc[:] = np.float32(0.0)
            back = np.zeros(n, np.float32)
            here = x[iz].reshape(n)
            kappa_here = kappa[iz].reshape(n) if has_kappa else kappa[0].reshape(1)
            has_up = iz + 1 < nz and (iz + 1) // z_block == iz // z_block
            upper = up[iz + 1 if has_up else iz].reshape(n)
            if has_up:
                upper[:] = np.float32(0.0)
            c0, c1 = 0, n
            if has_kappa:
                while c0 < c1 and kappa_here[c0] == 0:
                    c0 += 1
                while c1 > c0 and kappa_here[c1 - 1] == 0:
                    c1 -= 1
            for dz in range(2):
                if c0 == c1 or (dz == 1 and not has_up):
                    continue
                there = x[iz + dz].reshape(n)
                kappa_there = kappa[iz + dz].reshape(n) if has_kappa else kappa[0].reshape(1)
                partners = back if dz == 0 else upper
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        if dz == 0 and (dy < 0 or (dy == 0 and dx <= 0)):
                            continue  # backward in the plane: the partner's forward pair
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
                        others = partners[lo + shift : hi + shift]
                        if has_kappa:
                            ka = kappa_here[lo:hi]
                            kb = kappa_there[lo + shift : hi + shift]
                            for i in range(hi - lo):
                                t_a, t_b = pair_terms(kind, what, a_row[i], b_row[i], gamma, eps)
                                wk = w0 * ka[i] * kb[i]
                                sums[i] += wk * t_a if keep[i] else np.float32(0.0)
                                others[i] += wk * t_b if keep[i] else np.float32(0.0)
                        else:
                            for i in range(hi - lo):
                                t_a, t_b = pair_terms(kind, what, a_row[i], b_row[i], gamma, eps)
                                sums[i] += w0 * t_a if keep[i] else np.float32(0.0)
                                others[i] += w0 * t_b if keep[i] else np.float32(0.0)
            acc += back
        for task in nb.prange(nz - 1):
            iz = np.int64(task) + 1
            if iz // z_block == (iz - 1) // z_block:
                out[iz] += up[iz]

    return terms


@functools.lru_cache(maxsize=8)
def _row_ends(ny: int, nx: int) -> np.ndarray:
    """``inside[dx + 1, i]``: whether voxel ``i`` of a flat ``(ny, nx)`` plane has its ``dx``
    neighbour in the same row (read-only)."""
    ix = np.tile(np.arange(nx), ny)
    inside = np.stack([ix >= 1, np.ones(ny * nx, bool), ix + 1 < nx])
    inside.flags.writeable = False
    return inside


# Every (kind, what) pair compiled once per layout; the priors name the kernel they run to the
# compilation notice (recon._jit.announce_compilation's ``kernels``).
_KERNELS = {(kind, what): _by_rows(kind, what) for kind in (0, 1) for what in (0, 1, 2)}
_PAIR_KERNELS = {(kind, what): _by_pairs(kind, what) for kind in (0, 1) for what in (0, 1, 2)}


def prior_terms(
    x, kappa, has_kappa, weights, z_block, kind, gamma, eps, what, out, layout=None
) -> None:
    """Per-voxel sums of ``w kappa kappa`` times phi (``what`` 0), dphi/da (1) or d2phi/da2 (2)
    over the 26 neighbours inside the image and inside the voxel's block of ``z_block`` slices
    (the image's ``nz`` for one image); ``x``, ``kappa`` and ``out`` are (z, y, x). ``layout``
    "pairs" or "rows" (module docstring); default :data:`DEFAULT_LAYOUT`."""
    layout = layout or DEFAULT_LAYOUT
    kernel = kernel_for(kind, what, layout)
    if layout == "pairs":
        inside = _row_ends(x.shape[1], x.shape[2])
        up = page_aligned_empty(x.shape)
        kernel(x, kappa, has_kappa, weights, z_block, gamma, eps, inside, out, up)
    else:
        kernel(x, kappa, has_kappa, weights, z_block, gamma, eps, out)


def kernel_for(kind: int, what: int, layout: str | None = None) -> Any:
    """The compiled kernel :func:`prior_terms` runs for ``kind`` and ``what`` in ``layout``
    (default :data:`DEFAULT_LAYOUT`)."""
    layout = layout or DEFAULT_LAYOUT
    if layout not in ("pairs", "rows"):
        raise ValueError(f"unknown prior kernel layout {layout!r}: 'pairs' or 'rows'")
    kernels = _PAIR_KERNELS if layout == "pairs" else _KERNELS
    return kernels[(int(kind), int(what))]
