"""Serial-study quantification from a TOML study description (what `recon quant` runs).

Drug-delivery studies (In-111 or Zr-89 liposomes, Cu-64 nanoparticles) image one patient several
times over days. ``recon quant STUDY.toml -o OUT`` reads the reconstructed images of every time
point, draws the volumes of interest once, and writes time-activity curves, fitted effective
half-lives, time-integrated activities, residence times, %ID, lesion-to-reference ratios and the
spread of uptake between lesions, as CSV and JSON tables with PNG plots. The same steps are
available from Python: :func:`load_study`, :func:`analyse_study`, :func:`write_report`.

Study file
----------

Paths are relative to the TOML file. World coordinates are DICOM LPS ``[x, y, z]`` in mm (+x
patient left, +y posterior, +z superior); grid keys of ``.npy`` images follow the array order
``[z, y, x]`` like :class:`recon.ImageGrid`. Unknown keys are errors, so a typo never passes
silently.

.. code-block:: toml

    [study]
    name = "P01"                          # optional; default: the file name without .toml
    isotope = "In-111"                    # required (decay conversions)
    injection_time = 2026-03-01T09:00:00  # TOML date-time or ISO-8601 string; needed by `time`
    injected_activity_bq = 185e6          # net activity at injection: %ID, residence time, SUV
    activity_measured_at = "..."          # optional: when injected_activity_bq was measured
    residual_activity_bq = 2e6            # optional: left in the syringe, measured at
    residual_measured_at = "..."          #   residual_measured_at (both decay-corrected)
    weight_kg = 70                        # optional: adds SUVbw (needs injected_activity_bq)
    reference_timepoint = 0               # index (as listed) or label of the time point the
                                          # VOIs are drawn on; default: the first listed

    [analysis]                            # optional
    quantity = "mean"                     # VOI statistic of TACs, fits, ratios: mean|max|peak
    fit_terms = 1                         # exponentials fitted to the clearance phase (1 or 2)
    fit_from = "peak"                     # "peak" (each TAC from its maximum), "first", or
                                          # hours after injection
    percent_id = true                     # %ID tables; default: when injected_activity_bq is
                                          # given (true without it is an error)
    plots = true                          # PNG plots (need matplotlib)

    [[timepoints]]                        # one table per scan, at least one
    image = "tp1h/image.hv"               # Interfile .hv, NumPy .npy, NIfTI .nii/.nii.gz, or
                                          # a DICOM PET/NM image series (folder or .dcm file)
    frame = 2                             # DICOM dynamic series only: the frame (0-based)
    time = 2026-03-01T10:00:00            # time the values refer to (the image's reference
                                          # time, usually the acquisition start), or:
    hours_after_injection = 1
    mode = "activity_at_scan_time"        # default; or "decay_corrected_to_injection"
    label = "1h"                          # optional; default "<hours>h"
    voxel_mm = 4.42                       # .npy only (required): one value or [z, y, x]
    origin_mm = [-50.0, -100.0, -100.0]   # .npy only: world [z, y, x] of voxel [0, 0, 0]'s
                                          # centre; default: centred on the isocentre
    calibration_factor = 1.0              # image value x factor = Bq/mL (default 1)
    transform = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
                                          # optional rigid map, reference frame -> this image

    [[vois]]                              # at least one
    name = "lesion1"                      # unique
    role = "lesion"                       # lesion | blood | background | organ; default:
                                          # "blood"/"background" for VOIs so named, else lesion
    sphere = { centre_mm = [40, 0, 0], diameter_mm = 20 }
    # or: cylinder = { centre_mm = [x, y, z], radius_mm = 15, length_mm = 40, axis = "z" }
    # or: mask = "lesion1.nii.gz"         # NIfTI (label = 3 picks one label of a label map),
    #                                     # or a 0/1 .npy on the reference image's grid
    # or: iso_contour = { seed_mm = [x, y, z], percent = 41, search_radius_mm = 20 }
    #                                     # (drawn on the reference time point)

Images must be in Bq/mL (``recon spect --sensitivity``) or be made so by ``calibration_factor``.
A DICOM image states what its values refer to (Decay Correction): ``START`` and ``NONE`` need
``mode = "activity_at_scan_time"``, ``ADMIN`` needs ``mode = "decay_corrected_to_injection"``.
Sphere and cylinder VOIs must lie wholly inside the reference image, and every VOI must be
carried wholly (at least 90 % of its volume) into each time point's image.

Analysis
--------

Each VOI is carried to every time point (:func:`recon.quant.resample_voi`) and its statistics
taken there (:func:`recon.quant.voi_stats`). Values are reported as activity at scan time, with
``*_dc`` columns decay-corrected to injection. The clearance phase of each time-activity curve
(from its maximum, by default) is fitted with ``fit_terms`` exponentials of activity at scan time
(:func:`recon.quant.fit_exponential`), whose half-lives are effective half-lives; biological
half-lives follow from ``1/T_eff = 1/T_phys + 1/T_biol``. The time-integrated activity (TIA) is
the trapezoid over the measurements up to the first fitted point, rising linearly from 0 at
injection, plus the integral of the fitted curve from that point on (from injection when the fit
starts at the first point, as for blood): sparse late samples follow the exponential better than
a chord. Without a usable fit, or when the fitted clearance is slower than physical decay, it is
the trapezoid over all points plus physical decay from the last one
(:func:`recon.quant.time_integrated_activity`). Residence times divide the total-activity TIA by
the injected activity. :func:`clearance_kinetics` does this for one curve.

Output folder
-------------

``voi_stats``, ``tacs``, ``kinetics``, ``ratios``, ``percent_id`` and ``heterogeneity`` tables as
``.csv`` and ``.json``; ``summary.json``; and with matplotlib ``tacs.png`` (curves and fits, log
scale), ``mip.png`` (coronal and transverse maximum-intensity projections of each time point with
the VOI outlines) and ``uptake.png`` (uptake of each lesion at each time point).
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import load_toml, write_atomically, write_summary
from recon.errors import GeometryError, InputError, PhysicsError, ReconError
from recon.grid import ImageGrid
from recon.image import Image
from recon.physics.isotopes import get_isotope
from recon.quant.calibration import Injection, percent_id, percent_id_per_ml, suv_bw
from recon.quant.ratios import lesion_to_background, lesion_to_blood, spread, uptake_ratio
from recon.quant.report import plot_tacs, tac_rows, write_csv, write_json
from recon.quant.timeseries import (
    DECAY_MODES,
    ExponentialFit,
    TimeActivityCurve,
    TimePoint,
    biological_half_life,
    fit_exponential,
    resample_voi,
    time_activity_curve,
    time_integrated_activity,
)
from recon.quant.voi import Voi, iso_contour, voi_stats

__all__ = [
    "ROLES",
    "AnalysisSettings",
    "Study",
    "StudyResult",
    "StudyTimepoint",
    "StudyVoi",
    "VoiKinetics",
    "analyse_study",
    "clearance_kinetics",
    "load_study",
    "write_report",
]

log = logging.getLogger("recon")

#: VOI roles: lesions are compared with the reference VOIs (every other role).
ROLES = ("lesion", "blood", "background", "organ")

_STUDY_KEYS = (
    "name", "isotope", "injection_time", "injected_activity_bq", "activity_measured_at",
    "residual_activity_bq", "residual_measured_at", "weight_kg", "reference_timepoint",
)  # fmt: skip
_ANALYSIS_KEYS = ("quantity", "fit_terms", "fit_from", "percent_id", "plots")
_TIMEPOINT_KEYS = (
    "image", "time", "hours_after_injection", "mode", "label", "voxel_mm", "origin_mm",
    "calibration_factor", "transform", "frame",
)  # fmt: skip
_VOI_KEYS = ("name", "role", "sphere", "cylinder", "mask", "label", "iso_contour")
_VOI_KINDS = ("sphere", "cylinder", "mask", "iso_contour")
_QUANTITIES = ("mean", "max", "peak")
_SECONDS_PER_HOUR = 3600.0
# A VOI carried to a time point must keep this fraction of its volume (else it is cut by the edge).
_MIN_CARRIED_FRACTION = 0.9
_MAX_MIP_PANELS = 6


# --------------------------------------------------------------------------------------------
# the study description
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisSettings:
    """The ``[analysis]`` table (see the module docstring)."""

    quantity: str = "mean"
    fit_terms: int = 1
    fit_from: str | float = "peak"
    percent_id: bool = False
    plots: bool = True


@dataclass(frozen=True, eq=False)
class StudyTimepoint:
    """One scan: a Bq/mL image with the study's isotope and its time after injection.

    ``mode`` says what the image values are (one of :data:`recon.quant.DECAY_MODES`).
    """

    label: str
    image: Image
    time_after_injection_s: float
    mode: str
    source: str
    transform: np.ndarray | None = None

    @property
    def time_h(self) -> float:
        return self.time_after_injection_s / _SECONDS_PER_HOUR

    def time_point(self) -> TimePoint:
        return TimePoint(
            self.image,
            self.time_after_injection_s,
            transform=self.transform,
            decay_corrected_to_injection=self.mode == "decay_corrected_to_injection",
        )


@dataclass(frozen=True, eq=False)
class StudyVoi:
    """A VOI drawn on the reference time point, its role and how it was defined."""

    voi: Voi
    role: str
    definition: dict[str, Any]

    @property
    def name(self) -> str:
        return self.voi.name


@dataclass(frozen=True, eq=False)
class Study:
    """A parsed and validated study: time points in time order, VOIs on the reference grid."""

    name: str
    isotope: str
    timepoints: tuple[StudyTimepoint, ...]
    vois: tuple[StudyVoi, ...]
    reference: str
    injected: Injection | float | None = None
    weight_kg: float | None = None
    settings: AnalysisSettings = field(default_factory=AnalysisSettings)
    input_paths: tuple[Path, ...] = ()

    @property
    def injected_activity_bq(self) -> float | None:
        """Net injected activity at injection, in Bq (None when not given)."""
        if isinstance(self.injected, Injection):
            return self.injected.activity_at_injection_bq
        return self.injected

    @property
    def lesions(self) -> list[StudyVoi]:
        return [v for v in self.vois if v.role == "lesion"]

    @property
    def references(self) -> list[StudyVoi]:
        return [v for v in self.vois if v.role != "lesion"]


@contextmanager
def _context(where: str) -> Iterator[None]:
    """Prefix errors raised inside with ``where``, on one line."""
    try:
        yield
    except ReconError as exc:
        message = " ".join(f"{where}: {exc}".split())
        raise type(exc)(message) from None


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        prefix = f"{where}: " if where else ""
        raise InputError(
            f"{prefix}unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
        )


def _number(value: Any, key: str, sign: str = "any") -> float:
    """A finite number; ``sign`` "positive" (> 0) or "non-negative" (≥ 0) restricts it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{key} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"{key} must be finite, got {value!r}")
    if (sign == "positive" and not v > 0) or (sign == "non-negative" and v < 0):
        raise InputError(f"{key} must be {sign}, got {value!r}")
    return v


def _datetime(value: Any, key: str) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InputError(
        f"{key} must be a date and time (TOML 2026-03-01T09:00:00 or an ISO-8601 string), "
        f"got {value!r}"
    )


def _triple(value: Any, key: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = _number(value, key, "positive")
        return (v, v, v)
    if not isinstance(value, list) or len(value) != 3:
        raise InputError(f"{key} must be 3 numbers, got {value!r}")
    return tuple(_number(v, key) for v in value)  # type: ignore[return-value]


def _settings(table: dict[str, Any], has_activity: bool) -> AnalysisSettings:
    _check_keys(table, _ANALYSIS_KEYS, "[analysis]")
    quantity = table.get("quantity", "mean")
    if quantity not in _QUANTITIES:
        raise InputError(f"[analysis] quantity must be one of {_QUANTITIES}, got {quantity!r}")
    terms = table.get("fit_terms", 1)
    if terms not in (1, 2) or isinstance(terms, bool):
        raise InputError(f"[analysis] fit_terms must be 1 or 2, got {terms!r}")
    fit_from = table.get("fit_from", "peak")
    if isinstance(fit_from, str):
        if fit_from not in ("peak", "first"):
            raise InputError(
                f"[analysis] fit_from must be 'peak', 'first' or hours after injection, got "
                f"{fit_from!r}"
            )
    else:
        fit_from = _number(fit_from, "[analysis] fit_from", "non-negative")
    wants_pid = table.get("percent_id")
    if wants_pid is not None and not isinstance(wants_pid, bool):
        raise InputError(f"[analysis] percent_id must be true or false, got {wants_pid!r}")
    if wants_pid and not has_activity:
        raise InputError(
            "[analysis] percent_id = true needs the injected activity: add injected_activity_bq "
            "to [study]"
        )
    plots = table.get("plots", True)
    if not isinstance(plots, bool):
        raise InputError(f"[analysis] plots must be true or false, got {plots!r}")
    return AnalysisSettings(
        quantity=quantity,
        fit_terms=int(terms),
        fit_from=fit_from,
        percent_id=has_activity if wants_pid is None else wants_pid,
        plots=plots,
    )


def _injection(
    study: dict[str, Any], isotope: str, injection_time: datetime | None
) -> Injection | float | None:
    if "injected_activity_bq" not in study:
        for key in ("activity_measured_at", "residual_activity_bq", "residual_measured_at"):
            if key in study:
                raise InputError(f"[study] {key} needs injected_activity_bq")
        return None
    activity = _number(study["injected_activity_bq"], "[study] injected_activity_bq", "positive")
    extra = [k for k in ("activity_measured_at", "residual_activity_bq") if k in study]
    if not extra:
        return activity
    if injection_time is None:
        raise InputError(f"[study] {extra[0]} needs injection_time (decay to the injection)")
    measured = study.get("activity_measured_at")
    residual = _number(
        study.get("residual_activity_bq", 0.0), "[study] residual_activity_bq", "non-negative"
    )
    residual_at = study.get("residual_measured_at")
    if residual and residual_at is None:
        raise InputError("[study] residual_activity_bq needs residual_measured_at")
    return Injection(
        activity_bq=activity,
        measured_at=injection_time
        if measured is None
        else _datetime(measured, "[study] activity_measured_at"),
        injected_at=injection_time,
        isotope=isotope,
        residual_bq=residual,
        residual_measured_at=None
        if residual_at is None
        else _datetime(residual_at, "[study] residual_measured_at"),
    )


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read {path.name} as a .npy array: {exc}") from None


def _read_dicom(path: Path, entry: dict[str, Any]) -> Image:
    """A DICOM PET/NM image series (a folder or one file); ``frame`` picks a dynamic frame."""
    from recon.io.dicom_image import read_dicom_image  # noqa: PLC0415

    frame = entry.get("frame")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int)):
        raise InputError(f"frame must be a whole number (0 = first frame), got {frame!r}")
    image = read_dicom_image(path, frame=frame)
    if isinstance(image, list):
        raise InputError(
            f"{path.name} is a dynamic series of {len(image)} frames; give frame = N "
            "(0-based) for this time point"
        )
    return image


def _read_image(path: Path, entry: dict[str, Any]) -> Image:
    suffix = _suffix(path)
    if path.is_dir() or suffix in (".dcm", ".ima"):
        if not path.exists():
            raise InputError(f"image {path} does not exist")
        return _read_dicom(path, entry)
    if "frame" in entry:
        raise InputError(f"frame is for DICOM series only; {path.name} holds one volume")
    if not path.is_file():
        raise InputError(f"image {path} does not exist")
    has_grid_keys = [k for k in ("voxel_mm", "origin_mm") if k in entry]
    if suffix != ".npy" and has_grid_keys:
        raise InputError(
            f"{has_grid_keys[0]} is for .npy images only; {path.name} carries its own grid"
        )
    if suffix in (".hv", ".h33"):
        from recon.io.interfile import read_interfile_image  # noqa: PLC0415

        return read_interfile_image(path)
    if suffix in (".nii", ".nii.gz"):
        from recon.io.nifti import read_nifti_image  # noqa: PLC0415

        return read_nifti_image(path)
    if suffix == ".npy":
        array = _read_npy(path)
        if array.ndim != 3 or not np.issubdtype(array.dtype, np.number):
            raise InputError(f"{path.name} must hold a 3-D numeric array (z, y, x)")
        if "voxel_mm" not in entry:
            raise InputError("a .npy image needs voxel_mm (one value or [z, y, x])")
        voxel = _triple(entry["voxel_mm"], "voxel_mm")
        origin = None if "origin_mm" not in entry else _triple(entry["origin_mm"], "origin_mm")
        grid = ImageGrid(array.shape, voxel, origin=origin)
        return Image(array.astype(np.float32), grid, info={"source": "npy", "path": str(path)})
    raise InputError(
        f"{path.name}: unknown image format {suffix!r}; use Interfile (.hv), NumPy (.npy), "
        "NIfTI (.nii, .nii.gz) or a DICOM PET/NM series (a folder or a .dcm file)"
    )


def _calibrated(image: Image, factor: float, isotope: str) -> Image:
    """The image in Bq/mL, tagged with the study's isotope (a different header isotope is an
    error)."""
    if image.isotope:
        try:
            named = get_isotope(image.isotope).name
        except (PhysicsError, InputError):
            named = None  # a free-text header name; the study's isotope rules
        if named is not None and named != isotope:
            raise InputError(f"the image is of {named}, the study of {isotope}")
    data = np.asarray(image, dtype=np.float64) * factor
    if not np.all(np.isfinite(data)):
        raise InputError("the image contains NaN or infinite values")
    return image.with_data(data.astype(np.float32), units="Bq/mL", isotope=isotope)


def _check_decay_mode(image: Image, mode: str) -> None:
    """A DICOM image says what its values refer to; the time point's mode must agree."""
    declared = image.info.get("decay_correction")
    if declared is None:
        return
    expected = "decay_corrected_to_injection" if declared == "ADMIN" else "activity_at_scan_time"
    if mode != expected:
        to = "the administration" if declared == "ADMIN" else "the scan"
        raise InputError(
            f"the DICOM image is decay-corrected to {to} "
            f'(Decay Correction {declared}); set mode = "{expected}" for this time point'
        )


def _timepoint(
    entry: dict[str, Any],
    base: Path,
    isotope: str,
    injection_time: datetime | None,
) -> tuple[StudyTimepoint, Path]:
    _check_keys(entry, _TIMEPOINT_KEYS, "")
    if "image" not in entry or not isinstance(entry["image"], str):
        raise InputError('needs image = "path" (relative to the study file)')
    path = base / entry["image"]
    if ("time" in entry) == ("hours_after_injection" in entry):
        raise InputError("give exactly one of time (a date-time) and hours_after_injection")
    if "time" in entry:
        if injection_time is None:
            raise InputError("time needs [study] injection_time (or give hours_after_injection)")
        when = _datetime(entry["time"], "time")
        try:
            seconds = (when - injection_time).total_seconds()
        except TypeError:
            raise InputError(
                "time and [study] injection_time must both have a time zone or both have none"
            ) from None
        if seconds < 0:
            raise InputError(
                f"scan time {when.isoformat()} is {-seconds / 3600:.3g} h before the injection "
                f"({injection_time.isoformat()})"
            )
    else:
        hours = _number(entry["hours_after_injection"], "hours_after_injection")
        if hours < 0:
            raise InputError(
                f"hours_after_injection = {hours:g} is before the injection; times count from it"
            )
        seconds = hours * _SECONDS_PER_HOUR
    mode = entry.get("mode", "activity_at_scan_time")
    if mode not in DECAY_MODES:
        raise InputError(f"mode must be one of {DECAY_MODES}, got {mode!r}")
    label = entry.get("label", f"{seconds / _SECONDS_PER_HOUR:.4g}h")
    if not isinstance(label, str) or not label:
        raise InputError(f"label must be a non-empty string, got {label!r}")
    factor = _number(entry.get("calibration_factor", 1.0), "calibration_factor", "positive")
    transform = None
    if "transform" in entry:
        try:
            transform = np.asarray(entry["transform"], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("transform must be a 4×4 matrix of numbers (rows)") from None
    image = _read_image(path, entry)
    _check_decay_mode(image, mode)
    image = _calibrated(image, factor, isotope)
    tp = StudyTimepoint(label, image, seconds, mode, str(path), transform)
    tp.time_point()  # validates the transform (rigid, 4×4)
    return tp, path


# --------------------------------------------------------------------------------------------
# VOIs
# --------------------------------------------------------------------------------------------


def _world_extent(grid: ImageGrid) -> tuple[np.ndarray, np.ndarray]:
    """World ``(x, y, z)`` of the outer voxel faces: lowest and highest corner, mm."""
    first = grid.index_to_world(np.array([-0.5, -0.5, -0.5]))
    last = grid.index_to_world(np.asarray(grid.shape, dtype=np.float64) - 0.5)
    return np.minimum(first, last), np.maximum(first, last)


def _check_inside(grid: ImageGrid, centre: np.ndarray, half: np.ndarray, what: str) -> None:
    lo, hi = _world_extent(grid)
    tol = 1e-6
    a, b = centre - half, centre + half
    outside = (a < lo - tol) | (b > hi + tol)
    if np.any(outside):
        axis = int(np.argmax(outside))
        name = "xyz"[axis]
        raise GeometryError(
            f"the {what} reaches outside the image: {name} from {a[axis]:.1f} to {b[axis]:.1f} "
            f"mm, the image spans {lo[axis]:.1f} to {hi[axis]:.1f} mm"
        )


def _centre(spec: dict[str, Any], key: str) -> np.ndarray:
    if key not in spec:
        raise InputError(f"needs {key} = [x, y, z] (world mm)")
    return np.asarray(_triple(spec[key], key), dtype=np.float64)


def _role(entry: dict[str, Any], name: str) -> str:
    role = entry.get("role", name if name in ("blood", "background") else "lesion")
    if role not in ROLES:
        raise InputError(f"role must be one of {ROLES}, got {role!r}")
    return role


def _voi(entry: dict[str, Any], reference: Image, base: Path) -> tuple[StudyVoi, Path | None]:
    _check_keys(entry, _VOI_KEYS, "")
    name = entry["name"]
    grid = reference.grid
    kinds = [k for k in _VOI_KINDS if k in entry]
    if len(kinds) != 1:
        raise InputError(f"give exactly one of {', '.join(_VOI_KINDS)}; got {kinds or 'none'}")
    kind = kinds[0]
    if "label" in entry and kind != "mask":
        raise InputError('label goes with mask = "file"')
    source: Path | None = None
    if kind == "sphere":
        spec = _table(entry["sphere"], "sphere")
        _check_keys(spec, ("centre_mm", "diameter_mm"), "sphere")
        centre = _centre(spec, "centre_mm")
        diameter = _number(spec.get("diameter_mm"), "sphere diameter_mm", "positive")
        _check_inside(grid, centre, np.full(3, diameter / 2), "sphere")
        voi = Voi.sphere(grid, centre, diameter, name)
        definition = {"sphere": {"centre_mm": centre.tolist(), "diameter_mm": diameter}}
    elif kind == "cylinder":
        spec = _table(entry["cylinder"], "cylinder")
        _check_keys(spec, ("centre_mm", "radius_mm", "length_mm", "axis"), "cylinder")
        centre = _centre(spec, "centre_mm")
        radius = _number(spec.get("radius_mm"), "cylinder radius_mm", "positive")
        length = _number(spec.get("length_mm"), "cylinder length_mm", "positive")
        axis = spec.get("axis", "z")
        if axis not in ("x", "y", "z"):
            raise InputError(f"cylinder axis must be 'x', 'y' or 'z', got {axis!r}")
        half = np.full(3, radius)
        half["xyz".index(axis)] = length / 2
        _check_inside(grid, centre, half, "cylinder")
        voi = Voi.cylinder(grid, centre, radius, length, axis, name)
        definition = {
            "cylinder": {
                "centre_mm": centre.tolist(), "radius_mm": radius, "length_mm": length,
                "axis": axis,
            }
        }  # fmt: skip
    elif kind == "mask":
        if not isinstance(entry["mask"], str):
            raise InputError("mask must be a file name")
        source = base / entry["mask"]
        label = entry.get("label")
        if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
            raise InputError(f"label must be an integer, got {label!r}")
        voi = _mask_voi(source, grid, name, label)
        definition = {"mask": str(source), "label": label}
    else:
        spec = _table(entry["iso_contour"], "iso_contour")
        _check_keys(spec, ("seed_mm", "percent", "search_radius_mm", "confine"), "iso_contour")
        seed = _centre(spec, "seed_mm")
        _check_inside(grid, seed, np.zeros(3), "iso-contour seed")
        if "percent" not in spec:
            raise InputError("iso_contour needs percent (of the local maximum)")
        percent = _number(spec["percent"], "iso_contour percent")
        radius = _number(spec.get("search_radius_mm", 0.0), "search_radius_mm", "non-negative")
        confine = spec.get("confine", False)
        if not isinstance(confine, bool):
            raise InputError(f"iso_contour confine must be true or false, got {confine!r}")
        voi = iso_contour(reference, seed, percent, radius, name=name, confine_to_search=confine)
        definition = {
            "iso_contour": {
                "seed_mm": seed.tolist(), "percent": percent, "search_radius_mm": radius,
                "confine": confine,
            }
        }  # fmt: skip
    return StudyVoi(voi, _role(entry, name), definition), source


def _mask_voi(path: Path, grid: ImageGrid, name: str, label: int | None) -> Voi:
    if not path.is_file():
        raise InputError(f"mask {path} does not exist")
    suffix = _suffix(path)
    if suffix in (".nii", ".nii.gz"):
        from recon.io.nifti import read_voi_mask  # noqa: PLC0415

        return Voi.from_mask(read_voi_mask(path, grid, label), grid, name)
    if suffix != ".npy":
        raise InputError(f"{path.name}: masks are NIfTI (.nii, .nii.gz) or .npy files")
    array = _read_npy(path)
    if array.shape != grid.shape:
        raise GeometryError(
            f"{path.name} has shape {array.shape} but the reference image grid is {grid.shape} "
            "(z, y, x); a .npy mask must be on the reference grid (or use NIfTI, which carries "
            "its position)"
        )
    return Voi.from_mask(array != 0 if label is None else array == label, grid, name)


def _check_carried(voi: StudyVoi, tp: StudyTimepoint) -> None:
    """The VOI lands (almost) wholly inside the time point's image."""
    if tp.transform is None and voi.voi.grid.same_as(tp.image.grid):
        return
    try:
        carried = resample_voi(voi.voi, tp.image.grid, tp.transform)
    except GeometryError:
        lo, hi = _world_extent(tp.image.grid)
        raise GeometryError(
            f"VOI {voi.name!r} falls outside the image of time point {tp.label!r} (which spans "
            f"x {lo[0]:.1f} to {hi[0]:.1f}, y {lo[1]:.1f} to {hi[1]:.1f}, z {lo[2]:.1f} to "
            f"{hi[2]:.1f} mm); the grids do not match"
        ) from None
    if carried.volume_ml < _MIN_CARRIED_FRACTION * voi.voi.volume_ml:
        raise GeometryError(
            f"VOI {voi.name!r}: only {100 * carried.volume_ml / voi.voi.volume_ml:.0f} % of it "
            f"falls inside the image of time point {tp.label!r}; the grids do not match"
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
        missing files, times before the injection, %ID asked without an injected activity, a VOI
        outside the image, grids that do not match.
    """
    toml = Path(path)
    with _context(str(toml)):
        return _load(toml)


def _load(toml: Path) -> Study:
    doc = load_toml(toml)
    _check_keys(doc, ("study", "analysis", "timepoints", "vois"), "the file")
    study = _table(doc.get("study"), "[study]") if "study" in doc else {}
    _check_keys(study, _STUDY_KEYS, "[study]")
    if "isotope" not in study:
        raise InputError('[study] needs isotope (e.g. "In-111")')
    with _context("[study] isotope"):
        isotope = get_isotope(study["isotope"]).name
    injection_time = None
    if "injection_time" in study:
        injection_time = _datetime(study["injection_time"], "[study] injection_time")
    injected = _injection(study, isotope, injection_time)
    weight = None
    if "weight_kg" in study:
        weight = _number(study["weight_kg"], "[study] weight_kg", "positive")
        if injected is None:
            raise InputError("[study] weight_kg (for SUV) needs injected_activity_bq")
    settings = _settings(_table(doc.get("analysis", {}), "[analysis]"), injected is not None)

    entries = doc.get("timepoints")
    if not isinstance(entries, list) or not entries:
        raise InputError("the study needs at least one [[timepoints]] table")
    base = toml.parent
    timepoints: list[StudyTimepoint] = []
    inputs: list[Path] = [toml]
    for n, entry in enumerate(entries):
        image_name = entry.get("image") if isinstance(entry, dict) else None
        where = f"timepoints[{n}]" + (f" ({image_name})" if isinstance(image_name, str) else "")
        with _context(where):
            tp, image_path = _timepoint(_table(entry, "the entry"), base, isotope, injection_time)
        timepoints.append(tp)
        inputs.append(image_path)
    labels = [tp.label for tp in timepoints]
    if len(set(labels)) != len(labels):
        raise InputError(f"time point labels must differ, got {labels}")
    times = sorted(tp.time_after_injection_s for tp in timepoints)
    if any(b == a for a, b in zip(times, times[1:], strict=False)):
        raise InputError("two time points have the same time after injection")

    ref = study.get("reference_timepoint", 0)
    if isinstance(ref, str) and ref in labels:
        reference = timepoints[labels.index(ref)]
    elif isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < len(timepoints):
        reference = timepoints[ref]
    else:
        raise InputError(
            f"[study] reference_timepoint must be an index 0..{len(timepoints) - 1} or one of "
            f"the labels {labels}, got {ref!r}"
        )

    voi_entries = doc.get("vois")
    if not isinstance(voi_entries, list) or not voi_entries:
        raise InputError("the study needs at least one [[vois]] table")
    vois: list[StudyVoi] = []
    for n, entry in enumerate(voi_entries):
        entry = _table(entry, f"vois[{n}]")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise InputError(f"vois[{n}] needs a name")
        if name in [v.name for v in vois]:
            raise InputError(f"two VOIs are named {name!r}")
        with _context(f"VOI {name!r}"):
            voi, source = _voi(entry, reference.image, base)
        vois.append(voi)
        if source is not None:
            inputs.append(source)
    for voi in vois:
        for tp in timepoints:
            _check_carried(voi, tp)

    timepoints.sort(key=lambda tp: tp.time_after_injection_s)
    name = study.get("name", toml.stem)
    return Study(
        name=str(name),
        isotope=isotope,
        timepoints=tuple(timepoints),
        vois=tuple(vois),
        reference=reference.label,
        injected=injected,
        weight_kg=weight,
        settings=settings,
        input_paths=tuple(inputs),
    )


# --------------------------------------------------------------------------------------------
# analysis
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiKinetics:
    """Clearance fit and time-integrated activity of one VOI.

    Attributes
    ----------
    voi, role : str
        The VOI.
    fit : ExponentialFit or None
        Fit of the ``quantity`` (Bq/mL) at scan time over the clearance phase; None when there
        are too few points or it failed (see ``note``).
    fit_from_h : float or None
        Time of the first fitted point, h after injection.
    n_fit_points : int
        Points fitted.
    t_eff_h, t_eff_fast_h : float or None
        Effective half-life of the slowest (terminal) component and, for two terms, of the
        fastest one, h. ``t_eff_h`` is None when the fitted clearance is slower than physical
        decay (see ``note``).
    t_biol_h : float or None
        Biological half-life of the terminal component, h (None: no biological clearance seen).
    tia_bq_h_per_ml : float
        Time-integrated ``quantity`` (Bq·h/mL).
    tia_bq_h : float or None
        Time-integrated total activity in the VOI (Bq·h), when the total curve was given.
    tail_method : str
        ``"fit"`` (the fitted curve from the first fitted point on) or ``"physical"`` (trapezoid
        and physical decay after the last point); see the module docstring.
    tail_fraction : float
        Fraction of the TIA past the last time point (extrapolated).
    residence_time_h : float or None
        ``tia_bq_h / A_injected`` in h, when the injected activity is known.
    note : str
        Why there is no fit, or why the tail is physical decay only.
    """

    voi: str
    role: str
    fit: ExponentialFit | None
    fit_from_h: float | None
    n_fit_points: int
    t_eff_h: float | None
    t_eff_fast_h: float | None
    t_biol_h: float | None
    tia_bq_h_per_ml: float
    tia_bq_h: float | None
    tail_method: str
    tail_fraction: float
    residence_time_h: float | None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        fit = self.fit
        return {
            "voi": self.voi,
            "role": self.role,
            "fit_from_h": self.fit_from_h,
            "n_fit_points": self.n_fit_points,
            "fit_terms": None if fit is None else fit.n_terms,
            "t_eff_h": self.t_eff_h,
            "t_eff_fast_h": self.t_eff_fast_h,
            "t_biol_h": self.t_biol_h,
            "fit_amplitudes_bq_ml": None if fit is None else ";".join(
                f"{a:.6g}" for a in fit.amplitudes
            ),
            "fit_rates_per_h": None if fit is None else ";".join(
                f"{k * _SECONDS_PER_HOUR:.6g}" for k in fit.rates_per_s
            ),
            "fit_residual_rms_bq_ml": None if fit is None else fit.residual_rms,
            "tia_bq_h_per_ml": self.tia_bq_h_per_ml,
            "tia_bq_h": self.tia_bq_h,
            "tail_method": self.tail_method,
            "tail_fraction": self.tail_fraction,
            "residence_time_h": self.residence_time_h,
            "note": self.note,
        }  # fmt: skip


@dataclass(frozen=True, eq=False)
class StudyResult:
    """Everything :func:`analyse_study` computed; :meth:`tables` gives the report's rows."""

    study: Study
    tacs: dict[str, TimeActivityCurve]
    total_tacs: dict[str, TimeActivityCurve]
    kinetics: dict[str, VoiKinetics]
    voi_stats: list[dict[str, Any]]
    ratios: list[dict[str, Any]]
    percent_id: list[dict[str, Any]]
    heterogeneity: list[dict[str, Any]]

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """Non-empty tables by file stem."""
        curves = [*self.tacs.values()]
        curves += [tac.in_mode("decay_corrected_to_injection") for tac in self.tacs.values()]
        curves += [*self.total_tacs.values()]
        tables = {
            "voi_stats": self.voi_stats,
            "tacs": tac_rows(curves),
            "kinetics": [k.as_dict() for k in self.kinetics.values()],
            "ratios": self.ratios,
            "percent_id": self.percent_id,
            "heterogeneity": self.heterogeneity,
        }
        return {name: rows for name, rows in tables.items() if rows}

    def value(self, voi: str, label: str, *, decay_corrected: bool = False) -> float:
        """The ``quantity`` of ``voi`` at time point ``label`` (Bq/mL)."""
        tac = self.tacs[voi]
        if decay_corrected:
            tac = tac.in_mode("decay_corrected_to_injection")
        labels = [tp.label for tp in self.study.timepoints]
        return float(tac.values[labels.index(label)])


def _fit_start(fit_from: str | float, times_h: np.ndarray, values: np.ndarray) -> int:
    if fit_from == "peak":
        return int(np.argmax(values))
    if fit_from == "first":
        return 0
    later = np.flatnonzero(times_h >= float(fit_from) - 1e-9)
    return int(later[0]) if later.size else len(times_h)


def clearance_kinetics(
    tac: TimeActivityCurve,
    total: TimeActivityCurve | None = None,
    *,
    fit_from: str | float = "peak",
    fit_terms: int = 1,
    injected_bq: float | None = None,
    role: str = "lesion",
) -> VoiKinetics:
    """Effective half-life and time-integrated activity of a VOI's curve (as ``recon quant``).

    Parameters
    ----------
    tac : TimeActivityCurve
        Concentration (Bq/mL) in ``"activity_at_scan_time"`` mode, with its isotope.
    total : TimeActivityCurve, optional
        Total activity (Bq) of the same VOI, for ``tia_bq_h`` and the residence time.
    fit_from : "peak", "first" or float, keyword-only
        First point of the clearance phase: each curve's maximum, the first point, or the first
        point at or after this many hours after injection.
    fit_terms : {1, 2}, keyword-only
        Exponentials fitted.
    injected_bq : float, keyword-only
        Injected activity at injection (Bq), for the residence time.
    role : str, keyword-only
        Copied to the result.

    Returns
    -------
    VoiKinetics
        See the module docstring for how the fit and the TIA are made.
    """
    if tac.mode != "activity_at_scan_time" or tac.isotope is None:
        raise InputError(
            "clearance_kinetics needs a curve of activity at scan time with an isotope"
        )
    iso = tac.isotope
    lam = get_isotope(iso).decay_constant_per_s
    start = _fit_start(fit_from, tac.times_h, tac.values)
    n_points = len(tac.times_s) - start
    curves = [tac] if total is None else [tac, total]
    fits: list[ExponentialFit] = []
    note = ""
    if n_points < 2 * fit_terms:
        note = f"{n_points} point(s) to fit from the chosen start; a {fit_terms}-term fit needs "
        note += f"{2 * fit_terms}"
    else:
        try:
            fits = [fit_exponential(c.times_s[start:], c.values[start:], fit_terms) for c in curves]
        except InputError as exc:
            note, fits = f"no fit: {exc}", []
    t_eff = t_fast = t_biol = None
    tail = "fit" if fits else "physical"
    if fits:
        slow = float(fits[0].rates_per_s.min())
        if fit_terms == 2:
            t_fast = math.log(2) / float(fits[0].rates_per_s.max()) / _SECONDS_PER_HOUR
        # Activity at scan time cannot fall slower than physical decay (up to rounding).
        if min(float(f.rates_per_s.min()) for f in fits) < lam * (1 - 1e-6):
            tail = "physical"
            note = (
                "the fitted clearance is slower than physical decay (uptake still rising, or "
                "noise): no effective half-life, and the TIA tail is physical decay only"
            )
        else:
            t_eff = math.log(2) / slow / _SECONDS_PER_HOUR
            if slow > lam * (1 + 1e-9):
                t_biol = biological_half_life(math.log(2) / slow, iso) / _SECONDS_PER_HOUR

    def integrate(curve: TimeActivityCurve, n: int) -> tuple[float, float]:
        """TIA (value × s) and the part of it past the last time point."""
        t, v = curve.times_s, curve.values
        if tail == "physical":
            tia = time_integrated_activity(t, v, tail="physical", isotope=iso)
            return tia.total, tia.tail
        # Trapezoid up to the first fitted point, the fitted curve from there on: sparse late
        # samples (e.g. 72 h and 7 d) follow the exponential better than a chord. A curve fitted
        # from its first point (blood) starts from the fitted value at injection, not from 0.
        fit = fits[n]
        if start == 0:
            total_s = fit.integral(0.0)
        else:
            total_s = time_integrated_activity(
                t[: start + 1], v[: start + 1], fit, tail="fit", isotope=iso
            ).total
        return total_s, fit.integral(float(t[-1]))

    tia, tia_tail = integrate(tac, 0)
    tia_total = None if total is None else integrate(total, 1)[0]
    return VoiKinetics(
        voi=tac.voi,
        role=role,
        fit=fits[0] if fits else None,
        fit_from_h=float(tac.times_h[start]) if start < len(tac.times_h) else None,
        n_fit_points=n_points if fits else 0,
        t_eff_h=t_eff,
        t_eff_fast_h=t_fast,
        t_biol_h=t_biol,
        tia_bq_h_per_ml=tia / _SECONDS_PER_HOUR,
        tia_bq_h=None if tia_total is None else tia_total / _SECONDS_PER_HOUR,
        tail_method=tail,
        tail_fraction=tia_tail / tia if tia > 0 else math.nan,
        residence_time_h=None
        if (injected_bq is None or tia_total is None)
        else tia_total / injected_bq / _SECONDS_PER_HOUR,
        note=note,
    )


def analyse_study(study: Study) -> StudyResult:
    """TACs, fits, TIA, residence times, %ID, ratios and heterogeneity of a study.

    Parameters
    ----------
    study : Study
        From :func:`load_study`.

    Returns
    -------
    StudyResult
    """
    settings = study.settings
    quantity = settings.quantity
    iso = study.isotope
    lam = get_isotope(iso).decay_constant_per_s
    points = [tp.time_point() for tp in study.timepoints]
    tacs: dict[str, TimeActivityCurve] = {}
    totals: dict[str, TimeActivityCurve] = {}
    stats_rows: list[dict[str, Any]] = []
    pid_rows: list[dict[str, Any]] = []
    stats_by: dict[tuple[str, str], Any] = {}
    a0 = study.injected
    for voi in study.vois:
        with _context(f"VOI {voi.name!r}"):
            tacs[voi.name] = time_activity_curve(
                points, voi.voi, mode="activity_at_scan_time", quantity=quantity, isotope=iso
            )
            totals[voi.name] = time_activity_curve(
                points, voi.voi, mode="activity_at_scan_time", quantity="total", isotope=iso
            )
        for tp in study.timepoints:
            carried = resample_voi(voi.voi, tp.image.grid, tp.transform)
            stats = voi_stats(tp.image, carried)
            # Statistics of an image decay-corrected to injection, brought to scan time.
            to_scan = math.exp(-lam * tp.time_after_injection_s)
            scale = to_scan if tp.mode == "decay_corrected_to_injection" else 1.0
            stats_by[(voi.name, tp.label)] = (stats, scale)
            t = tp.time_after_injection_s
            row: dict[str, Any] = {
                "timepoint": tp.label,
                "time_h": tp.time_h,
                "voi": voi.name,
                "role": voi.role,
                "units": "Bq/mL",
                "n_voxels": stats.n_voxels,
                "volume_ml": stats.volume_ml,
                "mean": stats.mean * scale,
                "sd": stats.sd * scale,
                "min": stats.min * scale,
                "max": stats.max * scale,
                "peak": stats.peak * scale,
                "total_bq": stats.total * scale,
                "mean_dc": stats.mean * scale / to_scan,
                "total_bq_dc": stats.total * scale / to_scan,
            }
            if study.weight_kg is not None:
                row["suv_bw_mean"] = suv_bw(
                    stats.mean * scale, a0, study.weight_kg, time_after_injection_s=t, isotope=iso
                )
                row["suv_bw_max"] = suv_bw(
                    stats.max * scale, a0, study.weight_kg, time_after_injection_s=t, isotope=iso
                )
            stats_rows.append(row)
            if settings.percent_id:
                value = float(getattr(stats, quantity)) * scale
                pid_rows.append(
                    {
                        "timepoint": tp.label,
                        "time_h": tp.time_h,
                        "voi": voi.name,
                        "role": voi.role,
                        "percent_id": percent_id(
                            stats.total * scale, a0, time_after_injection_s=t, isotope=iso
                        ),
                        f"percent_id_per_ml_{quantity}": percent_id_per_ml(
                            value, a0, time_after_injection_s=t, isotope=iso
                        ),
                    }
                )

    kinetics = {
        v.name: clearance_kinetics(
            tacs[v.name], totals[v.name], fit_from=settings.fit_from,
            fit_terms=settings.fit_terms, injected_bq=study.injected_activity_bq, role=v.role,
        )
        for v in study.vois
    }  # fmt: skip
    ratios = _ratios(study, stats_by)
    heterogeneity = _heterogeneity(study, tacs, kinetics)
    return StudyResult(
        study=study,
        tacs=tacs,
        total_tacs=totals,
        kinetics=kinetics,
        voi_stats=stats_rows,
        ratios=ratios,
        percent_id=pid_rows,
        heterogeneity=heterogeneity,
    )


def _ratios(study: Study, stats_by: dict[tuple[str, str], Any]) -> list[dict[str, Any]]:
    quantity = study.settings.quantity
    rows = []
    for tp in study.timepoints:
        for lesion in study.lesions:
            lesion_stats, _ = stats_by[(lesion.name, tp.label)]
            row: dict[str, Any] = {
                "timepoint": tp.label, "time_h": tp.time_h, "lesion": lesion.name,
            }  # fmt: skip
            # Both values come from the same image, so the ratio is the same in either decay mode.
            for ref in study.references:
                ref_stats, _ = stats_by[(ref.name, tp.label)]
                if ref_stats.mean <= 0:
                    row[f"to_{ref.name}"] = None
                    continue
                if ref.role == "blood":
                    value = lesion_to_blood(lesion_stats, ref_stats, statistic=quantity)
                elif ref.role == "background":
                    value = lesion_to_background(lesion_stats, ref_stats, statistic=quantity)
                else:
                    value = uptake_ratio(lesion_stats, ref_stats, statistic=quantity)
                row[f"to_{ref.name}"] = value
            rows.append(row)
    return rows if study.references else []


def _heterogeneity(
    study: Study, tacs: dict[str, TimeActivityCurve], kinetics: dict[str, VoiKinetics]
) -> list[dict[str, Any]]:
    """Spread over the lesions of uptake at each time point, of TIA and of T_eff."""
    lesions = study.lesions
    if len(lesions) < 2:
        return []
    quantity = study.settings.quantity
    metrics: list[tuple[str, list[float]]] = []
    for n, tp in enumerate(study.timepoints):
        values = [
            float(tacs[v.name].in_mode("decay_corrected_to_injection").values[n]) for v in lesions
        ]
        metrics.append((f"{quantity}_dc_bq_ml@{tp.label}", values))
    metrics.append(("tia_bq_h_per_ml", [kinetics[v.name].tia_bq_h_per_ml for v in lesions]))
    t_eff = [kinetics[v.name].t_eff_h for v in lesions]
    if all(t is not None for t in t_eff):
        metrics.append(("t_eff_h", [float(t) for t in t_eff if t is not None]))
    rows = []
    for metric, values in metrics:
        rows.append({"metric": metric, **spread(values).as_dict()})
    return rows


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _matplotlib() -> bool:
    try:
        import matplotlib.figure  # noqa: F401, PLC0415  (optional dependency)
    except ImportError:
        return False
    return True


class _FitFrom:
    """A fitted curve drawn only from its first fitted time on (NaN before)."""

    def __init__(self, fit: ExponentialFit, start_s: float) -> None:
        self.fit, self.start_s = fit, start_s

    def __call__(self, t_s: Any) -> Any:
        t = np.asarray(t_s, dtype=np.float64)
        return np.where(t >= self.start_s, self.fit(t), np.nan)


def _save_figure(fig: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = buffer.getvalue()
    return write_atomically(path, lambda handle: handle.write(data))


def _plot_mip(study: Study, path: Path) -> Path:
    """Coronal (top) and transverse (bottom) maximum-intensity projections of each time point
    (at most :data:`_MAX_MIP_PANELS`), with the outlines of the VOIs carried to it."""
    from matplotlib.figure import Figure  # noqa: PLC0415  (optional dependency)

    tps = list(study.timepoints)
    if len(tps) > _MAX_MIP_PANELS:
        keep = np.unique(np.linspace(0, len(tps) - 1, _MAX_MIP_PANELS).round().astype(int))
        tps = [tps[i] for i in keep]
    fig = Figure(figsize=(2.9 * len(tps) + 0.8, 6.4), dpi=100, layout="constrained")
    axes = fig.subplots(2, len(tps), squeeze=False)
    colours = [f"C{n % 10}" for n in range(len(study.vois))]
    for col, tp in enumerate(tps):
        grid = tp.image.grid
        data = np.asarray(tp.image, dtype=np.float64)
        z, y, x = (grid.axis_mm(a) for a in range(3))
        dz, dy, dx = grid.voxel_size_mm
        masks = [resample_voi(v.voi, grid, tp.transform).mask for v in study.vois]
        # Padding with zeros closes every outline, also for a VOI that fills the projection.
        xp = np.concatenate(([x[0] - dx], x, [x[-1] + dx]))
        for row, (axis, v, dv) in enumerate(((1, z, dz), (0, y, dy))):
            ax = axes[row, col]
            extent = (x[0] - dx / 2, x[-1] + dx / 2, v[0] - dv / 2, v[-1] + dv / 2)
            ax.imshow(data.max(axis=axis), origin="lower", extent=extent, cmap="gray_r")
            if axis == 0:
                ax.invert_yaxis()  # anterior up
            vp = np.concatenate(([v[0] - dv], v, [v[-1] + dv]))
            for voi, mask, colour in zip(study.vois, masks, colours, strict=True):
                outline = np.pad(mask.any(axis=axis), 1)
                ax.contour(xp, vp, outline.astype(float), levels=[0.5], colors=[colour])
                if col == 0:
                    rows, cols = np.nonzero(outline)
                    # Just above the outline on screen (the transverse y axis is inverted).
                    top = vp[rows].max() + dv / 2 if axis == 1 else vp[rows].min() - dv / 2
                    ax.text(
                        xp[cols].mean(), top, voi.name, color=colour, fontsize=7, ha="center",
                        va="bottom",
                    )  # fmt: skip
            ax.tick_params(labelsize=7)
            if row == 0:
                ax.set_title(tp.label)
            else:
                ax.set_xlabel("x (mm), patient left →", fontsize=8)
            if col == 0:
                label = "coronal: z (mm), superior ↑" if axis == 1 else "transverse: y (mm)"
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"{study.name}: maximum-intensity projections with the VOIs")
    return _save_figure(fig, path)


def _plot_uptake(result: StudyResult, path: Path) -> Path:
    """Grouped bars: uptake of each lesion (or each VOI when there is none) per time point."""
    from matplotlib.figure import Figure  # noqa: PLC0415  (optional dependency)

    study = result.study
    vois = study.lesions or list(study.vois)
    a0 = study.injected_activity_bq
    quantity = study.settings.quantity
    fig = Figure(figsize=(max(6.4, 1.2 * len(vois) + 2), 4.0), dpi=100)
    ax = fig.add_subplot()
    n_tp = len(study.timepoints)
    width = 0.8 / n_tp
    positions = np.arange(len(vois))
    for n, tp in enumerate(study.timepoints):
        values = np.array([result.value(v.name, tp.label, decay_corrected=True) for v in vois])
        if a0 is not None:
            values = 100.0 * values / a0
        ax.bar(positions + (n - (n_tp - 1) / 2) * width, values, width, label=tp.label)
    ax.set_xticks(positions, [v.name for v in vois])
    unit = "%ID/mL" if a0 is not None else "Bq/mL"
    ax.set_ylabel(f"{quantity} {unit}, decay-corrected to injection", fontsize=9)
    ax.set_title(f"{study.name}: uptake per lesion")
    ax.legend(title="time point", fontsize=8)
    return _save_figure(fig, path)


def write_report(
    result: StudyResult, out: str | os.PathLike[str], *, plots: bool = True
) -> list[Path]:
    """Write the tables (CSV and JSON), ``summary.json`` and the plots into ``out``.

    Parameters
    ----------
    result : StudyResult
        From :func:`analyse_study`.
    out : path-like
        An existing folder.
    plots : bool, keyword-only
        Write the PNG plots; without matplotlib they are skipped with one warning.

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(out)
    study = result.study
    files: list[Path] = []
    for name, rows in result.tables().items():
        files.append(write_csv(folder / f"{name}.csv", rows))
        files.append(write_json(folder / f"{name}.json", rows))
    if plots and study.settings.plots:
        if _matplotlib():
            curves = list(result.tacs.values())
            fits = {
                k.voi: _FitFrom(k.fit, (k.fit_from_h or 0.0) * _SECONDS_PER_HOUR)
                for k in result.kinetics.values()
                if k.fit is not None
            }
            title = f"{study.name}: {study.settings.quantity} in each VOI, activity at scan time"
            files.append(plot_tacs(curves, folder / "tacs.png", log_y=True, title=title, fits=fits))
            files.append(_plot_mip(study, folder / "mip.png"))
            files.append(_plot_uptake(result, folder / "uptake.png"))
        else:
            log.warning(
                "recon: warning: matplotlib is not installed, so no plots were written "
                "(pip install matplotlib)"
            )
    summary = {
        "study": study.name,
        "isotope": study.isotope,
        "injected_activity_bq": study.injected_activity_bq,
        "weight_kg": study.weight_kg,
        "reference_timepoint": study.reference,
        "analysis": {
            "quantity": study.settings.quantity, "fit_terms": study.settings.fit_terms,
            "fit_from": study.settings.fit_from, "percent_id": study.settings.percent_id,
        },
        "timepoints": [
            {"label": tp.label, "time_h": tp.time_h, "mode": tp.mode, "image": tp.source}
            for tp in study.timepoints
        ],
        "vois": [
            {"name": v.name, "role": v.role, "volume_ml": v.voi.volume_ml, **v.definition}
            for v in study.vois
        ],
        "kinetics": [k.as_dict() for k in result.kinetics.values()],
        "files": [p.name for p in files] + ["summary.json"],
    }  # fmt: skip
    files.append(write_summary(folder, "summary.json", summary))
    return files


def _summary_rows(result: StudyResult) -> list[dict[str, Any]]:
    """One row per VOI for the printed summary."""
    study = result.study
    blood = next((v.name for v in study.references if v.role == "blood"), None)
    last = study.timepoints[-1].label
    last_ratio = {r["lesion"]: r for r in result.ratios if r["timepoint"] == last}
    rows = []
    for voi in study.vois:
        tac, kin = result.tacs[voi.name], result.kinetics[voi.name]
        i = int(np.argmax(tac.values))
        row = {
            "voi": voi.name,
            "role": voi.role,
            "volume_ml": voi.voi.volume_ml,
            "highest_bq_ml": float(tac.values[i]),
            "at_h": float(tac.times_h[i]),
            "t_eff_h": kin.t_eff_h,
            "t_biol_h": kin.t_biol_h,
            "tia_mbq_h": None if kin.tia_bq_h is None else kin.tia_bq_h / 1e6,
            "residence_h": kin.residence_time_h,
        }
        if blood is not None and voi.name in last_ratio:
            row[f"to_blood@{last}"] = last_ratio[voi.name].get(f"to_{blood}")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
