"""Read reconstructed emission images from DICOM: PET Image Storage series and NM RECON TOMO.

Reads what scanners and :func:`recon.io.write_dicom` write:

- PET Image Storage (PS3.3 A.21): one file per slice and time frame. Files are grouped by Series
  Instance UID, assigned to time frames by Image Index (PS3.3 C.8.9.4.1.9: ``(time slice − 1) ·
  Number of Slices + slice``) and sorted by position along the slice normal (±z).
- NM Image Storage with Image Type value 3 ``RECON TOMO`` (PS3.3 C.8.4.8): one multi-frame file
  whose frames are ordered by Slice Vector (0054,0080) and placed by Image Position/Orientation
  (Patient) in the Detector Information Sequence (where write_dicom and vendors put them) or at
  the top level, ``Spacing Between Slices`` apart along the normal.

Geometry (DESIGN.md §3): DICOM patient coordinates are recon's world (LPS) and are used unchanged.
Image Orientation (Patient) must be ``1\\0\\0\\0\\1\\0`` up to the sign of each axis
(``-1\\0\\0\\0\\-1\\0`` occurs in feet-first series); an axis running along −x or −y is
flipped so that the array runs along +x, +y and +z. Oblique, transposed, sagittal or coronal
orientations raise GeometryError.

Values are ``stored · Rescale Slope + Rescale Intercept`` (per file, so per slice for PET) in
float32. Units: PET Units (0054,1001) ``BQML`` gives ``"Bq/mL"``, ``PROPCPS``/``CPS`` give
``"counts/s (uncalibrated)"``, ``PROPCNT``/``CNTS`` give ``"counts (uncalibrated)"`` (the inverse of
the writer's mapping). NM files state units in a Real World Value Mapping (PS3.3 C.7.6.16.2.11),
which maps the stored values when the rescale is the identity (quantitative SPECT products).

Time: each Image is on a clock whose zero is the acquisition start. For PET that is Series
Date/Time, "the reference time for all temporally related PET attributes" (PS3.3 C.8.9.1.1.2),
which write_dicom sets to the acquisition start; when it is missing or more than 1 s later than
the earliest Acquisition Date/Time (a series created after the scan) that Acquisition Date/Time is
used. For NM it is Acquisition Date/Time. Decay Correction (0054,1102) gives ``reference_time_s``:

- ``START``: 0 (PS3.3 C.8.9.1.1.5: decay corrected to the acquisition start);
- ``ADMIN``: the administration time, ``Radiopharmaceutical Start DateTime − zero`` (negative);
- ``NONE``: None, as :class:`recon.Image` means it: no decay correction, the pixels are the mean
  activity during each frame. ``info`` keeps the frame timing, so
  ``recon.physics.decay.decay_correction_factor(info["half_life_s"], info["frame_start_s"],
  info["frame_duration_s"], t)`` corrects them to any time ``t``.

Decay Factor and Frame Reference Time go to ``info`` but do not set the reference: vendors fill
Frame Reference Time inconsistently (e.g. the frame middle with Decay Factor 1.0 for START). NM has
no Decay Correction attribute: Corrected Image (0028,0051) with ``DECY`` means corrected to the
acquisition start, or to the administration when Image Comments say so (as write_dicom records it).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from recon.errors import GeometryError, InputError, PhysicsError
from recon.grid import ImageGrid
from recon.image import Image
from recon.io._dicom import MBQ_PLAUSIBLE_MAX as _MBQ_PLAUSIBLE_MAX
from recon.io._dicom import as_list as _as_list
from recon.io._dicom import combine_datetime as _combine
from recon.io._dicom import load_dataset
from recon.io._dicom import number as _number
from recon.io._dicom import numbers as _numbers
from recon.io._dicom import parse_date_time as _parse_date_time
from recon.io._dicom import radionuclide_names as _code_names
from recon.io._dicom import rescaled_pixels as _rescaled_pixels
from recon.io._dicom import seconds_between as _seconds_between
from recon.io._dicom import tag_label as _tag
from recon.io._dicom import tag_value as _value
from recon.io._dicom import utc_offset as _utc_offset
from recon.io._guard import malformed_input_is_input_error
from recon.io.dicom_write import NM_IMAGE_STORAGE, PET_IMAGE_STORAGE
from recon.physics.isotopes import Isotope, get_isotope

__all__ = ["read_dicom_image"]

log = logging.getLogger("recon")

_ENHANCED_PET = ("1.2.840.10008.5.1.4.1.1.130", "1.2.840.10008.5.1.4.1.1.128.1")
_IMAGE_CLASSES = (PET_IMAGE_STORAGE, NM_IMAGE_STORAGE, *_ENHANCED_PET)
_SLICE_VECTOR = 0x00540080
# PET Units (0054,1001) Defined Terms (PS3.3 C.8.9.1.1.3), and the UCUM codes of CID 84 that NM
# Real World Value Mappings use, as recon.Image unit strings.
_PET_UNITS = {
    "BQML": "Bq/mL",
    "PROPCPS": "counts/s (uncalibrated)",
    "CPS": "counts/s (uncalibrated)",
    "PROPCNT": "counts (uncalibrated)",
    "CNTS": "counts (uncalibrated)",
}
_UCUM_UNITS = {
    "Bq/ml": "Bq/mL",
    "{propcounts}/s": "counts/s (uncalibrated)",
    "{counts}/s": "counts/s (uncalibrated)",
    "{propcounts}": "counts (uncalibrated)",
    "{counts}": "counts (uncalibrated)",
}
# Slice positions are often written rounded to 0.01 mm; spacing differences below this are rounding.
_POSITION_TOL_MM = 0.01
_SPACING_RTOL = 1e-3
_ORIENTATION_TOL = 1e-4
# A Series Time this much after the first slice's Acquisition Time is clock rounding, not a
# series re-created after the scan (seen: 15 µs).
_SERIES_TIME_SLACK_S = 1.0

_Item = tuple[Dataset, str]


@malformed_input_is_input_error("DICOM PET/NM image series")
def read_dicom_image(
    path: str | os.PathLike[str] | Dataset | Iterable[str | os.PathLike[str] | Dataset],
    *,
    frame: int | None = None,
    series_uid: str | None = None,
) -> Image | list[Image]:
    """Read a reconstructed PET or SPECT volume (or a dynamic PET series) from DICOM.

    Parameters
    ----------
    path : path, pydicom.Dataset, or iterable of them
        A folder (its PET and NM image files are read; other files, e.g. a CT series or a
        DICOMDIR, are ignored), one file (an NM RECON TOMO file), or the files of one series.
    frame : int, optional
        0-based time frame of a dynamic PET series to read; only that frame's pixels are decoded.
    series_uid : str, optional
        Series Instance UID to read when the files hold more than one series.

    Returns
    -------
    Image or list of Image
        One Image for a static series, an NM volume or when ``frame`` is given; for a dynamic PET
        series one Image per time frame, in time order. Data: float32 ``(z, y, x)`` on an
        :class:`~recon.ImageGrid` in world (LPS) mm. ``reference_time_s``: seconds from the
        acquisition start to which values are decay corrected (START: 0, ADMIN: the negative
        injection time, NONE: None; see the module notes). ``info``: ``modality``, ``source``,
        ``n_files``, ``series_instance_uid``, ``study_instance_uid``, ``frame_of_reference_uid``,
        ``series_description``, ``patient_position``, ``patient_weight_kg``, ``patient_height_m``,
        ``units_dicom``, ``decay_correction``, ``decay_factor``, ``half_life_s``,
        ``radionuclide``, ``radiopharmaceutical``, ``injected_activity_bq`` (Bq),
        ``injection_datetime``, ``injection_time_s`` (from the acquisition start),
        ``acquisition_datetime`` (time zero) and ``acquisition_datetime_source``, ``frame_index``,
        ``n_frames``, and for PET ``frame_start_s``, ``frame_duration_s``,
        ``frame_reference_time_s`` (the keys :func:`recon.io.write_dicom` reads back).

    Raises
    ------
    InputError
        No PET/NM image files; several series without ``series_uid``; another SOP Class (CT,
        Enhanced PET) or NM projections; missing files of the series; Units, Decay Correction or
        sizes that differ between slices; truncated pixel data; compressed pixel data without a
        decoder (the message names the plugin); ADMIN without the administration time.
    GeometryError
        Missing, oblique or inconsistent Image Position/Orientation (Patient), non-uniform slice
        spacing, slices not stacked along one axis.
    """
    items = _one_series(_gather(path), series_uid)
    label = str(path) if isinstance(path, (str, os.PathLike)) else items[0][1]
    if frame is not None and (
        isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or frame < 0
    ):
        raise InputError(f"frame must be a non-negative integer (0-based), got {frame!r}")
    sop = _sop(items[0][0])
    if sop == NM_IMAGE_STORAGE:
        if len(items) != 1:
            raise InputError(
                f"the NM series {_value(items[0][0], 'SeriesInstanceUID')} has {len(items)} "
                "files; an NM RECON TOMO volume is one multi-frame file: pass that file"
            )
        if frame not in (None, 0):
            raise InputError(f"frame={frame}: an NM RECON TOMO file holds one volume (frame 0)")
        return _nm_image(*items[0])
    images = _pet_images(items, frame, label)
    return images[0] if frame is not None or len(images) == 1 else images


# ---------------------------------------------------------------------------------- files
def _sop(ds: Dataset) -> str | None:
    sop = _value(ds, "SOPClassUID")
    meta = getattr(ds, "file_meta", None)
    if sop is None and meta is not None:
        sop = _value(meta, "MediaStorageSOPClassUID")
    return str(sop).strip("\0 ") if sop is not None else None


def _check_sop(ds: Dataset, source: str) -> None:
    sop = _sop(ds)
    if sop in (PET_IMAGE_STORAGE, NM_IMAGE_STORAGE):
        return
    if sop in _ENHANCED_PET:
        raise InputError(
            f"{source}: {UID(sop).name} ({sop}) is not supported; export the series as classic "
            f"PET Image Storage ({PET_IMAGE_STORAGE}, one file per slice) from the scanner or PACS"
        )
    name = UID(sop).name if sop else "missing"
    raise InputError(
        f"{source}: {_tag('SOPClassUID')} is {sop} ({name}); read_dicom_image reads PET Image "
        f"Storage and NM Image Storage (RECON TOMO) volumes (for CT use recon.io.read_ct_series)"
    )


def _gather(path: Any) -> list[_Item]:
    if isinstance(path, (str, os.PathLike)) and Path(path).is_dir():
        folder = Path(path)
        found: list[_Item] = []
        others: dict[str, int] = {}
        for file in sorted(p for p in folder.iterdir() if p.is_file()):
            if file.name.startswith("."):
                continue  # partial or hidden files, e.g. a writer's temporary file
            try:
                # Large elements (pixel data) stay on disk until used: a folder exported from a
                # PET/CT may also hold hundreds of CT slices that are only skipped.
                ds: Dataset = pydicom.dcmread(file, defer_size="64 KB")
            except (InvalidDicomError, EOFError, OSError, ValueError):
                continue  # not DICOM (notes, thumbnails): a folder may hold anything
            sop = _sop(ds)
            if sop in _IMAGE_CLASSES:
                found.append((ds, str(file)))
            else:
                label = UID(sop).name if sop else "no SOP Class UID"
                others[label] = others.get(label, 0) + 1
        if not found:
            seen = ", ".join(f"{n} × {k}" for k, n in sorted(others.items())) or "no DICOM files"
            raise InputError(
                f"no PET Image Storage or NM Image Storage files in {folder} (found: {seen})"
            )
    else:
        if isinstance(path, (str, os.PathLike, Dataset)):
            entries: list[Any] = [path]
        elif isinstance(path, Iterable):
            entries = list(path)
        else:
            raise InputError(
                f"expected a folder, a file, a pydicom Dataset or a list of them, got "
                f"{type(path).__name__}"
            )
        if not entries:
            raise InputError("no files were given")
        found = []
        for i, entry in enumerate(entries):
            ds, source = load_dataset(entry, "PET or NM image file")
            several = isinstance(entry, Dataset) and len(entries) > 1
            found.append((ds, f"{source} {i + 1}" if several else source))
    for ds, source in found:
        _check_sop(ds, source)
    return found


def _one_series(items: list[_Item], series_uid: str | None) -> list[_Item]:
    series: dict[str, list[_Item]] = {}
    for ds, source in items:
        series.setdefault(str(_value(ds, "SeriesInstanceUID") or ""), []).append((ds, source))
    if series_uid is not None:
        if str(series_uid) not in series:
            raise InputError(f"series_uid={series_uid!r} is not among the series {sorted(series)}")
        chosen = series[str(series_uid)]
    elif len(series) > 1:
        described = "; ".join(
            f"{uid or '(no UID)'}: {_value(group[0][0], 'Modality')} "
            f"{str(_value(group[0][0], 'SeriesDescription') or '')!r}, {len(group)} file(s)"
            for uid, group in sorted(series.items())
        )
        raise InputError(
            f"the files hold {len(series)} series ({described}); pass series_uid=<one of them>"
        )
    else:
        chosen = next(iter(series.values()))
    classes = {_sop(ds) for ds, _ in chosen}
    if len(classes) > 1:
        raise InputError(f"series {_value(chosen[0][0], 'SeriesInstanceUID')} mixes PET and NM")
    return chosen


# ---------------------------------------------------------------------------------- geometry
def _vector(ds: Dataset, keyword: str, n: int, where: str) -> np.ndarray:
    values = _numbers(ds, keyword, f" in {where}")
    if not values:
        raise GeometryError(
            f"{where}: {_tag(keyword)} is missing; it is needed to place the image in the "
            "patient (re-export the series with its geometry tags)"
        )
    if len(values) != n:
        raise GeometryError(f"{where}: {_tag(keyword)} must hold {n} values, got {values}")
    return np.asarray(values)


def _axis_signs(iop: np.ndarray, where: str) -> tuple[int, int]:
    """Signs of the row (x) and column (y) directions of an axis-aligned axial orientation."""
    row, col = np.abs(iop[:3]), np.abs(iop[3:])
    if np.allclose(row, (1, 0, 0), atol=_ORIENTATION_TOL) and np.allclose(
        col, (0, 1, 0), atol=_ORIENTATION_TOL
    ):
        return int(np.sign(iop[0])), int(np.sign(iop[4]))
    text = "\\".join(f"{v:g}" for v in iop)
    raise GeometryError(
        f"{where}: {_tag('ImageOrientationPatient')} is {text}; only axial images with rows along "
        "±x and columns along ±y (1\\0\\0\\0\\1\\0 up to sign) are read: resample oblique, "
        "sagittal or coronal series to axial first"
    )


def _in_plane(ds: Dataset, where: str) -> tuple[int, int, np.ndarray]:
    rows, cols = _number(ds, "Rows", "", InputError), _number(ds, "Columns", "", InputError)
    if not rows or not cols or rows < 1 or cols < 1 or rows != int(rows) or cols != int(cols):
        raise InputError(f"{where}: {_tag('Rows')} and {_tag('Columns')} must be positive")
    spacing = _vector(ds, "PixelSpacing", 2, where)
    if np.any(spacing <= 0):
        raise GeometryError(f"{where}: {_tag('PixelSpacing')} must be positive, got {spacing}")
    return int(rows), int(cols), spacing


def _grid(
    shape: tuple[int, int, int], spacing: np.ndarray, dz: float, first: np.ndarray, signs: Any
) -> ImageGrid:
    """Grid of a stack whose slices ascend in z; ``first`` is the stored first pixel of slice 0."""
    _, rows, cols = shape
    sx, sy = signs
    # A flipped axis starts at the other end: the last stored column/row is the smallest x/y.
    x0 = first[0] if sx > 0 else first[0] - (cols - 1) * spacing[1]
    y0 = first[1] if sy > 0 else first[1] - (rows - 1) * spacing[0]
    return ImageGrid(shape, (dz, spacing[0], spacing[1]), origin=(first[2], y0, x0))


def _flip(volume: np.ndarray, signs: Any) -> np.ndarray:
    sx, sy = signs
    if sy < 0:
        volume = volume[:, ::-1, :]
    if sx < 0:
        volume = volume[:, :, ::-1]
    return np.ascontiguousarray(volume, dtype=np.float32)


def _uniform_spacing(z: np.ndarray, where: str, fallback: float | None) -> float:
    if z.size == 1:
        if fallback is None or not fallback > 0:
            raise GeometryError(
                f"{where}: one slice and no positive {_tag('SliceThickness')}: its thickness is "
                "unknown"
            )
        return fallback
    steps = np.diff(z)
    if np.any(steps < 1e-3):
        k = int(np.argmin(steps))
        raise InputError(
            f"{where}: two slices lie at z = {z[k]:.3f} mm (duplicated files or two series mixed)"
        )
    dz = float(z[-1] - z[0]) / (z.size - 1)
    if np.max(np.abs(steps - dz)) > _SPACING_RTOL * dz + _POSITION_TOL_MM:
        raise GeometryError(
            f"{where}: the slice spacing is not uniform ({steps.min():.4g} to {steps.max():.4g} mm "
            f"from {_tag('ImagePositionPatient')}); resample the series to uniform slices"
        )
    return dz


def _pixels(ds: Dataset, source: str, n_frames: int, rows: int, cols: int) -> np.ndarray:
    """Rescaled pixel values (frame, row, column), sizes checked against the bytes present."""
    if "PixelData" not in ds:
        raise InputError(f"{source}: {_tag('PixelData')} is missing")
    meta = getattr(ds, "file_meta", None)
    syntax = _value(meta, "TransferSyntaxUID") if meta is not None else None
    if syntax is None or not UID(str(syntax)).is_compressed:
        bits = _number(ds, "BitsAllocated", "", InputError)
        if bits not in (8, 16, 32):
            raise InputError(f"{source}: {_tag('BitsAllocated')} is {bits}; expected 8, 16 or 32")
        expected = n_frames * rows * cols * int(bits) // 8
        if len(ds.PixelData) < expected:
            raise InputError(
                f"{source}: {_tag('PixelData')} holds {len(ds.PixelData)} bytes but {n_frames} "
                f"frame(s) × {rows} rows × {cols} columns × {int(bits) // 8} bytes = {expected}; "
                "the file is truncated (copy it again from the source)"
            )
    values = _rescaled_pixels(ds, source)  # decoder check, Bits Stored, Rescale Slope/Intercept
    if values.size != n_frames * rows * cols:
        raise InputError(
            f"{source}: decoded pixel data have shape {values.shape}, expected "
            f"({n_frames}, {rows}, {cols})"
        )
    return values.reshape(n_frames, rows, cols)


# ---------------------------------------------------------------------------------- time, drug
def _when(ds: Dataset, date_kw: str, time_kw: str) -> _dt.datetime | None:
    date, time = _value(ds, date_kw), _value(ds, time_kw)
    if date is None or time is None:
        return None
    when = _combine(date, time)
    if when is None:
        raise InputError(
            f"{_tag(date_kw)}/{_tag(time_kw)} {date!r}/{time!r} is not a DICOM date and time"
        )
    return when.replace(tzinfo=_utc_offset(_value(ds, "TimezoneOffsetFromUTC")))


def _datetime(ds: Dataset, holder: Dataset, keyword: str) -> _dt.datetime | None:
    text = _value(holder, keyword)
    if text is None:
        return None
    when = _parse_date_time(text, "DT")
    if not isinstance(when, _dt.datetime):
        raise InputError(f"{_tag(keyword)} {text!r} is not a DICOM date-time")
    # A DT value carries its own offset; otherwise the file's Timezone Offset From UTC applies.
    if when.tzinfo is None:
        when = when.replace(tzinfo=_utc_offset(_value(ds, "TimezoneOffsetFromUTC")))
    return when


def _drug(ds: Dataset, zero: _dt.datetime | None, nm: bool) -> dict[str, Any]:
    """Isotope, half-life, administered activity (Bq) and administration time."""
    items = _value(ds, "RadiopharmaceuticalInformationSequence") or []
    item = items[0] if items else Dataset()
    names: list[str] = []
    for code in (_value(item, "RadionuclideCodeSequence") or [])[:1]:
        names += _code_names(code)
    for holder in (item, ds):
        nuclide = _value(holder, "Radionuclide")
        names += [str(nuclide)] if nuclide is not None else []
    pharmaceutical = _value(item, "Radiopharmaceutical")
    recorded = names[0] if names else None
    if pharmaceutical is not None:  # "Tc99m MDP": the nuclide is often one word of the name
        names += [str(pharmaceutical), *str(pharmaceutical).split()]
    isotope: Isotope | None = None
    for name in names:
        try:
            isotope = get_isotope(name)
            break
        except PhysicsError:
            continue
    half_life = _number(item, "RadionuclideHalfLife", "", InputError)
    if half_life is None or not half_life > 0:
        half_life = isotope.half_life_s if isotope is not None else None
    dose = _number(item, "RadionuclideTotalDose", "", InputError)
    # PET gives Bq; the NM Isotope Module gives MBq, but some NM writers use Bq.
    if dose is not None and nm and dose < _MBQ_PLAUSIBLE_MAX:
        dose *= 1e6
    injection = _datetime(ds, item, "RadiopharmaceuticalStartDateTime")
    if injection is None:
        start = _value(item, "RadiopharmaceuticalStartTime")
        if start is not None and zero is not None:
            injection = _combine(zero.strftime("%Y%m%d"), start)
            if injection is None:
                raise InputError(f"{_tag('RadiopharmaceuticalStartTime')} {start!r} is not a time")
            injection = injection.replace(tzinfo=zero.tzinfo)
            if injection > zero:  # a time of day after the scan start was the day before
                injection -= _dt.timedelta(days=1)
    return {
        "isotope": isotope,
        "radionuclide": recorded,
        "radiopharmaceutical": str(pharmaceutical) if pharmaceutical is not None else None,
        "half_life_s": half_life,
        "injected_activity_bq": dose,
        "injection_datetime": injection,
        "injection_time_s": _seconds_between(injection, zero),
    }


def _reference_time(mode: str, drug: dict[str, Any], source: str) -> float | None:
    if mode == "NONE":
        return None
    if mode == "START":
        return 0.0
    if drug["injection_time_s"] is None:
        raise InputError(
            f"{source}: {_tag('DecayCorrection')} is ADMIN but the administration time is "
            f"unknown: {_tag('RadiopharmaceuticalStartDateTime')} (or Start Time) and the "
            "acquisition date/time are needed to place the decay reference"
        )
    return float(drug["injection_time_s"])


def _common_info(ds: Dataset, source: str, drug: dict[str, Any]) -> dict[str, Any]:
    def text(keyword: str) -> str | None:
        value = _value(ds, keyword)
        return str(value) if value is not None else None

    out = {
        "source": source,
        "modality": text("Modality"),
        "series_instance_uid": text("SeriesInstanceUID"),
        "study_instance_uid": text("StudyInstanceUID"),
        "frame_of_reference_uid": text("FrameOfReferenceUID"),
        "series_description": text("SeriesDescription"),
        "patient_position": text("PatientPosition"),
        "patient_weight_kg": _number(ds, "PatientWeight", "", InputError),
        "patient_height_m": _number(ds, "PatientSize", "", InputError),
    }
    out.update({k: v for k, v in drug.items() if k != "isotope"})
    return out


# ---------------------------------------------------------------------------------- PET
def _same(items: list[_Item], keyword: str, numeric: bool = False, error: type = InputError) -> Any:
    """The value of ``keyword``, checked to be equal in every slice (PS3.3 C.8.9.1.1.1)."""
    ref = items[0][0]
    for ds, source in items[1:]:
        if numeric:
            a, b = _numbers(ds, keyword, f" in {source}"), _numbers(ref, keyword, "")
            differs = len(a) != len(b) or not np.allclose(a, b, rtol=0, atol=1e-4)
        else:
            differs = str(_value(ds, keyword)) != str(_value(ref, keyword))
        if differs:
            here, there = (_value(d, keyword) for d in (ds, ref))
            raise error(
                f"{source}: {_tag(keyword)} is {'missing' if here is None else repr(here)} but "
                f"{'missing' if there is None else repr(there)} in {items[0][1]}; the slices "
                "must share it (PS3.3 C.8.9.1.1.1)"
            )
    return _value(ref, keyword)


def _split_frames(items: list[_Item]) -> list[list[_Item]]:
    """The slices of each time frame, in time order."""
    first = items[0][0]
    series = _value(first, "SeriesInstanceUID")
    kind = [str(v).strip().upper() for v in _as_list(_value(first, "SeriesType") or [])]
    if (kind and kind[0] == "GATED") or (len(kind) > 1 and kind[1] == "REPROJECTION"):
        raise InputError(f"series {series}: {_tag('SeriesType')} {kind} is not supported")
    n_time = int(_number(first, "NumberOfTimeSlices", "", InputError) or 1)
    n_slices = _number(first, "NumberOfSlices", "", InputError)
    n_slices = int(n_slices) if n_slices else len(items) // max(n_time, 1)
    if n_time < 1 or n_slices < 1 or n_slices * n_time != len(items):
        raise InputError(
            f"series {series} has {len(items)} files but {_tag('NumberOfSlices')} {n_slices} × "
            f"{_tag('NumberOfTimeSlices')} {n_time} = {n_slices * n_time}: files are missing or "
            "duplicated; pass the complete series"
        )
    if n_time == 1:
        return [items]
    # Image Index is Type 1 (PS3.3 C.8.9.4); the time slice is (Image Index − 1) // slices.
    frames: list[list[_Item]] = [[] for _ in range(n_time)]
    for ds, source in items:
        index = _number(ds, "ImageIndex", "", InputError)
        if index is None or not 1 <= index <= len(items):
            raise InputError(
                f"{source}: {_tag('ImageIndex')} is {index!r}; a dynamic series needs it in "
                f"1..{len(items)} to assign each file to its time frame"
            )
        frames[(int(index) - 1) // n_slices].append((ds, source))
    for t, group in enumerate(frames):
        if len(group) != n_slices:
            raise InputError(
                f"series {series}: time frame {t + 1} has {len(group)} files, expected {n_slices}"
            )
    return frames


def _pet_images(items: list[_Item], frame: int | None, label: str) -> list[Image]:
    first, source0 = items[0]
    rows, cols, spacing = _in_plane(first, source0)
    _same(items, "Rows")
    _same(items, "Columns")
    _same(items, "PixelSpacing", numeric=True, error=GeometryError)
    _same(items, "ImageOrientationPatient", numeric=True, error=GeometryError)
    signs = _axis_signs(_vector(first, "ImageOrientationPatient", 6, source0), source0)
    term = _same(items, "Units")
    term = str(term).strip().upper() if term is not None else None
    units = _PET_UNITS.get(term, f"{term} (DICOM units)") if term else "unknown (no Units)"
    mode = _decay_mode(_same(items, "DecayCorrection"), first, source0, nm=False)
    frames = _split_frames(items)
    thickness = _number(first, "SliceThickness", "", GeometryError)
    if frame is not None and frame >= len(frames):
        raise InputError(f"frame={frame} but the series has {len(frames)} time frame(s)")

    # Time zero: Series Date/Time unless a series re-created after the scan (module notes).
    series_dt = _when(first, "SeriesDate", "SeriesTime")
    acquired = [t for t in (_when(d, "AcquisitionDate", "AcquisitionTime") for d, _ in items) if t]
    earliest = min(acquired, key=lambda t: t.replace(tzinfo=None)) if acquired else None
    late = _seconds_between(series_dt, earliest)
    zero, zero_source = series_dt, "SeriesDate/SeriesTime"
    if series_dt is None or (late is not None and late > _SERIES_TIME_SLACK_S):
        zero, zero_source = earliest, "earliest AcquisitionDate/AcquisitionTime"
    drug = _drug(first, zero, nm=False)
    reference = _reference_time(mode, drug, source0)
    common = _common_info(first, label, drug)
    common.update(
        units_dicom=term, decay_correction=mode, acquisition_datetime=zero,
        acquisition_datetime_source=zero_source if zero is not None else None,
        n_files=len(items), n_frames=len(frames),
    )  # fmt: skip

    grid = None
    out = []
    for t, group in enumerate(frames):
        positions = np.array([_vector(ds, "ImagePositionPatient", 3, s) for ds, s in group])
        order = np.argsort(positions[:, 2], kind="stable")
        positions, group = positions[order], [group[int(i)] for i in order]
        shift = np.abs(positions[:, :2] - positions[0, :2]).max()
        if shift > _POSITION_TOL_MM:
            raise GeometryError(
                f"series {common['series_instance_uid']}: the slices' x/y of "
                f"{_tag('ImagePositionPatient')} differ by up to {shift:.3g} mm (gantry tilt or "
                "a sheared stack); resample the series first"
            )
        dz = _uniform_spacing(positions[:, 2], f"series {common['series_instance_uid']}", thickness)
        frame_grid = _grid((len(group), rows, cols), spacing, dz, positions[0], signs)
        if grid is None:
            grid = frame_grid
        elif not frame_grid.same_as(grid, tol_mm=_POSITION_TOL_MM):
            raise GeometryError(f"time frame {t + 1} lies elsewhere than time frame 1")
        if frame is not None and t != frame:
            continue
        volume = np.stack([_pixels(ds, s, 1, rows, cols)[0] for ds, s in group])
        ds0 = group[0][0]
        starts = (
            _seconds_between(_when(ds, "AcquisitionDate", "AcquisitionTime"), zero)
            for ds, _ in group
        )
        start = min((s for s in starts if s is not None), default=None)
        duration = _number(ds0, "ActualFrameDuration", "", InputError)
        reference_ms = _number(ds0, "FrameReferenceTime", "", InputError)
        info = dict(common)
        info.update(
            frame_index=t, frame_start_s=start,
            frame_duration_s=duration / 1000.0 if duration else None,
            frame_reference_time_s=reference_ms / 1000.0 if reference_ms is not None else None,
            decay_factor=_number(ds0, "DecayFactor", "", InputError),
        )  # fmt: skip
        out.append(_image(_flip(volume, signs), frame_grid, units, drug, reference, info))
    return out


def _decay_mode(value: Any, ds: Dataset, source: str, nm: bool) -> str:
    corrected = "DECY" in [str(v).strip().upper() for v in _as_list(_value(ds, "CorrectedImage"))]
    if value is None:
        if not corrected:
            return "NONE"
        if nm:
            comments = str(_value(ds, "ImageComments") or "").lower()
            return "ADMIN" if "administration" in comments else "START"
        log.warning(
            "%s: %s is missing; reading DECY images as START", source, _tag("DecayCorrection")
        )
        return "START"
    mode = str(value).strip().upper()
    if mode not in ("START", "ADMIN", "NONE"):
        raise InputError(
            f"{source}: {_tag('DecayCorrection')} is {value!r}; expected START, ADMIN or NONE"
        )
    return mode


def _image(
    volume: np.ndarray,
    grid: ImageGrid,
    units: str,
    drug: dict[str, Any],
    reference: float | None,
    info: dict[str, Any],
) -> Image:
    isotope = drug["isotope"].name if drug["isotope"] is not None else None
    return Image(volume, grid, units=units, isotope=isotope, reference_time_s=reference, info=info)


# ---------------------------------------------------------------------------------- NM
def _nm_image(ds: Dataset, source: str) -> Image:
    kind = [str(v).strip().upper() for v in _as_list(_value(ds, "ImageType") or [])]
    if len(kind) < 3 or kind[2] != "RECON TOMO":
        hint = (
            "; projections are read with recon.io.read_nm_projections"
            if len(kind) >= 3 and kind[2] == "TOMO"
            else ""
        )
        shown = "\\".join(kind) or "missing"
        raise InputError(
            f"{source}: {_tag('ImageType')} is {shown}: only "
            f"reconstructed volumes (value 3 'RECON TOMO') are read{hint}"
        )
    n = _number(ds, "NumberOfFrames", "", InputError) or 1
    if n != int(n) or n < 1:
        raise InputError(f"{source}: {_tag('NumberOfFrames')} must be a positive integer")
    n = int(n)
    for pointer in _as_list(_value(ds, "FrameIncrementPointer") or []):
        element = ds.get(int(pointer))
        if int(pointer) != _SLICE_VECTOR and element is not None:
            if len(set(_as_list(element.value))) > 1:
                raise InputError(
                    f"{source}: frames vary by {element.name} as well as by slice; multi-volume "
                    "NM files (gated or several windows) are not supported"
                )
    details = _value(ds, "DetectorInformationSequence") or []
    holder, where = ds, source
    if details and "ImagePositionPatient" in details[0]:
        holder, where = details[0], f"{source}, {_tag('DetectorInformationSequence')} item 1"
    position = _vector(holder, "ImagePositionPatient", 3, where)
    signs = _axis_signs(_vector(holder, "ImageOrientationPatient", 6, where), where)
    rows, cols, spacing = _in_plane(ds, source)
    dz = _number(ds, "SpacingBetweenSlices", "", GeometryError)
    dz = dz if dz is not None else _number(ds, "SliceThickness", "", GeometryError)
    if dz is None or not dz > 0:
        raise GeometryError(
            f"{source}: {_tag('SpacingBetweenSlices')} is {dz!r}; a positive slice spacing is "
            "needed to stack the frames"
        )
    stored = _pixels(ds, source, n, rows, cols)  # validated against the bytes present
    vector = _value(ds, "SliceVector")
    slices = np.asarray([int(v) for v in _as_list(vector)]) - 1 if vector else np.arange(n)
    if sorted(slices.tolist()) != list(range(n)):
        raise InputError(f"{source}: {_tag('SliceVector')} must hold each of 1..{n} once")
    volume = np.empty_like(stored)
    volume[slices] = stored
    first = position.copy()
    if signs[0] * signs[1] < 0:  # the normal (row × column) runs along −z: reverse the slices
        volume = volume[::-1]
        first[2] -= (n - 1) * dz
    values, units, term = _nm_units(ds, source, volume)

    zero, zero_source = _when(ds, "AcquisitionDate", "AcquisitionTime"), "AcquisitionDate/Time"
    if zero is None:
        zero, zero_source = _datetime(ds, ds, "AcquisitionDateTime"), "AcquisitionDateTime"
    if zero is None:
        zero, zero_source = _when(ds, "SeriesDate", "SeriesTime"), "SeriesDate/SeriesTime"
    drug = _drug(ds, zero, nm=True)
    mode = _decay_mode(_value(ds, "DecayCorrection"), ds, source, nm=True)
    info = _common_info(ds, source, drug)
    info.update(
        units_dicom=term, decay_correction=mode, decay_factor=None, acquisition_datetime=zero,
        acquisition_datetime_source=zero_source if zero else None, n_files=1, n_frames=1,
        frame_index=0,
    )  # fmt: skip
    grid = _grid((n, rows, cols), spacing, dz, first, signs)
    reference = _reference_time(mode, drug, source)
    return _image(_flip(values, signs), grid, units, drug, reference, info)


def _nm_units(ds: Dataset, source: str, values: np.ndarray) -> tuple[np.ndarray, str, str | None]:
    """Values in the units of the Real World Value Mapping, the units, and the code or term."""
    slope = _number(ds, "RescaleSlope", "", InputError)
    slope = 1.0 if slope is None else slope
    intercept = _number(ds, "RescaleIntercept", "", InputError) or 0.0
    items = list(_value(ds, "RealWorldValueMappingSequence") or [])
    items.sort(key=lambda item: _ucum(item) != "Bq/ml")  # a calibrated mapping first
    for item in items:
        code = _ucum(item)
        m = _number(item, "RealWorldValueSlope", "", InputError)
        b = _number(item, "RealWorldValueIntercept", "", InputError) or 0.0
        if code is None or m is None:
            continue  # no unit, or a LUT instead of a linear mapping
        units = _UCUM_UNITS.get(code, f"{code} (UCUM)")
        if math.isclose(m, slope, rel_tol=1e-6) and math.isclose(b, intercept, abs_tol=1e-9):
            return values, units, code  # the mapping restates the rescale (write_dicom does this)
        if slope == 1.0 and intercept == 0.0:
            return values * np.float32(m) + np.float32(b), units, code  # stored → real world
        log.warning(
            "%s: %s and %s map the pixels differently; using the rescale, units unknown",
            source, _tag("RealWorldValueMappingSequence"), _tag("RescaleSlope"),
        )  # fmt: skip
        return values, "counts (uncalibrated)", None
    term = _value(ds, "Units")  # not in the NM IOD, but some vendors add it
    if term is not None:
        term = str(term).strip().upper()
        return values, _PET_UNITS.get(term, f"{term} (DICOM units)"), term
    return values, "counts (uncalibrated)", None


def _ucum(item: Dataset) -> str | None:
    codes = _value(item, "MeasurementUnitsCodeSequence") or []
    value = _value(codes[0], "CodeValue") if codes else None
    return str(value).strip() if value is not None else None
