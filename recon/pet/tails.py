"""Scaling a scatter shape to measured data in the tails: the bins whose lines miss the body.

Outside the body a prompt is a random or a scattered coincidence, never a true one, so there
``prompts − randoms`` measures scatter alone and fixes the scale of a simulated scatter shape
(single-scatter simulation gives the once-scattered distribution; multiple scatter and
scatter from activity outside the field of view change its amplitude more than its shape). The
scale is fitted per group of sinogram planes by Poisson maximum likelihood,
``max_s Σ_tails y log(s·S + r) − (s·S + r)`` with ``s ≥ 0``: unbiased at low counts, where a
least-squares ratio of sums over noisy, randoms-dominated tails is not, and never negative.

A plane's own tails hold few counts at late, low-count time points, and scales fitted plane by
plane are then noisy from one plane to the next (the scatter estimate inherits that noise as axial
banding, and an estimate that is noisy raises the image through ``y/(Px + a)``). With
``pool_planes = h`` each plane's scale is fitted, by the same likelihood, on the tails of the
planes of its segment within ``h`` axial positions of it: a moving window along the axis, as STIR
smooths its per-sinogram scale factors along the axial position within each segment (a boxcar
of ``2h + 1``; ``upsample_and_fit_scatter_estimate.cxx``), but weighting each plane's tails by
their counts rather than averaging noisy ratios.

Fallbacks (reported in :class:`TailFit`, never silent): a plane group with fewer than
``min_tail_bins`` tail bins or fewer than ``min_tail_counts`` prompts in its tails (a small
field of view, a large patient, planes at the ends of the scanner) takes the scale fitted over
all tail bins together; when even that is not possible the scatter keeps ``default_scale`` (1:
the absolute single-scatter estimate, right when the model's normalisation and calibration are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recon.errors import InputError

__all__ = ["TailFit", "fit_tail_scale", "plane_windows", "tail_mask"]


def tail_mask(mu_line_integrals: Any, threshold: float = 0.003, margin_bins: int = 2) -> np.ndarray:
    """Bins whose line misses the body, with a safety margin along the radial axis.

    Parameters
    ----------
    mu_line_integrals : array of shape (plane, view, radial)
        The forward-projected 511 keV μ-map (∫μ dl, dimensionless) of each bin.
    threshold : float
        A line with ``∫μ`` below this misses the body (default 0.003: 0.3 mm of water).
    margin_bins : int
        Bins within this many radial bins of a line that hits the body are left out too, so
        that the edge of the body (partial volume, a μ-map slightly too small) stays out of the
        tails.

    Returns
    -------
    bool ndarray of the input's shape
        True for tail bins.
    """
    lines = np.asarray(mu_line_integrals, dtype=np.float64)
    if lines.ndim != 3:
        raise InputError(f"mu line integrals must be (plane, view, radial), got {lines.shape}")
    if not (math.isfinite(threshold) and threshold > 0):
        raise InputError(f"the tail threshold must be positive, got {threshold!r}")
    if isinstance(margin_bins, bool) or not isinstance(margin_bins, int) or margin_bins < 0:
        raise InputError(f"margin_bins must be a non-negative integer, got {margin_bins!r}")
    body = lines >= threshold
    grown = body.copy()
    for shift in range(1, margin_bins + 1):
        grown[..., shift:] |= body[..., :-shift]
        grown[..., :-shift] |= body[..., shift:]
    return ~grown


@dataclass
class TailFit:
    """Scales of a scatter shape fitted to the tails, and how each was obtained.

    Attributes
    ----------
    scales : float64 ndarray (n_planes,)
        Scale of each sinogram plane.
    group_of_plane : int ndarray (n_planes,)
        The fitting group of each plane.
    methods : list of str
        Per group: ``"fit"`` (its own tails), ``"global"`` (too few tails; the scale fitted
        over all tails) or ``"default"`` (too few tails overall; ``default_scale``).
    global_scale : float or None
        The scale fitted over all tail bins (None when there were too few).
    n_tail_bins : int
        Number of tail bins.
    tail_counts : float
        Prompts in the tail bins.
    notes : list of str
        One line per fallback taken, for the user.
    pool_planes : int
        The half-width of the axial window of planes each plane's fit pooled (0: none).
    """

    scales: np.ndarray
    group_of_plane: np.ndarray
    methods: list[str]
    global_scale: float | None
    n_tail_bins: int
    tail_counts: float
    notes: list[str] = field(default_factory=list)
    pool_planes: int = 0

    @property
    def fallback(self) -> str | None:
        """The worst fallback taken (``"default"``, ``"global"``) or None when every group was
        fitted on its own tails."""
        for kind in ("default", "global"):
            if kind in self.methods:
                return kind
        return None

    def summary(self) -> str:
        """One line: the fitted scales and any fallback."""
        fitted = self.scales[np.isfinite(self.scales)]
        text = (
            f"scatter tail fit: {self.n_tail_bins} tail bins, {self.tail_counts:.0f} prompts; "
            f"scale {np.median(fitted):.3g} (median; {fitted.min():.3g}-{fitted.max():.3g})"
        )
        if self.pool_planes:
            text += f"; each plane fitted with its segment's planes within ±{self.pool_planes}"
        if self.fallback is not None:
            n = sum(m != "fit" for m in self.methods)
            text += f"; {n} of {len(self.methods)} groups fell back ({self.fallback})"
        return text


def _poisson_scale(y: np.ndarray, shape: np.ndarray, background: np.ndarray) -> float:
    """argmax over s >= 0 of Σ y log(s·S + r) − (s·S + r) (the derivative is decreasing)."""
    total = float(shape.sum())

    def slope(s: float) -> float:
        denom = s * shape + background
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(y > 0, y * shape / denom, 0.0)
        return float(terms.sum()) - total

    if slope(0.0) <= 0.0:
        return 0.0
    # Bracket from the ratio of sums (the solution without background), then bisect.
    high = max(float(np.maximum(y - background, 0).sum()) / total, 1e-30) * 2.0
    while slope(high) > 0.0:
        high *= 2.0
    low = 0.0
    for _ in range(80):
        mid = 0.5 * (low + high)
        if slope(mid) > 0.0:
            low = mid
        else:
            high = mid
        if high - low <= 1e-9 * high:
            break
    return 0.5 * (low + high)


def fit_tail_scale(
    prompts: Any,
    scatter_shape: Any,
    randoms: Any,
    mask: Any,
    plane_groups: Any = None,
    *,
    pool_planes: int = 0,
    plane_segments: Any = None,
    plane_z_mm: Any = None,
    min_tail_bins: int = 50,
    min_tail_counts: float = 100.0,
    default_scale: float = 1.0,
) -> TailFit:
    """Fit the scale of a scatter shape to ``prompts − randoms`` in the tail bins.

    Parameters
    ----------
    prompts : array of shape (plane, view, radial)
        Measured prompts (non-TOF; sum TOF bins first).
    scatter_shape : array of the same shape
        The scatter estimate to scale, in expected counts.
    randoms : array of the same shape, or None
        Expected randoms counts (0 when None).
    mask : bool array of the same shape
        Tail bins (:func:`tail_mask`).
    plane_groups : int array of shape (plane,), optional
        Group of each plane (e.g. its ring difference for a per-segment fit); default: every
        plane on its own. Use ``np.zeros(n_planes, int)`` for one global scale.
    pool_planes : int
        With every plane on its own (no ``plane_groups``): fit each plane on the tails of the
        planes of its segment within this many axial positions of it (module docstring); 0
        fits each plane on its own tails only.
    plane_segments, plane_z_mm : arrays of shape (plane,), optional
        With ``pool_planes``: the segment (ring difference) of each plane and the axial position
        of its centre, which order the planes of a segment along the axis.
    min_tail_bins : int
        Fewest tail bins a group needs for its own fit.
    min_tail_counts : float
        Fewest prompts in its tails a group needs for its own fit.
    default_scale : float
        The scale when no fit is possible.

    Returns
    -------
    TailFit
        The per-plane scales and the fallbacks taken.

    Raises
    ------
    InputError
        Arrays of different shapes or with negative or non-finite values.
    """
    y = np.asarray(prompts, dtype=np.float64)
    s = np.asarray(scatter_shape, dtype=np.float64)
    r = np.zeros_like(y) if randoms is None else np.asarray(randoms, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if y.ndim != 3 or not (y.shape == s.shape == r.shape == m.shape):
        raise InputError(
            "prompts, scatter shape, randoms and tail mask must share one (plane, view, radial) "
            f"shape, got {y.shape}, {s.shape}, {r.shape}, {m.shape}"
        )
    for name, array in (("prompts", y), ("scatter shape", s), ("randoms", r)):
        if not np.all(np.isfinite(array)) or np.any(array < 0):
            raise InputError(f"{name} must be finite and non-negative")
    n_planes = y.shape[0]
    groups = (
        np.arange(n_planes)
        if plane_groups is None
        else np.asarray(plane_groups, dtype=np.int64).reshape(-1)
    )
    if groups.shape != (n_planes,):
        raise InputError(f"plane_groups must hold one group per plane ({n_planes})")
    if plane_groups is not None and pool_planes:
        raise InputError("pool_planes pools neighbouring planes: give no plane_groups with it")
    windows = plane_windows(n_planes, pool_planes, plane_segments, plane_z_mm)
    # Bins where neither scatter nor randoms are expected carry no information (and would make
    # the likelihood infinite for a stray count).
    usable = m & ((s > 0) | (r > 0))
    n_tail = int(usable.sum())
    tail_counts = float(y[usable].sum())
    notes: list[str] = []
    global_scale: float | None = None
    if n_tail >= min_tail_bins and tail_counts >= min_tail_counts and s[usable].sum() > 0:
        global_scale = _poisson_scale(y[usable], s[usable], r[usable])
    unique = np.unique(groups)
    methods: list[str] = []
    scales = np.empty(n_planes)
    fallen: dict[str, int] = {"global": 0, "default": 0}
    # With pooling, each plane's tail bins once: a plane's window concatenates its planes'.
    per_plane = (
        []
        if windows is None
        else [(y[p][usable[p]], s[p][usable[p]], r[p][usable[p]]) for p in range(n_planes)]
    )
    for g in unique:
        planes = groups == g
        if windows is None:
            sel = usable & planes[:, None, None]
            ys, ss, rs = y[sel], s[sel], r[sel]
        else:  # the groups are the planes
            pooled = [per_plane[q] for q in windows[g]]
            ys, ss, rs = (np.concatenate(parts) for parts in zip(*pooled, strict=True))
        n_bins, counts = ys.size, float(ys.sum())
        if n_bins >= min_tail_bins and counts >= min_tail_counts and ss.sum() > 0:
            value, method = _poisson_scale(ys, ss, rs), "fit"
        elif global_scale is not None:
            value, method = global_scale, "global"
        else:
            value, method = float(default_scale), "default"
        if method != "fit":
            fallen[method] += 1
        scales[planes] = value
        methods.append(method)
    if fallen["global"]:
        notes.append(
            f"{fallen['global']} of {len(unique)} plane groups had fewer than {min_tail_bins} "
            f"tail bins or {min_tail_counts:g} tail prompts: they use the scale fitted over all "
            f"tails ({global_scale:.4g})"
        )
    if fallen["default"]:
        notes.append(
            f"too few tails overall ({n_tail} bins, {tail_counts:.0f} prompts; the body fills the "
            f"field of view?): {fallen['default']} plane groups keep the default scale "
            f"{float(default_scale):g} (the unscaled single-scatter estimate)"
        )
    group_index = np.searchsorted(unique, groups)
    pooled_half_width = int(pool_planes) if windows is not None else 0
    return TailFit(
        scales, group_index, methods, global_scale, n_tail, tail_counts, notes, pooled_half_width
    )


def plane_windows(
    n_planes: int, pool_planes: int, segments: Any, z_mm: Any
) -> list[np.ndarray] | None:
    """Per plane, the planes whose tails its fit pools (:func:`fit_tail_scale`): those of its
    segment within ``pool_planes`` axial positions, ordered by ``z_mm``; None when
    ``pool_planes`` is 0.

    Raises
    ------
    InputError
        ``pool_planes`` not a whole number ≥ 0; ``segments`` or ``z_mm`` missing or not one
        finite value per plane.
    """
    if isinstance(pool_planes, bool) or not isinstance(pool_planes, (int, np.integer)):
        raise InputError(f"pool_planes must be a whole number of planes, got {pool_planes!r}")
    if pool_planes < 0:
        raise InputError(f"pool_planes must be >= 0, got {pool_planes}")
    if pool_planes == 0:
        return None
    if segments is None or z_mm is None:
        raise InputError("pool_planes needs plane_segments and plane_z_mm (one per plane)")
    segment = np.asarray(segments, np.int64).reshape(-1)
    z = np.asarray(z_mm, np.float64).reshape(-1)
    if segment.shape != (n_planes,) or z.shape != (n_planes,) or not np.all(np.isfinite(z)):
        raise InputError(
            f"plane_segments and plane_z_mm must hold one finite value per plane ({n_planes})"
        )
    windows: list[np.ndarray] = [np.empty(0, np.int64)] * n_planes
    for value in np.unique(segment):
        members = np.flatnonzero(segment == value)
        ordered = members[np.argsort(z[members], kind="stable")]
        for rank, plane in enumerate(ordered):
            windows[plane] = ordered[max(rank - pool_planes, 0) : rank + pool_planes + 1]
    return windows
