"""Kinetic models of one time-activity curve: fits that are right or say why not.

Models
------
Each model describes the **activity at scan time** (physical decay included) at ``t`` seconds
after injection:

- ``"mono"``: ``f(t) = A e^(−k t)``, parameters ``(A, k)``;
- ``"bi"``: ``f(t) = A1 e^(−k1 t) + A2 e^(−k2 t)`` with ``k1 > k2`` (fast first),
  parameters ``(A1, k1, A2, k2)``;
- ``"uptake_washout"``: ``f(t) = A (e^(−k_out t) − e^(−k_in t))`` with ``k_in > k_out``,
  parameters ``(A, k_in, k_out)``: zero at injection, rising, then washing out.

Bounds keep every rate physical: amplitudes ``≥ 0``; every rate at least the physical decay
constant ``λ`` (a component of activity at scan time cannot fall slower than the isotope decays:
its biological rate ``k − λ`` is ``≥ 0``), and at most ``ln 2 / τ_min`` with ``τ_min`` a tenth of
the shortest interval between the fitted times (a faster component is over before the next scan
and cannot be measured).

Fitting rule
------------
Weighted least squares with a constant coefficient of variation (a relative error model, as
NUKFIT uses for dosimetry data: Kletting et al., Med Phys 2013;40:102504): ``σ_i ∝ max(y_i,
0.01 max y)``, the floor keeping near-zero values from dominating. (``weighting="uniform"``
gives every value the same weight.) The fit is ``scipy.optimize.least_squares`` (trust-region
reflective, analytic Jacobian) started from the best points of a grid over the rates, on which
the amplitudes are solved exactly by non-negative least squares (variable projection), so no
starting values are needed and local minima of the two-rate models are avoided.

Model selection
---------------
With ``model="auto"`` the candidates are ``mono`` and ``bi``, and ``uptake_washout`` when the
fitted window shows a rising phase (its maximum is not its first point). A candidate competes
when it has at least ``p + 3`` points (``p`` its parameters) and its fit is not degenerate (below);
the one with the smallest small-sample-corrected Akaike criterion wins (Burnham & Anderson,
Model Selection and Multimodel Inference, 2nd ed. 2002, §2.2 and §2.4; for dosimetry fits
Glatting et al., Med Phys 2007;34:4285):

    AICc = n ln(WRSS / n) + 2K + 2K(K + 1) / (n − K − 1),    K = p + 1

(``K`` counts the residual variance too; ``WRSS`` is the weighted residual sum of squares,
floored at ``n · 10⁻¹²`` so that noiseless data compare by the penalty alone). When only the
mono-exponential has enough points it is used without a comparison, and the report says so.
A model the user fixes is fitted as asked unless it is degenerate.

Degenerate fits fall back to the simpler model (``bi`` and ``uptake_washout`` to ``mono``;
``mono`` to no fit, i.e. a physical-decay tail), with the reason in the note: fewer than ``p + 1``
points (no degree of freedom left for the standard errors); no convergence; parameters the data do
not determine (singular covariance); a rate at the upper bound; two rates within 1 % of each other;
a component of ``bi`` contributing less than 1 % of the curve at every fitted time (or an
amplitude at zero). A mono-exponential held at the physical-decay bound while the unbounded fit
would decay slower still (uptake still rising, or noise) gives no effective half-life and a
physical-decay tail.

Terminal half-life
------------------
The terminal phase is the component that contributes most to ``∫_{t_last}^∞ f``, i.e. the one
that governs the curve after the last scan, not merely the slowest rate: a slow component of
negligible amplitude does not set it. ``T_eff = ln 2 / k`` of that component and
``T_biol = ln 2 / (k − λ)`` (infinite, reported as None, at the physical-decay bound).

Uncertainties
-------------
Standard errors come from the fit's covariance, ``s² (JᵀWJ)⁻¹`` with ``s² = WRSS / (n − p)``
(the scatter of the data about the fit sets the scale), and propagate to half-lives and integrals
to first order. The time-integrated activity's uncertainty is the linear propagation of every
measured value's error (``σ_i = s · w_i``) through the trapezoid part and, through the fitted
parameters, through the fitted part, extrapolated tail included: ``Var = Σ_i c_i² σ_i²`` with
``c_i = ∂TIA/∂y_i``. For ``n − p`` degrees of freedom a ± 1 SE interval covers the truth with the
probability of ``|t_{n−p}| < 1`` (e.g. 63 % for 4), not 68 %.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, least_squares, nnls

from recon.errors import InputError
from recon.physics.isotopes import Isotope
from recon.quant._common import LN2, decay_constant_per_s, finite_array

__all__ = [
    "FIT_MODELS",
    "MODELS",
    "WEIGHTINGS",
    "ModelFit",
    "ModelSelection",
    "fit_model",
    "integrate_with_uncertainty",
    "select_model",
]

#: Kinetic models, simplest first.
MODELS = ("mono", "bi", "uptake_washout")
#: What a user may ask for: a model, or ``"auto"`` (AICc selection).
FIT_MODELS = ("auto", *MODELS)
#: Weighting of the least-squares fit (see the module docstring).
WEIGHTINGS = ("relative", "uniform")

_N_PARAMETERS = {"mono": 2, "bi": 4, "uptake_washout": 3}
_NAMES = {
    "mono": ("A", "k"),
    "bi": ("A1", "k1", "A2", "k2"),
    "uptake_washout": ("A", "k_in", "k_out"),
}
# d(amplitudes, rates)/dθ: rows (a_1, k_1, a_2, k_2, ...), columns the natural parameters.
_MAPPING = {
    "mono": np.eye(2),
    "bi": np.eye(4),
    "uptake_washout": np.array(
        [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    ),
}
# Relative weights are floored at this fraction of the largest value.
_WEIGHT_FLOOR = 0.01
# A component below this fraction of the curve at every fitted time is negligible.
_NEGLIGIBLE = 0.01
# Two rates closer than this ratio coincide.
_SAME_RATE = 1.01
# The fastest half-life is this fraction of the shortest sampling interval.
_FASTEST_FRACTION = 0.1
# Weighted RSS floor per point (relative residual 1e-6): noiseless fits compare by penalty.
_RSS_FLOOR = 1e-12
# Grid of rates (as multiples of λ, up to the upper bound) for the starting points.
_GRID_SIZE = 32
# Relative closeness to a bound that counts as "at the bound".
_AT_BOUND = 1e-6


# --------------------------------------------------------------------------------------------
# one model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFit:
    """One kinetic model fitted to a curve of activity at scan time.

    Attributes
    ----------
    model : str
        One of :data:`MODELS`.
    parameters : ndarray of shape (p,)
        Natural parameters, named by ``parameter_names``: amplitudes in the units of the values,
        rates in 1/s (effective: physical decay included).
    parameter_names : tuple of str
        ``("A", "k")``, ``("A1", "k1", "A2", "k2")`` or ``("A", "k_in", "k_out")``.
    covariance : ndarray of shape (p, p)
        ``s² (JᵀWJ)⁻¹`` (module docstring); ``inf`` where not estimable.
    times_s, values, weights : ndarray of shape (n,)
        The fitted data and the weight basis ``w_i`` (``σ_i = s · w_i``).
    weighted_rss : float
        ``Σ ((y_i − f(t_i)) / w_i)²`` in units of the largest value (dimensionless).
    aicc : float
        Small-sample AIC (module docstring); ``inf`` with fewer than ``p + 3`` points.
    lam_per_s : float
        Physical decay constant used as the lower bound of the rates.
    weighting : str
        One of :data:`WEIGHTINGS`.
    problem : str
        Why the fit is degenerate; empty when it is usable.
    """

    model: str
    parameters: np.ndarray
    parameter_names: tuple[str, ...]
    covariance: np.ndarray
    times_s: np.ndarray
    values: np.ndarray
    weights: np.ndarray
    weighted_rss: float
    aicc: float
    lam_per_s: float
    weighting: str = "relative"
    problem: str = ""

    @property
    def n_points(self) -> int:
        """Number of values fitted."""
        return int(self.times_s.size)

    @property
    def n_parameters(self) -> int:
        """Number of fitted parameters."""
        return int(self.parameters.size)

    @property
    def dof(self) -> int:
        """Degrees of freedom ``n − p``."""
        return self.n_points - self.n_parameters

    @property
    def usable(self) -> bool:
        """True when the fit has no recorded problem (``problem`` is empty)."""
        return not self.problem

    @property
    def standard_errors(self) -> np.ndarray:
        """Square roots of the covariance diagonal, ordered as ``parameters``."""
        return np.sqrt(np.abs(np.diag(self.covariance)))

    @property
    def scale(self) -> float:
        """``s = sqrt(WRSS / (n − p))``: each value's error is ``σ_i = s · w_i``."""
        if self.dof <= 0:
            return math.inf
        return math.sqrt(self.weighted_rss / self.dof)

    @property
    def amplitudes(self) -> np.ndarray:
        """``a_i`` of ``f = Σ a_i e^(−k_i t)`` (uptake-washout: ``(−A, A)``)."""
        return (_MAPPING[self.model] @ self.parameters)[0::2]

    @property
    def rates_per_s(self) -> np.ndarray:
        """``k_i`` of ``f = Σ a_i e^(−k_i t)``, fastest first."""
        return (_MAPPING[self.model] @ self.parameters)[1::2]

    @property
    def n_terms(self) -> int:
        """Number of exponential terms ``a_i e^(−k_i t)``."""
        return int(self.amplitudes.size)

    @property
    def residual_rms(self) -> float:
        """Root-mean-square residual in value units."""
        return float(np.sqrt(np.mean((self.values - self(self.times_s)) ** 2)))

    def __call__(self, t_s: Any) -> Any:
        """``f(t)`` at times ``t_s`` (s)."""
        t = np.asarray(t_s, dtype=np.float64)
        out = np.sum(self.amplitudes[:, None] * np.exp(-np.outer(self.rates_per_s, t)), axis=0)
        return float(out[0]) if t.ndim == 0 else out.reshape(t.shape)

    def integral(self, t0_s: float = 0.0) -> float:
        """``∫_{t0}^∞ f(t) dt`` in value units × s (every rate is ≥ λ > 0)."""
        a, k = self.amplitudes, self.rates_per_s
        return float(np.sum(a / k * np.exp(-k * t0_s)))

    def integral_gradient(self, t0_s: float) -> np.ndarray:
        """``∂/∂θ ∫_{t0}^∞ f`` (one entry per natural parameter)."""
        a, k = self.amplitudes, self.rates_per_s
        e = np.exp(-k * t0_s)
        d = np.empty(2 * a.size)
        d[0::2] = e / k
        d[1::2] = -a * e * (1.0 / k**2 + t0_s / k)
        return d @ _MAPPING[self.model]

    def component_integrals(self, t0_s: float) -> np.ndarray:
        """``∫_{t0}^∞ a_i e^(−k_i t) dt`` of each component."""
        a, k = self.amplitudes, self.rates_per_s
        return a / k * np.exp(-k * t0_s)

    def terminal_component(self) -> int:
        """Index (into ``rates_per_s``) of the component that contributes most to the integral
        past the last fitted time."""
        return int(np.argmax(self.component_integrals(float(self.times_s[-1]))))

    def terminal_rate(self) -> tuple[float, float]:
        """Terminal rate (1/s) and its standard error."""
        i = self.terminal_component()
        k = float(self.rates_per_s[i])
        # The rate of component i is one natural parameter (the mapping is a selection).
        j = int(np.flatnonzero(_MAPPING[self.model][2 * i + 1])[0])
        return k, float(self.standard_errors[j])

    def jacobian(self, t_s: np.ndarray) -> np.ndarray:
        """``∂f(t_i)/∂θ_j``, shape (n, p)."""
        a, k = self.amplitudes, self.rates_per_s
        e = np.exp(-np.outer(t_s, k))  # (n, m)
        d = np.empty((t_s.size, 2 * a.size))
        d[:, 0::2] = e
        d[:, 1::2] = -a[None, :] * t_s[:, None] * e
        return d @ _MAPPING[self.model]


def _weights(values: np.ndarray, weighting: str, top: float | None = None) -> np.ndarray:
    """Weight basis ``w_i`` (value units): ``σ_i ∝ w_i``; ``top`` is the largest fitted value."""
    top = float(np.abs(values).max()) if top is None else top
    if weighting == "uniform":
        return np.full(values.shape, top)
    return np.maximum(values, _WEIGHT_FLOOR * top)


def _design(model: str, tau: np.ndarray, rates: Sequence[float]) -> np.ndarray:
    """Columns whose non-negative combination is the model for fixed (scaled) rates."""
    if model == "uptake_washout":
        k_in, k_out = rates
        return (np.exp(-k_out * tau) - np.exp(-k_in * tau))[:, None]
    return np.exp(-np.outer(tau, np.asarray(rates)))


def _internal_to_natural(model: str, x: np.ndarray, lam: float) -> np.ndarray:
    """Internal (α, β) vector, rates as ``λ + β``, to natural (scaled) parameters."""
    if model == "mono":
        return np.array([x[0], lam + x[1]])
    if model == "bi":
        return np.array([x[0], lam + x[1], x[2], lam + x[3]])
    return np.array([x[0], lam + x[1], lam + x[2]])


def _scaled_model(model: str, x: np.ndarray, tau: np.ndarray, lam: float) -> np.ndarray:
    p = _internal_to_natural(model, x, lam)
    if model == "mono":
        return p[0] * np.exp(-p[1] * tau)
    if model == "bi":
        return p[0] * np.exp(-p[1] * tau) + p[2] * np.exp(-p[3] * tau)
    return p[0] * (np.exp(-p[2] * tau) - np.exp(-p[1] * tau))


def _scaled_jacobian(model: str, x: np.ndarray, tau: np.ndarray, lam: float) -> np.ndarray:
    """``∂f/∂x`` for the internal vector (rates enter as λ + β, so ∂/∂β = ∂/∂k)."""
    p = _internal_to_natural(model, x, lam)
    if model == "mono":
        e = np.exp(-p[1] * tau)
        return np.stack([e, -p[0] * tau * e], axis=1)
    if model == "bi":
        e1, e2 = np.exp(-p[1] * tau), np.exp(-p[3] * tau)
        return np.stack([e1, -p[0] * tau * e1, e2, -p[2] * tau * e2], axis=1)
    e_in, e_out = np.exp(-p[1] * tau), np.exp(-p[2] * tau)
    return np.stack([e_out - e_in, p[0] * tau * e_in, -p[0] * tau * e_out], axis=1)


def _grid_starts(
    model: str, tau: np.ndarray, y: np.ndarray, w: np.ndarray, lam: float, kmax: float, n: int
) -> list[np.ndarray]:
    """The ``n`` best internal starting vectors from a grid of rates (amplitudes by NNLS)."""
    grid = lam * np.geomspace(1.0, kmax / lam, _GRID_SIZE)
    if model == "mono":
        combos: list[tuple[float, ...]] = [(k,) for k in grid]
    elif model == "bi":
        combos = [(k1, k2) for i, k1 in enumerate(grid) for k2 in grid[:i]]
    else:
        combos = [(k_in, k_out) for i, k_in in enumerate(grid) for k_out in grid[:i]]
    scored = []
    for rates in combos:
        design = _design(model, tau, rates) / w[:, None]
        amps, norm = nnls(design, y / w)
        scored.append((norm, rates, amps))
    scored.sort(key=lambda item: item[0])
    starts = []
    for _, rates, amps in scored[:n]:
        betas = [max(r - lam, 0.0) for r in rates]
        if model == "mono":
            starts.append(np.array([amps[0], betas[0]]))
        elif model == "bi":
            starts.append(np.array([amps[0], betas[0], amps[1], betas[1]]))
        else:
            starts.append(np.array([amps[0], betas[0], betas[1]]))
    return starts


def _fastest_rate(times_s: np.ndarray, lam: float) -> float:
    gaps = np.diff(times_s)
    shortest = float(gaps.min()) if gaps.size else float(times_s.max())
    if times_s[0] > 0:
        shortest = min(shortest, float(times_s[0]))
    return max(LN2 / (_FASTEST_FRACTION * shortest), 10.0 * lam)


def _check_data(
    times_s: Any, values: Any, *, nonzero: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    t = finite_array(times_s, "times_s", ndim=1)
    v = finite_array(values, "values", ndim=1)
    if t.shape != v.shape:
        raise InputError(f"times_s and values differ in length: {t.size} and {v.size}")
    if np.any(t < 0):
        raise InputError("times_s must not be negative (seconds after injection)")
    if np.any(np.diff(t) <= 0):
        raise InputError("times_s must increase")
    if nonzero and t.size and not np.abs(v).max() > 0:
        raise InputError("all values are 0; there is nothing to fit")
    return t, v


def fit_model(
    times_s: Any,
    values: Any,
    model: str,
    isotope: str | Isotope | float,
    *,
    weighting: str = "relative",
) -> ModelFit:
    """Fit one kinetic model (module docstring) to values of activity at scan time.

    Parameters
    ----------
    times_s : array-like of shape (n,)
        Times after injection in s, increasing.
    values : array-like of shape (n,)
        Activity (Bq) or concentration (Bq/mL) at scan time.
    model : {"mono", "bi", "uptake_washout"}
        The model.
    isotope : str, Isotope or float
        The isotope (or its half-life in s): the lower bound of the rates.
    weighting : {"relative", "uniform"}, keyword-only
        Constant coefficient of variation (default) or equal weights.

    Returns
    -------
    ModelFit
        Always returned; ``problem`` says why it is degenerate (then its parameters may be
        meaningless and :func:`select_model` falls back to a simpler model).

    Raises
    ------
    InputError
        Unknown model or weighting, non-finite or negative times, values all 0.
    """
    if model not in MODELS:
        raise InputError(f"model must be one of {MODELS}, got {model!r}")
    if weighting not in WEIGHTINGS:
        raise InputError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    t, v = _check_data(times_s, values)
    lam_s = decay_constant_per_s(isotope)
    p = _N_PARAMETERS[model]
    names = _NAMES[model]
    n = t.size
    w = _weights(v, weighting) if n else v
    if n < p + 1:
        return ModelFit(
            model, np.full(p, np.nan), names, np.full((p, p), np.inf), t, v, w, math.inf,
            math.inf, lam_s, weighting,
            problem=f"{n} point(s) for {p} parameters: at least {p + 1} are needed",
        )  # fmt: skip
    t_scale = float(t.max())
    v_scale = float(np.abs(v).max())
    tau, y, ws = t / t_scale, v / v_scale, w / v_scale
    lam = lam_s * t_scale
    kmax = _fastest_rate(t, lam_s) * t_scale
    lower = np.zeros(p)
    upper = np.full(p, np.inf)
    rate_slots = [1, 3] if model == "bi" else ([1] if model == "mono" else [1, 2])
    upper[rate_slots] = kmax - lam

    def residuals(x: np.ndarray) -> np.ndarray:
        return (y - _scaled_model(model, x, tau, lam)) / ws

    def jac(x: np.ndarray) -> np.ndarray:
        return -_scaled_jacobian(model, x, tau, lam) / ws[:, None]

    best = None
    n_starts = {"mono": 1, "bi": 3, "uptake_washout": 2}[model]
    for x0 in _grid_starts(model, tau, y, ws, lam, kmax, n_starts):
        x0 = np.clip(x0, lower, upper)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            result = least_squares(
                residuals, x0, jac=jac, bounds=(lower, upper), method="trf",
                x_scale="jac", ftol=1e-14, xtol=1e-14, gtol=1e-14, max_nfev=2000,
            )  # fmt: skip
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    scaled = _internal_to_natural(model, best.x, lam)
    if model == "bi" and scaled[1] < scaled[3]:  # fast component first
        scaled = scaled[[2, 3, 0, 1]]
    units = np.array([v_scale if name.startswith("A") else 1.0 / t_scale for name in names])
    theta = scaled * units
    wrss = float(np.sum(best.fun**2))
    big_k = p + 1
    aicc = math.inf
    if n - big_k - 1 > 0:
        aicc = (
            n * math.log(max(wrss, n * _RSS_FLOOR) / n)
            + 2 * big_k
            + 2 * big_k * (big_k + 1) / (n - big_k - 1)
        )
    fit = ModelFit(
        model, theta, names, np.full((p, p), np.inf), t, v, w, wrss, aicc, lam_s, weighting
    )
    covariance = _covariance(fit)
    fit = ModelFit(model, theta, names, covariance, t, v, w, wrss, aicc, lam_s, weighting)
    problem = _problem(fit, best.status, kmax / t_scale)
    return ModelFit(model, theta, names, covariance, t, v, w, wrss, aicc, lam_s, weighting, problem)


def _covariance(fit: ModelFit) -> np.ndarray:
    p = fit.n_parameters
    j = fit.jacobian(fit.times_s) / fit.weights[:, None]
    norms = np.linalg.norm(j, axis=0)
    if fit.dof <= 0 or not np.all(norms > 0) or not np.all(np.isfinite(j)):
        return np.full((p, p), np.inf)
    js = j / norms
    singular = np.linalg.svd(js, compute_uv=False)
    if singular[-1] < 1e-10 * singular[0]:
        return np.full((p, p), np.inf)
    inverse = np.linalg.inv(js.T @ js) / np.outer(norms, norms)
    return fit.weighted_rss / fit.dof * inverse


def _problem(fit: ModelFit, status: int, kmax: float) -> str:
    if status <= 0:
        return "the fit did not converge"
    rates = fit.rates_per_s
    if np.any(rates >= kmax * (1 - _AT_BOUND)):
        return (
            f"a half-life at the lower limit {LN2 / kmax / 3600:.3g} h (a tenth of the shortest "
            "interval between scans): too fast to be measured"
        )
    if fit.model in ("bi", "uptake_washout") and rates.max() < _SAME_RATE * rates.min():
        return "its two rates coincide (within 1 %)"
    if fit.model == "bi":
        parts = np.abs(fit.amplitudes[:, None] * np.exp(-np.outer(rates, fit.times_s)))
        share = (parts / np.maximum(parts.sum(axis=0), 1e-300)).max(axis=1)
        if share.min() < _NEGLIGIBLE:
            which = "fast" if int(np.argmin(share)) == 0 else "slow"
            return (
                f"its {which} component is negligible (at most {100 * share.min():.2g} % of the "
                "curve at the fitted times)"
            )
    if fit.model == "uptake_washout" and not fit.parameters[0] > 0:
        return "its amplitude is zero"
    if fit.model == "uptake_washout" and not fit.parameters[1] > fit.parameters[2]:
        return "its uptake is not faster than its washout"
    if not np.all(np.isfinite(fit.covariance)):
        return "the data do not determine its parameters (singular covariance)"
    return ""


# --------------------------------------------------------------------------------------------
# model selection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSelection:
    """The model chosen for one curve and how.

    Attributes
    ----------
    fit : ModelFit or None
        The chosen, usable fit; None when no model could be fitted (then a physical-decay tail is
        the fallback; see ``notes``).
    requested : str
        What was asked: ``"auto"`` or a model.
    rule : str
        ``"AICc"`` (auto, several candidates compared), ``"only candidate"`` (auto, only the
        mono-exponential had enough points), ``"fixed"`` (as requested), ``"fallback"`` (the
        requested or every compared model was degenerate) or ``"none"``.
    candidates : dict of str to ModelFit
        Every model fitted, by name.
    notes : list of str
        What was done and why, one sentence each.
    slower_than_decay : bool
        The mono-exponential would decay slower than the isotope (module docstring).
    """

    fit: ModelFit | None
    requested: str
    rule: str
    candidates: dict[str, ModelFit] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    slower_than_decay: bool = False

    @property
    def model(self) -> str | None:
        """Name of the chosen model, None when no model could be fitted."""
        return None if self.fit is None else self.fit.model

    def aicc_text(self) -> str:
        """``"mono −41.2; bi −37.9 (degenerate: ...)"`` for the report."""
        parts = []
        for name, fit in self.candidates.items():
            value = "n/a" if math.isinf(fit.aicc) else f"{fit.aicc:.4g}"
            parts.append(f"{name} {value}" + (f" ({fit.problem})" if fit.problem else ""))
        return "; ".join(parts)


def _slower_than_decay(fit: ModelFit, weighting: str) -> bool:
    """A mono-exponential at the physical-decay bound whose unbounded rate would be lower."""
    k = float(fit.rates_per_s[0])
    if k > fit.lam_per_s * (1 + _AT_BOUND):
        return False
    t, v = fit.times_s, fit.values
    w = _weights(v, weighting)
    t_scale, v_scale = float(t.max()), float(np.abs(v).max())
    tau, y, ws = t / t_scale, v / v_scale, w / v_scale

    def residuals(x: np.ndarray) -> np.ndarray:
        return (y - x[0] * np.exp(-x[1] * tau)) / ws

    start = np.array([float(fit.parameters[0]) / v_scale, k * t_scale])
    result = least_squares(
        residuals, start, bounds=([0.0, 0.0], [np.inf, np.inf]), method="trf",
        ftol=1e-14, xtol=1e-14, gtol=1e-14, max_nfev=2000,
    )  # fmt: skip
    return bool(result.x[1] / t_scale < fit.lam_per_s * (1 - _AT_BOUND))


def select_model(
    times_s: Any,
    values: Any,
    isotope: str | Isotope | float,
    *,
    model: str = "auto",
    weighting: str = "relative",
) -> ModelSelection:
    """Choose and fit the kinetic model of a clearance curve (the rule is the module docstring).

    Parameters
    ----------
    times_s, values : array-like of shape (n,)
        The fitted window of a curve of activity at scan time, times in s after injection.
    isotope : str, Isotope or float
        The isotope (or its half-life in s).
    model : {"auto", "mono", "bi", "uptake_washout"}, keyword-only
        ``"auto"``: AICc among the candidates; otherwise the model to fit (falling back to a
        simpler one when degenerate).
    weighting : {"relative", "uniform"}, keyword-only
        See :func:`fit_model`.

    Returns
    -------
    ModelSelection
    """
    if model not in FIT_MODELS:
        raise InputError(f"model must be one of {FIT_MODELS}, got {model!r}")
    t, v = _check_data(times_s, values)
    n = t.size
    notes: list[str] = []
    candidates: dict[str, ModelFit] = {}

    def fit(name: str) -> ModelFit:
        if name not in candidates:
            candidates[name] = fit_model(t, v, name, isotope, weighting=weighting)
        return candidates[name]

    def finish(chosen: ModelFit | None, rule: str) -> ModelSelection:
        slower = False
        if chosen is not None and chosen.model == "mono" and _slower_than_decay(chosen, weighting):
            notes.append(
                "the fitted clearance is slower than physical decay (uptake still rising, or "
                "noise): no effective half-life, and the TIA tail is physical decay only"
            )
            slower = True
        return ModelSelection(chosen, model, rule, candidates, notes, slower)

    if model == "auto":
        rising = n > 1 and int(np.argmax(v)) > 0
        names = ["mono", "bi"] + (["uptake_washout"] if rising else [])
        compared = [m for m in names if n >= _N_PARAMETERS[m] + 3]
        usable = [fit(m) for m in compared if fit(m).usable]
        if len(usable) >= 1 and len(compared) > 1:
            chosen = min(usable, key=lambda f: f.aicc)
            notes.append(
                f"model {chosen.model} chosen by AICc among {', '.join(compared)} ({n} points)"
            )
            for m in compared:
                if candidates[m].problem:
                    notes.append(f"{m} not used: {candidates[m].problem}")
            return finish(chosen, "AICc")
        mono = fit("mono")
        if mono.usable:
            notes.append(
                f"{n} points: only the mono-exponential can be fitted and checked (AICc needs "
                f"at least {_N_PARAMETERS['bi'] + 3} points for bi"
                + (f", {_N_PARAMETERS['uptake_washout'] + 3} for uptake_washout" if rising else "")
                + ")"
            )
            return finish(mono, "only candidate")
        notes.append(f"no usable fit: mono {mono.problem}")
        return finish(None, "none")

    requested = fit(model)
    if requested.usable:
        return finish(requested, "fixed")
    if model != "mono":
        mono = fit("mono")
        if mono.usable:
            notes.append(f"{model} fit degenerate ({requested.problem}): mono-exponential used")
            return finish(mono, "fallback")
        notes.append(f"{model} fit degenerate ({requested.problem}); mono too ({mono.problem})")
        return finish(None, "none")
    notes.append(f"no usable fit: mono {requested.problem}")
    return finish(None, "none")


# --------------------------------------------------------------------------------------------
# time-integrated activity with its uncertainty
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntegratedActivity:
    """``∫₀^∞`` of a curve, its parts and standard errors (value units × s).

    Attributes
    ----------
    total, tail : float
        The whole integral and the part after the last time point (extrapolated).
    total_se, tail_se : float or None
        Standard errors (None without a fit, i.e. with a physical-decay tail).
    method : str
        ``"fit"`` or ``"physical"``.
    """

    total: float
    tail: float
    total_se: float | None
    tail_se: float | None
    method: str


def _trapezoid_coefficients(t: np.ndarray) -> np.ndarray:
    """``c_i`` with ``Σ c_i y_i`` = the trapezoid from (0, 0) through the points ``(t_i, y_i)``."""
    edges = np.concatenate(([0.0], t))
    c = np.zeros(t.size)
    for i in range(t.size):
        c[i] += 0.5 * (edges[i + 1] - edges[i])
        if i + 1 < t.size:
            c[i] += 0.5 * (edges[i + 2] - edges[i + 1])
    return c


def integrate_with_uncertainty(
    times_s: Any,
    values: Any,
    start: int,
    fit: ModelFit | None,
    isotope: str | Isotope | float,
) -> IntegratedActivity:
    """Time-integrated activity of a curve of activity at scan time.

    With a fit of the points from index ``start`` on: the trapezoid from 0 at injection up to
    ``t_start`` plus ``∫_{t_start}^∞`` of the fit (from injection, ``∫₀^∞``, when ``start`` is
    0). Without: the trapezoid over all points plus physical decay from the last one,
    ``y_n / λ``. The standard errors propagate every value's error (module docstring).

    Parameters
    ----------
    times_s, values : array-like of shape (n,)
        The whole curve, times in s after injection.
    start : int
        Index of the first fitted point.
    fit : ModelFit or None
        Fit of ``times_s[start:]``, ``values[start:]``.
    isotope : str, Isotope or float
        For the physical-decay tail.

    Returns
    -------
    IntegratedActivity
    """
    t, v = _check_data(times_s, values, nonzero=False)
    if t.size == 0:
        raise InputError("no values to integrate")
    if fit is None:
        lam = decay_constant_per_s(isotope)
        tail = float(v[-1]) / lam
        return IntegratedActivity(
            float(_trapezoid_coefficients(t) @ v) + tail, tail, None, None, "physical"
        )
    t_start = float(t[start])
    coefficients = np.zeros(t.size)
    lower = 0.0
    if start > 0:
        coefficients[: start + 1] = _trapezoid_coefficients(t[: start + 1])
        lower = t_start
    total = float(coefficients @ v) + fit.integral(lower)
    tail = fit.integral(float(t[-1]))
    if fit.dof <= 0:
        return IntegratedActivity(total, tail, None, None, "fit")
    # θ responds to the fitted values through (JᵀWJ)⁻¹ JᵀW; W = 1/w² (σ_i = s w_i).
    j = fit.jacobian(fit.times_s) / fit.weights[:, None]
    response = np.linalg.pinv(j) / fit.weights[None, :]  # (p, n_fit): ∂θ/∂y
    # Every value, fitted or not, follows the fit's error model: σ_i = s · w_i.
    top = float(np.abs(fit.values).max())
    sigma = fit.scale * _weights(v, fit.weighting, top)
    c_total = coefficients.copy()
    c_total[start:] += fit.integral_gradient(lower) @ response
    c_tail = np.zeros(t.size)
    c_tail[start:] = fit.integral_gradient(float(t[-1])) @ response
    total_se = float(np.sqrt(np.sum((c_total * sigma) ** 2)))
    tail_se = float(np.sqrt(np.sum((c_tail * sigma) ** 2)))
    return IntegratedActivity(total, tail, total_se, tail_se, "fit")
