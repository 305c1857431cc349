"""Serial-study quantification from a TOML study description (what `recon quant` runs).

Drug-delivery studies (In-111 or Zr-89 liposomes, Cu-64 nanoparticles) image one patient several
times over days. ``recon quant STUDY.toml -o OUT`` reads the reconstructed images of every time
point, draws the volumes of interest, and writes time-activity curves, kinetic fits with their
standard errors, effective and biological half-lives, time-integrated activities, residence
times, SUV, %ID, lesion-to-reference ratios and the spread of uptake between lesions, as CSV and
JSON tables with PNG plots. Several patients at once: :mod:`recon.quant.cohort`. The same steps
from Python: :func:`load_study`, :func:`recon.quant.analysis.analyse_study`,
:func:`recon.quant.study_report.write_report`.

Study file
----------

Paths are relative to the TOML file. World coordinates are DICOM LPS ``[x, y, z]`` in mm (+x
patient left, +y posterior, +z superior); grid keys of ``.npy`` images follow the array order
``[z, y, x]`` like :class:`recon.ImageGrid`. Unknown keys and values of the wrong type or range
are errors naming the file, table and key, so a typo never passes silently.

.. code-block:: toml

    [study]
    name = "P01"                          # optional; default: the file name without .toml
    isotope = "In-111"                    # optional when the images name it (DICOM, Interfile)
    injection_time = 2026-03-01T09:00:00  # TOML date-time or ISO-8601 string; optional when
                                          # DICOM images give the administration time
    injected_activity_bq = 185e6          # net activity at injection: %ID, residence time, SUV;
                                          # optional when DICOM images give it
    activity_measured_at = "..."          # optional: when injected_activity_bq was measured
    residual_activity_bq = 2e6            # optional: left in the syringe, measured at
    residual_measured_at = "..."          #   residual_measured_at (both decay-corrected)
    weight_kg = 70                        # SUVbw (optional when DICOM gives Patient Weight)
    height_cm = 172                       # with sex: SUVlbm (optional when DICOM gives Patient
    sex = "F"                             #   Size); "M" or "F"
    lbm_formula = "janmahasatian"         # lean body mass: "janmahasatian" (default) or "james"
    reference_timepoint = 0               # index (as listed) or label of the time point the
                                          # VOIs are drawn on; default: the first listed

    [analysis]                            # optional
    quantity = "mean"                     # VOI statistic of TACs, fits, ratios: mean|max|peak
    fit_model = "auto"                    # auto (AICc) | mono | bi | uptake_washout;
                                          # fit_terms = 1 | 2 is the older spelling of mono | bi
    fit_from = "peak"                     # "peak" (each TAC from its maximum), "first", or
                                          # hours after injection
    tail = "fit"                          # TIA after the last scan: "fit" or "physical" decay
    percent_id = true                     # %ID tables; default: when the injected activity is
                                          # known (true without it is an error)
    plots = true                          # PNG plots

    [analysis.blood]                      # per VOI role (lesion, blood, background, organ):
    fit_from = "first"                    # fit_model, fit_terms, fit_from, tail for that role

    [[timepoints]]                        # one table per scan, at least one
    image = "tp1h/image.hv"               # Interfile .hv, NumPy .npy, NIfTI .nii/.nii.gz, or
                                          # a DICOM PET/NM image series (folder or .dcm file)
    frame = 2                             # DICOM dynamic series only: the frame (0-based)
    time = 2026-03-01T10:00:00            # time the values refer to (the image's reference
                                          # time, usually the acquisition start), or:
    hours_after_injection = 1             # (both optional for DICOM: its acquisition time)
    mode = "activity_at_scan_time"        # or "decay_corrected_to_injection"; default: from the
                                          # DICOM Decay Correction, else activity at scan time
    label = "1h"                          # optional; default "<hours>h"
    voxel_mm = 4.42                       # .npy only (required): one value or [z, y, x]
    origin_mm = [-50.0, -100.0, -100.0]   # .npy only: world [z, y, x] of voxel [0, 0, 0]'s
                                          # centre; default: centred on the isocentre
    calibration_factor = 1.0              # image value x factor = Bq/mL; required for images
                                          # whose file states other units (PROPCPS, counts)
    transform = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
                                          # optional rigid map, reference frame -> this image

    [[vois]]                              # at least one
    name = "lesion1"                      # unique
    role = "lesion"                       # lesion | blood | background | organ; default:
                                          # "blood"/"background" for VOIs so named, else lesion
    sphere = { centre_mm = [40, 0, 0], diameter_mm = 20 }
    # or: cylinder = { centre_mm = [x, y, z], radius_mm = 15, length_mm = 40, axis = "z" }
    # or: mask = "lesion1.nii.gz"         # NIfTI or .npy (label = 3 picks one label of a label
    #                                     # map) on the reference scan, or a DICOM SEG .dcm
    #                                     # (segment = "name"; default the VOI's name or the
    #                                     # only segment)
    # or: masks = ["l1_1h.nii.gz", "l1_24h.nii.gz"]   # one mask per scan, in [[timepoints]]
    #                                     # order, or masks = { "1h" = "...", "24h" = "..." };
    #                                     # each on its own scan's image (no transform applied;
    #                                     # label goes to label maps, segment to SEG files)
    # or: iso_contour = { seed_mm = [x, y, z], percent = 41, search_radius_mm = 20 }
    #                                     # (drawn on the reference time point)
    fit_model = "mono"                    # optional, this VOI only: fit_model / fit_terms,
    fit_from = 24                         #   fit_from, tail (over [analysis.<role>] and
                                          #   [analysis])

Times, units and identities from the files
------------------------------------------

A DICOM image states its acquisition time, the administration time and activity, the isotope,
what its values refer to (Decay Correction ``START``/``NONE``: activity at scan time; ``ADMIN``:
decay-corrected to injection) and their units. Where the study file leaves these out they are
taken from the files; where it gives them too they must agree within the tolerances of
:mod:`recon.quant.file_facts` (60 s, 1 % for the activity, 2 % for weight and height), or the
study is refused with both values named. An image whose file states units other than Bq/mL
(PROPCPS, counts) is refused unless ``calibration_factor`` is given; formats without units
(.npy, NIfTI, Interfile) are taken as Bq/mL, and ``summary.json`` says so for each time point
(``sources``). Sphere and cylinder VOIs must lie wholly inside the reference image, and every VOI
must be carried wholly (at least 90 % of its volume) into each time point's image.

Analysis
--------

:mod:`recon.quant.analysis`: each VOI's statistics at every time point (the VOI carried there by
:func:`recon.quant.resample_voi`, or its own mask for that scan), as activity at scan time with
``*_dc`` columns decay-corrected to injection. Kinetics per VOI (:mod:`recon.quant.clearance`,
models and rules in :mod:`recon.quant.kinetics`): the model chosen by AICc among mono-, bi- and
(with a rising phase in the fitted window) uptake-washout exponentials unless fixed, degenerate
fits falling back to the simpler model with a note; the terminal half-life from the component
that governs the curve after the last scan; standard errors from the fit covariance; TIA with an
uncertainty that includes the extrapolated tail.

Output folder
-------------

``voi_stats``, ``tacs``, ``kinetics``, ``ratios``, ``percent_id`` and ``heterogeneity`` tables as
``.csv`` and ``.json``; ``summary.json``; and ``tacs.png`` (curves and fits, log
scale), ``mip.png`` (coronal and transverse maximum-intensity projections of each time point with
the VOI outlines) and ``uptake.png`` (uptake of each lesion at each time point).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import load_toml
from recon.errors import InputError
from recon.image import Image
from recon.physics.isotopes import get_isotope
from recon.quant._study_images import (
    ImageRead,
    body_value,
    calibrated,
    read_entry,
    resolve_injection,
    resolve_injection_time,
    resolve_isotope,
    timepoint_values,
)
from recon.quant._study_vois import FIT_KEYS, ROLES, check_carried, parse_voi
from recon.quant._toml import boolean, check_keys, context, date_time, number, table, text
from recon.quant.calibration import LBM_FORMULAS, Injection
from recon.quant.clearance import TAILS, FitSettings
from recon.quant.kinetics import FIT_MODELS
from recon.quant.timeseries import TimePoint, resample_voi
from recon.quant.voi import Voi

__all__ = [
    "ROLES",
    "AnalysisSettings",
    "Study",
    "StudyTimepoint",
    "StudyVoi",
    "load_study",
]

_STUDY_KEYS = (
    "name", "isotope", "injection_time", "injected_activity_bq", "activity_measured_at",
    "residual_activity_bq", "residual_measured_at", "weight_kg", "height_cm", "sex",
    "lbm_formula", "reference_timepoint",
)  # fmt: skip
_ANALYSIS_KEYS = ("quantity", *FIT_KEYS, "percent_id", "plots", *ROLES)
_QUANTITIES = ("mean", "max", "peak")
_SEXES = ("M", "F")
_SECONDS_PER_HOUR = 3600.0


# --------------------------------------------------------------------------------------------
# the study description
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisSettings:
    """The ``[analysis]`` table (see the module docstring).

    ``fit`` holds the study-wide fit settings; ``by_role`` the ``[analysis.<role>]`` overrides.
    """

    quantity: str = "mean"
    fit: FitSettings = field(default_factory=FitSettings)
    by_role: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    percent_id: bool = False
    plots: bool = True

    def fit_for(self, role: str, own: Mapping[str, Any] | None = None) -> FitSettings:
        """The fit settings of a VOI: its own keys over ``[analysis.<role>]`` over these."""
        settings = self.fit
        for source, overrides in ((f"[analysis.{role}]", self.by_role.get(role)), ("VOI", own)):
            if overrides:
                settings = _merged(settings, overrides, source)
        return settings


@dataclass(frozen=True, eq=False)
class StudyTimepoint:
    """One scan: a Bq/mL image with the study's isotope and its time after injection.

    ``mode`` says what the image values are (one of :data:`recon.quant.DECAY_MODES`);
    ``sources`` where its time, mode and units came from (study file or image file).
    """

    label: str
    image: Image
    time_after_injection_s: float
    mode: str
    source: str
    transform: np.ndarray | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def time_h(self) -> float:
        """Time after injection in hours."""
        return self.time_after_injection_s / _SECONDS_PER_HOUR

    def time_point(self) -> TimePoint:
        """This scan as a :class:`~recon.quant.timeseries.TimePoint` (time-series functions)."""
        return TimePoint(
            self.image,
            self.time_after_injection_s,
            transform=self.transform,
            decay_corrected_to_injection=self.mode == "decay_corrected_to_injection",
        )


@dataclass(frozen=True, eq=False)
class StudyVoi:
    """A VOI, its role, how it was defined and how its curve is fitted.

    ``voi`` is on the reference time point's grid; ``per_scan`` (when the study gives one mask
    per scan) holds each time point's own VOI by label.
    """

    voi: Voi
    role: str
    definition: dict[str, Any]
    fit: FitSettings = field(default_factory=FitSettings)
    per_scan: dict[str, Voi] | None = None

    @property
    def name(self) -> str:
        """The VOI's name."""
        return self.voi.name

    def on(self, tp: StudyTimepoint) -> Voi:
        """The VOI on ``tp``'s image: its own mask for that scan, or carried there."""
        if self.per_scan is not None:
            return self.per_scan[tp.label]
        return resample_voi(self.voi, tp.image.grid, tp.transform)


@dataclass(frozen=True, eq=False)
class Study:
    """A parsed and validated study: time points in time order, VOIs on the reference grid.

    ``sources`` says where the isotope, injection time and activity, weight and height came from.
    """

    name: str
    isotope: str
    timepoints: tuple[StudyTimepoint, ...]
    vois: tuple[StudyVoi, ...]
    reference: str
    injected: Injection | float | None = None
    weight_kg: float | None = None
    settings: AnalysisSettings = field(default_factory=AnalysisSettings)
    input_paths: tuple[Path, ...] = ()
    height_cm: float | None = None
    sex: str | None = None
    lbm_formula: str = "janmahasatian"
    injection_time: datetime | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def injected_activity_bq(self) -> float | None:
        """Net injected activity at injection, in Bq (None when not known)."""
        if isinstance(self.injected, Injection):
            return self.injected.activity_at_injection_bq
        return self.injected

    @property
    def has_lbm(self) -> bool:
        """Weight, height, sex and injected activity are known: SUVlbm can be computed."""
        return None not in (self.weight_kg, self.height_cm, self.sex, self.injected)

    @property
    def lesions(self) -> list[StudyVoi]:
        """The VOIs with role ``lesion``, in study order."""
        return [v for v in self.vois if v.role == "lesion"]

    @property
    def references(self) -> list[StudyVoi]:
        """The VOIs of every other role (blood pool, organs, background), in study order."""
        return [v for v in self.vois if v.role != "lesion"]


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------


def _fit_overrides(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The fit keys of a table as FitSettings fields (``model``, ``fit_from``, ``tail``);
    ``where`` prefixes the key in messages (empty inside a VOI's context)."""

    def key(name: str) -> str:
        return f"{where} {name}" if where else name

    out: dict[str, Any] = {}
    if "fit_model" in values and "fit_terms" in values:
        raise InputError(
            f"{key('fit_model')} and fit_terms (its older spelling) are both given; keep one"
        )
    if "fit_model" in values:
        out["model"] = text(values["fit_model"], key("fit_model"), FIT_MODELS)
    if "fit_terms" in values:
        terms = values["fit_terms"]
        if isinstance(terms, bool) or terms not in (1, 2):
            raise InputError(f"{key('fit_terms')} must be 1 or 2, got {terms!r}")
        out["model"] = "mono" if terms == 1 else "bi"
    if "fit_from" in values:
        fit_from = values["fit_from"]
        if (
            isinstance(fit_from, bool)
            or not isinstance(fit_from, (str, int, float))
            or (isinstance(fit_from, str) and fit_from not in ("peak", "first"))
        ):
            raise InputError(
                f"{key('fit_from')} must be 'peak', 'first' or hours after injection, got "
                f"{fit_from!r}"
            )
        if not isinstance(fit_from, str):
            fit_from = number(fit_from, key("fit_from"), "non-negative")
        out["fit_from"] = fit_from
    if "tail" in values:
        out["tail"] = text(values["tail"], key("tail"), TAILS)
    return out


def _merged(base: FitSettings, overrides: Mapping[str, Any], source: str) -> FitSettings:
    sources = dict(base.sources)
    sources.update({key: source for key in overrides})
    fields = {"model": base.model, "fit_from": base.fit_from, "tail": base.tail, **overrides}
    return FitSettings(**fields, sources=sources)


def _settings(values: dict[str, Any], has_activity: bool) -> AnalysisSettings:
    check_keys(values, _ANALYSIS_KEYS, "[analysis]")
    quantity = values.get("quantity", "mean")
    if quantity not in _QUANTITIES:
        raise InputError(f"[analysis] quantity must be one of {_QUANTITIES}, got {quantity!r}")
    study_wide = _fit_overrides(values, "[analysis]")
    fit = _merged(FitSettings(), study_wide, "[analysis]")
    by_role = {}
    for role in ROLES:
        if role in values:
            sub = table(values[role], f"[analysis.{role}]")
            check_keys(sub, FIT_KEYS, f"[analysis.{role}]")
            by_role[role] = _fit_overrides(sub, f"[analysis.{role}]")
    wants_pid = values.get("percent_id")
    if wants_pid is not None:
        boolean(wants_pid, "[analysis] percent_id")
    if wants_pid and not has_activity:
        raise InputError(
            "[analysis] percent_id = true needs the injected activity: add injected_activity_bq "
            "to [study]"
        )
    plots = boolean(values.get("plots", True), "[analysis] plots")
    return AnalysisSettings(
        quantity=quantity,
        fit=fit,
        by_role=by_role,
        percent_id=has_activity if wants_pid is None else wants_pid,
        plots=plots,
    )


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def load_study(path: str | os.PathLike[str]) -> Study:
    """Read a study TOML file (schema in the module docstring), its images and VOIs.

    Parameters
    ----------
    path : path-like
        The study file; relative paths inside it are relative to its folder.

    Returns
    -------
    Study

    Raises
    ------
    InputError, GeometryError, PhysicsError
        With a one-line message naming the file and the entry at fault: bad or unknown keys,
        values of the wrong type or range, missing files, times before the injection, %ID asked
        without an injected activity, a study file that disagrees with its DICOM images (both
        values named), an uncalibrated image without calibration_factor, a VOI outside the image,
        grids that do not match.
    """
    toml = Path(path)
    with context(str(toml)):
        return _load(toml)


def _body(study: dict[str, Any], reads: list[ImageRead], sources: dict[str, str]) -> tuple:
    weight = body_value(
        study.get("weight_kg"), "weight_kg",
        [(r.where, r.facts.weight_kg) for r in reads if r.facts.weight_kg],
        sources, "Patient Weight", "kg",
    )  # fmt: skip
    height = body_value(
        study.get("height_cm"), "height_cm",
        [(r.where, 100.0 * r.facts.height_m) for r in reads if r.facts.height_m],
        sources, "Patient Size", "cm",
    )  # fmt: skip
    sex = None
    if "sex" in study:
        sex = text(study["sex"], "[study] sex").upper()
        if sex not in _SEXES:
            raise InputError(f'[study] sex must be "M" or "F", got {study["sex"]!r}')
        if height is None:
            raise InputError("[study] sex (for SUVlbm) needs height_cm")
    elif "height_cm" in study:
        raise InputError('[study] height_cm (for SUVlbm) needs sex = "M" or "F"')
    formula = text(study.get("lbm_formula", "janmahasatian"), "[study] lbm_formula", LBM_FORMULAS)
    if "lbm_formula" in study and sex is None:
        raise InputError("[study] lbm_formula (for SUVlbm) needs height_cm and sex")
    return weight, height, sex, formula


def _load(toml: Path) -> Study:
    doc = load_toml(toml)
    check_keys(doc, ("study", "analysis", "timepoints", "vois"), "the file")
    study = table(doc.get("study"), "[study]") if "study" in doc else {}
    check_keys(study, _STUDY_KEYS, "[study]")
    given_isotope = None
    if "isotope" in study:
        with context("[study] isotope"):
            given_isotope = get_isotope(study["isotope"]).name
    given_injection = None
    if "injection_time" in study:
        given_injection = date_time(study["injection_time"], "[study] injection_time")

    entries = doc.get("timepoints")
    if not isinstance(entries, list) or not entries:
        raise InputError("the study needs at least one [[timepoints]] table")
    base = toml.parent
    reads: list[ImageRead] = []
    for n, entry in enumerate(entries):
        image_name = entry.get("image") if isinstance(entry, dict) else None
        where = f"timepoints[{n}]" + (f" ({image_name})" if isinstance(image_name, str) else "")
        with context(where):
            reads.append(read_entry(table(entry, "the entry"), base, where))

    sources: dict[str, str] = {}
    isotope = resolve_isotope(given_isotope, reads, sources)
    injection_time = resolve_injection_time(given_injection, reads, sources)
    injected = resolve_injection(study, isotope, injection_time, reads, sources)
    weight, height, sex, formula = _body(study, reads, sources)
    if weight is not None and injected is None and "weight_kg" in study:
        raise InputError("[study] weight_kg (for SUV) needs injected_activity_bq")
    settings = _settings(table(doc.get("analysis", {}), "[analysis]"), injected is not None)

    timepoints: list[StudyTimepoint] = []
    inputs: list[Path] = [toml]
    for read in reads:
        with context(read.where):
            values = timepoint_values(read, injection_time)
            image = calibrated(read.image, values.factor, isotope)
            tp = StudyTimepoint(
                values.label, image, values.seconds, values.mode, str(read.path),
                values.transform, values.sources,
            )  # fmt: skip
            tp.time_point()  # validates the transform (rigid, 4×4)
        timepoints.append(tp)
        inputs.append(read.path)
    labels = [tp.label for tp in timepoints]
    if len(set(labels)) != len(labels):
        raise InputError(f"time point labels must differ, got {labels}")
    times = sorted(tp.time_after_injection_s for tp in timepoints)
    if any(b == a for a, b in zip(times, times[1:], strict=False)):
        raise InputError("two time points have the same time after injection")

    ref = study.get("reference_timepoint", 0)
    if isinstance(ref, str) and ref in labels:
        reference = labels.index(ref)
    elif isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < len(timepoints):
        reference = ref
    else:
        raise InputError(
            f"[study] reference_timepoint must be an index 0..{len(timepoints) - 1} or one of "
            f"the labels {labels}, got {ref!r}"
        )

    voi_entries = doc.get("vois")
    if not isinstance(voi_entries, list) or not voi_entries:
        raise InputError("the study needs at least one [[vois]] table")
    scans = [(tp.label, tp.image) for tp in timepoints]
    vois: list[StudyVoi] = []
    for n, entry in enumerate(voi_entries):
        entry = table(entry, f"vois[{n}]")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise InputError(f"vois[{n}] needs a name")
        if name in [v.name for v in vois]:
            raise InputError(f"two VOIs are named {name!r}")
        with context(f"VOI {name!r}"):
            parsed = parse_voi(entry, reference, scans, base)
            own = _fit_overrides(entry, "")
            fit = settings.fit_for(parsed.role, own)
        vois.append(StudyVoi(parsed.voi, parsed.role, parsed.definition, fit, parsed.per_scan))
        inputs.extend(parsed.sources)
    for voi in vois:
        if voi.per_scan is not None:
            continue
        for tp in timepoints:
            check_carried(voi.name, voi.voi, tp.image.grid, tp.transform, tp.label)

    reference_label = timepoints[reference].label
    timepoints.sort(key=lambda tp: tp.time_after_injection_s)
    name = study.get("name", toml.stem)
    if not isinstance(name, (str, int)) or isinstance(name, bool) or str(name) == "":
        raise InputError(f"[study] name must be a non-empty string, got {name!r}")
    return Study(
        name=str(name),
        isotope=isotope,
        timepoints=tuple(timepoints),
        vois=tuple(vois),
        reference=reference_label,
        injected=injected,
        weight_kg=weight,
        settings=settings,
        input_paths=tuple(inputs),
        height_cm=height,
        sex=sex,
        lbm_formula=formula,
        injection_time=injection_time,
        sources=sources,
    )
