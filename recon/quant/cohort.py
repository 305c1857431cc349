"""Cohorts: several patients' studies quantified together (``recon quant COHORT.toml``).

Liposome and nanoparticle imaging found uptake differing several-fold between patients and
between the lesions of one patient (Harrington et al., Clin Cancer Res 2001;7:243), and Lee et
al. (Clin Cancer Res 2017;23:4190) stratified patients by their *lowest*-uptake lesion: the
lesion reached by the least drug may limit the therapy. A cohort run quantifies every patient's
study (:mod:`recon.quant.study`) and then compares the lesions of all of them at one time point.

Cohort file
-----------

.. code-block:: toml

    [cohort]
    name = "liposome pilot"               # optional; default: the file name without .toml
    studies = ["P01/study.toml", "P02/study.toml"]
                                          # one study file per patient (relative to this file);
                                          # each study's [study] name is its patient id
    uptake_at = "72h"                     # a time point label of every study, or hours after
                                          # injection (each patient's scan nearest to it, within
                                          # tolerance_h); default: the last label every study has
    tolerance_h = 6                       # with uptake_at in hours (default 6)
    metric = "percent_id_per_ml"          # lesion uptake compared (below); default
                                          # percent_id_per_ml when every study knows its
                                          # injected activity, else bq_ml_dc
    stratify_by = "lowest"                # per-patient summary: lowest | highest | mean | median
    threshold = "median"                  # or a number in the metric's units
    labels = ["low", "high"]              # groups below and at-or-above the threshold
    plots = true

``recon quant P01/study.toml P02/study.toml -o OUT`` runs the same with every default.

Metrics (of each study's ``[analysis] quantity``, which must be the same in every study):
``bq_ml`` (activity at scan time), ``bq_ml_dc`` (decay-corrected to injection),
``percent_id_per_ml``, ``suv_bw``, ``suv_lbm``, ``to_blood`` and ``to_background`` (ratio to the
study's first VOI of that role), and ``tia_bq_h_per_ml`` (the time-integrated concentration; no
time point).

Output folder
-------------

Each patient's own report in ``OUT/<patient>/`` (:func:`recon.quant.study_report.write_report`),
and for the cohort, as CSV and JSON:

- ``cohort_lesions``: one row per lesion: every metric available, its rank in the patient
  (1 = lowest) and whether it is the patient's lowest-uptake lesion, kinetics (model, T_eff, TIA
  with standard errors);
- ``cohort_lowest``: each patient's lowest- and highest-uptake lesion, named, and their fold;
- ``cohort_spread``: spread (n, mean, SD, CV, median, min, max, fold) over all lesions, between
  patients (by the mean and by the lowest lesion) and within each patient, naming where the
  minimum and maximum are;
- ``cohort_strata``: each patient's group by the ``stratify_by`` lesion;

``cohort_summary.json``, and ``cohort_uptake.png``: every lesion's uptake per
patient, patients sorted by the stratifying value, the stratifying lesion marked and named, the
threshold drawn.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import load_toml, write_summary
from recon.errors import InputError
from recon.quant._toml import boolean, check_keys, context, number, table, text
from recon.quant.analysis import StudyResult, analyse_study
from recon.quant.calibration import suv_bw, suv_lbm
from recon.quant.ratios import between_lesion_spread, spread, stratify
from recon.quant.report import write_csv, write_json
from recon.quant.study import Study, StudyTimepoint, load_study
from recon.quant.study_report import write_report

__all__ = [
    "METRICS",
    "Cohort",
    "CohortResult",
    "CohortSettings",
    "analyse_cohort",
    "is_cohort_file",
    "load_cohort",
    "write_cohort_report",
]

log = logging.getLogger("recon")

#: Lesion metrics a cohort can compare (module docstring).
METRICS = (
    "percent_id_per_ml", "bq_ml", "bq_ml_dc", "suv_bw", "suv_lbm", "to_blood", "to_background",
    "tia_bq_h_per_ml",
)  # fmt: skip
_SUMMARIES = ("lowest", "highest", "mean", "median")
_COHORT_KEYS = (
    "name", "studies", "uptake_at", "tolerance_h", "metric", "stratify_by", "threshold",
    "labels", "plots",
)  # fmt: skip
_UNITS = {
    "percent_id_per_ml": "%ID/mL", "bq_ml": "Bq/mL", "bq_ml_dc": "Bq/mL", "suv_bw": "g/mL",
    "suv_lbm": "g/mL", "to_blood": "", "to_background": "", "tia_bq_h_per_ml": "Bq·h/mL",
}  # fmt: skip
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]*$")


@dataclass(frozen=True)
class CohortSettings:
    """The ``[cohort]`` options (module docstring); ``None`` means the default."""

    uptake_at: str | float | None = None
    tolerance_h: float = 6.0
    metric: str | None = None
    stratify_by: str = "lowest"
    threshold: float | str = "median"
    labels: tuple[str, str] = ("low", "high")
    plots: bool = True


@dataclass(frozen=True, eq=False)
class Cohort:
    """The patients' studies (loaded and validated) and how to compare them."""

    name: str
    studies: tuple[Study, ...]
    settings: CohortSettings = field(default_factory=CohortSettings)
    source: Path | None = None

    @property
    def input_paths(self) -> tuple[Path, ...]:
        """The cohort file (when read from one) and every study's input files."""
        paths = [] if self.source is None else [self.source]
        for study in self.studies:
            paths.extend(study.input_paths)
        return tuple(paths)


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def is_cohort_file(path: str | os.PathLike[str]) -> bool:
    """Whether a TOML file is a cohort file (it has a ``[cohort]`` table)."""
    return "cohort" in load_toml(Path(path))  # its errors name the file


def _settings(values: dict[str, Any]) -> CohortSettings:
    uptake_at = values.get("uptake_at")
    if uptake_at is not None and not isinstance(uptake_at, str):
        uptake_at = number(uptake_at, "[cohort] uptake_at (hours after injection)", "non-negative")
    elif isinstance(uptake_at, str):
        uptake_at = text(uptake_at, "[cohort] uptake_at")
    tolerance = number(values.get("tolerance_h", 6.0), "[cohort] tolerance_h", "non-negative")
    metric = values.get("metric")
    if metric is not None:
        metric = text(metric, "[cohort] metric", METRICS)
    by = text(values.get("stratify_by", "lowest"), "[cohort] stratify_by", _SUMMARIES)
    threshold = values.get("threshold", "median")
    if isinstance(threshold, str):
        if threshold != "median":
            raise InputError(f"[cohort] threshold must be a number or 'median', got {threshold!r}")
    else:
        threshold = number(threshold, "[cohort] threshold")
    labels = values.get("labels", ["low", "high"])
    if (
        not isinstance(labels, list)
        or len(labels) != 2
        or not all(isinstance(x, str) and x for x in labels)
        or labels[0] == labels[1]
    ):
        raise InputError(f"[cohort] labels must be two different names [low, high], got {labels!r}")
    plots = boolean(values.get("plots", True), "[cohort] plots")
    return CohortSettings(uptake_at, tolerance, metric, by, threshold, tuple(labels), plots)


def load_cohort(paths: Sequence[str | os.PathLike[str]]) -> Cohort:
    """A cohort from one cohort file, or from several study files (one per patient).

    Parameters
    ----------
    paths : sequence of path-like
        One cohort TOML file (with a ``[cohort]`` table), or two or more study files.

    Returns
    -------
    Cohort

    Raises
    ------
    InputError, GeometryError, PhysicsError
        One line naming the file at fault: a bad ``[cohort]`` key or value, a study that does not
        load, two patients with one name, a cohort file among study files, studies with different
        ``quantity``.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise InputError("no study or cohort file given")
    cohort_files = [f for f in files if is_cohort_file(f)]
    if cohort_files and len(files) > 1:
        raise InputError(
            f"{cohort_files[0]} is a cohort file: give it alone, or give study files only"
        )
    if cohort_files:
        source = cohort_files[0]
        with context(str(source)):
            doc = load_toml(source)
            check_keys(doc, ("cohort",), "the file")
            values = table(doc["cohort"], "[cohort]")
            check_keys(values, _COHORT_KEYS, "[cohort]")
            listed = values.get("studies")
            if (
                not isinstance(listed, list)
                or not listed
                or not all(isinstance(s, str) and s for s in listed)
            ):
                raise InputError("[cohort] studies must list the study files (one per patient)")
            settings = _settings(values)
            name = text(values.get("name", source.stem), "[cohort] name")
        studies = [load_study(source.parent / s) for s in listed]
    else:
        source, settings, name = None, CohortSettings(), "cohort"
        studies = [load_study(f) for f in files]
    with context(str(source) if source is not None else "cohort"):
        _check_patients(studies, files if source is None else None)
    return Cohort(name, tuple(studies), settings, source)


def _check_patients(studies: list[Study], files: list[Path] | None) -> None:
    seen: dict[str, int] = {}
    for n, study in enumerate(studies):
        if not _FOLDER_NAME.match(study.name):
            raise InputError(
                f"patient (study name) {study.name!r} cannot name a report folder: use letters, "
                "digits, spaces, '.', '_', '+' or '-'"
            )
        if study.name in seen:
            where = "" if files is None else f" ({files[seen[study.name]]} and {files[n]})"
            raise InputError(
                f"two studies name the same patient {study.name!r}{where}; give each a unique "
                "[study] name"
            )
        seen[study.name] = n
        if not study.lesions:
            raise InputError(
                f"study {study.name!r} has no lesion VOI; a cohort compares lesions (role = "
                '"lesion")'
            )
    quantities = {s.settings.quantity for s in studies}
    if len(quantities) > 1:
        described = ", ".join(f"{s.name} {s.settings.quantity}" for s in studies)
        raise InputError(
            f"the studies use different [analysis] quantity ({described}); a cohort compares "
            "one statistic"
        )


# --------------------------------------------------------------------------------------------
# analysis
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CohortResult:
    """Every patient's :class:`~recon.quant.analysis.StudyResult` and the cohort tables."""

    cohort: Cohort
    results: dict[str, StudyResult]
    metric: str
    uptake_at: str | float | None
    lesions: list[dict[str, Any]]
    lowest: list[dict[str, Any]]
    spread: list[dict[str, Any]]
    strata: list[dict[str, Any]]

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """The cohort tables by file stem: lesions, lowest-uptake lesions, spread and strata."""
        return {
            "cohort_lesions": self.lesions,
            "cohort_lowest": self.lowest,
            "cohort_spread": self.spread,
            "cohort_strata": self.strata,
        }


def _default_metric(studies: Sequence[Study]) -> str:
    return (
        "percent_id_per_ml"
        if all(s.injected_activity_bq is not None for s in studies)
        else "bq_ml_dc"
    )


def _check_metric(metric: str, studies: Sequence[Study]) -> None:
    needs = {
        "percent_id_per_ml": (lambda s: s.injected_activity_bq is not None, "injected activity"),
        "suv_bw": (
            lambda s: s.injected is not None and s.weight_kg is not None,
            "injected activity and weight",
        ),
        "suv_lbm": (lambda s: s.has_lbm, "injected activity, weight, height_cm and sex"),
        "to_blood": (lambda s: any(v.role == "blood" for v in s.vois), "a blood VOI"),
        "to_background": (
            lambda s: any(v.role == "background" for v in s.vois),
            "a background VOI",
        ),
    }
    if metric in needs:
        ok, what = needs[metric]
        missing = [s.name for s in studies if not ok(s)]
        if missing:
            raise InputError(
                f"[cohort] metric = {metric!r} needs the {what} of every study; missing in "
                f"{', '.join(missing)}"
            )


def _timepoint_at(study: Study, at: str | float, tolerance_h: float) -> StudyTimepoint:
    labels = [tp.label for tp in study.timepoints]
    if isinstance(at, str):
        if at not in labels:
            raise InputError(
                f"[cohort] uptake_at = {at!r} is not a time point of {study.name} (its labels: "
                f"{', '.join(labels)})"
            )
        return study.timepoints[labels.index(at)]
    hours = np.array([tp.time_h for tp in study.timepoints])
    nearest = int(np.argmin(np.abs(hours - at)))
    if abs(hours[nearest] - at) > tolerance_h:
        scans = ", ".join(f"{h:.4g}" for h in hours)
        raise InputError(
            f"[cohort] uptake_at = {at:g} h: {study.name} has no scan within tolerance_h = "
            f"{tolerance_h:g} h (its scans at {scans} h)"
        )
    return study.timepoints[nearest]


def _default_uptake_at(studies: Sequence[Study]) -> str:
    common = set.intersection(*({tp.label for tp in s.timepoints} for s in studies))
    if not common:
        raise InputError(
            "the studies share no time point label: give [cohort] uptake_at (a label or hours "
            "after injection)"
        )
    first = studies[0]
    return max(common, key=lambda lab: [tp.label for tp in first.timepoints].index(lab))


def _lesion_metrics(study: Study, result: StudyResult, tp: StudyTimepoint) -> dict[str, dict]:
    """Every available metric of every lesion of ``study`` at ``tp``."""
    out: dict[str, dict[str, Any]] = {}
    t = tp.time_after_injection_s
    blood = next((v.name for v in study.vois if v.role == "blood"), None)
    background = next((v.name for v in study.vois if v.role == "background"), None)
    a0 = study.injected_activity_bq
    for lesion in study.lesions:
        value = result.value(lesion.name, tp.label)
        value_dc = result.value(lesion.name, tp.label, decay_corrected=True)
        stats, _ = result.stats[(lesion.name, tp.label)]
        kin = result.kinetics[lesion.name]
        row: dict[str, Any] = {
            "bq_ml": value,
            "bq_ml_dc": value_dc,
            "percent_id_per_ml": None if a0 is None else 100.0 * value_dc / a0,
            "suv_bw": None,
            "suv_lbm": None,
            "to_blood": None if blood is None else result.ratio(lesion.name, tp.label, blood),
            "to_background": None
            if background is None
            else result.ratio(lesion.name, tp.label, background),
            "tia_bq_h_per_ml": kin.tia_bq_h_per_ml,
            "volume_ml": stats.volume_ml,
            "tia_se_bq_h_per_ml": kin.tia_se_bq_h_per_ml,
            "model": kin.model,
            "t_eff_h": kin.t_eff_h,
            "t_eff_se_h": kin.t_eff_se_h,
        }
        if study.weight_kg is not None and study.injected is not None:
            row["suv_bw"] = suv_bw(
                value, study.injected, study.weight_kg, time_after_injection_s=t,
                isotope=study.isotope,
            )  # fmt: skip
        if study.has_lbm:
            assert study.weight_kg and study.height_cm and study.sex
            row["suv_lbm"] = suv_lbm(
                value, study.injected, study.weight_kg, study.height_cm, study.sex,
                formula=study.lbm_formula, time_after_injection_s=t, isotope=study.isotope,
            )  # fmt: skip
        out[lesion.name] = row
    return out


def analyse_cohort(cohort: Cohort) -> CohortResult:
    """Quantify every patient and build the cohort tables (module docstring).

    Parameters
    ----------
    cohort : Cohort
        From :func:`load_cohort`.

    Returns
    -------
    CohortResult

    Raises
    ------
    InputError
        A metric a study cannot give, or an ``uptake_at`` a study has no scan for.
    """
    settings = cohort.settings
    studies = cohort.studies
    where = str(cohort.source) if cohort.source is not None else "cohort"
    with context(where):
        metric = settings.metric or _default_metric(studies)
        _check_metric(metric, studies)
        at = settings.uptake_at if settings.uptake_at is not None else _default_uptake_at(studies)
        chosen = {s.name: _timepoint_at(s, at, settings.tolerance_h) for s in studies}
    results = {s.name: analyse_study(s) for s in studies}

    lesions: list[dict[str, Any]] = []
    for study in studies:
        tp = chosen[study.name]
        metrics = _lesion_metrics(study, results[study.name], tp)
        if any(m[metric] is None for m in metrics.values()):
            bad = [name for name, m in metrics.items() if m[metric] is None]
            raise InputError(
                f"{where}: {metric} of {study.name} lesion(s) {', '.join(bad)} cannot be "
                "computed (a reference VOI with no activity)"
            )
        order = sorted(metrics, key=lambda name: metrics[name][metric])
        for name, values in metrics.items():
            lesions.append(
                {
                    "patient": study.name,
                    "lesion": name,
                    "timepoint": tp.label,
                    "time_h": tp.time_h,
                    "metric": metric,
                    "value": values[metric],
                    "rank_in_patient": order.index(name) + 1,
                    "lowest_in_patient": name == order[0],
                    **values,
                }
            )
    strata = stratify(
        lesions, "value", settings.threshold, by=settings.stratify_by, labels=settings.labels
    )
    return CohortResult(
        cohort=cohort,
        results=results,
        metric=metric,
        uptake_at=at,
        lesions=lesions,
        lowest=_lowest_rows(lesions, metric),
        spread=_spread_rows(lesions),
        strata=[{**s.as_dict(), "metric": metric} for s in strata],
    )


def _lowest_rows(lesions: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    rows = []
    for patient in dict.fromkeys(r["patient"] for r in lesions):
        own = [r for r in lesions if r["patient"] == patient]
        low = min(own, key=lambda r: r["value"])
        high = max(own, key=lambda r: r["value"])
        rows.append(
            {
                "patient": patient,
                "metric": metric,
                "timepoint": low["timepoint"],
                "lowest_lesion": low["lesion"],
                "lowest_value": low["value"],
                "highest_lesion": high["lesion"],
                "highest_value": high["value"],
                "n_lesions": len(own),
                "fold": high["value"] / low["value"] if low["value"] > 0 else math.inf,
            }
        )
    return rows


def _spread_rows(lesions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def row(scope: str, values: list[float], names: list[str]) -> dict[str, Any]:
        return {
            "scope": scope,
            **spread(values).as_dict(),
            "min_at": names[int(np.argmin(values))],
            "max_at": names[int(np.argmax(values))],
        }

    values = [r["value"] for r in lesions]
    rows = [row("all lesions", values, [f"{r['patient']}/{r['lesion']}" for r in lesions])]
    patients = list(dict.fromkeys(r["patient"] for r in lesions))
    for by in ("mean", "lowest"):
        per_patient = []
        for patient in patients:
            own = [r["value"] for r in lesions if r["patient"] == patient]
            per_patient.append(float(np.mean(own)) if by == "mean" else min(own))
        rows.append(row(f"between patients ({by} lesion)", per_patient, patients))
    for patient, within in between_lesion_spread(lesions, "value").items():
        own = [r for r in lesions if r["patient"] == patient]
        rows.append(
            {
                "scope": f"within {patient}",
                **within.as_dict(),
                "min_at": min(own, key=lambda r: r["value"])["lesion"],
                "max_at": max(own, key=lambda r: r["value"])["lesion"],
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def describe_time(at: str | float | None) -> str:
    """A time point label as is, hours as ``"72 h"``."""
    return f"{at:g} h" if isinstance(at, (int, float)) else str(at)


def _plot_uptake(result: CohortResult, path: Path) -> Path:
    """Every lesion's uptake per patient, patients sorted by their stratifying value."""
    from matplotlib.lines import Line2D  # matplotlib is imported lazily

    from recon.figures import HOUSE_STYLE, new_figure, save_figure, style_axes

    settings = result.cohort.settings
    strata = sorted(result.strata, key=lambda s: s["value"])
    patients = [s["patient"] for s in strata]
    fig = new_figure(90 * len(patients) + 250, 600, layout="constrained")
    ax = fig.add_subplot()
    colours = {settings.labels[0]: "C3", settings.labels[1]: "C0"}
    values = [r["value"] for r in result.lesions]
    for x, s in enumerate(strata):
        own = [r for r in result.lesions if r["patient"] == s["patient"]]
        colour = colours[s["group"]]
        ax.plot([x] * len(own), [r["value"] for r in own], "o", mfc="none", mec=colour, ms=7)
        ax.plot([x], [s["value"]], "o", color=colour, ms=7)
        if s["lesion"] is not None:
            ax.annotate(
                str(s["lesion"]), (x, s["value"]), textcoords="offset points", xytext=(6, -3),
                fontsize=HOUSE_STYLE.small_size, color=colour,
            )  # fmt: skip
    threshold = strata[0]["threshold"] if strata else None
    if threshold is not None:
        ax.axhline(threshold, color="0.4", ls="--", lw=1)
        ax.annotate(
            f"threshold {threshold:.4g}", (len(patients) - 0.5, threshold),
            fontsize=HOUSE_STYLE.small_size,
            ha="right", va="bottom", color="0.3",
        )  # fmt: skip
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 10:
        ax.set_yscale("log")
    ax.set_xticks(range(len(patients)), patients)
    ax.set_xlim(-0.6, len(patients) - 0.4)
    unit = _UNITS[result.metric]
    when = "" if result.metric == "tia_bq_h_per_ml" else f" at {describe_time(result.uptake_at)}"
    ax.set_ylabel(f"{result.metric}{f' ({unit})' if unit else ''}{when}")
    ax.set_xlabel(
        f"patient, sorted by the {settings.stratify_by} lesion (filled; open: other lesions)"
    )
    ax.set_title(f"{result.cohort.name}: lesion uptake per patient")
    handles = [
        Line2D([], [], marker="o", ls="", color=c, label=f"{g} group") for g, c in colours.items()
    ]
    ax.legend(handles=handles, loc="best")
    style_axes(ax)
    return save_figure(fig, path)


def write_cohort_report(
    result: CohortResult, out: str | os.PathLike[str], *, plots: bool = True
) -> list[Path]:
    """Write each patient's report into ``out/<patient>/`` and the cohort tables into ``out``.

    Parameters
    ----------
    result : CohortResult
        From :func:`analyse_cohort`.
    out : path-like
        An existing folder.
    plots : bool, keyword-only
        Write the PNG plots.

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(out)
    files: list[Path] = []
    want_plots = plots and result.cohort.settings.plots
    for patient, study_result in result.results.items():
        sub = folder / patient
        sub.mkdir(exist_ok=True)
        files += write_report(study_result, sub, plots=want_plots)
    for name, rows in result.tables().items():
        files.append(write_csv(folder / f"{name}.csv", rows))
        files.append(write_json(folder / f"{name}.json", rows))
    if want_plots:
        files.append(_plot_uptake(result, folder / "cohort_uptake.png"))
    settings = result.cohort.settings
    summary = {
        "cohort": result.cohort.name,
        "patients": list(result.results),
        "studies": [str(s.input_paths[0]) for s in result.cohort.studies if s.input_paths],
        "metric": result.metric,
        "metric_units": _UNITS[result.metric],
        "uptake_at": result.uptake_at,
        "tolerance_h": settings.tolerance_h,
        "stratify_by": settings.stratify_by,
        "threshold": settings.threshold,
        "labels": list(settings.labels),
        "lowest": {r["patient"]: r["lowest_lesion"] for r in result.lowest},
        "groups": {s["patient"]: s["group"] for s in result.strata},
        "files": [str(p.relative_to(folder)) for p in files] + ["cohort_summary.json"],
    }
    files.append(write_summary(folder, "cohort_summary.json", summary))
    return files


def summary_rows(result: CohortResult) -> list[dict[str, Any]]:
    """One row per patient for the printed summary."""
    groups = {s["patient"]: s for s in result.strata}
    return [
        {
            "patient": r["patient"],
            "lesions": r["n_lesions"],
            "lowest": r["lowest_lesion"],
            result.metric: r["lowest_value"],
            "highest": r["highest_lesion"],
            "fold": r["fold"],
            f"group ({groups[r['patient']]['by']})": groups[r["patient"]]["group"],
        }
        for r in result.lowest
    ]
