"""Estimates of random coincidences per sinogram bin (the additive term ``a`` of DESIGN.md §1).

Both estimates are non-TOF sinograms of shape ``layout.shape``. Randoms are uniform in the
coincidence-time difference, so for a TOF model whose TOF bins span the coincidence window, each
TOF bin receives ``estimate / n_tof``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.pet.listmode import ListmodeEvents, histogram
from recon.pet.sinogram import SinogramLayout

__all__ = ["randoms_from_singles", "randoms_from_delayeds"]


def _bin_crystals(layout: SinogramLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rings of each plane and canonical in-ring indices of each (view, radial) cell.

    A bin's crystals are ``ring_a[p]*N + idx_a[v, r]`` and ``ring_b[p]*N + idx_b[v, r]``: the
    in-ring pattern is the same in every plane.
    """
    view = np.arange(layout.n_views)[:, None]
    radial = np.arange(layout.n_radial)[None, :]
    idx_a, idx_b = layout._transaxial_pairs(view, radial)
    rings = layout.plane_rings.astype(np.int64)
    return rings[:, 0], rings[:, 1], idx_a, idx_b


def randoms_from_singles(
    singles_cps: Any,
    coincidence_window_ns: float,
    duration_s: float,
    layout: SinogramLayout,
) -> np.ndarray:
    """Expected random coincidences per bin from crystal singles rates.

    For two detectors with uncorrelated singles rates ``S_a`` and ``S_b`` (counts per second) and
    a coincidence window of full width ``2τ`` (an event pair is accepted when
    ``|t_a − t_b| ≤ τ``), randoms arrive at ``2τ·S_a·S_b`` per second (Hoffman EJ, Huang SC,
    Phelps ME, Kuhl DE, J Comput Assist Tomogr 1981;5:391-400; Brasse D, Kinahan PE, Lartizien C,
    et al., J Nucl Med 2005;46:859-867), so over ``T`` seconds::

        R_ab = 2τ · S_a · S_b · T

    Parameters
    ----------
    singles_cps : array of shape (n_crystals,)
        Singles rate of each crystal (by crystal id), counts per second, averaged over the frame.
    coincidence_window_ns : float
        Full width ``2τ`` of the coincidence window, ns (vendors quote this width, e.g. 4.7 ns).
    duration_s : float
        Frame duration ``T``, s.
    layout : SinogramLayout
        Sinogram layout.

    Returns
    -------
    float32 ndarray of shape ``layout.shape``
        Expected randoms counts per bin.

    Raises
    ------
    InputError
        Wrong shape, negative or non-finite rates, or a non-positive window or duration.
    """
    singles = np.asarray(singles_cps, dtype=np.float64)
    n_crystals = layout.scanner.n_crystals
    if singles.shape != (n_crystals,):
        raise InputError(
            f"singles_cps needs one rate per crystal ({n_crystals},), got shape {singles.shape}"
        )
    if not np.all(np.isfinite(singles)) or np.any(singles < 0):
        raise InputError("singles_cps must be finite and non-negative (counts per second)")
    for name, value in (
        ("coincidence_window_ns", coincidence_window_ns),
        ("duration_s", duration_s),
    ):
        if not (math.isfinite(float(value)) and float(value) > 0):
            raise InputError(f"{name} must be positive, got {value!r}")
    ring_a, ring_b, idx_a, idx_b = _bin_crystals(layout)
    per_ring = singles.reshape(layout.scanner.n_rings, layout.scanner.crystals_per_ring)
    scale = float(coincidence_window_ns) * 1e-9 * float(duration_s)
    s_a = per_ring[ring_a[:, None, None], idx_a[None]]
    s_b = per_ring[ring_b[:, None, None], idx_b[None]]
    return (scale * s_a * s_b).astype(np.float32)


def _fan_sums(
    values: np.ndarray, layout: SinogramLayout, parts: tuple[np.ndarray, ...]
) -> np.ndarray:
    """Sum of a sinogram over every bin that has crystal c at either end, for each crystal c."""
    ring_a, ring_b, idx_a, idx_b = parts
    n = layout.scanner.crystals_per_ring
    out = np.zeros((layout.scanner.n_rings, n))
    fa, fb = idx_a.ravel(), idx_b.ravel()
    for p in range(layout.n_planes):
        plane = values[p].ravel()
        out[ring_a[p]] += np.bincount(fa, weights=plane, minlength=n)
        out[ring_b[p]] += np.bincount(fb, weights=plane, minlength=n)
    return out.ravel()


def _partner_matrices(
    layout: SinogramLayout, parts: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Which crystals form a layout bin together, as ring and in-ring acceptance matrices.

    A pair is in the layout exactly when its in-ring indices are (transaxial acceptance
    ``T[i, j]``) and its rings are (``P[r, s]``, ``|r − s| ≤ max_ring_difference``), whatever
    the order, so the crystal-by-crystal acceptance is the Kronecker product ``P ⊗ T``.
    """
    ring_a, ring_b, idx_a, idx_b = parts
    n = layout.scanner.crystals_per_ring
    n_rings = layout.scanner.n_rings
    transaxial = np.zeros((n, n))
    transaxial[idx_a.ravel(), idx_b.ravel()] = 1.0
    transaxial[idx_b.ravel(), idx_a.ravel()] = 1.0
    rings = np.zeros((n_rings, n_rings))
    rings[ring_a, ring_b] = 1.0
    return rings, transaxial


def _partner_sums(f: np.ndarray, matrices: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``Σ_b f_b`` over the crystals b that form a layout bin with crystal a, for each a."""
    rings, transaxial = matrices
    per_ring = f.reshape(rings.shape[0], transaxial.shape[0])
    return (rings @ per_ring @ transaxial).ravel()


def _product_sinogram(
    f: np.ndarray, layout: SinogramLayout, parts: tuple[np.ndarray, ...]
) -> np.ndarray:
    ring_a, ring_b, idx_a, idx_b = parts
    per_ring = f.reshape(layout.scanner.n_rings, layout.scanner.crystals_per_ring)
    return (
        per_ring[ring_a[:, None, None], idx_a[None]] * per_ring[ring_b[:, None, None], idx_b[None]]
    )


def randoms_from_delayeds(
    delayeds: np.ndarray | ListmodeEvents,
    layout: SinogramLayout,
    max_iterations: int = 1000,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """A smooth, low-noise randoms estimate from delayed coincidences (fan-sum method).

    Delayed coincidences are randoms-only but noisy (Poisson, often < 1 count per bin). Since a
    pair's randoms rate factorises as ``2τ·S_a·S_b``, we fit per-crystal factors ``f`` so that
    ``f_a·f_b`` matches the delayeds, using only the fan sums ``F_a = Σ_b D_ab`` (Casey ME,
    Hoffman EJ, J Comput Assist Tomogr 1986;10:845-850; Badawi RD, Miller MP, Bailey DL,
    Marsden PK, Phys Med Biol 1999;44:941-954, "randoms variance reduction in 3D PET"; the same
    fan-sum algebra as component-based normalisation, Defrise M et al., Phys Med Biol
    1991;36:939-952). The Poisson maximum-likelihood fit satisfies ``F_a = f_a·Σ_b f_b`` (sums
    over the partners b of a in the layout), solved by the damped fixed-point iteration
    ``f_a ← sqrt(f_a · F_a / Σ_b f_b)``, the geometric mean of the current factor and the
    undamped update ``F_a / Σ_b f_b`` (the undamped update alone makes the overall scale
    oscillate: doubling f halves the next f). At the fixed point ``Σ f_a·f_b = Σ D``; the result is
    rescaled so that total counts are preserved exactly after a finite number of iterations.
    Iterations stop when every model fan sum ``f_a·Σ_b f_b`` is within ``tolerance`` (relative)
    of the measured ``F_a``. Each iteration costs two small matrix products (rings × rings and
    crystals_per_ring × crystals_per_ring), so even a thousand are cheap.

    Parameters
    ----------
    delayeds : ndarray or ListmodeEvents
        A delayed-coincidence sinogram of shape ``layout.shape`` (or a TOF sinogram of shape
        ``layout.tof_shape``, summed over TOF), or listmode events whose delayed coincidences are
        histogrammed (pairs outside the layout are ignored).
    layout : SinogramLayout
        Sinogram layout.
    max_iterations : int, optional
        Upper bound on the fixed-point iterations (narrow fans, i.e. few radial bins, converge
        slowest).
    tolerance : float, optional
        Largest relative fan-sum mismatch accepted.

    Returns
    -------
    float32 ndarray of shape ``layout.shape``
        Randoms estimate, with the same total as the delayeds.

    Raises
    ------
    InputError
        A sinogram of the wrong shape, or negative or non-finite counts.
    """
    if isinstance(delayeds, ListmodeEvents):
        counts, _ = histogram(delayeds, layout, tof=False, delayed=True)
    else:
        counts = np.asarray(delayeds)
        if counts.shape == layout.tof_shape and counts.shape != layout.shape:
            counts = counts.sum(axis=-1)
        if counts.shape != layout.shape:
            raise InputError(
                f"the delayed sinogram must have shape {layout.shape} (or {layout.tof_shape} with "
                f"TOF), got {counts.shape}"
            )
    counts = counts.astype(np.float64)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise InputError("delayed counts must be finite and non-negative")
    if int(max_iterations) < 0 or not tolerance >= 0:
        raise InputError(
            f"max_iterations and tolerance must be non-negative, got {max_iterations}, {tolerance}"
        )
    total = float(counts.sum())
    if total == 0.0:
        return np.zeros(layout.shape, dtype=np.float32)

    parts = _bin_crystals(layout)
    fan = _fan_sums(counts, layout, parts)
    f = fan.copy()
    f *= math.sqrt(total / float(_product_sinogram(f, layout, parts).sum()))
    matrices = _partner_matrices(layout, parts)
    for _ in range(int(max_iterations)):
        partners = _partner_sums(f, matrices)
        if np.all(np.abs(f * partners - fan) <= tolerance * fan):
            break
        ratio = np.divide(fan, partners, out=np.zeros_like(fan), where=partners > 0)
        f = np.sqrt(f * ratio)
    estimate = _product_sinogram(f, layout, parts)
    estimate *= total / float(estimate.sum())
    return estimate.astype(np.float32)
