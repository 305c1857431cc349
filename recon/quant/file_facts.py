"""What an image file says about its times, units and identity, checked against the study file.

A DICOM PET/NM series (:func:`recon.io.read_dicom_image`) states when it was acquired (its time
zero: Series or Acquisition Date/Time), when and how much was administered (Radiopharmaceutical
Start DateTime, Radionuclide Total Dose), the isotope, what the values refer to (Decay Correction
START, ADMIN or NONE) and their units (PET Units, NM Real World Value Mapping); Interfile headers
name the isotope and (as recon writes them) the values' unit; an image in a recon output folder
has them in the ``summary.json`` recon wrote beside it (isotope, units, what time the values
refer to, the acquisition and the injection: :func:`recon_output_facts`). `recon quant` takes
these values when the study file leaves them out, and
refuses when the study file gives them too and they disagree beyond these tolerances:

- times (injection, scan): :data:`TIME_TOLERANCE_S` (DICOM times are to the second, hand-typed
  times to the minute);
- injected activity: :data:`ACTIVITY_TOLERANCE` (relative; a transcription error, not a
  dose-calibrator uncertainty, is what it catches);
- patient weight and height: :data:`BODY_TOLERANCE` (relative; DICOM often rounds them).

A time zone on one side only is ignored (both are read as the scanner's local time, as
:func:`recon.io.read_dicom_image` does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from recon._output import MANIFEST_NAME
from recon.errors import InputError, PhysicsError
from recon.image import Image
from recon.physics.isotopes import get_isotope

__all__ = [
    "ACTIVITY_TOLERANCE",
    "BODY_TOLERANCE",
    "TIME_TOLERANCE_S",
    "FileFacts",
    "decay_mode",
    "facts_of",
    "recon_output_facts",
    "seconds_between",
]

#: Largest difference in s between a time in the study file and the same time in an image file.
TIME_TOLERANCE_S = 60.0
#: Largest relative difference between the study file's and an image file's injected activity.
ACTIVITY_TOLERANCE = 0.01
#: Largest relative difference between the study file's and an image file's weight or height.
BODY_TOLERANCE = 0.02


@dataclass(frozen=True)
class FileFacts:
    """What one image file states (None where it is silent).

    Attributes
    ----------
    kind : str
        ``"DICOM"``, ``"Interfile"``, ``"NIfTI"`` or ``"NumPy"``.
    acquisition_datetime : datetime or None
        The image's time zero (DICOM).
    injection_datetime : datetime or None
        Administration time (DICOM).
    injected_activity_bq : float or None
        Administered activity at the administration time, Bq (DICOM).
    isotope : str or None
        Canonical isotope name, when the file names a known one.
    decay_correction : str or None
        DICOM Decay Correction: ``"START"``, ``"ADMIN"`` or ``"NONE"``.
    units : str or None
        The values' units as the file states them (recon unit strings, e.g. ``"Bq/mL"`` or
        ``"counts/s (uncalibrated)"``); None when the format has no units.
    units_term : str or None
        The file's own spelling (DICOM Units or UCUM code).
    weight_kg, height_m : float or None
        Patient Weight and Patient Size (DICOM).
    source : str or None
        Where the facts were read when not from the image file itself (``"recon
        summary.json"``: the summary that recon wrote beside the image).
    """

    kind: str
    acquisition_datetime: datetime | None = None
    injection_datetime: datetime | None = None
    injected_activity_bq: float | None = None
    isotope: str | None = None
    decay_correction: str | None = None
    units: str | None = None
    units_term: str | None = None
    weight_kg: float | None = None
    height_m: float | None = None
    source: str | None = None

    @property
    def stated_by(self) -> str:
        """Where the facts come from, for messages (``"DICOM"``, ``"recon summary.json"``)."""
        return self.source or self.kind


def _positive_or_none(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _isotope(name: Any) -> str | None:
    if not name:
        return None
    try:
        return get_isotope(str(name)).name
    except (PhysicsError, InputError):
        return None  # a free-text header name; the study's isotope rules


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def recon_output_facts(path: Path, kind: str) -> FileFacts | None:
    """The facts of an image that recon wrote, from the ``summary.json`` beside it.

    Used when ``path`` lies in a recon output folder whose manifest (``recon-manifest.json``)
    lists both the image and ``summary.json`` as recon's own: the summary's ``isotope``,
    ``units`` and ``timing`` (what the values refer to: ``values_at`` with ``decay_correction``
    START, or the injection with ADMIN; the acquisition start; the injection) are then the
    image's facts. Returns None for any other file, or when the summary cannot be read.
    """
    folder = path.parent
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        files = manifest["files"]
        if path.name not in files or "summary.json" not in files:
            return None
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(summary, dict):
        return None
    stated_timing = summary.get("timing")
    timing = stated_timing if isinstance(stated_timing, dict) else {}
    decay = timing.get("decay_correction")
    when = _datetime(timing.get("values_at"))
    if decay == "ADMIN":
        when = _datetime(timing.get("acquisition_datetime"))
    units = summary.get("units")
    return FileFacts(
        kind,
        acquisition_datetime=when,
        injection_datetime=_datetime(timing.get("injection_datetime")),
        injected_activity_bq=_positive_or_none(timing.get("injected_activity_bq")),
        isotope=_isotope(summary.get("isotope")),
        decay_correction=decay if decay in ("START", "ADMIN", "NONE") else None,
        units=units if isinstance(units, str) and units else None,
        source="recon summary.json",
    )


def facts_of(image: Image, kind: str, path: Path | None = None) -> FileFacts:
    """The facts ``image`` carries, read by ``kind`` (``"DICOM"``, ``"Interfile"``, ...);
    for an image in a recon output folder, those of the ``summary.json`` recon wrote beside it
    (:func:`recon_output_facts`)."""
    info = image.info
    if kind != "DICOM":
        from_recon = None if path is None else recon_output_facts(path, kind)
        if from_recon is not None:
            return from_recon
        stated_units = image.units if "units" in info or _header_units(info) else None
        return FileFacts(kind, isotope=_isotope(image.isotope), units=stated_units)
    when = info.get("acquisition_datetime")
    injected = info.get("injection_datetime")
    return FileFacts(
        kind,
        acquisition_datetime=when if isinstance(when, datetime) else None,
        injection_datetime=injected if isinstance(injected, datetime) else None,
        injected_activity_bq=_positive_or_none(info.get("injected_activity_bq")),
        isotope=_isotope(image.isotope),
        decay_correction=info.get("decay_correction"),
        units=image.units,
        units_term=info.get("units_dicom"),
        weight_kg=_positive_or_none(info.get("patient_weight_kg")),
        height_m=_positive_or_none(info.get("patient_height_m")),
    )


def _header_units(info: dict[str, Any]) -> bool:
    """Whether an Interfile header stated the values' unit (``quantification units``)."""
    header = info.get("header")
    return isinstance(header, dict) and any("quantification units" in str(k) for k in header)


def decay_mode(decay_correction: str) -> str:
    """The time point mode of a DICOM Decay Correction: ADMIN is decay-corrected to injection;
    START (and NONE, the mean over the frame) is activity at scan time."""
    return (
        "decay_corrected_to_injection" if decay_correction == "ADMIN" else "activity_at_scan_time"
    )


def seconds_between(later: datetime, earlier: datetime) -> float:
    """``later − earlier`` in s; a time zone on one side only is ignored (module docstring)."""
    if (later.tzinfo is None) != (earlier.tzinfo is None):
        later, earlier = later.replace(tzinfo=None), earlier.replace(tzinfo=None)
    return (later - earlier).total_seconds()


def format_time(when: datetime) -> str:
    """``when`` as ``YYYY-MM-DD hh:mm:ss`` (with its UTC offset when it has one)."""
    return when.isoformat(sep=" ", timespec="seconds")


def describe_difference_s(seconds: float) -> str:
    """``"6 h"``, ``"12 min"`` or ``"95 s"``."""
    s = abs(seconds)
    if s >= 3600:
        return f"{s / 3600:.3g} h"
    if s >= 120:
        return f"{s / 60:.3g} min"
    return f"{s:.3g} s"
