"""Write reconstructed images as DICOM: SPECT as NM Image Storage, PET as PET Image Storage.

SPECT results become one multi-frame NM image of Image Type ``ORIGINAL\\PRIMARY\\RECON TOMO\\
EMISSION`` (PS3.3 A.5 NM Image IOD: NM Multi-frame, NM Detector, NM TOMO Acquisition and NM
Reconstruction modules); PET results become one classic PET Image Storage file per slice and frame
(PS3.3 A.21 PET Image IOD: PET Series, PET Isotope and PET Image modules).

Geometry (DESIGN.md §3): world coordinates are DICOM patient coordinates (LPS), so they are written
unchanged. Our arrays are ``(z, y, x)``; each slice ``data[k]`` is a DICOM frame whose rows run
along +y and whose columns run along +x, i.e. Image Orientation (Patient) ``1\\0\\0\\0\\1\\0`` with
Pixel Spacing ``[Δy, Δx]``; Image Position (Patient) is the world position of the centre of the
slice's first voxel, and slice ``k`` lies at ``z0 + k Δz`` along the normal (row × column = +z).

Pixel values are stored as unsigned 16-bit integers with a Rescale Slope (PET: one per slice, as
the PET IOD prescribes; NM: one for the whole volume), so the stored value times the slope gives the
value in the written units to within half a slope.

Decay correction (PS3.3 C.8.9.1.1.5): a :class:`recon.Image` holds activities at its own
``reference_time_s`` (seconds from acquisition start). The writer rescales them to the reference the
file declares: ``START`` (acquisition start, the Series Date/Time), ``ADMIN`` (radiopharmaceutical
administration) or ``NONE`` (the mean activity during each frame), and writes the matching Decay
Factor and Frame Reference Time (PS3.3 C.8.9.4.1.5), so that the reference time can be recovered as
``Frame Reference Time − ln(Decay Factor) / λ``.
"""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from recon.errors import InputError
from recon.image import Image
from recon.io._dicom import combine_datetime, parse_date_time
from recon.physics.radionuclide_codes import DICOM_RADIONUCLIDE_CODES

__all__ = [
    "NM_IMAGE_STORAGE",
    "PET_IMAGE_STORAGE",
    "RADIONUCLIDE_CODES",
    "write_dicom",
]

#: SOP Class UIDs (PS3.4 Annex B.5): NM Image Storage and (classic) PET Image Storage.
NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"

#: Radionuclide Code Sequence (0054,0300) values by isotope: (SNOMED CT concept id, code
#: meaning), written with scheme "SCT". A view of recon.physics.radionuclide_codes (PS3.16 CID 18
#: and CID 4020, with the legacy SRT ids), kept for code that imported it from here.
RADIONUCLIDE_CODES: dict[str, tuple[str, str]] = {
    name: (code.sct, code.meaning) for name, code in DICOM_RADIONUCLIDE_CODES.items()
}

# Units (0054,1001) Defined Terms (PS3.3 C.8.9.1.1.3) and the matching UCUM codes of CID 84
# "PET Units", used for NM's Real World Value Mapping.
_UNITS = {
    "BQML": ("Bq/ml", "Becquerels/milliliter"),
    "PROPCPS": ("{propcounts}/s", "Proportional to counts per second"),
    "PROPCNT": ("{propcounts}", "Proportional to counts"),
}

# PS3.5 9.1: dot-separated numeric components without leading zeros, at most 64 characters.
_UID_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_FRAME_INCREMENT_SLICE_VECTOR = 0x00540080  # NM RECON TOMO frames are indexed by Slice Vector
_UINT16_MAX = 65535

# Attributes copied from a source dataset: Patient, Patient Study and General Study modules.
_COPIED_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "PatientComments",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "PatientPosition",
    "BodyPartExamined",
)
_SOURCE_SEQUENCES = ("PatientOrientationCodeSequence", "PatientGantryRelationshipCodeSequence")

# Keys accepted in a ``patient`` dict: DICOM keywords, plus short names for the common ones.
_PATIENT_ALIASES = {
    "name": "PatientName",
    "id": "PatientID",
    "birth_date": "PatientBirthDate",
    "sex": "PatientSex",
    "age": "PatientAge",
    "weight_kg": "PatientWeight",
    "size_m": "PatientSize",
}
_PATIENT_KEYWORDS = frozenset(_COPIED_KEYWORDS)

_INJECTION_KEYS = frozenset({"radionuclide", "activity_bq", "datetime", "radiopharmaceutical"})


class _SeriesFacts(TypedDict):
    """What every dataset of one written series shares (keyword arguments of the builders)."""

    study: dict[str, Any]
    source: Any
    for_uid: str
    series_description: str
    series_number: int
    acq_dt: datetime
    inj: dict[str, Any]
    mode: str
    units: str
    image: Image


@dataclass(frozen=True)
class _Frame:
    """One time frame of the series: pixel values in the written units and its timing."""

    values: np.ndarray  # (z, y, x) float64, rescaled to the declared decay reference
    start_s: float | None
    duration_s: float | None
    decay_factor: float | None  # Decay Factor (0054,1321), None when not decay corrected
    reference_time_ms: float  # Frame Reference Time (0054,1300)


def write_dicom(
    image: Image | Sequence[Image],
    path: str | os.PathLike[str],
    modality: str = "NM",
    *,
    series_description: str = "recon reconstruction",
    series_number: int = 1,
    patient: Mapping[str, Any] | Any | None = None,
    frame_of_reference_uid: str | None = None,
    decay_correction: str | None = None,
    acquisition_datetime: datetime | None = None,
    injection: Mapping[str, Any] | None = None,
    frames: Sequence[tuple[float, float]] | None = None,
    input_paths: Iterable[str | os.PathLike[str]] = (),
) -> list[Path]:
    """Write a reconstruction as a new DICOM series in a new folder.

    Parameters
    ----------
    image : Image or sequence of Image
        The volume (``(z, y, x)`` on an :class:`~recon.ImageGrid`, finite and non-negative). For
        ``modality="PT"`` a sequence of Images on one grid is a dynamic series, one Image per time
        frame in increasing start time.
    path : path-like
        Output folder. It must not exist yet (or be an empty folder); its parent must exist. The
        files are written into a temporary folder next to it, each through a temporary file and a
        rename, and the folder is renamed into place at the end, so a failure leaves nothing behind.
    modality : {"NM", "PT"}
        ``"NM"``: one multi-frame NM Image Storage file (SPECT, RECON TOMO). ``"PT"``: one PET Image
        Storage file per slice (and frame).
    series_description : str
        Series Description (0008,103E), at most 64 characters.
    series_number : int
        Series Number (0020,0011).
    patient : dict or pydicom.Dataset, optional
        Patient and study attributes. A dict takes DICOM keywords (``PatientName``, ``PatientID``,
        ``PatientBirthDate``, ``PatientSex``, ``PatientWeight`` in kg, ``StudyInstanceUID`` ...) or
        the short names ``name``, ``id``, ``birth_date``, ``sex``, ``age``, ``weight_kg``,
        ``size_m``. A dataset (e.g. one of the input projection or CT files) has its patient and
        study attributes, Patient Position and orientation codes copied, and also supplies the Frame
        of Reference UID and the acquisition date/time when those are not given; the file it was
        read from is protected like ``input_paths``. Without it a new study is created.
    frame_of_reference_uid : str, optional
        Frame of Reference UID (0020,0052) shared with the inputs (e.g. the CT of a SPECT/CT);
        default: the source dataset's, else a new one.
    decay_correction : {"START", "ADMIN", "NONE"}, optional
        Decay reference declared in the file (PET Decay Correction (0054,1102)); the pixel values
        are rescaled from the image's ``reference_time_s`` to it. ``START``: acquisition start
        (``acquisition_datetime``, written as Series Date/Time); ``ADMIN``: the injection time
        (needs ``injection["datetime"]``); ``NONE``: the mean activity during each frame (PET,
        needs the frame timing). Default: ``START`` for a decay-corrected image, else ``NONE``.
    acquisition_datetime : datetime, optional
        Wall-clock time of the acquisition start (time 0 of the reconstruction's clock). Default:
        from the source dataset (Acquisition DateTime, Acquisition Date/Time, or Series
        Date/Time), else the current time, which is refused when ``injection`` is given because
        uptake values would then be computed from a made-up delay.
    injection : dict, optional
        ``radionuclide`` (default: the image's isotope), ``activity_bq`` (administered activity,
        Bq), ``datetime`` (administration time, a datetime) and ``radiopharmaceutical`` (free
        text, e.g. ``"Fluorodeoxyglucose"``), written to the Radiopharmaceutical Information
        Sequence (0054,0016).
    frames : sequence of (start_s, duration_s), optional
        PET frame timing in seconds from acquisition start, one pair per Image. Default: each
        Image's ``info["frame_start_s"]`` / ``info["frame_duration_s"]`` (set by ``lm_osem``).
        Needed for decay-corrected PET (Decay Factor and Frame Reference Time depend on it).
    input_paths : iterable of path-like
        Files this result was computed from; the writer refuses to write at any of them.

    Returns
    -------
    list of Path
        The files written, in Instance Number order.

    Raises
    ------
    InputError
        Non-finite or negative values, mismatched frames, unknown units, missing or inconsistent
        timing, a bad UID or patient attribute, or an output path that exists or is an input.
    PhysicsError
        The image's isotope is unknown (its half-life is needed for decay correction).
    """
    import pydicom  # core dependency; imported here so that `import recon` stays light

    modality = str(modality).upper()
    if modality not in ("NM", "PT"):
        raise InputError(f"modality must be 'NM' (SPECT) or 'PT' (PET), got {modality!r}")
    images = _as_images(image, modality)
    first = images[0]
    values = [_checked_values(img, n) for n, img in enumerate(images)]
    units = _units_term(first.units)
    if not isinstance(series_description, str) or len(series_description) > 64:
        raise InputError("series_description must be a string of at most 64 characters (LO)")

    source = patient if isinstance(patient, pydicom.Dataset) else None
    protected = [Path(p) for p in input_paths]
    source_file = getattr(source, "filename", None)
    if isinstance(source_file, (str, os.PathLike)) and str(source_file):
        protected.append(Path(source_file))
    target = _check_target(Path(path), protected)

    acq_dt = _acquisition_datetime(acquisition_datetime, source, injection is not None)
    inj = _injection(injection, first.isotope, acq_dt)
    mode = _decay_mode(decay_correction, first, modality, inj)
    timing = _timing(images, frames, modality)
    frames_out = _frames(values, first, timing, mode, inj)

    study = _study_attributes(patient, source, acq_dt)
    for_uid = _uid(
        frame_of_reference_uid
        if frame_of_reference_uid is not None
        else getattr(source, "FrameOfReferenceUID", None),
        "frame_of_reference_uid",
    )
    common = _SeriesFacts(
        study=study,
        source=source,
        for_uid=for_uid,
        series_description=series_description,
        series_number=int(series_number),
        acq_dt=acq_dt,
        inj=inj,
        mode=mode,
        units=units,
        image=first,
    )
    if modality == "NM":
        datasets = [("NM000001.dcm", _nm_dataset(frames_out[0], **common))]
    else:
        datasets = _pet_datasets(frames_out, **common)
    return _write_folder(target, datasets)


# ---- validation ---------------------------------------------------------------------------------


def _as_images(image: Any, modality: str) -> list[Image]:
    images = [image] if isinstance(image, Image) else list(image) if _is_sequence(image) else None
    if not images or not all(isinstance(img, Image) for img in images):
        raise InputError("image must be a recon.Image or, for PET, a non-empty list of Images")
    if modality == "NM" and len(images) > 1:
        raise InputError("NM RECON TOMO holds one volume; write dynamic studies with modality='PT'")
    first = images[0]
    for n, img in enumerate(images[1:], start=1):
        if not img.grid.same_as(first.grid):
            raise InputError(
                f"frame {n} is on another grid than frame 0; all frames must share one"
            )
        if img.units != first.units or img.isotope != first.isotope:
            raise InputError(f"frame {n} has other units or isotope than frame 0")
        t_img, t_first = img.reference_time_s, first.reference_time_s
        if (t_img is None) != (t_first is None) or (
            t_img is not None
            and t_first is not None
            and not math.isclose(t_img, t_first, abs_tol=1e-6)
        ):
            # PS3.3 C.8.9.1.1.5: all images of a series are decay corrected to the same time.
            raise InputError(f"frame {n} is decay-corrected to another reference time than frame 0")
    if any(n > _UINT16_MAX for n in first.grid.shape):
        raise InputError(f"image dimensions {first.grid.shape} exceed DICOM's 65535 rows/columns")
    return images


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _checked_values(image: Image, n: int) -> np.ndarray:
    data = np.asarray(image, dtype=np.float64)
    label = "image" if n == 0 else f"frame {n}"
    if data.ndim != 3 or data.shape != tuple(image.grid.shape):
        raise InputError(f"{label} must be a (z, y, x) volume of shape {image.grid.shape}")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{label} contains NaN or infinite values")
    if data.min() < 0:
        raise InputError(
            f"{label} has negative values (min {data.min():.4g}); DICOM NM/PET pixels are stored "
            "unsigned here: clip them (np.clip(x, 0, None)) or check the reconstruction"
        )
    return data


def _units_term(units: Any) -> str:
    if not isinstance(units, str):
        raise InputError(f"image units must be a string, got {type(units).__name__}")
    text = units.strip().lower()
    if text in ("bq/ml", "bq/cc", "bq/cm3"):
        return "BQML"
    # Uncalibrated reconstructions are proportional to the count rate, not counts per voxel.
    if text.startswith(("counts/s", "cps", "counts per second")):
        return "PROPCPS"
    if text.startswith("counts"):
        return "PROPCNT"
    raise InputError(
        f"cannot map image units {units!r} to DICOM Units; expected 'Bq/mL' or 'counts/s ...'"
    )


def _check_target(target: Path, protected: list[Path]) -> Path:
    resolved = target.resolve()
    for p in protected:
        if p.resolve() == resolved:
            raise InputError(
                f"refusing to write to {target}: it is an input of this reconstruction; "
                "choose a new output folder"
            )
    if target.exists():
        if not target.is_dir():
            raise InputError(
                f"{target} exists and is not a folder; write_dicom writes a new folder and never "
                "overwrites files"
            )
        if any(target.iterdir()):
            raise InputError(f"output folder {target} is not empty; choose a new folder")
    if not target.parent.is_dir():
        raise InputError(f"parent folder {target.parent} does not exist; create it first")
    return target


def _uid(value: Any, name: str) -> str:
    from pydicom.uid import generate_uid

    if value is None:
        return str(generate_uid())
    uid = str(value).rstrip("\0 ")
    if len(uid) > 64 or not _UID_PATTERN.fullmatch(uid):
        raise InputError(f"{name} {value!r} is not a valid DICOM UID (PS3.5 9.1)")
    return uid


def _parse_dicom_datetime(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        when = parse_date_time(value, "DT")
        if when is None:
            raise InputError(
                f"{name} {value!r} is not a DICOM date-time (YYYYMMDDHHMMSS.FFFFFF&ZZXX, PS3.5 "
                "6.2; later parts may be left off)"
            )
        return when
    raise InputError(f"{name} must be a datetime, got {type(value).__name__}")


def _acquisition_datetime(value: datetime | None, source: Any, have_injection: bool) -> datetime:
    if value is not None:
        return _parse_dicom_datetime(value, "acquisition_datetime")
    if source is not None:
        if source.get("AcquisitionDateTime"):
            return _parse_dicom_datetime(str(source.AcquisitionDateTime), "AcquisitionDateTime")
        for d, t in (("AcquisitionDate", "AcquisitionTime"), ("SeriesDate", "SeriesTime")):
            if source.get(d) and source.get(t):
                when = combine_datetime(source.get(d), source.get(t))
                if when is None:
                    raise InputError(
                        f"source {d}/{t} cannot be read: {source.get(d)!r}/{source.get(t)!r} is "
                        "not a DICOM date and time"
                    )
                return when
    if have_injection:
        raise InputError(
            "acquisition_datetime is needed with injection (uptake depends on the delay between "
            "injection and scan); pass it or a source dataset with Acquisition Date/Time"
        )
    return datetime.now().replace(microsecond=0)


def _injection(
    injection: Mapping[str, Any] | None, isotope: str | None, acq_dt: datetime
) -> dict[str, Any]:
    from recon.physics.isotopes import get_isotope

    out: dict[str, Any] = {"radionuclide": None, "activity_bq": None, "datetime": None}
    if injection is not None:
        if not isinstance(injection, Mapping):
            raise InputError("injection must be a dict (radionuclide, activity_bq, datetime)")
        unknown = set(injection) - _INJECTION_KEYS
        if unknown:
            raise InputError(
                f"unknown injection keys {sorted(unknown)}; accepted: {sorted(_INJECTION_KEYS)}"
            )
        out.update(injection)
    name = out["radionuclide"] or isotope
    if name is not None:
        iso = get_isotope(name)
        if isotope is not None and get_isotope(isotope).name != iso.name:
            raise InputError(
                f"injection radionuclide {iso.name} differs from the image's isotope {isotope}"
            )
        out["radionuclide"] = iso
    if out["activity_bq"] is not None:
        activity = float(out["activity_bq"])
        if not (math.isfinite(activity) and activity > 0):
            raise InputError(f"injection activity_bq must be positive, got {out['activity_bq']}")
        out["activity_bq"] = activity
    if out["datetime"] is not None:
        when = _parse_dicom_datetime(out["datetime"], "injection datetime")
        try:
            out["offset_s"] = (when - acq_dt).total_seconds()
        except TypeError:
            raise InputError(
                "injection datetime and acquisition_datetime must both have a time zone or both "
                "have none"
            ) from None
        out["datetime"] = when
    pharma = out.get("radiopharmaceutical")
    if pharma is not None and (not isinstance(pharma, str) or len(pharma) > 64):
        raise InputError("injection radiopharmaceutical must be a string of at most 64 characters")
    return out


def _decay_mode(mode: str | None, image: Image, modality: str, inj: dict[str, Any]) -> str:
    corrected = image.reference_time_s is not None
    if corrected and image.isotope is None:
        raise InputError(
            "the image has a decay reference time but no isotope; set Image.isotope so that the "
            "half-life is known"
        )
    if mode is None:
        mode = "START" if corrected else "NONE"
    mode = str(mode).upper()
    if mode not in ("START", "ADMIN", "NONE"):
        raise InputError(f"decay_correction must be 'START', 'ADMIN' or 'NONE', got {mode!r}")
    if mode != "NONE":
        if not corrected or image.isotope is None:
            raise InputError(
                f"decay_correction={mode!r} needs a decay-corrected image (isotope and "
                "reference_time_s set); this image is not decay corrected: use 'NONE'"
            )
        if mode == "ADMIN" and inj.get("datetime") is None:
            raise InputError("decay_correction='ADMIN' needs injection={'datetime': ...}")
    elif corrected and modality == "NM":
        raise InputError(
            "cannot undo the decay correction of a SPECT volume (it depends on every view's "
            "timing); write it with decay_correction='START' or 'ADMIN'"
        )
    return mode


def _timing(
    images: list[Image], frames: Any, modality: str
) -> list[tuple[float | None, float | None]]:
    if frames is not None:
        if modality == "NM":
            raise InputError("frames apply to PET series (modality='PT') only")
        pairs = list(frames)
        if len(pairs) != len(images):
            raise InputError(f"frames lists {len(pairs)} (start, duration) pairs for {len(images)}")
        raw = [tuple(p) if _is_sequence(p) or isinstance(p, np.ndarray) else (p,) for p in pairs]
    else:
        raw = [(img.info.get("frame_start_s"), img.info.get("frame_duration_s")) for img in images]
    timing: list[tuple[float | None, float | None]] = []
    for n, pair in enumerate(raw):
        if len(pair) != 2:
            raise InputError(f"frame {n} timing must be (start_s, duration_s), got {pair}")
        try:
            start, duration = (None if v is None else float(v) for v in pair)
        except (TypeError, ValueError):
            raise InputError(f"frame {n} timing must be numbers (start_s, duration_s)") from None
        if start is not None and not (math.isfinite(start) and start >= 0):
            raise InputError(f"frame {n} start must be finite and >= 0 s, got {start}")
        if duration is not None and not (math.isfinite(duration) and duration > 0):
            raise InputError(f"frame {n} duration must be positive (s), got {duration}")
        timing.append((start, duration))
    if modality == "PT":
        known = all(s is not None and d is not None for s, d in timing)
        if not known and (len(images) > 1 or images[0].reference_time_s is not None):
            raise InputError(
                "PET frame timing is unknown: pass frames=[(start_s, duration_s), ...] "
                "(seconds from acquisition start), one pair per image"
            )
        starts = [s for s, _ in timing if s is not None]  # all of them when known
        if known and any(b <= a for a, b in zip(starts[:-1], starts[1:], strict=True)):
            raise InputError("frames must be in strictly increasing start time")
    return timing


def _frames(
    values: list[np.ndarray],
    image: Image,
    timing: list[tuple[float | None, float | None]],
    mode: str,
    inj: dict[str, Any],
) -> list[_Frame]:
    from recon.physics.decay import decay_correction_factor, mean_activity_fraction
    from recon.physics.isotopes import get_isotope

    half_life = get_isotope(image.isotope).half_life_s if image.isotope is not None else None
    lam = math.log(2.0) / half_life if half_life is not None else None
    t_img = image.reference_time_s
    t_file = {"START": 0.0, "ADMIN": inj.get("offset_s"), "NONE": None}[mode]
    out = []
    for data, (start, duration) in zip(values, timing, strict=True):
        if mode == "NONE" and t_img is not None:
            # Back to the mean activity during the frame: what an uncorrected image shows.
            scale = float(mean_activity_fraction(half_life, start, duration, t_img))
        elif mode != "NONE":
            # _decay_mode and _injection allow START/ADMIN only for a decay-corrected image of a
            # known isotope, and ADMIN only with an injection time.
            assert lam is not None and t_img is not None and t_file is not None
            scale = math.exp(lam * (t_img - t_file))
        else:
            scale = 1.0
        factor = None
        ref_ms = 0.0
        if start is not None and duration is not None:
            if lam is not None:
                # PS3.3 C.8.9.4.1.5 example 2: the time at which the frame's mean activity occurs.
                t_ave = (
                    math.log(float(decay_correction_factor(half_life, 0.0, duration, 0.0))) / lam
                )
            else:
                t_ave = duration / 2.0
            ref_ms = 1000.0 * (start + t_ave)
            if mode != "NONE":
                factor = float(decay_correction_factor(half_life, start, duration, t_file))
        out.append(_Frame(data * scale, start, duration, factor, ref_ms))
    return out


# ---- dataset building ---------------------------------------------------------------------------


def _ds(value: float) -> Any:
    """A Decimal String value of at most 16 characters (PS3.5 6.2)."""
    from pydicom.valuerep import DSfloat

    return DSfloat(float(value), auto_format=True)


def _da(when: datetime | date) -> str:
    return when.strftime("%Y%m%d")


def _tm(when: datetime) -> str:
    return when.strftime("%H%M%S.%f")


def _dt(when: datetime) -> str:
    offset = when.strftime("%z") if when.utcoffset() is not None else ""
    return when.strftime("%Y%m%d%H%M%S.%f") + offset


def _code(value: str, scheme: str, meaning: str) -> Any:
    from pydicom import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _study_attributes(patient: Any, source: Any, acq_dt: datetime) -> dict[str, Any]:
    from pydicom.valuerep import PersonName

    values: dict[str, Any] = {}
    if source is not None:
        for keyword in _COPIED_KEYWORDS:
            value = source.get(keyword)
            if value is None or value == "":
                continue
            values[keyword] = str(value) if isinstance(value, PersonName) else value
    elif patient is not None:
        if not isinstance(patient, Mapping):
            raise InputError("patient must be a dict of attributes or a pydicom Dataset")
        for key, value in patient.items():
            attribute = _PATIENT_ALIASES.get(key, key)
            if attribute not in _PATIENT_KEYWORDS:
                accepted = sorted(set(_PATIENT_ALIASES) | _PATIENT_KEYWORDS)
                raise InputError(f"unknown patient attribute {key!r}; accepted: {accepted}")
            values[attribute] = _patient_value(attribute, value)
    values.setdefault("PatientName", "")
    values.setdefault("PatientID", "")
    values.setdefault("PatientBirthDate", "")
    values.setdefault("PatientSex", "")
    values.setdefault("StudyDate", _da(acq_dt))
    values.setdefault("StudyTime", _tm(acq_dt))
    values.setdefault("ReferringPhysicianName", "")
    values.setdefault("StudyID", "")
    values.setdefault("AccessionNumber", "")
    values["StudyInstanceUID"] = _uid(values.get("StudyInstanceUID"), "StudyInstanceUID")
    return values


def _patient_value(keyword: str, value: Any) -> Any:
    if keyword in ("PatientBirthDate", "StudyDate") and isinstance(value, date):
        return _da(value)
    if keyword == "StudyTime" and isinstance(value, datetime):
        return _tm(value)
    if keyword in ("PatientWeight", "PatientSize"):
        number = float(value)
        if not (math.isfinite(number) and number > 0):
            raise InputError(f"{keyword} must be a positive number (kg or m), got {value!r}")
        return _ds(number)
    if keyword == "PatientSex" and value not in ("M", "F", "O", ""):
        raise InputError(f"PatientSex must be 'M', 'F', 'O' or '', got {value!r}")
    if not isinstance(value, str):
        raise InputError(f"patient attribute {keyword} must be a string, got {value!r}")
    return value


def _software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"recon {version('recon')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "recon"


def _describe(info: Mapping[str, Any]) -> str:
    parts = []
    if info.get("algorithm"):
        parts.append(str(info["algorithm"]))
    if info.get("iterations") is not None:
        parts.append(f"{info['iterations']} iterations")
    if info.get("subsets") is not None:
        parts.append(f"{info['subsets']} subsets")
    if info.get("post_filter_fwhm_mm"):
        parts.append(f"Gaussian post-filter {float(info['post_filter_fwhm_mm']):g} mm FWHM")
    return ", ".join(parts)


def _decay_comment(mode: str) -> str:
    return {
        "START": "decay corrected to the acquisition start (Acquisition Date/Time)",
        "ADMIN": "decay corrected to the radiopharmaceutical administration time",
        "NONE": "not decay corrected",
    }[mode]


def _base_dataset(
    sop_class: str,
    modality: str,
    *,
    study: dict[str, Any],
    source: Any,
    for_uid: str,
    series_uid: str,
    series_description: str,
    series_number: int,
    acq_dt: datetime,
    mode: str,
    image: Image,
) -> Any:
    from pydicom import Dataset, Sequence

    now = datetime.now()
    ds = Dataset()
    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.InstanceCreationDate = _da(now)
    ds.InstanceCreationTime = _tm(now)
    if acq_dt.utcoffset() is not None:
        # Dates and times below are local to this offset (PS3.3 C.12.1.1.8).
        ds.TimezoneOffsetFromUTC = acq_dt.strftime("%z")
    # Patient, General Study, Patient Study
    for keyword, value in study.items():
        setattr(ds, keyword, value)
    # General Series
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    if "BodyPartExamined" not in study:
        # Type 2C, for paired body parts: empty means unknown (validators such as dciodvfy ask for
        # it when neither Body Part Examined nor Image Laterality says what was imaged).
        ds.Laterality = ""
    ds.SeriesDate = _da(acq_dt)
    ds.SeriesTime = _tm(acq_dt)
    # NM/PET Patient Orientation (Type 2 sequences: copied from the source when it has them)
    for keyword in _SOURCE_SEQUENCES:
        seq = source.get(keyword) if source is not None else None
        setattr(ds, keyword, copy.deepcopy(seq) if seq is not None else Sequence([]))
    # Frame of Reference
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    # General Equipment: these images were made by this software, not by the scanner.
    ds.Manufacturer = ""
    ds.SoftwareVersions = _software_version()
    # General Image
    ds.ContentDate = _da(now)
    ds.ContentTime = _tm(now)
    ds.AcquisitionDate = _da(acq_dt)
    ds.AcquisitionTime = _tm(acq_dt)
    # Rows along +x (patient left), columns along +y (posterior): PS3.3 C.7.6.1.1.1.
    ds.PatientOrientation = ["L", "P"]
    comment = "; ".join(p for p in (_describe(image.info), _decay_comment(mode)) if p)
    ds.ImageComments = f"recon: {comment}"
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    grid = image.grid
    ds.Rows = grid.shape[1]
    ds.Columns = grid.shape[2]
    dz, dy, dx = grid.voxel_size_mm
    ds.PixelSpacing = [_ds(dy), _ds(dx)]  # [row spacing (y), column spacing (x)]
    ds.SliceThickness = _ds(dz)
    return ds


def _radiopharmaceutical_item(inj: dict[str, Any], pet: bool) -> Any:
    from pydicom import Dataset, Sequence

    item = Dataset()
    iso = inj["radionuclide"]
    code = DICOM_RADIONUCLIDE_CODES.get(iso.name) if iso is not None else None
    item.RadionuclideCodeSequence = Sequence(
        [_code(code.sct, "SCT", code.meaning)] if code is not None else []
    )
    if inj.get("radiopharmaceutical"):
        item.Radiopharmaceutical = inj["radiopharmaceutical"]
    if inj.get("datetime") is not None:
        item.RadiopharmaceuticalStartTime = _tm(inj["datetime"])
        item.RadiopharmaceuticalStartDateTime = _dt(inj["datetime"])
    if inj.get("activity_bq") is not None:
        # Bq in the PET Isotope Module (PS3.3 C.8.9.2), MBq in the NM one (C.8.4.10.1.7).
        scale = 1.0 if pet else 1e-6
        item.RadionuclideTotalDose = _ds(inj["activity_bq"] * scale)
    if pet and iso is not None:
        item.RadionuclideHalfLife = _ds(iso.half_life_s)
        item.RadionuclidePositronFraction = _ds(iso.positron_fraction)
    return item


def _quantise(values: np.ndarray) -> tuple[np.ndarray, float]:
    """uint16 pixels and the slope (as it will read back from the file) with values ≈ px · slope."""
    peak = float(values.max())
    slope = float(str(_ds(peak / _UINT16_MAX))) if peak > 0 else 1.0
    pixels = np.clip(np.rint(values / slope), 0, _UINT16_MAX).astype("<u2")
    return pixels, slope


def _set_pixels(ds: Any, pixels: np.ndarray) -> None:
    ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(pixels, dtype="<u2").tobytes())


def _nm_dataset(
    frame: _Frame,
    *,
    study: dict[str, Any],
    source: Any,
    for_uid: str,
    series_description: str,
    series_number: int,
    acq_dt: datetime,
    inj: dict[str, Any],
    mode: str,
    units: str,
    image: Image,
) -> Any:
    from pydicom import Dataset, Sequence
    from pydicom.uid import generate_uid

    ds = _base_dataset(
        NM_IMAGE_STORAGE, "NM", study=study, source=source, for_uid=for_uid,
        series_uid=str(generate_uid()), series_description=series_description,
        series_number=series_number, acq_dt=acq_dt, mode=mode, image=image,
    )  # fmt: skip
    grid = image.grid
    nz = grid.shape[0]
    dz = grid.voxel_size_mm[0]
    ds.SOPInstanceUID = str(generate_uid())
    ds.InstanceNumber = 1
    # NM Image
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.CountsAccumulated = ""
    if mode != "NONE":
        ds.CorrectedImage = ["DECY"]
    # Multi-frame and NM Multi-frame (PS3.3 C.8.4.8: RECON TOMO frames are indexed by slice)
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = _FRAME_INCREMENT_SLICE_VECTOR
    ds.NumberOfEnergyWindows = 1
    ds.NumberOfDetectors = 1
    ds.NumberOfRotations = 1
    ds.SliceVector = list(range(1, nz + 1))
    ds.NumberOfSlices = nz
    # NM Isotope
    ds.EnergyWindowInformationSequence = Sequence([])
    has_drug = inj["radionuclide"] is not None or inj.get("datetime") is not None
    ds.RadiopharmaceuticalInformationSequence = Sequence(
        [_radiopharmaceutical_item(inj, pet=False)] if has_drug else []
    )
    # NM Detector: for RECON TOMO the volume's position and orientation live here.
    detector = Dataset()
    detector.CollimatorType = ""
    detector.FocalDistance = ""
    x0, y0, z0 = grid.index_to_world(np.zeros(3))
    detector.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z0)]
    detector.ImageOrientationPatient = [_ds(v) for v in (1, 0, 0, 0, 1, 0)]
    ds.DetectorInformationSequence = Sequence([detector])
    # NM TOMO Acquisition (the acquisition orbit is not part of a reconstruction result)
    ds.RotationInformationSequence = Sequence([])
    # NM Reconstruction
    ds.SpacingBetweenSlices = _ds(dz)
    # Values: one slope for the volume (NM has no per-frame rescale), stated in the units of
    # CID 84 through a Real World Value Mapping (PS3.3 C.7.6.16.2.11).
    pixels, slope = _quantise(frame.values)
    ds.RescaleIntercept = _ds(0.0)
    ds.RescaleSlope = _ds(slope)
    mapping = Dataset()
    unit_code = _ucum(units)
    mapping.LUTExplanation = unit_code[2]
    mapping.LUTLabel = units
    mapping.MeasurementUnitsCodeSequence = Sequence([_code(*unit_code)])
    mapping.RealWorldValueFirstValueMapped = 0
    mapping.RealWorldValueLastValueMapped = _UINT16_MAX
    mapping.RealWorldValueIntercept = 0.0
    mapping.RealWorldValueSlope = slope
    ds.RealWorldValueMappingSequence = Sequence([mapping])
    _set_pixels(ds, pixels)
    return ds


def _ucum(units: str) -> tuple[str, str, str]:
    value, meaning = _UNITS[units]
    return value, "UCUM", meaning


def _pet_datasets(
    frames: list[_Frame],
    *,
    study: dict[str, Any],
    source: Any,
    for_uid: str,
    series_description: str,
    series_number: int,
    acq_dt: datetime,
    inj: dict[str, Any],
    mode: str,
    units: str,
    image: Image,
) -> list[tuple[str, Any]]:
    from pydicom import Sequence
    from pydicom.uid import generate_uid

    base = _base_dataset(
        PET_IMAGE_STORAGE, "PT", study=study, source=source, for_uid=for_uid,
        series_uid=str(generate_uid()), series_description=series_description,
        series_number=series_number, acq_dt=acq_dt, mode=mode, image=image,
    )  # fmt: skip
    grid = image.grid
    nz = grid.shape[0]
    dynamic = len(frames) > 1
    # PET Series
    base.Units = units
    base.CountsSource = "EMISSION"
    base.SeriesType = ["DYNAMIC" if dynamic else "STATIC", "IMAGE"]
    base.NumberOfSlices = nz
    if dynamic:
        base.NumberOfTimeSlices = len(frames)
    base.CorrectedImage = ["DECY"] if mode != "NONE" else []
    base.DecayCorrection = mode
    base.CollimatorType = "NONE"
    if image.info.get("algorithm"):
        base.ReconstructionMethod = _describe(image.info)[:64]
    # PET Isotope
    has_drug = inj["radionuclide"] is not None or inj.get("datetime") is not None
    base.RadiopharmaceuticalInformationSequence = Sequence(
        [_radiopharmaceutical_item(inj, pet=True)] if has_drug else []
    )
    # PET Image
    base.ImageType = ["ORIGINAL", "PRIMARY"]
    base.RescaleIntercept = _ds(0.0)
    base.ImageOrientationPatient = [_ds(v) for v in (1, 0, 0, 0, 1, 0)]

    out = []
    for t, frame in enumerate(frames):
        start = frame.start_s or 0.0
        frame_dt = acq_dt + _seconds(start)
        for k in range(nz):
            ds = copy.deepcopy(base)
            ds.SOPInstanceUID = str(generate_uid())
            # PS3.3 C.8.9.4.1.9: Image Index = (Time Slice Index − 1) · Number of Slices + Slice
            # Index, slices in increasing position along the normal (+z here).
            index = t * nz + k + 1
            ds.ImageIndex = index
            ds.InstanceNumber = index
            ds.AcquisitionDate = _da(frame_dt)
            ds.AcquisitionTime = _tm(frame_dt)
            ds.FrameReferenceTime = _ds(frame.reference_time_ms)
            ds.ActualFrameDuration = (
                int(round(frame.duration_s * 1000.0)) if frame.duration_s is not None else ""
            )
            if frame.decay_factor is not None:
                ds.DecayFactor = _ds(frame.decay_factor)
            x, y, z = grid.index_to_world(np.array([k, 0.0, 0.0]))
            ds.ImagePositionPatient = [_ds(x), _ds(y), _ds(z)]
            ds.SliceLocation = _ds(z)
            pixels, slope = _quantise(frame.values[k])
            ds.RescaleSlope = _ds(slope)
            _set_pixels(ds, pixels)
            out.append((f"PT{index:06d}.dcm", ds))
    return out


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)


# ---- files --------------------------------------------------------------------------------------


def _file_meta(ds: Any) -> Any:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _save(ds: Any, handle: Any) -> None:
    import pydicom
    from pydicom.dataset import FileDataset

    out = FileDataset("", ds, file_meta=_file_meta(ds), preamble=b"\0" * 128)
    if int(pydicom.__version__.split(".")[0]) >= 3:
        out.save_as(handle, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x spelling
        out.is_little_endian = True
        out.is_implicit_VR = False
        out.save_as(handle, write_like_original=False)


def _write_folder(target: Path, datasets: list[tuple[str, Any]]) -> list[Path]:
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    os.mkdir(staging)
    try:
        for name, ds in datasets:
            final = staging / name
            partial = staging / f".{name}.part"
            with open(partial, "xb") as handle:
                _save(ds, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, final)
        # Renaming a folder onto an absent or empty folder is atomic on POSIX: readers see either
        # nothing or the complete series.
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [target / name for name, _ in datasets]
