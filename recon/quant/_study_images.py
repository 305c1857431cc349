"""The ``[[timepoints]]`` of a study file: images read, their times, decay modes and units taken
from the files where the study file is silent, and checked against it where it is not (private;
the schema is in :mod:`recon.quant.study`, the tolerances in :mod:`recon.quant.file_facts`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from recon._npy import load_npy
from recon.errors import InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.physics.isotopes import get_isotope
from recon.quant._toml import check_keys, date_time, number, text, triple
from recon.quant.calibration import Injection
from recon.quant.file_facts import (
    ACTIVITY_TOLERANCE,
    BODY_TOLERANCE,
    TIME_TOLERANCE_S,
    FileFacts,
    decay_mode,
    describe_difference_s,
    facts_of,
    format_time,
    seconds_between,
)
from recon.quant.timeseries import DECAY_MODES

TIMEPOINT_KEYS = (
    "image", "time", "hours_after_injection", "mode", "label", "voxel_mm", "origin_mm",
    "calibration_factor", "transform", "frame",
)  # fmt: skip
_SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, eq=False)
class ImageRead:
    """One ``[[timepoints]]`` entry and the image it names, before its time is known."""

    where: str
    entry: dict[str, Any]
    path: Path
    image: Image
    facts: FileFacts


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def suffix_of(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _read_dicom(path: Path, entry: dict[str, Any]) -> Image:
    """A DICOM PET/NM image series (a folder or one file); ``frame`` picks a dynamic frame."""
    from recon.io.dicom_image import read_dicom_image

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


def _read_image(path: Path, entry: dict[str, Any]) -> tuple[Image, str]:
    """The image and the kind of file it came from."""
    suffix = suffix_of(path)
    if path.is_dir() or suffix in (".dcm", ".ima"):
        if not path.exists():
            raise InputError(f"image {path} does not exist")
        return _read_dicom(path, entry), "DICOM"
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
        from recon.io.interfile import read_interfile_image

        return read_interfile_image(path), "Interfile"
    if suffix in (".nii", ".nii.gz"):
        from recon.io.nifti import read_nifti_image

        return read_nifti_image(path), "NIfTI"
    if suffix == ".npy":
        array = load_npy(path, "image")  # header, pickles and sizes checked first
        if array.ndim != 3 or not np.issubdtype(array.dtype, np.number):
            raise InputError(f"{path.name} must hold a 3-D numeric array (z, y, x)")
        if "voxel_mm" not in entry:
            raise InputError("a .npy image needs voxel_mm (one value or [z, y, x])")
        voxel = triple(entry["voxel_mm"], "voxel_mm")
        origin = None if "origin_mm" not in entry else triple(entry["origin_mm"], "origin_mm")
        grid = ImageGrid(array.shape, voxel, origin=origin)
        image = Image(array.astype(np.float32), grid, info={"source": "npy", "path": str(path)})
        return image, "NumPy"
    raise InputError(
        f"{path.name}: unknown image format {suffix!r}; use Interfile (.hv), NumPy (.npy), "
        "NIfTI (.nii, .nii.gz) or a DICOM PET/NM series (a folder or a .dcm file)"
    )


def read_entry(entry: dict[str, Any], base: Path, where: str) -> ImageRead:
    """Validate a ``[[timepoints]]`` table's keys and read its image."""
    check_keys(entry, TIMEPOINT_KEYS, "")
    if "image" not in entry or not isinstance(entry["image"], str):
        raise InputError('needs image = "path" (relative to the study file)')
    path = base / entry["image"]
    image, kind = _read_image(path, entry)
    return ImageRead(where, entry, path, image, facts_of(image, kind, path))


# --------------------------------------------------------------------------------------------
# study-wide facts: isotope, injection, body
# --------------------------------------------------------------------------------------------


def resolve_isotope(given: str | None, reads: list[ImageRead], sources: dict[str, str]) -> str:
    """The study's isotope: the study file's, checked against every image naming one, or the
    one the images name."""
    named = [(r.where, r.facts.isotope) for r in reads if r.facts.isotope is not None]
    if given is not None:
        for where, isotope in named:
            if isotope != given:
                raise InputError(
                    f"[study] isotope is {given} but the image of {where} is of {isotope}"
                )
        sources["isotope"] = "[study] isotope"
        return given
    if not named:
        raise InputError('[study] needs isotope (e.g. "In-111"): the images do not name one')
    first_where, first = named[0]
    for where, isotope in named[1:]:
        if isotope != first:
            raise InputError(
                f"the images name different isotopes: {first} ({first_where}) and {isotope} "
                f"({where}); give [study] isotope after checking them"
            )
    sources["isotope"] = f"image file ({first_where})"
    return first


def _time_mismatch(what: str, a: datetime, where_a: str, b: datetime, where_b: str) -> str:
    gap = describe_difference_s(seconds_between(a, b))
    return (
        f"{what}: {where_a} gives {format_time(a)} but {where_b} gives {format_time(b)} "
        f"({gap} apart; tolerance {TIME_TOLERANCE_S:g} s)"
    )


def resolve_injection_time(
    given: datetime | None, reads: list[ImageRead], sources: dict[str, str]
) -> datetime | None:
    """The injection time: the study file's, checked against every DICOM administration time,
    or the one the DICOM files give."""
    stated = [
        (r.where, r.facts.injection_datetime, r.facts.stated_by)
        for r in reads
        if r.facts.injection_datetime
    ]
    if stated:
        where0, first, _ = stated[0]
        for where, when, _ in stated[1:]:
            assert when is not None and first is not None
            if abs(seconds_between(when, first)) > TIME_TOLERANCE_S:
                raise InputError(
                    _time_mismatch("administration times differ", first, where0, when, where)
                )
    if given is not None:
        if stated:
            where0, first, by = stated[0]
            assert first is not None
            if abs(seconds_between(given, first)) > TIME_TOLERANCE_S:
                raise InputError(
                    _time_mismatch(
                        f"the injection time disagrees with the {by} administration time",
                        given, "[study] injection_time", first, f"the {by} of {where0}",
                    )
                    + "; correct the study file or leave injection_time out"
                )  # fmt: skip
        sources["injection_time"] = "[study] injection_time"
        return given
    if stated:
        sources["injection_time"] = f"{stated[0][2]} administration time ({stated[0][0]})"
        return stated[0][1]
    return None


def resolve_injection(
    study: dict[str, Any],
    isotope: str,
    injection_time: datetime | None,
    reads: list[ImageRead],
    sources: dict[str, str],
) -> Injection | float | None:
    """The injected activity: from the study file (checked against DICOM), or from DICOM."""
    stated = [
        (r.where, r.facts.injected_activity_bq) for r in reads if r.facts.injected_activity_bq
    ]
    by = next((r.facts.stated_by for r in reads if r.facts.injected_activity_bq), "")
    for where, value in stated[1:]:
        assert value is not None and stated[0][1] is not None
        if abs(value / stated[0][1] - 1) > ACTIVITY_TOLERANCE:
            raise InputError(
                f"the image files' administered activities differ: {stated[0][1]:.6g} Bq "
                f"({stated[0][0]}) and {value:.6g} Bq ({where}); give [study] "
                "injected_activity_bq after checking them"
            )
    injected = _injection(study, isotope, injection_time)
    if injected is None:
        if stated:
            name = "Radionuclide Total Dose" if by == "DICOM" else "injected activity"
            sources["injected_activity_bq"] = f"{by} {name} ({stated[0][0]})"
            return stated[0][1]
        return None
    sources["injected_activity_bq"] = "[study] injected_activity_bq"
    if stated:
        where, dicom = stated[0]
        assert dicom is not None
        # Consoles record the syringe reading or the net activity: either may match.
        if isinstance(injected, Injection):
            net = injected.activity_at_injection_bq
            gross = net + (
                0.0 if injected.residual_bq == 0 else injected.residual_bq
                * _decay_to_injection(injected, injected.residual_measured_at)
            )  # fmt: skip
        else:
            net = gross = float(injected)
        if min(abs(net / dicom - 1), abs(gross / dicom - 1)) > ACTIVITY_TOLERANCE:
            raise InputError(
                f"[study] injected activity {net:.6g} Bq (at injection) disagrees with the {by} "
                f"{'Radionuclide Total Dose' if by == 'DICOM' else 'injected activity'} "
                f"{dicom:.6g} Bq of {where} by "
                f"{100 * abs(net / dicom - 1):.3g} % (tolerance {100 * ACTIVITY_TOLERANCE:g} %)"
            )
    return injected


def _decay_to_injection(injection: Injection, when: Any) -> float:
    """exp(λ (t − t_inj)): the factor taking an activity measured at ``when`` to injection."""
    if when is None:
        return 1.0
    seconds = injection.time_after_injection_s(when)
    return float(np.exp(injection.decay_constant_per_s * seconds))


def _injection(
    study: dict[str, Any], isotope: str, injection_time: datetime | None
) -> Injection | float | None:
    if "injected_activity_bq" not in study:
        for key in ("activity_measured_at", "residual_activity_bq", "residual_measured_at"):
            if key in study:
                raise InputError(f"[study] {key} needs injected_activity_bq")
        return None
    activity = number(study["injected_activity_bq"], "[study] injected_activity_bq", "positive")
    extra = [k for k in ("activity_measured_at", "residual_activity_bq") if k in study]
    if not extra:
        return activity
    if injection_time is None:
        raise InputError(f"[study] {extra[0]} needs injection_time (decay to the injection)")
    measured = study.get("activity_measured_at")
    residual = number(
        study.get("residual_activity_bq", 0.0), "[study] residual_activity_bq", "non-negative"
    )
    residual_at = study.get("residual_measured_at")
    if residual and residual_at is None:
        raise InputError("[study] residual_activity_bq needs residual_measured_at")
    return Injection(
        activity_bq=activity,
        measured_at=injection_time
        if measured is None
        else date_time(measured, "[study] activity_measured_at"),
        injected_at=injection_time,
        isotope=isotope,
        residual_bq=residual,
        residual_measured_at=None
        if residual_at is None
        else date_time(residual_at, "[study] residual_measured_at"),
    )


def body_value(
    given: Any,
    key: str,
    stated: list[tuple[str, float]],
    sources: dict[str, str],
    dicom_name: str,
    unit: str,
) -> float | None:
    """Weight or height: the study file's (checked against DICOM), or the first DICOM value."""
    if given is not None:
        value = number(given, f"[study] {key}", "positive")
        for where, dicom in stated:
            if abs(value / dicom - 1) > BODY_TOLERANCE:
                raise InputError(
                    f"[study] {key} = {value:g} disagrees with the DICOM {dicom_name} of {where} "
                    f"({dicom:g} {unit}; tolerance {100 * BODY_TOLERANCE:g} %)"
                )
        sources[key] = f"[study] {key}"
        return value
    if stated:
        sources[key] = f"DICOM {dicom_name} ({stated[0][0]})"
        return stated[0][1]
    return None


# --------------------------------------------------------------------------------------------
# one time point
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimepointValues:
    """What a time point's image means: its time, decay mode, units and label, with sources."""

    label: str
    seconds: float
    mode: str
    factor: float
    transform: np.ndarray | None
    sources: dict[str, str]


def _scan_seconds(
    read: ImageRead, injection_time: datetime | None, sources: dict[str, str]
) -> float:
    entry, facts = read.entry, read.facts
    if "time" in entry and "hours_after_injection" in entry:
        raise InputError("give only one of time (a date-time) and hours_after_injection")
    acquired = facts.acquisition_datetime
    if "time" in entry:
        if injection_time is None:
            raise InputError("time needs [study] injection_time (or give hours_after_injection)")
        when = date_time(entry["time"], "time")
        if acquired is not None and abs(seconds_between(when, acquired)) > TIME_TOLERANCE_S:
            raise InputError(
                _time_mismatch(
                    f"the scan time disagrees with the {facts.stated_by} acquisition time",
                    when, "time", acquired, f"the {facts.stated_by}",
                )
                + "; correct the study file or leave time out"
            )  # fmt: skip
        seconds = seconds_between(when, injection_time)
        sources["time"] = "study file (time)"
        if seconds < 0:
            raise InputError(
                f"scan time {format_time(when)} is {-seconds / 3600:.3g} h before the injection "
                f"({format_time(injection_time)})"
            )
        return seconds
    file_seconds = None
    if acquired is not None and injection_time is not None:
        file_seconds = seconds_between(acquired, injection_time)
    if "hours_after_injection" in entry:
        hours = number(entry["hours_after_injection"], "hours_after_injection")
        if hours < 0:
            raise InputError(
                f"hours_after_injection = {hours:g} is before the injection; times count from it"
            )
        if (
            acquired is not None  # (file_seconds is known only then)
            and file_seconds is not None
            and abs(hours * 3600 - file_seconds) > TIME_TOLERANCE_S
        ):
            raise InputError(
                f"hours_after_injection = {hours:g} disagrees with the {facts.stated_by} "
                "acquisition time "
                f"{format_time(acquired)}, {file_seconds / 3600:.4g} h after the injection "
                f"({describe_difference_s(hours * 3600 - file_seconds)} apart; tolerance "
                f"{TIME_TOLERANCE_S:g} s); correct the study file or leave "
                "hours_after_injection out"
            )  # fmt: skip
        sources["time"] = "study file (hours_after_injection)"
        return hours * _SECONDS_PER_HOUR
    if acquired is None:
        raise InputError(
            "give time (a date-time) or hours_after_injection: the image file carries no "
            "acquisition time"
        )
    if file_seconds is None:
        raise InputError(
            f"the scan time comes from the {facts.stated_by} acquisition time, but the "
            "injection time is unknown: give [study] injection_time"
        )
    if file_seconds < 0:
        raise InputError(
            f"the {facts.stated_by} acquisition time {format_time(acquired)} is "
            f"{-file_seconds / 3600:.3g} h before the injection"
        )
    sources["time"] = f"{facts.stated_by} acquisition time"
    return file_seconds


def _mode(read: ImageRead, sources: dict[str, str]) -> str:
    entry, declared = read.entry, read.facts.decay_correction
    if "mode" in entry:
        mode = entry["mode"]
        if mode not in DECAY_MODES:
            raise InputError(f"mode must be one of {DECAY_MODES}, got {mode!r}")
        if declared is not None and decay_mode(declared) != mode:
            expected = decay_mode(declared)
            to = "the administration" if declared == "ADMIN" else "the scan"
            raise InputError(
                f"the {read.facts.stated_by} image is decay-corrected to {to} (Decay Correction "
                f"{declared}); "
                f'set mode = "{expected}" for this time point (the study file says mode = '
                f'"{mode}"), or leave mode out'
            )
        sources["mode"] = "study file"
        return str(mode)
    if declared is not None:
        sources["mode"] = f"{read.facts.stated_by} Decay Correction {declared}"
        return decay_mode(declared)
    sources["mode"] = "default"
    return "activity_at_scan_time"


def _calibration(read: ImageRead, sources: dict[str, str]) -> float:
    entry, facts = read.entry, read.facts
    given = "calibration_factor" in entry
    factor = number(entry.get("calibration_factor", 1.0), "calibration_factor", "positive")
    term = f"; DICOM {facts.units_term}" if facts.units_term else ""
    if facts.units is None:
        sources["units"] = (
            f"Bq/mL × calibration_factor {factor:g}"
            if given
            else f"assumed Bq/mL (the {facts.kind} file states no units)"
        )
    elif facts.units == "Bq/mL":
        sources["units"] = f"Bq/mL (file{term})" + (
            f" × calibration_factor {factor:g}" if given else ""
        )
    elif given:
        sources["units"] = f"{facts.units}{term} × calibration_factor {factor:g} = Bq/mL"
    else:
        raise InputError(
            f"the image is in {facts.units} ({facts.kind}{term}), not Bq/mL: Bq/mL, SUV and %ID "
            "need calibration_factor = <Bq/mL per image unit> for this time point"
        )
    return factor


def timepoint_values(read: ImageRead, injection_time: datetime | None) -> TimepointValues:
    """Time after injection, decay mode, calibration, label and transform of one entry."""
    sources: dict[str, str] = {}
    seconds = _scan_seconds(read, injection_time, sources)
    mode = _mode(read, sources)
    factor = _calibration(read, sources)
    label = read.entry.get("label", f"{seconds / _SECONDS_PER_HOUR:.4g}h")
    label = text(label, "label")
    transform = None
    if "transform" in read.entry:
        try:
            transform = np.asarray(read.entry["transform"], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("transform must be a 4×4 matrix of numbers (rows)") from None
    return TimepointValues(label, seconds, mode, factor, transform, sources)


def calibrated(image: Image, factor: float, isotope: str) -> Image:
    """The image in Bq/mL, tagged with the study's isotope."""
    data = np.asarray(image, dtype=np.float64) * factor
    if not np.all(np.isfinite(data)):
        raise InputError("the image contains NaN or infinite values")
    get_isotope(isotope)
    return image.with_data(data.astype(np.float32), units="Bq/mL", isotope=isotope)
