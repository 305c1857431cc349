"""PET normalisation estimated from a calibration scan (uniform cylinder or any known source).

The measured sinogram ``y`` of a calibration source is compared with its expected sinogram
``m`` without normalisation (``m`` from :func:`cylinder_sinogram` for a uniform attenuating
cylinder, or a forward projection of any other known source, e.g. a rotating rod summed over its
positions). The components of :class:`~recon.pet.normalization.Normalization` are fitted to
``E[y] = s · ε_a ε_b · g_T · g_A · m`` by maximum likelihood for Poisson data:

1. **Fan sums** (Defrise et al., Phys Med Biol 36:939, 1991): every crystal's fan sum
   ``F_a = Σ_b y_ab`` divided by its expected fan sum gives a first estimate of ``ε_a``
   (it assumes the partners' efficiencies average out over the fan).
2. **ML component estimation** (Hogg, Thielemans, Spinks & Spyrou, "Maximum-likelihood
   estimation of normalisation factors for PET", IEEE NSS Conf Rec 2001, 4:2065, as cited by
   STIR's ``src/include/stir/ML_norm.h``; the alternation of STIR's ``find_ML_normfactors3D``,
   ``src/buildblock/ML_norm.cxx``): the components are updated in
   turn, each to the likelihood maximiser given the others. For ``g_T`` (one factor per radial
   bin and in-block position) and ``g_A`` (one per ring pair) that is closed-form: the measured
   sum over the factor's bins divided by the expected sum. STIR updates the crystals one after
   another in place (``ε_a ← F_a / Σ_b ε_b m'_ab``, each the exact maximiser given the others);
   recon updates all crystals at once with vectorised sums, and applied to all crystals at once
   that update is not guaranteed to raise the likelihood (each LOR holds two crystal factors:
   on its own it flips an overall scale error ``c`` to ``1/c`` at every iteration). The
   simultaneous step is therefore the generalised-iterative-scaling one,
   ``ε_a ← ε_a · (F_a / F̂_a)^(1/2)`` (Darroch & Ratcliff, Ann Math Stat 43:1470, 1972), which
   raises the likelihood at every step. The model is log-linear in the factors, so the
   likelihood is concave in their logarithms and the iteration converges to its maximum (unique
   up to the gauge of the module docstring of :mod:`recon.pet.normalization`).

The fan-sum estimate alone is biased wherever the partners' efficiencies do not average to the
mean (block patterns, the ring ends), so ML is the default; ``method="fansum"`` is kept for
comparison.

Calibration data should be true coincidences: subtract a randoms estimate (e.g. the delayeds)
and, for a large cylinder, scatter; bins may then be negative, only sums are used. Bins where
``m`` is zero (LORs that miss the source) carry no information; factors of radial bins that no
LOR through the source reaches are copied from the nearest measured radial bin, and the result
records it (``info["extrapolated_radial_bins"]``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from recon._memory import check_memory
from recon.errors import GeometryError, InputError
from recon.pet.normalization import Normalization
from recon.pet.sinogram import SinogramLayout

__all__ = ["MU_WATER_511_PER_MM", "cylinder_sinogram", "estimate_normalization"]

log = logging.getLogger("recon")

# Linear attenuation coefficient of water at 511 keV, 1/mm. NIST XCOM (NIST SRD 8), liquid water,
# total attenuation with coherent scattering: 0.09687 cm²/g at 500 keV and 0.08956 cm²/g at
# 600 keV; log-log interpolation gives 0.0960 cm²/g at 511 keV, times 1.00 g/cm³: 0.00960 /mm.
MU_WATER_511_PER_MM = 0.0096

_METHODS = ("ml", "fansum")
# GIS exponent of the simultaneous crystal step: 1 / (the number of crystal factors in a LOR's
# product), which makes every step raise the likelihood (Darroch & Ratcliff 1972).
_GIS_EXPONENT = 0.5


# ---------------------------------------------------------------------------------- the source
def cylinder_sinogram(
    layout: SinogramLayout,
    radius_mm: float,
    length_mm: float | None = None,
    *,
    mu_per_mm: float = MU_WATER_511_PER_MM,
    centre_mm: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Expected sinogram of a uniform, uniformly attenuating cylinder along the scanner axis.

    Each LOR (the segment between its two crystal positions) crosses the cylinder along a chord
    of length ``L``; a unit activity concentration gives the line integral ``L`` and the
    attenuation ``exp(−μ L)``, so the expected value is ``L · exp(−μ L)`` (exact, no voxels).
    Multiply by the activity concentration, the frame's time factor and the calibration for
    expected counts; :func:`estimate_normalization` needs only the shape.

    Parameters
    ----------
    layout : SinogramLayout
        Sinogram layout of the calibration data.
    radius_mm : float
        Inner radius of the cylinder (the active volume), mm.
    length_mm : float, optional
        Active length, mm; default: longer than the scanner (no end caps in the field of view).
    mu_per_mm : float, optional
        Linear attenuation coefficient at 511 keV inside the cylinder, 1/mm (default: water,
        NIST XCOM); 0 for no attenuation. The phantom wall is not modelled.
    centre_mm : sequence of 3 float, optional
        World position of the cylinder's centre, mm.

    Returns
    -------
    float64 ndarray of ``layout.shape``
        ``L · exp(−μ L)`` per bin, in mm.

    Raises
    ------
    GeometryError
        A non-positive radius or length, a negative or non-finite ``mu_per_mm``, or a
        cylinder no LOR of the layout crosses.
    """
    if not isinstance(layout, SinogramLayout):
        raise GeometryError(f"layout must be a SinogramLayout, got {type(layout).__name__}")
    radius = _positive(radius_mm, "radius_mm")
    length = math.inf if length_mm is None else _positive(length_mm, "length_mm")
    mu = float(mu_per_mm)
    if not (math.isfinite(mu) and mu >= 0):
        raise GeometryError(f"mu_per_mm must be a finite non-negative number, got {mu_per_mm!r}")
    centre = np.asarray(centre_mm, dtype=np.float64)
    if centre.shape != (3,) or not np.all(np.isfinite(centre)):
        raise GeometryError("centre_mm must be three finite numbers (x, y, z) in mm")
    check_memory(8.0 * 4 * layout.n_bins, "the calibration sinogram", "limit max_ring_difference")

    # Transaxial interval of the LOR parameter t in [0, 1] inside the infinite cylinder: the ends
    # depend on (view, radial) only.
    start, end = layout.endpoints(np.arange(layout.n_views), xp=np)
    p0 = start[0, :, :, :2].astype(np.float64) - centre[:2]
    u = end[0, :, :, :2].astype(np.float64) - start[0, :, :, :2]
    a = np.sum(u * u, axis=-1)
    b = 2.0 * np.sum(p0 * u, axis=-1)
    c = np.sum(p0 * p0, axis=-1) - radius**2
    disc = b * b - 4.0 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t_in = np.where(disc > 0, (-b - root) / (2.0 * a), 1.0)
    t_out = np.where(disc > 0, (-b + root) / (2.0 * a), 0.0)
    t_in, t_out = np.clip(t_in, 0.0, 1.0), np.clip(t_out, 0.0, 1.0)
    xy_length = np.sqrt(a)

    ring_z = layout.scanner.ring_z_mm.astype(np.float64)
    out = np.empty(layout.shape, dtype=np.float64)
    z_low, z_high = centre[2] - length / 2.0, centre[2] + length / 2.0
    for plane, (ring_a, ring_b) in enumerate(layout.plane_rings):
        z0, dz = ring_z[ring_a] - 0.0, ring_z[ring_b] - ring_z[ring_a]
        if dz == 0.0:
            lo, hi = (0.0, 1.0) if z_low <= z0 <= z_high else (1.0, 0.0)
        else:
            ta, tb = (z_low - z0) / dz, (z_high - z0) / dz
            lo, hi = min(ta, tb), max(ta, tb)
        span = np.clip(np.minimum(t_out, hi) - np.maximum(t_in, lo), 0.0, None)
        chord = span * np.sqrt(xy_length**2 + dz**2)
        out[plane] = chord * np.exp(-mu * chord)
    if not np.any(out > 0):
        raise GeometryError(
            "no line of response of the layout crosses the cylinder; check its radius, length "
            "and centre against the scanner"
        )
    return out


def _positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"{name} must be a positive number of mm, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise GeometryError(f"{name} must be a positive number of mm, got {value!r}")
    return number


# ---------------------------------------------------------------------------------- estimation
class _Problem:
    """Data, model and index tables of one estimation, on the host in float64."""

    def __init__(
        self, counts: Any, expected: Any, layout: SinogramLayout, crystals_per_block: int
    ) -> None:
        check_memory(
            8.0 * 6 * layout.n_bins,
            f"estimating a normalisation on {layout.n_bins:,} sinogram bins",
            "limit max_ring_difference",
        )
        y = np.asarray(counts, dtype=np.float64)
        if y.shape == tuple(layout.tof_shape) and layout.n_tof > 1:
            y = y.sum(axis=-1)  # normalisation is the same for every TOF bin
        if y.shape != tuple(layout.shape):
            raise InputError(
                f"calibration counts have shape {y.shape}, expected the layout's "
                f"{tuple(layout.shape)} (or {tuple(layout.tof_shape)} with TOF)"
            )
        m = np.asarray(expected, dtype=np.float64)
        if m.shape != tuple(layout.shape):
            raise InputError(
                f"the expected calibration sinogram has shape {m.shape}, expected "
                f"{tuple(layout.shape)} (non-TOF)"
            )
        if not np.all(np.isfinite(y)):
            raise InputError("calibration counts hold NaN or infinite values")
        if not np.all(np.isfinite(m)) or np.any(m < 0):
            raise InputError("the expected calibration sinogram must be finite and non-negative")
        n = layout.scanner.crystals_per_ring
        if (
            isinstance(crystals_per_block, bool)
            or not isinstance(crystals_per_block, int | np.integer)
            or crystals_per_block < 1
            or n % crystals_per_block
        ):
            raise InputError(
                f"crystals_per_block must be a positive integer dividing crystals_per_ring "
                f"({n}), got {crystals_per_block!r}"
            )
        self.layout = layout
        self.block = int(crystals_per_block)
        self.mask = m > 0
        self.y = np.where(self.mask, y, 0.0)
        self.m = m
        planes, views, radial = layout.shape
        ca, cb = layout.crystals_of(
            np.arange(planes)[:, None, None], np.arange(views)[None, :, None],
            np.arange(radial)[None, None, :],
        )  # fmt: skip
        self.ca = ca.astype(np.int64).ravel()
        self.cb = cb.astype(np.int64).ravel()
        # Transaxial class of each (view, radial): radial bin × in-block position of crystal a.
        first = (ca[0] % n) % self.block
        self.t_index = (np.arange(radial)[None, :] * self.block + first).ravel()
        self.n_classes = radial * self.block
        self.n_crystals = layout.scanner.n_crystals

    def crystal_sums(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` (plane, view, radial) over the bins of each crystal."""
        flat = values.ravel()
        n = self.n_crystals
        return np.bincount(self.ca, flat, minlength=n) + np.bincount(self.cb, flat, minlength=n)

    def class_sums(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` over the bins of each transaxial class."""
        return np.bincount(self.t_index, values.sum(axis=0).ravel(), minlength=self.n_classes)

    def expected(self, eff: np.ndarray, g_t: np.ndarray, g_a: np.ndarray) -> np.ndarray:
        """``m · ε_a ε_b · g_T · g_A`` per bin."""
        shape = self.layout.shape
        pair = (eff[self.ca] * eff[self.cb]).reshape(shape)
        return self.m * pair * g_t[self.t_index].reshape(shape[1:]) * g_a[:, None, None]


def _ratio(measured: np.ndarray, model: np.ndarray) -> np.ndarray:
    """``measured / model`` where both are positive, else NaN (not estimable)."""
    ok = (model > 0) & (measured > 0)
    out = np.full(measured.shape, np.nan)
    out[ok] = measured[ok] / model[ok]
    return out


def estimate_normalization(
    counts: Any,
    expected: Any,
    layout: SinogramLayout,
    *,
    crystals_per_block: int = 1,
    method: str = "ml",
    max_iterations: int = 500,
    tolerance: float = 1e-6,
    source: str | None = None,
) -> Normalization:
    """Crystal efficiencies and geometric factors from a calibration scan (module docstring).

    Parameters
    ----------
    counts : array of ``layout.shape`` (or ``layout.tof_shape``, summed over TOF)
        Measured true coincidences of the calibration scan (prompts minus randoms).
    expected : array of ``layout.shape``
        Expected sinogram of the source without normalisation, any scale (e.g.
        :func:`cylinder_sinogram`, or ``PetSinogramModel(...).forward(source)`` for another
        source).
    layout : SinogramLayout
        Layout of both sinograms; the result covers its ring differences and radial bins.
    crystals_per_block : int, optional
        Transaxial crystals per detector block: the period of the crystal-interference pattern
        of the transaxial factors. 1 (default) fits a purely radial profile.
    method : {"ml", "fansum"}, optional
        ``"ml"``: fan-sum start, then ML component estimation to convergence (default);
        ``"fansum"``: the fan-sum efficiencies with one ML pass of the geometric factors.
    max_iterations : int, optional
        Most ML iterations (each updates every component once).
    tolerance : float, optional
        Stop when no efficiency or factor changes by more than this relative amount.
    source : str, optional
        A description of the calibration source, recorded in ``info["source"]``.

    Returns
    -------
    Normalization
        ``info`` holds ``method``, ``iterations``, ``converged``, ``max_relative_change``,
        ``counts`` (total used), ``global_scale`` (data over normalised model: recon's
        calibration factor when ``expected`` was in counts for a calibration of 1),
        ``efficiency_relative_error`` (median ``1/√F_a``, the Poisson precision of a crystal's
        efficiency), ``dead_crystals``, ``extrapolated_radial_bins``,
        ``unmeasured_ring_pairs`` and ``source``.

    Raises
    ------
    InputError
        Shapes do not match the layout, NaN values, negative expected values, a bad option, or
        crystals with no LOR through the source.
    """
    if not isinstance(layout, SinogramLayout):
        raise InputError(f"layout must be a SinogramLayout, got {type(layout).__name__}")
    if method not in _METHODS:
        raise InputError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int):
        raise InputError(f"max_iterations must be a positive integer, got {max_iterations!r}")
    if max_iterations < 1:
        raise InputError(f"max_iterations must be a positive integer, got {max_iterations!r}")
    if not (isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance > 0):
        raise InputError(f"tolerance must be a positive number, got {tolerance!r}")
    problem = _Problem(counts, expected, layout, crystals_per_block)
    total = float(problem.y.sum())
    if not total > 0:
        raise InputError("the calibration scan holds no counts on LORs through the source")

    fan_model = problem.crystal_sums(problem.m)
    unseen = np.flatnonzero(fan_model <= 0)
    if unseen.size:
        raise InputError(
            f"{unseen.size} crystals (e.g. crystal {int(unseen[0])}) have no line of response "
            "through the calibration source; use a source that fills the field of view (a "
            "cylinder centred in the scanner, or a rotating rod)"
        )
    fan_data = problem.crystal_sums(problem.y)
    dead = fan_data <= 0
    if dead.any():
        log.warning(
            "recon: %d crystals have no counts in the calibration scan; their efficiency is "
            "set to 0 (dead crystals)", int(dead.sum())
        )  # fmt: skip
    class_data = problem.class_sums(problem.y)
    plane_data = problem.y.sum(axis=(1, 2))

    # Fan-sum estimate (Defrise 1991): uniform partners of efficiency sqrt(Σy/Σm).
    scale = math.sqrt(total / float(problem.m.sum()))
    eff = np.where(dead, 0.0, fan_data / (scale * fan_model))
    g_t = np.ones(problem.n_classes)
    g_a = np.ones(layout.n_planes)

    iterations, converged, change = 0, False, math.inf
    n_passes = 1 if method == "fansum" else max_iterations
    for iteration in range(1, n_passes + 1):
        iterations = iteration
        old = (eff.copy(), g_t.copy(), g_a.copy())
        if method == "ml":
            fan_fit = problem.crystal_sums(problem.expected(eff, g_t, g_a))
            step = _ratio(fan_data, fan_fit)
            eff = np.where(np.isfinite(step), eff * np.nan_to_num(step) ** _GIS_EXPONENT, eff)
            eff[dead] = 0.0
        without_t = problem.expected(eff, np.ones_like(g_t), g_a)
        g_t = _fill(_ratio(class_data, problem.class_sums(without_t)), g_t)
        without_a = problem.expected(eff, g_t, np.ones_like(g_a))
        g_a = _fill(_ratio(plane_data, without_a.sum(axis=(1, 2))), g_a)
        new = (eff, g_t, g_a)
        change = max(_relative_change(a, b) for a, b in zip(new, old, strict=True))
        if change < tolerance:
            converged = True
            break
    if method == "ml" and not converged:
        log.warning(
            "recon: the normalisation estimate stopped after %d iterations with relative changes "
            "of %.2g (tolerance %.2g); raise max_iterations", iterations, change, tolerance,
        )  # fmt: skip
    measured_t = np.isfinite(_ratio(class_data, problem.class_sums(problem.m)))
    measured_a = np.isfinite(_ratio(plane_data, problem.m.sum(axis=(1, 2))))
    eff2d, transaxial, axial = _gauge(
        problem, eff.reshape(layout.scanner.n_rings, -1), g_t, g_a, measured_t, measured_a
    )
    fitted = problem.expected(eff2d.ravel(), transaxial.ravel(), axial)
    global_scale = total / float(fitted.sum())
    transaxial, extrapolated = _extrapolate_radial(transaxial, measured_t.reshape(transaxial.shape))
    axial_rings, unmeasured = _ring_pairs(layout, axial, measured_a)
    info: dict[str, Any] = {
        "method": method,
        "iterations": iterations,
        "converged": bool(converged) if method == "ml" else None,
        "max_relative_change": float(change),
        "counts": total,
        "global_scale": float(global_scale),
        "efficiency_relative_error": float(np.median(1.0 / np.sqrt(fan_data[~dead]))),
        "crystals_per_block": problem.block,
        "dead_crystals": [int(i) for i in np.flatnonzero(dead)],
        "extrapolated_radial_bins": extrapolated,
        "unmeasured_ring_pairs": unmeasured,
        "source": source or "",
    }
    return Normalization(
        layout.scanner,
        crystal_efficiency=eff2d,
        transaxial=transaxial,
        axial=axial_rings,
        max_ring_difference=layout.max_ring_difference,
        info=info,
    )


def _fill(ratio: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The new factors where estimable, the previous ones elsewhere."""
    return np.where(np.isfinite(ratio), ratio, previous)


def _relative_change(new: np.ndarray, old: np.ndarray) -> float:
    live = old > 0
    if not live.any():
        return 0.0
    return float(np.max(np.abs(new[live] / old[live] - 1.0)))


def _gauge(
    problem: _Problem,
    eff: np.ndarray,
    g_t: np.ndarray,
    g_a: np.ndarray,
    measured_t: np.ndarray,
    measured_a: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Efficiencies with mean 1 per ring and per in-block position, measured geometric factors
    with mean 1.

    The ring and position patterns removed from ε move into ``g_A`` and ``g_T`` exactly, so every
    LOR's product (and the global scale) is unchanged.
    """
    layout = problem.layout
    n_rings, n = eff.shape
    block = problem.block
    live = eff > 0
    ring_scale = np.ones(n_rings)
    pos_scale = np.ones(block)
    work = eff.copy()
    for _ in range(200):  # alternating mean scaling (balanced design: converges fast)
        r = np.array([work[i][live[i]].mean() for i in range(n_rings)])
        work /= r[:, None]
        ring_scale *= r
        by_pos = work.reshape(n_rings, n // block, block)
        live_pos = live.reshape(n_rings, n // block, block)
        q = np.array([by_pos[..., j][live_pos[..., j]].mean() for j in range(block)])
        work = (by_pos / q).reshape(n_rings, n)
        pos_scale *= q
        if np.max(np.abs(r - 1)) < 1e-12 and np.max(np.abs(q - 1)) < 1e-12:
            break
    # Moved patterns: ring pairs take ring_scale[ra]·ring_scale[rb]; transaxial classes take
    # pos_scale of both crystals (b's position follows from a's and the radial offset).
    rings = layout.plane_rings
    g_a = g_a * ring_scale[rings[:, 0]] * ring_scale[rings[:, 1]]
    radial = np.arange(layout.n_radial)
    d = n // 2 - (radial - (layout.n_radial - 1) // 2)
    pa = np.arange(block)
    pb = (pa[None, :] + d[:, None]) % block
    g_t = g_t.reshape(layout.n_radial, block) * pos_scale[pa][None, :] * pos_scale[pb]
    t_mean = g_t[measured_t.reshape(g_t.shape)].mean()
    a_mean = g_a[measured_a].mean()
    return work, g_t / t_mean, g_a / a_mean


def _extrapolate_radial(g_t: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Copy each unmeasured (radial, position) factor from the nearest measured radial bin."""
    out = g_t.copy()
    missing_rows = set()
    for j in range(g_t.shape[1]):
        rows = np.flatnonzero(measured[:, j])
        if rows.size == 0:
            raise InputError(
                "no LOR through the calibration source reaches in-block position "
                f"{j}; check crystals_per_block and the source"
            )
        for i in np.flatnonzero(~measured[:, j]):
            out[i, j] = g_t[rows[np.argmin(np.abs(rows - i))], j]
            missing_rows.add(int(i))
    if missing_rows:
        log.info(
            "recon: %d radial bins have no LOR through the calibration source; their geometric "
            "factors are copied from the nearest measured bin", len(missing_rows),
        )  # fmt: skip
    return out, sorted(missing_rows)


def _ring_pairs(
    layout: SinogramLayout, g_a: np.ndarray, measured: np.ndarray
) -> tuple[np.ndarray, list[list[int]]]:
    """Plane factors as an (n_rings, n_rings) table; unmeasured pairs get the mean of their
    ring difference (or 1)."""
    n_rings = layout.scanner.n_rings
    table = np.zeros((n_rings, n_rings))
    rings = layout.plane_rings
    delta = layout.plane_ring_difference
    values = g_a.copy()
    unmeasured = []
    for p in np.flatnonzero(~measured):
        same = measured & (delta == delta[p])
        values[p] = values[same].mean() if same.any() else 1.0
        unmeasured.append([int(rings[p, 0]), int(rings[p, 1])])
    table[rings[:, 0], rings[:, 1]] = values
    return table, unmeasured
