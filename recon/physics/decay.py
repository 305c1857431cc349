"""Radioactive decay: decay constants, decay-correction factors and activity at another time.

The functions take numpy or CuPy arrays (or Python numbers) and compute with the module the arrays
come from, so per-view or per-event factors can be built on the GPU without a transfer. CuPy is
imported only when a CuPy array is passed.

Convention (DESIGN.md §3, "Decay"): activities are reported at a reference time ``t_ref``. For a
measurement over ``[t0, t0 + Δ]`` the decay-correction factor is

    f = exp(λ (t0 − t_ref)) · λΔ / (1 − exp(−λΔ)),    λ = ln 2 / T½,

so that ``counts · f`` estimates what would have been counted over ``Δ`` at the constant activity
present at ``t_ref``. Its reciprocal, the mean of ``A(t) / A(t_ref)`` over the interval, is the
multiplicative decay term that goes into a system model's ``m``.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.physics.isotopes import Isotope, get_isotope

__all__ = ["activity_at", "decay_constant", "decay_correction_factor", "mean_activity_fraction"]

_LN2 = math.log(2.0)


def _namespace(*values: Any) -> ModuleType:
    """``cupy`` when any value is a CuPy array, else ``numpy`` (CuPy is imported only then)."""
    for value in values:
        if type(value).__module__.split(".")[0] == "cupy":
            import cupy  # optional dependency; never imported otherwise

            return cupy
    return np


def _as_float(xp: ModuleType, value: Any, name: str) -> Any:
    """``value`` as a float64 array of ``xp``, checked to be finite."""
    try:
        array = xp.asarray(value, dtype=xp.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a number or an array of numbers: {exc}") from None
    if not bool(xp.all(xp.isfinite(array))):
        raise InputError(f"{name} contains NaN or infinite values; pass finite times in seconds")
    return array


def _half_life(xp: ModuleType, half_life_s: Any) -> Any:
    if isinstance(half_life_s, (Isotope, str)):
        half_life_s = get_isotope(half_life_s).half_life_s
    half_life = _as_float(xp, half_life_s, "half_life_s")
    if not bool(xp.all(half_life > 0)):
        raise InputError("half_life_s must be positive (seconds)")
    return half_life


def _finish(xp: ModuleType, result: Any, what: str, positive: bool = False) -> Any:
    # A decay factor is never 0 or infinite; either means exp over- or underflowed, which takes
    # hundreds of half-lives (O-15: about 35 h). That is almost always times in ms passed as s, or
    # absolute clock times instead of times from scan start, and is better reported than returned.
    bad = ~xp.isfinite(result)
    if positive:
        bad |= result <= 0
    if bool(xp.any(bad)):
        raise InputError(
            f"{what} over- or underflows float64; check that times are in seconds and measured "
            "from a nearby reference (e.g. scan start), not absolute clock times"
        )
    if xp is np and result.ndim == 0:
        return float(result)
    return result


def decay_constant(isotope_or_half_life: Isotope | str | float) -> float:
    """Decay constant λ = ln 2 / T½.

    Parameters
    ----------
    isotope_or_half_life : Isotope, str or float
        An :class:`Isotope`, an isotope name (any spelling :func:`get_isotope` accepts), or a
        half-life in seconds.

    Returns
    -------
    float
        λ in 1/s.

    Raises
    ------
    InputError
        The half-life is not a positive finite number.
    PhysicsError
        The isotope name is unknown.
    """
    if isinstance(isotope_or_half_life, (Isotope, str)):
        return get_isotope(isotope_or_half_life).decay_constant_per_s
    try:
        half_life = float(isotope_or_half_life)
    except (TypeError, ValueError):
        raise InputError(
            "decay_constant needs an Isotope, an isotope name or a half-life in seconds, "
            f"got {isotope_or_half_life!r}"
        ) from None
    if not (math.isfinite(half_life) and half_life > 0):
        raise InputError(f"half-life must be a positive finite number of seconds, got {half_life}")
    return _LN2 / half_life


def _decay_terms(
    half_life_s: Any, start_s: Any, duration_s: Any, reference_s: Any
) -> tuple[ModuleType, Any, Any, Any]:
    """Validated ``(xp, λ(t0 − t_ref), λΔ, λΔ > 0)`` shared by the factor and its reciprocal."""
    xp = _namespace(half_life_s, start_s, duration_s, reference_s)
    lam = _LN2 / _half_life(xp, half_life_s)
    start = _as_float(xp, start_s, "start_s")
    duration = _as_float(xp, duration_s, "duration_s")
    reference = _as_float(xp, reference_s, "reference_s")
    if not bool(xp.all(duration >= 0)):
        raise InputError(
            "duration_s must be non-negative (seconds); a frame cannot end before it starts"
        )
    x = lam * duration
    return xp, lam * (start - reference), x, x > 0


def decay_correction_factor(
    half_life_s: float | Isotope | str | Any,
    start_s: float | Any,
    duration_s: float | Any,
    reference_s: float | Any = 0.0,
) -> float | Any:
    """Factor that corrects counts measured over ``[t0, t0 + Δ]`` to the reference time.

    ``f = exp(λ (t0 − t_ref)) · λΔ / (1 − exp(−λΔ))`` with ``λ = ln 2 / T½`` (DESIGN.md §3). For
    ``Δ → 0`` the second term tends to 1 (evaluated with ``expm1``, so there is no cancellation for
    short frames or long half-lives), and ``Δ = 0`` gives exactly ``exp(λ (t0 − t_ref))``.

    Parameters
    ----------
    half_life_s : float, array, Isotope or str
        Half-life in s (or an isotope, whose half-life is used).
    start_s : float or array
        Start ``t0`` of each interval, in s on the same clock as ``reference_s``.
    duration_s : float or array
        Length ``Δ`` of each interval in s, non-negative.
    reference_s : float or array, optional
        Reference time ``t_ref`` in s (default 0, e.g. acquisition start).

    Returns
    -------
    float or ndarray
        The factor (dimensionless, float64), broadcast over the inputs; a ``float`` when every input
        is a scalar, a CuPy array when any input is a CuPy array.

    Raises
    ------
    InputError
        A value is NaN or infinite, a duration is negative, or a half-life is not positive.
    """
    xp, shift, x, positive = _decay_terms(half_life_s, start_s, duration_s, reference_s)
    # Substitute 1 where λΔ = 0 so that the unused branch of `where` never divides 0 by 0.
    safe = xp.where(positive, x, 1.0)
    ratio = xp.where(positive, safe / -xp.expm1(-safe), 1.0)
    with np.errstate(over="ignore", under="ignore"):
        result = xp.exp(shift) * ratio
    return _finish(xp, result, "decay correction factor", positive=True)


def mean_activity_fraction(
    half_life_s: float | Isotope | str | Any,
    start_s: float | Any,
    duration_s: float | Any,
    reference_s: float | Any = 0.0,
) -> float | Any:
    """Mean over ``[start_s, start_s + duration_s]`` of the activity relative to ``reference_s``.

    ``(1/Δ) ∫ A(t)/A(t_ref) dt = exp(−λ (t0 − t_ref)) · (1 − exp(−λΔ)) / (λΔ)``, the reciprocal of
    :func:`decay_correction_factor`. This is the decay term of a system model's multiplicative
    factors ``m``: expected counts are ``m · P x`` with ``x`` the activity at ``t_ref``.

    Parameters
    ----------
    half_life_s : float, array, Isotope or str
        Half-life in s (or an isotope, whose half-life is used).
    start_s : float or array
        Start ``t0`` of each interval, in s on the same clock as ``reference_s``.
    duration_s : float or array
        Length ``Δ`` of each interval in s, non-negative; 0 gives ``exp(−λ (t0 − t_ref))``.
    reference_s : float or array, optional
        Reference time ``t_ref`` in s (default 0).

    Returns
    -------
    float or ndarray
        The fraction (dimensionless, float64), broadcast over the inputs; a ``float`` when every
        input is a scalar, a CuPy array when any input is a CuPy array.

    Raises
    ------
    InputError
        A value is NaN or infinite, a duration is negative, or a half-life is not positive.
    """
    xp, shift, x, positive = _decay_terms(half_life_s, start_s, duration_s, reference_s)
    safe = xp.where(positive, x, 1.0)
    ratio = xp.where(positive, -xp.expm1(-safe) / safe, 1.0)
    with np.errstate(over="ignore", under="ignore"):
        result = xp.exp(-shift) * ratio
    return _finish(xp, result, "mean activity fraction", positive=True)


def activity_at(
    a0: float | Any, half_life_s: float | Isotope | str | Any, dt_s: float | Any
) -> float | Any:
    """Activity ``dt_s`` seconds after a time at which it was ``a0``: ``a0 · exp(−λ dt)``.

    Parameters
    ----------
    a0 : float or array
        Activity (Bq, or any activity-proportional unit such as an image) at the known time.
    half_life_s : float, array, Isotope or str
        Half-life in s (or an isotope, whose half-life is used).
    dt_s : float or array
        Elapsed time in s; negative values go back in time.

    Returns
    -------
    float or ndarray
        Activity in the unit of ``a0``. A floating-point array ``a0`` keeps its dtype (so a float32
        image stays float32); otherwise float64. A ``float`` when every input is a scalar.

    Raises
    ------
    InputError
        A value is NaN or infinite, or a half-life is not positive.
    """
    xp = _namespace(a0, half_life_s, dt_s)
    lam = _LN2 / _half_life(xp, half_life_s)
    dt = _as_float(xp, dt_s, "dt_s")
    dtype = getattr(a0, "dtype", None)
    keep = dtype if dtype is not None and np.issubdtype(dtype, np.floating) else xp.float64
    activity = _as_float(xp, a0, "a0")
    with np.errstate(over="ignore", under="ignore"):
        result = activity * xp.exp(-lam * dt)
    return _finish(xp, result.astype(keep, copy=False), "activity")
