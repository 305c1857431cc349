"""Kinetics of one VOI's time-activity curve: the fit, half-lives and time-integrated activity.

What `recon quant` reports for each VOI (the kinetic models, the fitting rule and the AICc
model selection are in :mod:`recon.quant.kinetics`):

1. the clearance phase starts at ``fit_from``: the curve's maximum (``"peak"``, default), its
   first point (``"first"``, e.g. blood, or a curve with an uptake phase to fit), or the first
   point at or after a number of hours after injection;
2. the model of that window is chosen by AICc (``model="auto"``) or fixed; degenerate fits fall
   back to a simpler model, with the reason in the note;
3. the effective half-life is that of the terminal component (the one governing the curve after
   the last scan), the biological one follows from ``1/T_eff = 1/T_phys + 1/T_biol``;
4. the time-integrated activity (TIA) is the trapezoid from 0 at injection up to the first fitted
   point plus the integral of the fitted curve from there to infinity (from injection when the
   fit starts at the first point): sparse late samples follow the fitted curve better than a
   chord. With ``tail="physical"``, or without a usable fit, or when the fitted clearance is
   slower than physical decay, it is the trapezoid over all points plus physical decay from the
   last one (an upper bound when there is biological clearance);
5. every fitted quantity has a standard error from the fit's covariance, the TIA's including the
   extrapolated tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.physics.isotopes import get_isotope
from recon.quant.kinetics import (
    FIT_MODELS,
    ModelFit,
    integrate_with_uncertainty,
    select_model,
)
from recon.quant.timeseries import TimeActivityCurve

__all__ = ["TAILS", "FitSettings", "VoiKinetics", "clearance_kinetics"]

#: How the TIA is extrapolated after the last scan.
TAILS = ("fit", "physical")

_SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class FitSettings:
    """How one VOI's curve is fitted.

    Attributes
    ----------
    model : str
        One of :data:`recon.quant.kinetics.FIT_MODELS` (``"auto"``: AICc selection).
    fit_from : "peak", "first" or float
        First point of the fitted window (float: hours after injection).
    tail : str
        One of :data:`TAILS`.
    sources : dict of str to str
        Where each setting came from (``"default"``, ``"[analysis]"``, ``"[analysis.blood]"``,
        ``"VOI"``), for the report.
    """

    model: str = "auto"
    fit_from: str | float = "peak"
    tail: str = "fit"
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.model not in FIT_MODELS:
            raise InputError(f"fit model must be one of {FIT_MODELS}, got {self.model!r}")
        if self.tail not in TAILS:
            raise InputError(f"tail must be one of {TAILS}, got {self.tail!r}")
        if isinstance(self.fit_from, str):
            if self.fit_from not in ("peak", "first"):
                raise InputError(
                    f"fit_from must be 'peak', 'first' or hours after injection, got "
                    f"{self.fit_from!r}"
                )
        elif (
            isinstance(self.fit_from, bool)
            or not (isinstance(self.fit_from, (int, float)) and math.isfinite(self.fit_from))
            or self.fit_from < 0
        ):
            raise InputError(f"fit_from in hours must be a number ≥ 0, got {self.fit_from!r}")

    def describe(self) -> str:
        """``"model=auto (default), fit_from=first ([analysis.blood]), tail=fit (default)"``."""
        parts = []
        for key in ("model", "fit_from", "tail"):
            source = self.sources.get(key, "default")
            parts.append(f"{key}={getattr(self, key)} ({source})")
        return ", ".join(parts)


@dataclass(frozen=True)
class VoiKinetics:
    """Fit, half-lives and time-integrated activity of one VOI (module docstring).

    Attributes
    ----------
    voi, role : str
        The VOI.
    fit : ModelFit or None
        The chosen fit of the ``quantity`` (Bq/mL) at scan time over the clearance window; None
        when no model could be fitted (see ``note``).
    model, model_rule : str or None, str
        The chosen model and how (:class:`recon.quant.kinetics.ModelSelection`).
    aicc : str
        AICc of every model fitted (and why a model was not usable).
    settings : FitSettings
        What was asked, and where each setting came from.
    fit_from_h : float or None
        Time of the first fitted point, h after injection.
    n_fit_points : int
        Points in the fitted window.
    t_eff_h, t_eff_se_h : float or None
        Effective half-life of the terminal component and its standard error, h. None when the
        fitted clearance is slower than physical decay (see ``note``).
    t_eff_fast_h : float or None
        Effective half-life of the other component of a bi-exponential, h.
    t_uptake_h : float or None
        Half-life of the uptake of an uptake-washout fit, h.
    t_biol_h, t_biol_se_h : float or None
        Biological half-life of the terminal component and its standard error, h (None: no
        biological clearance seen, i.e. infinite).
    tia_bq_h_per_ml, tia_se_bq_h_per_ml : float, float or None
        Time-integrated ``quantity`` (Bq·h/mL) and its standard error (None without a fit).
    tia_tail_bq_h_per_ml, tia_tail_se_bq_h_per_ml : float, float or None
        The part of it after the last scan (extrapolated) and its standard error.
    tia_bq_h, tia_se_bq_h : float or None
        Time-integrated total activity in the VOI (Bq·h) and its standard error, when the total
        curve was given.
    tail_method : str
        ``"fit"`` or ``"physical"``.
    tail_fraction : float
        ``tia_tail / tia``.
    residence_time_h, residence_time_se_h : float or None
        ``tia_bq_h / A_injected`` in h and its standard error, when the injected activity is
        known.
    note : str
        What was chosen and why, fallbacks taken, why there is no half-life.
    """

    voi: str
    role: str
    fit: ModelFit | None
    model: str | None
    model_rule: str
    aicc: str
    settings: FitSettings
    fit_from_h: float | None
    n_fit_points: int
    t_eff_h: float | None
    t_eff_se_h: float | None
    t_eff_fast_h: float | None
    t_uptake_h: float | None
    t_biol_h: float | None
    t_biol_se_h: float | None
    tia_bq_h_per_ml: float
    tia_se_bq_h_per_ml: float | None
    tia_tail_bq_h_per_ml: float
    tia_tail_se_bq_h_per_ml: float | None
    tia_bq_h: float | None
    tia_se_bq_h: float | None
    tail_method: str
    tail_fraction: float
    residence_time_h: float | None
    residence_time_se_h: float | None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The results as a flat dict of plain values (one row of the kinetics table)."""
        fit = self.fit
        parameters = errors = None
        if fit is not None:
            values, ses = [], []
            for name, value, se in zip(
                fit.parameter_names, fit.parameters, fit.standard_errors, strict=True
            ):
                scale, unit = (1.0, "") if name.startswith("A") else (_SECONDS_PER_HOUR, "_per_h")
                values.append(f"{name}{unit}={value * scale:.6g}")
                ses.append(f"{name}{unit}={se * scale:.3g}")
            parameters, errors = ";".join(values), ";".join(ses)
        return {
            "voi": self.voi,
            "role": self.role,
            "model": self.model,
            "model_rule": self.model_rule,
            "model_requested": self.settings.model,
            "aicc": self.aicc,
            "fit_from_h": self.fit_from_h,
            "n_fit_points": self.n_fit_points,
            "dof": None if fit is None else fit.dof,
            "fit_parameters": parameters,
            "fit_parameter_se": errors,
            "fit_residual_rms_bq_ml": None if fit is None else fit.residual_rms,
            "t_eff_h": self.t_eff_h,
            "t_eff_se_h": self.t_eff_se_h,
            "t_eff_fast_h": self.t_eff_fast_h,
            "t_uptake_h": self.t_uptake_h,
            "t_biol_h": self.t_biol_h,
            "t_biol_se_h": self.t_biol_se_h,
            "tia_bq_h_per_ml": self.tia_bq_h_per_ml,
            "tia_se_bq_h_per_ml": self.tia_se_bq_h_per_ml,
            "tia_tail_bq_h_per_ml": self.tia_tail_bq_h_per_ml,
            "tia_tail_se_bq_h_per_ml": self.tia_tail_se_bq_h_per_ml,
            "tia_bq_h": self.tia_bq_h,
            "tia_se_bq_h": self.tia_se_bq_h,
            "tail_method": self.tail_method,
            "tail_fraction": self.tail_fraction,
            "residence_time_h": self.residence_time_h,
            "residence_time_se_h": self.residence_time_se_h,
            "settings": self.settings.describe(),
            "note": self.note,
        }


def _fit_start(fit_from: str | float, times_h: np.ndarray, values: np.ndarray) -> int:
    if fit_from == "peak":
        return int(np.argmax(values))
    if fit_from == "first":
        return 0
    later = np.flatnonzero(times_h >= float(fit_from) - 1e-9)
    return int(later[0]) if later.size else len(times_h)


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / _SECONDS_PER_HOUR


def clearance_kinetics(
    tac: TimeActivityCurve,
    total: TimeActivityCurve | None = None,
    *,
    settings: FitSettings | None = None,
    fit_from: str | float | None = None,
    model: str | None = None,
    injected_bq: float | None = None,
    role: str = "lesion",
) -> VoiKinetics:
    """Fit, half-lives and time-integrated activity of a VOI's curve (as ``recon quant``).

    Parameters
    ----------
    tac : TimeActivityCurve
        Concentration (Bq/mL) in ``"activity_at_scan_time"`` mode, with its isotope.
    total : TimeActivityCurve, optional
        Total activity (Bq) of the same VOI, for ``tia_bq_h`` and the residence time; fitted
        with the model chosen for ``tac``.
    settings : FitSettings, keyword-only
        Model, fitted window and tail (default: ``FitSettings()``).
    fit_from, model : keyword-only
        Shortcuts that replace the corresponding field of ``settings``.
    injected_bq : float, keyword-only
        Injected activity at injection (Bq), for the residence time.
    role : str, keyword-only
        Copied to the result.

    Returns
    -------
    VoiKinetics
        See the module docstring.
    """
    if not isinstance(tac, TimeActivityCurve):
        raise InputError(f"tac must be a TimeActivityCurve, got {type(tac).__name__}")
    if tac.mode != "activity_at_scan_time" or tac.isotope is None:
        raise InputError(
            "clearance_kinetics needs a curve of activity at scan time with an isotope"
        )
    base = settings if settings is not None else FitSettings()
    if fit_from is not None or model is not None:
        sources = dict(base.sources)
        sources.update({k: "argument" for k, v in (("fit_from", fit_from), ("model", model)) if v})
        base = FitSettings(
            model=model if model is not None else base.model,
            fit_from=fit_from if fit_from is not None else base.fit_from,
            tail=base.tail,
            sources=sources,
        )
    iso = tac.isotope
    lam = get_isotope(iso).decay_constant_per_s
    t, v = tac.times_s, tac.values
    start = _fit_start(base.fit_from, tac.times_h, v)
    n_points = len(t) - start
    notes: list[str] = []
    fit: ModelFit | None = None
    model_name, rule, aicc = None, "none", ""
    slower = False
    if n_points == 0:
        notes.append(f"no point at or after fit_from = {base.fit_from} h")
    elif not np.any(v[start:] > 0):
        notes.append("no positive value to fit")
    else:
        selection = select_model(t[start:], v[start:], iso, model=base.model)
        fit, model_name, rule = selection.fit, selection.model, selection.rule
        aicc, slower = selection.aicc_text(), selection.slower_than_decay
        notes += selection.notes

    t_eff = t_eff_se = t_fast = t_uptake = t_biol = t_biol_se = None
    if fit is not None and not slower:
        k, k_se = fit.terminal_rate()
        t_eff = math.log(2) / k / _SECONDS_PER_HOUR
        t_eff_se = math.log(2) / k**2 * k_se / _SECONDS_PER_HOUR
        if k > lam * (1 + 1e-9):
            t_biol = math.log(2) / (k - lam) / _SECONDS_PER_HOUR
            t_biol_se = math.log(2) / (k - lam) ** 2 * k_se / _SECONDS_PER_HOUR
        else:
            notes.append("terminal rate at the physical-decay bound: no biological clearance seen")
        rates = fit.rates_per_s
        if fit.model == "bi":
            other = 1 - fit.terminal_component()
            t_fast = math.log(2) / float(rates[other]) / _SECONDS_PER_HOUR
        elif fit.model == "uptake_washout":
            t_uptake = math.log(2) / float(fit.parameters[1]) / _SECONDS_PER_HOUR

    use_fit = fit is not None and not slower and base.tail == "fit"
    if fit is not None and not slower and base.tail == "physical":
        notes.append("tail = physical: the TIA extrapolates by physical decay only (upper bound)")
    integral = integrate_with_uncertainty(t, v, start, fit if use_fit else None, iso)

    total_tia = total_se = None
    if total is not None:
        total_fit = None
        if use_fit:
            assert fit is not None
            chosen = select_model(total.times_s[start:], total.values[start:], iso, model=fit.model)
            total_fit = chosen.fit
            if chosen.fit is None or chosen.fit.model != fit.model:
                notes.append(f"total activity curve: {'; '.join(chosen.notes)}")
        total_integral = integrate_with_uncertainty(
            total.times_s, total.values, start, total_fit, iso
        )
        total_tia = total_integral.total / _SECONDS_PER_HOUR
        total_se = _hours(total_integral.total_se)
    residence = residence_se = None
    if injected_bq is not None and total_tia is not None:
        residence = total_tia / injected_bq
        residence_se = None if total_se is None else total_se / injected_bq
    tia = integral.total
    return VoiKinetics(
        voi=tac.voi,
        role=role,
        fit=fit,
        model=model_name,
        model_rule=rule,
        aicc=aicc,
        settings=base,
        fit_from_h=float(tac.times_h[start]) if start < len(t) else None,
        n_fit_points=n_points,
        t_eff_h=t_eff,
        t_eff_se_h=t_eff_se,
        t_eff_fast_h=t_fast,
        t_uptake_h=t_uptake,
        t_biol_h=t_biol,
        t_biol_se_h=t_biol_se,
        tia_bq_h_per_ml=tia / _SECONDS_PER_HOUR,
        tia_se_bq_h_per_ml=_hours(integral.total_se),
        tia_tail_bq_h_per_ml=integral.tail / _SECONDS_PER_HOUR,
        tia_tail_se_bq_h_per_ml=_hours(integral.tail_se),
        tia_bq_h=total_tia,
        tia_se_bq_h=total_se,
        tail_method=integral.method,
        tail_fraction=integral.tail / tia if tia > 0 else math.nan,
        residence_time_h=residence,
        residence_time_se_h=residence_se,
        note="; ".join(notes),
    )
