"""Uptake ratios, heterogeneity between lesions and patients, and patient stratification.

Radiolabelled-liposome studies found large differences in tumour uptake between patients and
between lesions of one patient (eight-fold in Harrington et al., Clin Cancer Res 2001;7:243),
and proposed imaging to select patients likely to benefit. Stratifying by a patient's
*lowest*-uptake lesion follows Lee et al. (Clin Cancer Res 2017;23:4190, PET of Cu-64-labelled
MM-302, HER2-targeted PEGylated liposomal doxorubicin): lesions reached by too little drug may seed
further spread, so the least-reached lesion is the one that matters.

A cohort table is a sequence of rows (mappings), one per lesion, with a patient id, a lesion id
and metric columns, e.g. ``{"patient": "P01", "lesion": "liver_1", "suv_mean": 3.2}`` — the rows
that :func:`recon.quant.report.read_csv` gives back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.physics.isotopes import Isotope
from recon.quant._common import decay_constant_per_s, finite, non_negative
from recon.quant.timeseries import DECAY_MODES
from recon.quant.voi import VoiStats

__all__ = [
    "BloodSample",
    "PatientStratum",
    "Spread",
    "between_lesion_spread",
    "between_patient_spread",
    "blood_concentration_at",
    "lesion_to_background",
    "lesion_to_blood",
    "lesion_to_liver",
    "lesion_to_spleen",
    "lowest_uptake_lesion",
    "spread",
    "stratify",
    "uptake_ratio",
]

_STATISTICS = ("mean", "max", "peak", "min", "total")
_SUMMARIES = ("lowest", "highest", "mean", "median")


# --------------------------------------------------------------------------------------------
# blood samples
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BloodSample:
    """A blood sample counted in a well counter.

    Attributes
    ----------
    time_after_injection_s : float
        When the sample was drawn, s after injection (≥ 0).
    concentration_bq_ml : float
        Measured activity concentration in Bq/mL (≥ 0), at ``counted_after_injection_s``.
    counted_after_injection_s : float, optional
        When the sample was counted (s after injection); None: the value is already the
        concentration at the draw time.
    """

    time_after_injection_s: float
    concentration_bq_ml: float
    counted_after_injection_s: float | None = None

    def __post_init__(self) -> None:
        t = finite(self.time_after_injection_s, "blood sample time_after_injection_s")
        if t < 0:
            raise InputError(f"blood sample drawn {t} s after injection: before the injection")
        non_negative(self.concentration_bq_ml, "blood sample concentration_bq_ml", "Bq/mL")
        if self.counted_after_injection_s is not None:
            tc = finite(self.counted_after_injection_s, "counted_after_injection_s")
            if tc < t:
                raise InputError("a blood sample cannot be counted before it was drawn")

    def at_draw_bq_ml(self, isotope: str | Isotope) -> float:
        """Concentration at the draw time: ``C · exp(λ (t_count − t_draw))``."""
        c = float(self.concentration_bq_ml)
        if self.counted_after_injection_s is None:
            return c
        lam = decay_constant_per_s(isotope)
        return c * math.exp(lam * (self.counted_after_injection_s - self.time_after_injection_s))


def blood_concentration_at(
    samples: Sequence[BloodSample],
    time_after_injection_s: float,
    isotope: str | Isotope,
    *,
    mode: str,
) -> float:
    """Blood concentration at a scan time, interpolated between samples.

    Each sample is decay-corrected to injection (``C_draw · exp(λ t_draw)``) so that only the
    biological clearance is interpolated (linearly in time); the result is then given in ``mode``.

    Parameters
    ----------
    samples : sequence of BloodSample
        At least one; the scan time must lie within their draw times (no extrapolation).
    time_after_injection_s : float
        Scan time, s after injection.
    isotope : str or Isotope
        For decay corrections.
    mode : {"decay_corrected_to_injection", "activity_at_scan_time"}, keyword-only
        Convention of the result; use the convention of the image value it is compared with.

    Returns
    -------
    float
        Concentration in Bq/mL.

    Raises
    ------
    InputError
        No samples, repeated draw times, or a scan time outside the sampled range.
    """
    if mode not in DECAY_MODES:
        raise InputError(f"mode must be one of {DECAY_MODES}, got {mode!r}")
    items = sorted(samples, key=lambda s: s.time_after_injection_s)
    if not items:
        raise InputError("no blood samples were given")
    for s in items:
        if not isinstance(s, BloodSample):
            raise InputError(f"samples must be BloodSample objects, got {type(s).__name__}")
    times = np.array([s.time_after_injection_s for s in items], dtype=np.float64)
    if np.any(np.diff(times) == 0):
        raise InputError("two blood samples have the same draw time")
    t = finite(time_after_injection_s, "time_after_injection_s")
    if t < 0:
        raise InputError(f"scan time {t} s is before the injection")
    span = times[-1] - times[0]
    tol = 1e-9 * max(span, 1.0)
    if t < times[0] - tol or t > times[-1] + tol:
        raise InputError(
            f"scan time {t:.6g} s lies outside the blood samples ({times[0]:.6g} to "
            f"{times[-1]:.6g} s after injection); extrapolation is not done"
        )
    lam = decay_constant_per_s(isotope)
    corrected = np.array([s.at_draw_bq_ml(isotope) for s in items]) * np.exp(lam * times)
    value = float(np.interp(t, times, corrected))
    if mode == "activity_at_scan_time":
        value *= math.exp(-lam * t)
    return value


# --------------------------------------------------------------------------------------------
# ratios
# --------------------------------------------------------------------------------------------


def _value(x: float | VoiStats, statistic: str, name: str) -> float:
    if isinstance(x, VoiStats):
        if statistic not in _STATISTICS:
            raise InputError(f"statistic must be one of {_STATISTICS}, got {statistic!r}")
        return float(getattr(x, statistic))
    return finite(x, name)


def uptake_ratio(
    target: float | VoiStats,
    reference: float | VoiStats,
    *,
    statistic: str = "mean",
    reference_statistic: str = "mean",
) -> float:
    """``target / reference`` of two values at the same time and in the same units.

    Parameters
    ----------
    target, reference : float or VoiStats
        Values (e.g. Bq/mL or SUV), or VOI statistics.
    statistic, reference_statistic : str, keyword-only
        Which statistic of a VoiStats to use: ``"mean"``, ``"max"``, ``"peak"``, ``"min"``,
        ``"total"``. The reference is a mean by default (a background or organ level).

    Returns
    -------
    float
        The dimensionless ratio.

    Raises
    ------
    InputError
        A reference ≤ 0, or different units in two VoiStats.
    """
    if isinstance(target, VoiStats) and isinstance(reference, VoiStats):
        if target.units != reference.units:
            raise InputError(
                f"target and reference have different units: {target.units!r} and "
                f"{reference.units!r}"
            )
    t = _value(target, statistic, "target")
    r = _value(reference, reference_statistic, "reference")
    if not r > 0:
        raise InputError(f"the reference value must be positive to form a ratio, got {r!r}")
    return t / r


def lesion_to_blood(
    lesion: float | VoiStats,
    blood: float | VoiStats | list[BloodSample] | tuple[BloodSample, ...],
    *,
    statistic: str = "mean",
    time_after_injection_s: float | None = None,
    isotope: str | Isotope | None = None,
    mode: str | None = None,
) -> float:
    """Lesion-to-blood ratio (e.g. tumour-to-blood of long-circulating liposomes).

    Blood is a concentration (Bq/mL), a VOI on the blood pool (e.g. left ventricle or aorta), or
    blood samples: then the blood concentration at ``time_after_injection_s`` is interpolated
    with :func:`blood_concentration_at` in the lesion's ``mode`` (both needed, with ``isotope``).
    The lesion value must then be in Bq/mL.

    Returns
    -------
    float
        Lesion / blood (dimensionless).
    """
    if isinstance(blood, (list, tuple)):
        if time_after_injection_s is None or isotope is None or mode is None:
            raise InputError(
                "with blood samples, give time_after_injection_s, isotope and the lesion value's "
                "mode ('activity_at_scan_time' or 'decay_corrected_to_injection')"
            )
        if isinstance(lesion, VoiStats) and lesion.units != "Bq/mL":
            raise InputError(f"blood samples are in Bq/mL, the lesion is in {lesion.units!r}")
        blood_value: float | VoiStats = blood_concentration_at(
            blood, time_after_injection_s, isotope, mode=mode
        )
    else:
        blood_value = blood
    return uptake_ratio(lesion, blood_value, statistic=statistic)


def lesion_to_background(
    lesion: float | VoiStats, background: float | VoiStats, *, statistic: str = "mean"
) -> float:
    """Lesion-to-background ratio (background: e.g. a VOI in adjacent normal tissue)."""
    return uptake_ratio(lesion, background, statistic=statistic)


def lesion_to_liver(
    lesion: float | VoiStats, liver: float | VoiStats, *, statistic: str = "mean"
) -> float:
    """Lesion-to-liver ratio (liver: the mononuclear-phagocyte-system reference organ)."""
    return uptake_ratio(lesion, liver, statistic=statistic)


def lesion_to_spleen(
    lesion: float | VoiStats, spleen: float | VoiStats, *, statistic: str = "mean"
) -> float:
    """Lesion-to-spleen ratio."""
    return uptake_ratio(lesion, spleen, statistic=statistic)


# --------------------------------------------------------------------------------------------
# heterogeneity
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Spread of a set of values.

    Attributes
    ----------
    n : int
        Number of values.
    mean, sd, median, min, max : float
        ``sd`` is the sample standard deviation (ddof = 1; 0 for one value).
    cv : float
        ``sd / mean`` (NaN when the mean is 0).
    fold : float
        ``max / min``, the fold difference (``inf`` when min is 0, NaN when min < 0).
    """

    n: int
    mean: float
    sd: float
    median: float
    min: float
    max: float
    cv: float
    fold: float

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict (one row of the spread table)."""
        return asdict(self)


def spread(values: Iterable[float]) -> Spread:
    """Mean, SD, CV, median, min, max and max/min fold difference of ``values``."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise InputError("no values to summarise")
    if not np.all(np.isfinite(v)):
        raise InputError("values contain NaN or infinite entries")
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    lo, hi = float(v.min()), float(v.max())
    if lo > 0:
        fold = hi / lo
    elif lo == 0:
        fold = math.inf if hi > 0 else math.nan
    else:
        fold = math.nan
    return Spread(
        n=int(v.size),
        mean=mean,
        sd=sd,
        median=float(np.median(v)),
        min=lo,
        max=hi,
        cv=sd / mean if mean != 0 else math.nan,
        fold=fold,
    )


def _grouped(
    table: Iterable[Mapping[str, Any]], metric: str, patient_key: str, lesion_key: str
) -> dict[Any, list[tuple[Any, float, Mapping[str, Any]]]]:
    """Rows by patient: ``[(lesion, value, row), …]`` in table order."""
    groups: dict[Any, list[tuple[Any, float, Mapping[str, Any]]]] = {}
    for n, row in enumerate(table):
        if not isinstance(row, Mapping):
            raise InputError(f"table row {n} is not a mapping (dict): {row!r}")
        for key in (patient_key, metric):
            if key not in row:
                raise InputError(f"table row {n} has no {key!r} column: {dict(row)!r}")
        value = finite(row[metric], f"row {n} {metric!r}")
        groups.setdefault(row[patient_key], []).append((row.get(lesion_key, n), value, row))
    if not groups:
        raise InputError("the table is empty")
    return groups


def between_lesion_spread(
    table: Iterable[Mapping[str, Any]],
    metric: str,
    *,
    patient_key: str = "patient",
    lesion_key: str = "lesion",
) -> dict[Any, Spread]:
    """Spread of ``metric`` over the lesions of each patient (intra-patient heterogeneity)."""
    return {
        patient: spread(v for _, v, _ in rows)
        for patient, rows in _grouped(table, metric, patient_key, lesion_key).items()
    }


def _summary(rows: list[tuple[Any, float, Mapping[str, Any]]], by: str) -> tuple[float, Any]:
    values = [v for _, v, _ in rows]
    if by == "lowest":
        i = int(np.argmin(values))
        return values[i], rows[i][0]
    if by == "highest":
        i = int(np.argmax(values))
        return values[i], rows[i][0]
    if by == "mean":
        return float(np.mean(values)), None
    if by == "median":
        return float(np.median(values)), None
    raise InputError(f"by must be one of {_SUMMARIES}, got {by!r}")


def between_patient_spread(
    table: Iterable[Mapping[str, Any]],
    metric: str,
    *,
    by: str = "mean",
    patient_key: str = "patient",
    lesion_key: str = "lesion",
) -> Spread:
    """Spread over patients of a per-patient summary of ``metric`` (inter-patient heterogeneity).

    ``by`` is the per-patient summary: ``"mean"`` (default), ``"median"``, ``"lowest"`` or
    ``"highest"`` lesion.
    """
    groups = _grouped(table, metric, patient_key, lesion_key)
    return spread(_summary(rows, by)[0] for rows in groups.values())


def lowest_uptake_lesion(
    table: Iterable[Mapping[str, Any]],
    metric: str,
    *,
    patient_key: str = "patient",
    lesion_key: str = "lesion",
) -> dict[Any, Mapping[str, Any]]:
    """Each patient's row with the lowest ``metric`` (the first one on ties)."""
    out = {}
    for patient, rows in _grouped(table, metric, patient_key, lesion_key).items():
        values = [v for _, v, _ in rows]
        out[patient] = rows[int(np.argmin(values))][2]
    return out


@dataclass(frozen=True)
class PatientStratum:
    """One patient's stratification.

    Attributes
    ----------
    patient : Any
        Patient id.
    value : float
        The per-patient value compared with the threshold.
    lesion : Any
        The lesion giving ``value`` (``by="lowest"``/``"highest"``), else None.
    n_lesions : int
        Lesions of the patient in the table.
    group : str
        ``labels[1]`` ("high") when ``value ≥ threshold``, else ``labels[0]`` ("low").
    threshold : float
        The threshold used.
    metric, by : str
        What was compared.
    """

    patient: Any
    value: float
    lesion: Any
    n_lesions: int
    group: str
    threshold: float
    metric: str
    by: str

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict (one row of the strata table)."""
        return asdict(self)


def stratify(
    table: Iterable[Mapping[str, Any]],
    metric: str,
    threshold: float | str | None = None,
    *,
    by: str = "lowest",
    labels: tuple[str, str] = ("low", "high"),
    patient_key: str = "patient",
    lesion_key: str = "lesion",
) -> list[PatientStratum]:
    """Split patients into low and high uptake groups.

    Each patient is summarised by ``by`` (default: the lowest-uptake lesion) and compared with
    ``threshold``: ``value ≥ threshold`` is ``labels[1]``, otherwise ``labels[0]``.

    Parameters
    ----------
    table : iterable of mapping
        One row per lesion.
    metric : str
        Column to use (e.g. ``"suv_mean"``, ``"tumour_to_blood"``, ``"percent_id_per_ml"``).
    threshold : float, "median" or None
        A fixed cut-off in the metric's units, or ``"median"`` / ``None`` for the median of the
        per-patient values (patients at the median go to the high group).
    by : {"lowest", "highest", "mean", "median"}, keyword-only
        Per-patient summary.
    labels : (str, str), keyword-only
        Names of the groups below and at-or-above the threshold.
    patient_key, lesion_key : str, keyword-only
        Column names of the patient and lesion ids.

    Returns
    -------
    list of PatientStratum
        One per patient, in order of first appearance in the table.
    """
    if by not in _SUMMARIES:
        raise InputError(f"by must be one of {_SUMMARIES}, got {by!r}")
    if len(labels) != 2:
        raise InputError(f"labels must be two names (low, high), got {labels!r}")
    groups = _grouped(table, metric, patient_key, lesion_key)
    summaries = {p: _summary(rows, by) for p, rows in groups.items()}
    if threshold is None or threshold == "median":
        cut = float(np.median([v for v, _ in summaries.values()]))
    elif isinstance(threshold, str):
        raise InputError(f"threshold must be a number, 'median' or None, got {threshold!r}")
    else:
        cut = finite(threshold, "threshold")
    return [
        PatientStratum(
            patient=p,
            value=v,
            lesion=lesion,
            n_lesions=len(groups[p]),
            group=labels[1] if v >= cut else labels[0],
            threshold=cut,
            metric=metric,
            by=by,
        )
        for p, (v, lesion) in summaries.items()
    ]
