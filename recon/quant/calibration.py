"""Calibration and uptake normalisation: sensitivity, Bq/mL images, SUV, %ID.

Two time conventions run through every function here, and each call says which one it uses:

- **activity at scan time**: what is in the patient at the image's reference time (for a recon
  image, usually the acquisition start; DICOM Decay Correction ``START``). Normalising such a
  value needs the injected activity *decayed to the same time*; pass ``time_after_injection_s``.
- **decay-corrected to injection**: the value the activity would have had at the injection time
  if it did not decay (physical decay removed, biology kept). Normalise it by the injected activity
  *at injection*; leave ``time_after_injection_s`` as ``None``.

Both give the same SUV or %ID when used consistently, since the decay factor cancels. Times are
:class:`datetime.datetime` objects or seconds on one clock; the two kinds are never mixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.image import Image
from recon.physics.decay import mean_activity_fraction
from recon.physics.isotopes import Isotope, get_isotope
from recon.quant._common import (
    TimeLike,
    decay_constant_per_s,
    elapsed_s,
    finite,
    half_life_s,
    non_negative,
    positive,
)

__all__ = [
    "LBM_FORMULAS",
    "Injection",
    "injected_activity_at",
    "lean_body_mass_kg",
    "percent_id",
    "percent_id_per_ml",
    "sensitivity_from_calibration",
    "suv_bw",
    "suv_lbm",
    "to_bq_per_ml",
]

#: Lean-body-mass formulas understood by :func:`lean_body_mass_kg`; the first is the default.
LBM_FORMULAS = ("janmahasatian", "james")

_BQ_PER_MBQ = 1e6
_ML_PER_MM3 = 1e-3
_G_PER_KG = 1000.0


# --------------------------------------------------------------------------------------------
# system sensitivity and calibrated images
# --------------------------------------------------------------------------------------------


def sensitivity_from_calibration(
    counts: float | Image,
    acquisition_duration_s: float,
    source_activity_bq: float,
    source_time: TimeLike,
    acquisition_start: TimeLike,
    isotope: str | Isotope,
    *,
    background_counts: float = 0.0,
) -> float:
    """System sensitivity from an acquisition of a source of known activity.

    The source activity ``A_cal`` measured in a dose calibrator at ``source_time`` is decayed to the
    acquisition, and averaged over it because the source keeps decaying while counts are taken:

        Ā = A_cal · exp(−λ (t_acq − t_cal)) · (1 − exp(−λΔ)) / (λΔ)         (DESIGN.md §3)
        S = (N − N_bkg) / Δ / (Ā / 10⁶)                                     [cps/MBq]

    (e.g. MIRD Pamphlet No. 23, Dewaraja et al., J Nucl Med 2012;53:1310, §"Calibration").

    Parameters
    ----------
    counts : float or Image
        Either the total counts ``N`` recorded over the acquisition (planar image or the sum of
        the projections, as wanted for the use of ``S``), or a reconstructed image of the source.
        For an image the "counts" are its total ``Σ x · V_voxel`` (image units × mL), and the result
        is an image calibration factor in (image units × mL) per MBq, to be used with
        :func:`to_bq_per_ml` on images reconstructed the same way. When the image has a
        ``reference_time_s`` it is decay-corrected to ``acquisition_start + reference_time_s`` and
        compared with the activity at that instant; otherwise with ``Ā``.
    acquisition_duration_s : float
        Acquisition duration ``Δ`` in s (> 0).
    source_activity_bq : float
        Dose-calibrator activity of the source in Bq (> 0), at ``source_time``.
    source_time, acquisition_start : datetime or float
        When the source was measured and when the acquisition started: both datetimes, or both
        seconds on the same clock.
    isotope : str or Isotope
        The radionuclide (its half-life is used).
    background_counts : float, keyword-only
        Counts from room background over the same duration, subtracted from ``N`` (counts only).

    Returns
    -------
    float
        Sensitivity in counts/s per MBq (or the image calibration factor described above).

    Raises
    ------
    InputError
        Non-positive duration or activity, non-positive net counts, a calibrated (Bq/mL) image, or
        times of mixed kinds.
    """
    duration = positive(acquisition_duration_s, "acquisition_duration_s", "s")
    activity = positive(source_activity_bq, "source_activity_bq", "Bq")
    t_half = half_life_s(isotope)
    delay = elapsed_s(source_time, acquisition_start, "source_time", "acquisition_start")
    bkg = non_negative(background_counts, "background_counts")
    if isinstance(counts, Image):
        if bkg:
            raise InputError("background_counts applies to raw counts, not to an image")
        if counts.units == "Bq/mL":
            raise InputError("the calibration image is already in Bq/mL; pass an uncalibrated one")
        total = float(np.sum(np.asarray(counts), dtype=np.float64)) * counts.grid.voxel_volume_ml
        if counts.reference_time_s is not None:
            # A decay-corrected image shows the activity present at its reference time.
            t_ref = delay + float(counts.reference_time_s)
            seen_bq = activity * math.exp(-decay_constant_per_s(t_half) * t_ref)
        else:
            seen_bq = activity * float(mean_activity_fraction(t_half, delay, duration, 0.0))
        rate = total
    else:
        net = finite(counts, "counts") - bkg
        seen_bq = activity * float(mean_activity_fraction(t_half, delay, duration, 0.0))
        rate = net / duration
    if not rate > 0:
        raise InputError(
            f"net calibration signal must be positive, got {rate!r}; check counts and background"
        )
    return rate / (seen_bq / _BQ_PER_MBQ)


def to_bq_per_ml(
    image: Image,
    sensitivity_cps_per_mbq: float,
    *,
    projection_pixel_area_mm2: float | None = None,
) -> Image:
    """Convert an uncalibrated image to activity concentration (Bq/mL).

    ``c = x · k / (S · 10⁻⁶)`` with ``S`` in cps/MBq (or the image calibration factor of
    :func:`sensitivity_from_calibration` applied to an image), ``k = 1`` for an image in counts/s
    per mL, and ``k = 1000 / a`` for the uncalibrated output of :class:`recon.SpectModel`, whose
    values are counts/s per projection bin per mm of path: a voxel of value ``x`` and volume
    ``V`` mm³ adds ``x V / a`` counts/s to a view with pixel area ``a`` mm² (the calibration the
    model applies itself when given ``sensitivity_cps_per_mbq``).

    Parameters
    ----------
    image : Image
        Uncalibrated image.
    sensitivity_cps_per_mbq : float
        Sensitivity in cps/MBq (> 0), or an image calibration factor.
    projection_pixel_area_mm2 : float, optional
        Projection pixel area ``a`` (u × v pixel size) in mm², for recon.SpectModel images with a
        planar sensitivity. Leave None for image-derived calibration factors.

    Returns
    -------
    Image
        Same grid, isotope and reference time, ``units="Bq/mL"``, float32, with the calibration
        recorded in ``info["calibration"]``.

    Raises
    ------
    InputError
        The image is already in Bq/mL, or a factor is not positive.
    """
    if not isinstance(image, Image):
        raise InputError(f"image must be a recon.Image, got {type(image).__name__}")
    if image.units == "Bq/mL":
        raise InputError("image is already calibrated (units Bq/mL)")
    s = positive(sensitivity_cps_per_mbq, "sensitivity_cps_per_mbq", "cps/MBq")
    k = 1.0
    if projection_pixel_area_mm2 is not None:
        k = 1.0 / (positive(projection_pixel_area_mm2, "projection_pixel_area_mm2", "mm²") * 1e-3)
    scale = k / (s / _BQ_PER_MBQ)
    data = (np.asarray(image, dtype=np.float64) * scale).astype(np.float32)
    info = dict(image.info)
    info["calibration"] = {
        "sensitivity_cps_per_mbq": s,
        "projection_pixel_area_mm2": projection_pixel_area_mm2,
        "from_units": image.units,
        "scale": scale,
    }
    return image.with_data(data, units="Bq/mL", info=info)


# --------------------------------------------------------------------------------------------
# injected activity
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Injection:
    """The administered activity, from dose-calibrator readings of the syringe.

    Parameters
    ----------
    activity_bq : float
        Syringe activity before injection, in Bq, measured at ``measured_at``.
    measured_at : datetime or float
        Time of that measurement.
    injected_at : datetime or float
        Injection time (same kind of time as ``measured_at``).
    isotope : str or Isotope
        The radionuclide.
    residual_bq : float
        Activity left in the syringe (and line) after injection, in Bq; 0 when not measured.
    residual_measured_at : datetime or float, optional
        When the residual was measured; required when ``residual_bq > 0``.

    Notes
    -----
    The net injected activity at the injection time is

        A_inj = A_pre · exp(−λ (t_inj − t_pre)) − A_res · exp(λ (t_res − t_inj)),

    each reading decayed (or un-decayed) from its own measurement time to the injection time.
    """

    activity_bq: float
    measured_at: TimeLike
    injected_at: TimeLike
    isotope: str | Isotope
    residual_bq: float = 0.0
    residual_measured_at: TimeLike | None = None

    def __post_init__(self) -> None:
        positive(self.activity_bq, "injected activity_bq", "Bq")
        residual = non_negative(self.residual_bq, "residual_bq", "Bq")
        get_isotope(self.isotope)
        elapsed_s(self.measured_at, self.injected_at, "measured_at", "injected_at")
        if residual > 0:
            if self.residual_measured_at is None:
                raise InputError(
                    "residual_bq was given without residual_measured_at; the residual must be "
                    "decay-corrected from its own measurement time"
                )
            elapsed_s(self.injected_at, self.residual_measured_at, "injected_at", "residual")
        if not self.activity_at_injection_bq > 0:
            raise InputError(
                "the residual activity is not smaller than the syringe activity at injection "
                f"(net {self.activity_at_injection_bq:.6g} Bq); check the readings and times"
            )

    @property
    def decay_constant_per_s(self) -> float:
        """λ = ln 2 / T½ of the isotope, in 1/s."""
        return get_isotope(self.isotope).decay_constant_per_s

    @property
    def activity_at_injection_bq(self) -> float:
        """Net injected activity at the injection time, in Bq."""
        lam = self.decay_constant_per_s
        dt_pre = elapsed_s(self.measured_at, self.injected_at, "measured_at", "injected_at")
        net = float(self.activity_bq) * math.exp(-lam * dt_pre)
        if self.residual_bq and self.residual_measured_at is not None:
            dt_res = elapsed_s(
                self.injected_at, self.residual_measured_at, "injected_at", "residual_measured_at"
            )
            net -= float(self.residual_bq) * math.exp(lam * dt_res)
        return net

    def time_after_injection_s(self, time: TimeLike) -> float:
        """Seconds from the injection to ``time`` (same kind of time as ``injected_at``).

        Raises
        ------
        InputError
            ``time`` is before the injection.
        """
        dt = elapsed_s(self.injected_at, time, "injected_at", "time")
        if dt < 0:
            raise InputError(f"time is {-dt:.6g} s before the injection; check the clock times")
        return dt

    def activity_at(self, time: TimeLike) -> float:
        """Activity in the patient at clock ``time`` (physical decay only), in Bq."""
        dt = self.time_after_injection_s(time)
        return self.activity_at_injection_bq * math.exp(-self.decay_constant_per_s * dt)


def injected_activity_at(
    injected: float | Injection | None,
    time_after_injection_s: float | None = None,
    *,
    isotope: str | Isotope | None = None,
) -> float:
    """The injected activity to normalise by, at the time the measured value refers to.

    Parameters
    ----------
    injected : float or Injection
        Net injected activity at injection in Bq, or an :class:`Injection`.
    time_after_injection_s : float, optional
        ``None`` (default): the measured value is decay-corrected to injection, so the activity
        at injection is returned. A time ``t ≥ 0`` in s: the measured value is the activity at
        scan time ``t``, so the injected activity decayed to ``t``, ``A · exp(−λ t)``, is returned.
    isotope : str or Isotope, optional
        Needed with a float ``injected`` and a time (an Injection carries its own).

    Returns
    -------
    float
        Activity in Bq.

    Raises
    ------
    InputError
        ``injected`` is missing or not positive, the time is negative, or no isotope is known.
    """
    if injected is None:
        raise InputError(
            "the injected activity is needed (Bq, or a recon.quant.Injection); none was given"
        )
    if isinstance(injected, Injection):
        a0 = injected.activity_at_injection_bq
        if isotope is not None and get_isotope(isotope) != get_isotope(injected.isotope):
            raise InputError(
                f"isotope {isotope!r} disagrees with the injection's isotope {injected.isotope!r}"
            )
        isotope = injected.isotope
    else:
        a0 = positive(injected, "injected activity", "Bq")
    if time_after_injection_s is None:
        return a0
    t = finite(time_after_injection_s, "time_after_injection_s")
    if t < 0:
        raise InputError(
            f"time_after_injection_s must not be negative (the scan cannot precede the "
            f"injection), got {t} s"
        )
    if isotope is None:
        raise InputError(
            "decaying the injected activity to scan time needs the isotope; pass isotope="
        )
    return a0 * math.exp(-decay_constant_per_s(isotope) * t)


# --------------------------------------------------------------------------------------------
# SUV and %ID
# --------------------------------------------------------------------------------------------


def _values(concentration: Any, name: str) -> tuple[Any, Image | None]:
    """Numeric values of a float, array or Bq/mL Image, and the Image (or None)."""
    if isinstance(concentration, Image):
        if concentration.units != "Bq/mL":
            raise InputError(
                f"{name} image must be in Bq/mL, got units {concentration.units!r}; "
                "calibrate it with recon.quant.to_bq_per_ml"
            )
        return np.asarray(concentration, dtype=np.float64), concentration
    if np.ndim(concentration) == 0:
        return finite(concentration, name), None
    array = np.asarray(concentration, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinite values")
    return array, None


def _wrap(result: Any, image: Image | None, units: str, **info: Any) -> Any:
    if image is None:
        return result
    merged = dict(image.info)
    merged.update(info)
    return image.with_data(np.asarray(result, dtype=np.float32), units=units, info=merged)


def suv_bw(
    concentration_bq_ml: float | np.ndarray | Image,
    injected: float | Injection | None,
    weight_kg: float,
    *,
    time_after_injection_s: float | None = None,
    isotope: str | Isotope | None = None,
) -> Any:
    """Body-weight standardised uptake value.

    ``SUVbw = C / (A / W)`` with ``C`` in Bq/mL, ``A`` the injected activity (Bq) at the same time
    as ``C``, ``W`` the body weight in g; the result is in g/mL (dimensionless for tissue density
    1 g/mL). Kinahan & Fletcher, Semin Ultrasound CT MR 2010;31:496; Boellaard et al., EANM
    procedure guidelines, Eur J Nucl Med Mol Imaging 2015;42:328.

    Parameters
    ----------
    concentration_bq_ml : float, ndarray or Image
        Activity concentration in Bq/mL (an Image must have units ``"Bq/mL"``).
    injected : float or Injection
        Net injected activity at injection (Bq), or an :class:`Injection`.
    weight_kg : float
        Body weight in kg (> 0).
    time_after_injection_s : float, optional
        Give it when ``C`` is the activity at scan time: the injected activity is decayed to it.
        Leave None when ``C`` is decay-corrected to injection.
    isotope : str or Isotope, optional
        Needed with a float ``injected`` and a time.

    Returns
    -------
    float, ndarray or Image
        SUVbw in g/mL, of the kind of ``concentration_bq_ml`` (an Image gets units ``"g/mL"``).

    Raises
    ------
    InputError
        Missing or non-positive activity, non-positive weight, negative time, non-Bq/mL image.
    """
    c, image = _values(concentration_bq_ml, "concentration_bq_ml")
    w = positive(weight_kg, "weight_kg", "kg")
    a = injected_activity_at(injected, time_after_injection_s, isotope=isotope)
    return _wrap(c * (w * _G_PER_KG) / a, image, "g/mL", suv="SUVbw")


def lean_body_mass_kg(
    weight_kg: float, height_cm: float, sex: str, formula: str = "janmahasatian"
) -> float:
    """Lean body mass (fat-free mass) in kg from weight, height and sex.

    ``"janmahasatian"`` (default) — Janmahasatian et al., Quantification of lean bodyweight, Clin
    Pharmacokinet 2005;44:1051, with BMI = W / H² (kg/m²):

        male:   LBM = 9270 · W / (6680 + 216 · BMI)
        female: LBM = 9270 · W / (8780 + 244 · BMI)

    ``"james"`` — James WPT, Research on obesity, HMSO London 1976 (the formula of PERCIST 1.0,
    Wahl et al., J Nucl Med 2009;50:122S), with H in cm:

        male:   LBM = 1.10 · W − 128 · (W / H)²
        female: LBM = 1.07 · W − 148 · (W / H)²

    Janmahasatian is the default because James's quadratic term makes LBM *fall* with weight above
    a BMI of about 43 (male) / 36 (female), giving implausible SUL in obese patients; Tahari et
    al., J Nucl Med 2014;55:1481, recommend Janmahasatian for SUL.

    Parameters
    ----------
    weight_kg : float
        Body weight in kg (> 0).
    height_cm : float
        Height in cm (> 0).
    sex : str
        ``"M"``/``"male"`` or ``"F"``/``"female"`` (case-insensitive).
    formula : {"janmahasatian", "james"}
        Which formula.

    Returns
    -------
    float
        LBM in kg.

    Raises
    ------
    InputError
        Non-positive weight or height, unknown sex or formula, or a non-positive result (James
        at extreme BMI).
    """
    w = positive(weight_kg, "weight_kg", "kg")
    h = positive(height_cm, "height_cm", "cm")
    key = str(sex).strip().lower()
    if key in ("m", "male"):
        male = True
    elif key in ("f", "female"):
        male = False
    else:
        raise InputError(f"sex must be 'M'/'male' or 'F'/'female', got {sex!r}")
    name = str(formula).strip().lower()
    if name == "janmahasatian":
        bmi = w / (h / 100.0) ** 2
        lbm = 9270.0 * w / ((6680.0 + 216.0 * bmi) if male else (8780.0 + 244.0 * bmi))
    elif name == "james":
        lbm = (1.10 * w - 128.0 * (w / h) ** 2) if male else (1.07 * w - 148.0 * (w / h) ** 2)
    else:
        raise InputError(f"formula must be one of {LBM_FORMULAS}, got {formula!r}")
    if not lbm > 0:
        raise InputError(
            f"the {name} formula gives a non-positive lean body mass ({lbm:.4g} kg) for "
            f"W = {w} kg, H = {h} cm; use formula='janmahasatian'"
        )
    return lbm


def suv_lbm(
    concentration_bq_ml: float | np.ndarray | Image,
    injected: float | Injection | None,
    weight_kg: float,
    height_cm: float,
    sex: str,
    *,
    formula: str = "janmahasatian",
    time_after_injection_s: float | None = None,
    isotope: str | Isotope | None = None,
) -> Any:
    """Lean-body-mass standardised uptake value (SUL).

    ``SUL = C / (A / LBM)`` with LBM in g from :func:`lean_body_mass_kg` (default formula:
    Janmahasatian 2005; ``formula="james"`` for James 1976 / PERCIST 1.0). Other parameters and
    the time convention are as in :func:`suv_bw`.

    Returns
    -------
    float, ndarray or Image
        SUL in g/mL, of the kind of ``concentration_bq_ml``.
    """
    c, image = _values(concentration_bq_ml, "concentration_bq_ml")
    lbm = lean_body_mass_kg(weight_kg, height_cm, sex, formula)
    a = injected_activity_at(injected, time_after_injection_s, isotope=isotope)
    return _wrap(c * (lbm * _G_PER_KG) / a, image, "g/mL", suv=f"SUL ({formula})")


def percent_id(
    total_bq: float | np.ndarray,
    injected: float | Injection | None,
    *,
    time_after_injection_s: float | None = None,
    isotope: str | Isotope | None = None,
) -> Any:
    """Percentage of the injected activity in a region: ``%ID = 100 · A_region / A_inj``.

    Parameters
    ----------
    total_bq : float or ndarray
        Activity in the region in Bq (e.g. :attr:`recon.quant.VoiStats.total`).
    injected : float or Injection
        Net injected activity at injection (Bq), or an :class:`Injection`.
    time_after_injection_s : float, optional
        Give it when ``total_bq`` is the activity at scan time (the injected activity is decayed
        to it); leave None when ``total_bq`` is decay-corrected to injection — the usual
        convention for biodistribution, where %ID then changes only through biology.
    isotope : str or Isotope, optional
        Needed with a float ``injected`` and a time.

    Returns
    -------
    float or ndarray
        %ID (percent).

    Raises
    ------
    InputError
        Missing or non-positive injected activity, negative time, no isotope to decay with.
    """
    total, _ = _values(total_bq, "total_bq")
    a = injected_activity_at(injected, time_after_injection_s, isotope=isotope)
    return 100.0 * total / a


def percent_id_per_ml(
    concentration_bq_ml: float | np.ndarray | Image,
    injected: float | Injection | None,
    *,
    time_after_injection_s: float | None = None,
    isotope: str | Isotope | None = None,
) -> Any:
    """Percentage of the injected activity per mL: ``%ID/mL = 100 · C / A_inj``.

    Equal to %ID/g for a tissue density of 1 g/mL. Time convention as in :func:`percent_id`.

    Returns
    -------
    float, ndarray or Image
        %ID/mL, of the kind of ``concentration_bq_ml`` (an Image gets units ``"%ID/mL"``).
    """
    c, image = _values(concentration_bq_ml, "concentration_bq_ml")
    a = injected_activity_at(injected, time_after_injection_s, isotope=isotope)
    return _wrap(100.0 * c / a, image, "%ID/mL")
