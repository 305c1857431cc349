"""Serial imaging of one subject: time points, registration, time-activity curves, exponential
fits, time-integrated activity and residence time.

Drug-delivery studies (In-111, Cu-64, Zr-89 liposomes and nanoparticles) image the same patient
over days. Each :class:`TimePoint` is an image with its time after injection. VOIs are drawn once,
on a reference frame, and carried to each time point: either all images share one world frame
(same scanner coordinates, e.g. SPECT/CT sessions registered by the scanner), or a 4×4 rigid
transform per time point maps the reference frame to that image's frame.

Physical decay is handled explicitly by ``mode``:

- ``"activity_at_scan_time"``: what was in the VOI at the time of each scan. This is what the
  dosimetry integral needs (physical decay included).
- ``"decay_corrected_to_injection"``: multiplied by ``exp(λ t)``; only biology (uptake, washout)
  remains. This is what biodistribution (%ID) tables usually show.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.physics.isotopes import Isotope, get_isotope
from recon.quant._common import (
    LN2,
    check_grid,
    decay_constant_per_s,
    finite,
    finite_array,
    half_life_s,
    non_negative,
    positive,
)
from recon.quant.voi import Voi, voi_stats
from recon.resample import resample

__all__ = [
    "DECAY_MODES",
    "ExponentialFit",
    "TimeActivityCurve",
    "TimeIntegratedActivity",
    "TimePoint",
    "biological_half_life",
    "effective_half_life",
    "fit_exponential",
    "resample_image",
    "resample_voi",
    "residence_time_s",
    "time_activity_curve",
    "time_integrated_activity",
]

log = logging.getLogger("recon")

DECAY_MODES = ("decay_corrected_to_injection", "activity_at_scan_time")
_QUANTITIES = ("mean", "max", "peak", "total", "min")
# Tolerance on a rigid transform's rotation part: R^T R = I and det R = 1 to this precision.
_RIGID_TOL = 1e-6


def _check_mode(mode: str) -> str:
    if mode not in DECAY_MODES:
        raise InputError(f"mode must be one of {DECAY_MODES}, got {mode!r}")
    return mode


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------


def _rigid(transform: Any) -> np.ndarray:
    """``transform`` as a validated 4×4 rigid matrix (world mm, (x, y, z) homogeneous)."""
    try:
        m = np.asarray(transform, dtype=np.float64)
    except (TypeError, ValueError):
        raise GeometryError("transform must be a 4×4 matrix of numbers") from None
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise GeometryError(f"transform must be a finite 4×4 matrix, got shape {m.shape}")
    if not np.allclose(m[3], (0.0, 0.0, 0.0, 1.0), atol=_RIGID_TOL):
        raise GeometryError(f"transform's last row must be (0, 0, 0, 1), got {m[3].tolist()}")
    r = m[:3, :3]
    if not np.allclose(r.T @ r, np.eye(3), atol=_RIGID_TOL) or np.linalg.det(r) < 0:
        raise GeometryError(
            "transform is not rigid: its 3×3 part must be a rotation (orthonormal, det +1); "
            "scaling, shear and reflections are not supported"
        )
    return m


def resample_voi(
    voi: Voi, target_grid: ImageGrid, transform: Any = None, *, name: str | None = None
) -> Voi:
    """Carry a VOI onto another grid.

    Parameters
    ----------
    voi : Voi
        VOI in the reference frame.
    target_grid : ImageGrid
        Grid of the image the VOI is wanted on.
    transform : array-like of shape (4, 4), optional
        Rigid transform from the reference frame to the target image's frame, on homogeneous
        world ``(x, y, z, 1)`` in mm: ``p_target = T · p_reference``. None: the same world frame.
    name : str, keyword-only
        Name of the result (default: the VOI's).

    Returns
    -------
    Voi
        Target voxels whose centre falls inside the VOI: the mask is interpolated trilinearly
        and thresholded at 0.5, so the volume is preserved to within voxelisation error.

    Raises
    ------
    GeometryError
        A transform that is not rigid, or a VOI that lands outside the target grid.
    """
    check_grid(target_grid)
    if not isinstance(voi, Voi):
        raise InputError(f"voi must be a recon.quant.Voi, got {type(voi).__name__}")
    new_name = voi.name if name is None else name
    if transform is None and voi.grid.same_as(target_grid):
        return voi if new_name == voi.name else voi.renamed(new_name)
    t = np.eye(4) if transform is None else _rigid(transform)
    values = resample(voi.mask, voi.grid, target_grid, transform=np.linalg.inv(t), order=1)
    mask = values >= 0.5
    if not mask.any():
        raise GeometryError(f"VOI {voi.name!r} lies outside the target image after resampling")
    return Voi(mask, target_grid, new_name)


def resample_image(
    image: Image, target_grid: ImageGrid, transform: Any = None, *, order: int = 1
) -> Image:
    """Resample an image onto a reference grid.

    Parameters
    ----------
    image : Image
        Image in its own frame.
    target_grid : ImageGrid
        Reference grid.
    transform : array-like of shape (4, 4), optional
        Rigid transform from the reference frame to the image's frame (``p_image = T · p_ref``,
        world mm), as in :class:`TimePoint`. None: the same world frame.
    order : int, keyword-only
        0 nearest (the value of the image voxel containing each target voxel centre), 1
        trilinear, 2–5 spline (:func:`recon.resample.sample_on_grid`).

    Returns
    -------
    Image
        On ``target_grid``, zero outside the source image. Interpolation smooths: for
        quantification prefer carrying VOIs to the images (:func:`resample_voi`).
    """
    if not isinstance(image, Image):
        raise InputError(f"image must be a recon.Image, got {type(image).__name__}")
    check_grid(target_grid)
    t = np.eye(4) if transform is None else _rigid(transform)
    data = resample(
        np.asarray(image),
        image.grid,
        target_grid,
        transform=None if transform is None else t,
        order=order,
    )
    return Image(
        data=data.astype(np.float32),
        grid=target_grid,
        units=image.units,
        isotope=image.isotope,
        reference_time_s=image.reference_time_s,
        info={**image.info, "resampled_from": {"grid": image.grid, "transform": t.tolist()}},
    )


# --------------------------------------------------------------------------------------------
# time points and curves
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TimePoint:
    """One scan of a subject.

    Attributes
    ----------
    image : Image
        The image (e.g. Bq/mL).
    time_after_injection_s : float
        Time after injection, in s, to which the image's values refer (its reference time, usually
        the acquisition start), ≥ 0.
    transform : ndarray of shape (4, 4), optional
        Rigid transform from the reference frame (where the VOIs are drawn) to this image's world
        frame, ``p_image = T · p_ref`` (mm). None: the frames coincide.
    decay_corrected_to_injection : bool
        True when the image values are already decay-corrected to the injection time; False
        (default) when they are the activity at ``time_after_injection_s``.
    """

    image: Image
    time_after_injection_s: float
    transform: np.ndarray | None = None
    decay_corrected_to_injection: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.image, Image):
            raise InputError(f"TimePoint image must be a recon.Image, got {type(self.image)}")
        t = finite(self.time_after_injection_s, "time_after_injection_s")
        if t < 0:
            raise InputError(
                f"time point at {t} s is before the injection; times are seconds after injection"
            )
        object.__setattr__(self, "time_after_injection_s", t)
        if self.transform is not None:
            object.__setattr__(self, "transform", _rigid(self.transform))


@dataclass(frozen=True)
class TimeActivityCurve:
    """A VOI's value over time.

    Attributes
    ----------
    voi : str
        VOI name.
    times_s : ndarray
        Times after injection, s, increasing.
    values : ndarray
        VOI values (``quantity``) at those times, in ``units``.
    mode : str
        One of :data:`DECAY_MODES`.
    quantity : str
        ``"mean"``, ``"max"``, ``"peak"``, ``"total"`` or ``"min"``.
    units : str
        Units of ``values`` (``"Bq"`` for the total of a Bq/mL image).
    isotope : str or None
        Isotope, needed to change ``mode``.
    volumes_ml : ndarray
        VOI volume at each time point (after resampling), mL.
    """

    voi: str
    times_s: np.ndarray
    values: np.ndarray
    mode: str
    quantity: str
    units: str
    isotope: str | None = None
    volumes_ml: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def times_h(self) -> np.ndarray:
        """Times after injection in hours."""
        return self.times_s / 3600.0

    def in_mode(self, mode: str) -> TimeActivityCurve:
        """The same curve in another decay mode (needs the isotope)."""
        _check_mode(mode)
        if mode == self.mode:
            return self
        if self.isotope is None:
            raise InputError("changing the decay mode needs the isotope; none is recorded")
        lam = decay_constant_per_s(self.isotope)
        sign = 1.0 if mode == "decay_corrected_to_injection" else -1.0
        return replace(self, values=self.values * np.exp(sign * lam * self.times_s), mode=mode)


def _isotope_of(points: Sequence[TimePoint], isotope: str | Isotope | None) -> str | None:
    names = {get_isotope(p.image.isotope).name for p in points if p.image.isotope is not None}
    if isotope is not None:
        chosen = get_isotope(isotope).name
        if names - {chosen}:
            raise InputError(f"isotope {chosen} disagrees with the images' isotope(s) {names}")
        return chosen
    if len(names) > 1:
        raise InputError(f"the time points have different isotopes: {sorted(names)}")
    return names.pop() if names else None


def time_activity_curve(
    points: Sequence[TimePoint],
    voi: Voi,
    *,
    mode: str,
    quantity: str = "mean",
    isotope: str | Isotope | None = None,
) -> TimeActivityCurve:
    """Time-activity curve of one VOI over a subject's time points.

    The VOI (on the reference frame) is carried to each image with :func:`resample_voi` (same
    grid and no transform: used as is), its statistics taken with :func:`voi_stats`, and the value
    expressed in ``mode``: an image at scan time is multiplied by ``exp(λ t)`` for
    ``"decay_corrected_to_injection"``; an image already decay-corrected to injection is multiplied
    by ``exp(−λ t)`` for ``"activity_at_scan_time"``.

    Parameters
    ----------
    points : sequence of TimePoint
        The scans, in any order (sorted by time in the result); times must differ.
    voi : Voi
        VOI on the reference frame.
    mode : {"decay_corrected_to_injection", "activity_at_scan_time"}, keyword-only
        Required: there is no default, so every curve says which convention it is in.
    quantity : {"mean", "max", "peak", "total", "min"}, keyword-only
        Which statistic.
    isotope : str or Isotope, keyword-only
        Needed when the images do not carry one.

    Returns
    -------
    TimeActivityCurve

    Raises
    ------
    InputError
        No points, repeated times, unknown mode or quantity, images with different units, or no
        isotope when a decay conversion is needed.
    GeometryError
        A VOI that falls outside an image.
    """
    _check_mode(mode)
    if quantity not in _QUANTITIES:
        raise InputError(f"quantity must be one of {_QUANTITIES}, got {quantity!r}")
    pts = list(points)
    if not pts:
        raise InputError("a time-activity curve needs at least one time point")
    for p in pts:
        if not isinstance(p, TimePoint):
            raise InputError(f"points must be TimePoint objects, got {type(p).__name__}")
    pts.sort(key=lambda p: p.time_after_injection_s)
    times = np.array([p.time_after_injection_s for p in pts])
    if np.any(np.diff(times) == 0):
        raise InputError("two time points have the same time after injection")
    units = {p.image.units for p in pts}
    if len(units) > 1:
        raise InputError(f"the time points have different units: {sorted(units)}")
    iso = _isotope_of(pts, isotope)
    lam = None if iso is None else decay_constant_per_s(iso)

    values = np.empty(len(pts))
    volumes = np.empty(len(pts))
    stat_units = ""
    for n, p in enumerate(pts):
        carried = resample_voi(voi, p.image.grid, p.transform)
        stats = voi_stats(p.image, carried)
        v = float(getattr(stats, quantity))
        stat_units = stats.total_units if quantity == "total" else stats.units
        wanted_dc = mode == "decay_corrected_to_injection"
        if wanted_dc != p.decay_corrected_to_injection:
            if lam is None:
                raise InputError(
                    f"mode {mode!r} needs a decay conversion, but no isotope is known; pass "
                    "isotope="
                )
            v *= math.exp((1.0 if wanted_dc else -1.0) * lam * p.time_after_injection_s)
        values[n] = v
        volumes[n] = carried.volume_ml
    return TimeActivityCurve(
        voi=voi.name,
        times_s=times,
        values=values,
        mode=mode,
        quantity=quantity,
        units=stat_units,
        isotope=iso,
        volumes_ml=volumes,
    )


# --------------------------------------------------------------------------------------------
# half-lives and exponential fits
# --------------------------------------------------------------------------------------------


def biological_half_life(t_eff_s: float, t_phys: float | str | Isotope) -> float:
    """Biological half-life from the effective and physical ones.

    Decay constants add, ``λ_eff = λ_phys + λ_biol``, so ``1/T_eff = 1/T_phys + 1/T_biol`` and

        T_biol = T_eff · T_phys / (T_phys − T_eff)

    (e.g. Cherry, Sorenson & Phelps, Physics in Nuclear Medicine, 4th ed., ch. 22).

    Parameters
    ----------
    t_eff_s : float
        Effective half-life in s (> 0).
    t_phys : float, str or Isotope
        Physical half-life in s, or the isotope.

    Returns
    -------
    float
        T_biol in s; ``inf`` when ``T_eff == T_phys`` (no biological clearance).

    Raises
    ------
    InputError
        ``T_eff > T_phys``: impossible for activity measured at scan time; the data were probably
        decay-corrected already, in which case the fitted half-life *is* the biological one.
    """
    te = positive(t_eff_s, "t_eff_s", "s")
    tp = half_life_s(t_phys)
    if math.isclose(te, tp, rel_tol=1e-12):
        return math.inf
    if te > tp:
        raise InputError(
            f"effective half-life {te:.6g} s exceeds the physical half-life {tp:.6g} s; if the "
            "data were decay-corrected to injection the fitted half-life is already biological"
        )
    return te * tp / (tp - te)


def effective_half_life(t_phys: float | str | Isotope, t_biol_s: float) -> float:
    """Effective half-life ``1 / (1/T_phys + 1/T_biol)`` in s (``t_biol_s = inf`` allowed)."""
    tp = half_life_s(t_phys)
    tb = float(t_biol_s)
    if math.isinf(tb) and tb > 0:
        return tp
    tb = positive(tb, "t_biol_s", "s")
    return 1.0 / (1.0 / tp + 1.0 / tb)


@dataclass(frozen=True)
class ExponentialFit:
    """A sum of exponentials ``f(t) = Σ A_i · exp(−k_i t)``, fastest component first.

    Attributes
    ----------
    amplitudes : ndarray of shape (n,)
        ``A_i`` in the units of the fitted values.
    rates_per_s : ndarray of shape (n,)
        ``k_i`` in 1/s (≥ 0), decreasing.
    covariance : ndarray of shape (2n, 2n)
        Covariance of ``(A_1, k_1, A_2, k_2, …)`` as returned by
        :func:`scipy.optimize.curve_fit` (scaled by the residual variance unless
        ``absolute_sigma``); ``inf`` where not estimable (as many points as parameters).
    residual_rms : float
        Root-mean-square residual of the fit, in value units.
    """

    amplitudes: np.ndarray
    rates_per_s: np.ndarray
    covariance: np.ndarray
    residual_rms: float

    @property
    def n_terms(self) -> int:
        """Number of exponential terms."""
        return int(self.amplitudes.size)

    @property
    def half_lives_s(self) -> np.ndarray:
        """``ln 2 / k_i`` in s (``inf`` for k = 0). Fitted to activity at scan time these are
        effective half-lives; fitted to decay-corrected values, biological ones."""
        with np.errstate(divide="ignore"):
            return np.where(self.rates_per_s > 0, LN2 / self.rates_per_s, np.inf)

    @property
    def standard_errors(self) -> np.ndarray:
        """Square roots of the covariance diagonal, ordered as ``covariance``."""
        return np.sqrt(np.diag(self.covariance))

    def __call__(self, t_s: Any) -> Any:
        """Evaluate ``f`` at times ``t_s`` (s)."""
        t = np.asarray(t_s, dtype=np.float64)
        out = np.sum(self.amplitudes[:, None] * np.exp(-np.outer(self.rates_per_s, t)), axis=0)
        return float(out[0]) if t.ndim == 0 else out.reshape(t.shape)

    def integral(self, t0_s: float = 0.0, t1_s: float = math.inf) -> float:
        """``∫_{t0}^{t1} f(t) dt = Σ A_i/k_i · (e^{−k_i t0} − e^{−k_i t1})`` (value units × s).

        Raises
        ------
        InputError
            An infinite upper limit with a component that does not decay (k = 0).
        """
        t0 = finite(t0_s, "t0_s")
        t1 = float(t1_s)
        total = 0.0
        for a, k in zip(self.amplitudes, self.rates_per_s, strict=True):
            if k == 0:
                if math.isinf(t1):
                    raise InputError("the integral to infinity of a non-decaying component is ∞")
                total += a * (t1 - t0)
            else:
                total += (
                    a / k * (math.exp(-k * t0) - (0.0 if math.isinf(t1) else math.exp(-k * t1)))
                )
        return float(total)


def _loglinear(t: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Amplitude and rate of the least-squares line through (t, log v), for v > 0."""
    keep = v > 0
    if keep.sum() < 2:
        return float(max(v.max(), 1e-12)), 1.0
    slope, intercept = np.polyfit(t[keep], np.log(v[keep]), 1)
    return float(math.exp(intercept)), float(max(-slope, 1e-6))


def _initial_guess(t: np.ndarray, v: np.ndarray, n_terms: int) -> list[float]:
    """Starting values in scaled units: log-linear fit (1 term) or curve peeling (2 terms)."""
    if n_terms == 1:
        a, k = _loglinear(t, v)
        return [a, k]
    half = max(2, len(t) // 2)
    a_slow, k_slow = _loglinear(t[-half:], v[-half:])
    early = slice(0, len(t) - half + 1)
    rest = v[early] - a_slow * np.exp(-k_slow * t[early])
    a_fast, k_fast = _loglinear(t[early], rest)
    if k_fast <= k_slow:
        k_fast = 5.0 * k_slow
    a_fast = min(max(a_fast, 1e-3), 10.0)
    return [a_fast, k_fast, max(a_slow, 1e-3), k_slow]


def fit_exponential(
    times_s: Any,
    values: Any,
    n_terms: int = 1,
    *,
    sigma: Any = None,
    absolute_sigma: bool = False,
    p0: Sequence[float] | None = None,
) -> ExponentialFit:
    """Least-squares fit of ``Σ_{i=1}^{n} A_i exp(−k_i t)`` with ``A_i, k_i ≥ 0``.

    :func:`scipy.optimize.curve_fit` (trust-region reflective, bounds ``[0, ∞)``, analytic
    Jacobian) on times scaled by their maximum and values by their largest magnitude, so that
    Bq and seconds over days do not spoil the conditioning; starting values by log-linear
    regression (one term) or curve peeling (two terms) unless ``p0`` is given.

    Fitted to activity at scan time, the half-lives ``ln 2 / k_i`` are *effective* ones
    (physical decay included; use :func:`biological_half_life`); fitted to values
    decay-corrected to injection, they are biological ones.

    Parameters
    ----------
    times_s : array-like of shape (m,)
        Times after injection in s (≥ 0).
    values : array-like of shape (m,)
        Measured values (Bq, Bq/mL, %ID, …).
    n_terms : {1, 2}
        Number of exponentials.
    sigma : array-like of shape (m,), keyword-only
        Standard deviations of ``values`` (weights ``1/σ²``), as in curve_fit.
    absolute_sigma : bool, keyword-only
        As in curve_fit.
    p0 : sequence of float, keyword-only
        Starting ``(A_1, k_1[, A_2, k_2])`` in value units and 1/s.

    Returns
    -------
    ExponentialFit

    Raises
    ------
    InputError
        Fewer points than parameters, negative times, non-finite values, bad ``n_terms`` or a fit
        that does not converge.
    """
    if n_terms not in (1, 2):
        raise InputError(f"n_terms must be 1 or 2, got {n_terms!r}")
    t = finite_array(times_s, "times_s", ndim=1)
    v = finite_array(values, "values", ndim=1)
    if t.shape != v.shape:
        raise InputError(f"times_s and values differ in length: {t.size} and {v.size}")
    n_par = 2 * n_terms
    if t.size < n_par:
        raise InputError(f"a {n_terms}-term fit needs at least {n_par} points, got {t.size}")
    if np.any(t < 0):
        raise InputError("times_s must not be negative (seconds after injection)")
    t_scale = float(t.max()) if t.max() > 0 else 1.0
    v_scale = float(np.abs(v).max())
    if v_scale == 0:
        raise InputError("all values are 0; there is nothing to fit")
    ts, vs = t / t_scale, v / v_scale
    if p0 is None:
        start = _initial_guess(ts, vs, n_terms)
    else:
        p = finite_array(p0, "p0", ndim=1)
        if p.size != n_par:
            raise InputError(f"p0 needs {n_par} values, got {p.size}")
        start = [p[i] / v_scale if i % 2 == 0 else p[i] * t_scale for i in range(n_par)]
        start = [max(s, 1e-12) for s in start]
    sig = None
    if sigma is not None:
        sig = finite_array(sigma, "sigma", ndim=1)
        if sig.shape != v.shape or np.any(sig <= 0):
            raise InputError("sigma must be positive, one per value")
        sig = sig / v_scale

    def model(x: np.ndarray, *p: float) -> np.ndarray:
        return sum((p[2 * i] * np.exp(-p[2 * i + 1] * x) for i in range(n_terms)), np.zeros_like(x))

    def jacobian(x: np.ndarray, *p: float) -> np.ndarray:
        cols = []
        for i in range(n_terms):
            e = np.exp(-p[2 * i + 1] * x)
            cols += [e, -p[2 * i] * x * e]
        return np.stack(cols, axis=1)

    with warnings.catch_warnings():
        # Covariance is not estimable with as many points as parameters; it is reported as inf.
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            popt, pcov = curve_fit(
                model,
                ts,
                vs,
                p0=start,
                sigma=sig,
                absolute_sigma=absolute_sigma,
                bounds=(0.0, np.inf),
                jac=jacobian,
                method="trf",
                ftol=1e-15,
                xtol=1e-15,
                gtol=1e-15,
                max_nfev=20000,
            )
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"exponential fit did not converge: {exc}") from None
    units = np.tile([v_scale, 1.0 / t_scale], n_terms)
    params = popt * units
    cov = pcov * np.outer(units, units)
    amps, rates = params[0::2], params[1::2]
    order = np.argsort(-rates, kind="stable")
    perm = np.ravel([[2 * i, 2 * i + 1] for i in order])
    residual = v - model(ts, *popt) * v_scale
    return ExponentialFit(
        amplitudes=amps[order],
        rates_per_s=rates[order],
        covariance=cov[np.ix_(perm, perm)],
        residual_rms=float(np.sqrt(np.mean(residual**2))),
    )


# --------------------------------------------------------------------------------------------
# time-integrated activity
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeIntegratedActivity:
    """``∫₀^∞ A(t) dt`` split into its measured and extrapolated parts.

    Attributes
    ----------
    total : float
        ``trapezoid + tail`` in value units × s (Bq·s for activities).
    trapezoid : float
        From injection to the last time point.
    tail : float
        From the last time point to infinity.
    tail_method : str
        ``"fit"``, ``"physical"`` or ``"none"``.
    """

    total: float
    trapezoid: float
    tail: float
    tail_method: str

    @property
    def total_h(self) -> float:
        """``total`` in value units × h."""
        return self.total / 3600.0


def time_integrated_activity(
    times_s: Any,
    values: Any = None,
    fit: ExponentialFit | None = None,
    *,
    tail: str | None = None,
    isotope: str | Isotope | None = None,
    value_at_injection: float = 0.0,
) -> TimeIntegratedActivity:
    """Time-integrated activity: trapezoid over the measurements plus an analytic tail.

    The curve rises linearly from ``value_at_injection`` (default 0) at injection to the first
    point, follows straight lines between points (trapezoidal rule), and after the last point
    ``t_n`` follows

    - ``tail="fit"``: the fitted exponential, ``Σ A_i/k_i · exp(−k_i t_n)``
      (:meth:`ExponentialFit.integral`);
    - ``tail="physical"``: physical decay only from the last value, ``A(t_n) / λ_phys`` (no
      biological clearance: an upper bound);
    - ``tail="none"``: nothing (the integral stops at ``t_n``).

    The default is ``"fit"`` when ``fit`` is given, else ``"physical"`` when ``isotope`` is given.
    The values must be activities at scan time (physical decay included): the integral of a
    decay-corrected curve is not a number of decays (MIRD Pamphlet No. 21, Bolch et al., J Nucl
    Med 2009;50:477).

    Parameters
    ----------
    times_s : array-like of shape (m,) or TimeActivityCurve
        Times after injection in s, or a TAC in ``"activity_at_scan_time"`` mode (then leave
        ``values`` None).
    values : array-like of shape (m,)
        Activities (Bq) or concentrations at scan time.
    fit : ExponentialFit, optional
        Fit of the same values (physical-decay-inclusive) for the tail.
    tail : {"fit", "physical", "none"}, keyword-only
        See above.
    isotope : str or Isotope, keyword-only
        For ``tail="physical"``; with ``"fit"`` it checks that no fitted component decays slower
        than physical decay (the mark of a fit to decay-corrected data).
    value_at_injection : float, keyword-only
        Value at t = 0 (e.g. the injected activity for a whole-body curve); ignored when the
        first time point is at t = 0.

    Returns
    -------
    TimeIntegratedActivity

    Raises
    ------
    InputError
        Negative or repeated times, mismatched lengths, a decay-corrected TAC, a tail method
        without what it needs, or a fit slower than physical decay.
    """
    if isinstance(times_s, TimeActivityCurve):
        tac = times_s
        if values is not None:
            raise InputError("pass either a TimeActivityCurve or times and values, not both")
        if tac.mode != "activity_at_scan_time":
            raise InputError(
                "the time-integrated activity needs activity at scan time; convert the curve "
                "with tac.in_mode('activity_at_scan_time')"
            )
        t, v = tac.times_s, tac.values
        isotope = isotope if isotope is not None else tac.isotope
    else:
        if values is None:
            raise InputError("values are needed with times_s")
        t = finite_array(times_s, "times_s", ndim=1)
        v = finite_array(values, "values", ndim=1)
    if t.shape != v.shape or t.size == 0:
        raise InputError(f"times and values must be equally long and non-empty: {t.size}, {v.size}")
    if np.any(t < 0):
        raise InputError("times must not be negative (seconds after injection)")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if np.any(np.diff(t) == 0):
        raise InputError("two values have the same time")
    v0 = finite(value_at_injection, "value_at_injection")
    if t[0] > 0:
        t = np.concatenate(([0.0], t))
        v = np.concatenate(([v0], v))
    trapezoid = float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(t)))

    if tail is None:
        tail = "fit" if fit is not None else ("physical" if isotope is not None else None)
        if tail is None:
            raise InputError(
                "say how to extrapolate past the last point: pass fit= (tail 'fit'), isotope= "
                "(tail 'physical') or tail='none'"
            )
    lam = None if isotope is None else decay_constant_per_s(isotope)
    t_last, v_last = float(t[-1]), float(v[-1])
    if tail == "fit":
        if not isinstance(fit, ExponentialFit):
            raise InputError("tail='fit' needs fit= (an ExponentialFit of the same values)")
        if lam is not None and np.any(fit.rates_per_s < lam * (1 - 1e-6)):
            raise InputError(
                "a fitted component decays slower than physical decay; the fit was probably made "
                "to decay-corrected values - fit the activity at scan time"
            )
        tail_value = fit.integral(t_last)
    elif tail == "physical":
        if lam is None:
            raise InputError("tail='physical' needs isotope=")
        tail_value = v_last / lam
    elif tail == "none":
        tail_value = 0.0
    else:
        raise InputError(f"tail must be 'fit', 'physical' or 'none', got {tail!r}")
    return TimeIntegratedActivity(trapezoid + tail_value, trapezoid, tail_value, tail)


def residence_time_s(tia_bq_s: float | TimeIntegratedActivity, injected_bq: float) -> float:
    """Residence time ``τ = Ã / A₀`` in s.

    The time-integrated activity of a source region divided by the administered activity
    (Loevinger, Budinger & Watson, MIRD Primer, 1991); MIRD Pamphlet No. 21 (Bolch et al., J Nucl
    Med 2009;50:477) calls it the time-integrated activity coefficient ``ã``.

    Parameters
    ----------
    tia_bq_s : float or TimeIntegratedActivity
        Time-integrated activity in Bq·s (from activities in Bq, not concentrations).
    injected_bq : float
        Administered activity at injection in Bq (> 0).

    Returns
    -------
    float
        τ in s (divide by 3600 for hours).
    """
    tia = tia_bq_s.total if isinstance(tia_bq_s, TimeIntegratedActivity) else tia_bq_s
    total = non_negative(tia, "time-integrated activity", "Bq·s")
    return total / positive(injected_bq, "injected_bq", "Bq")
