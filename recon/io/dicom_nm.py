"""DICOM NM TOMO projections (NM Image Storage, multi-frame) read into recon's SPECT geometry.

The mapping from the DICOM acquisition description to :class:`recon.SpectGeometry` follows
DESIGN.md §3a (from DICOM PS3.3 C.8.4.8-C.8.4.12, the NM Image, NM Multi-frame, NM Isotope,
NM Detector and NM TOMO Acquisition modules):

- Start Angle (0054,0200) is zero at the patient's back and increases counter-clockwise seen from
  the feet; Rotation Direction (0018,1140) is ``CW`` (decreasing) or ``CC`` (increasing); Angular
  Step (0018,1144) is positive. View ``k`` of a rotation is at ``α_k = α0 + s·k·Δ`` (``s = +1``
  for CC, −1 for CW) and recon's angle is ``θ_k = (180° − α_k) mod 360°``.
- Frames hold the head end in the first row, so rows are flipped to make ``v`` run along +z;
  columns already run along ``t(θ)``. Pixel Spacing (0028,0030) is (row spacing, column spacing),
  so element 0 is the axial pixel size.
- Frames are placed by the vectors named in Frame Increment Pointer (0028,0009): energy window,
  detector, rotation and angular view. Each detector has its own start angle (vendors put one in
  each Detector Information Sequence item).
- A positive Center of Rotation Offset (0018,1145) puts the rotation axis at a larger column than
  the image centre; :attr:`SpectGeometry.cor_offset_mm` puts it at column
  ``(n_u − 1)/2 − cor_offset_mm/pixel``, so ``cor_offset_mm = −offset``.
- The mapping is pinned down for head-first supine (HFS) only.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRBigEndian
from scipy.ndimage import shift as _shift

from recon.errors import GeometryError, InputError, PhysicsError, ReconError
from recon.io._dicom import MBQ_PLAUSIBLE_MAX as _MBQ_PLAUSIBLE_MAX
from recon.io._dicom import as_list as _as_list
from recon.io._dicom import combine_datetime as _combine
from recon.io._dicom import load_dataset
from recon.io._dicom import number as _number
from recon.io._dicom import numbers as _numbers
from recon.io._dicom import parse_date_time as _parse_date_time
from recon.io._dicom import radionuclide_names as _code_names
from recon.io._dicom import seconds_between as _seconds_between
from recon.io._dicom import tag_label as _tag
from recon.io._dicom import tag_value as _value
from recon.io._guard import malformed_input_is_input_error
from recon.physics.isotopes import Isotope, get_isotope
from recon.physics.scatter import EnergyWindow, dew_scatter, tew_scatter
from recon.physics.windows import WindowAssignment, assign_windows
from recon.spect.geometry import SpectGeometry

__all__ = [
    "NM_IMAGE_STORAGE",
    "assign_nm_windows",
    "read_nm_projections",
    "scatter_estimate",
    "select_scatter_windows",
]

log = logging.getLogger("recon")

#: SOP Class UID of NM Image Storage (PS3.4 B.5).
NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"

# Frame Increment Pointer targets of an NM TOMO acquisition (PS3.3 C.8.4.8.1.3), in the order the
# standard lists them (the last varies fastest).
_VECTORS = {
    0x00540010: "EnergyWindowVector",
    0x00540020: "DetectorVector",
    0x00540050: "RotationVector",
    0x00540090: "AngularViewVector",
}
# Windows overlapping the photopeak by more than this fraction of its width are not its neighbours.
_ADJACENT_OVERLAP = 0.1
# A scatter window further from the photopeak than this fraction of its width is not adjacent.
_ADJACENT_GAP = 0.5


# ---------------------------------------------------------------------------------- tag helpers
def _required(ds: Dataset, keyword: str, where: str, error: type = GeometryError) -> float:
    value = _number(ds, keyword, where, error)
    if value is None:
        raise error(
            f"{_tag(keyword)} is missing{where}; it is required to read NM TOMO projections "
            "(add it to the file, e.g. with pydicom, from the acquisition protocol)"
        )
    return value


def _count(ds: Dataset, keyword: str, sequence: str) -> int:
    """A 'Number of X' element, cross-checked against its sequence's length."""
    number = _number(ds, keyword, "", InputError)
    items = _value(ds, sequence)
    n_items = len(items) if items is not None else None
    if number is None:
        return n_items if n_items else 1
    if number != int(number) or number < 1:
        raise InputError(f"{_tag(keyword)} must be a positive integer, got {number}")
    if n_items is not None and n_items != int(number):
        raise InputError(
            f"{_tag(keyword)} is {int(number)} but {_tag(sequence)} has {n_items} items; "
            "the file contradicts itself"
        )
    return int(number)


def _item(where: str, index: int) -> str:
    return f" in {where} item {index + 1}"


# ---------------------------------------------------------------------------------- loading
def _load(path_or_dataset: Any) -> tuple[Dataset, str]:
    return load_dataset(path_or_dataset, "NM projection file", "; pass the NM TOMO projection file")


def _check_sop(ds: Dataset, source: str) -> None:
    modality = _value(ds, "Modality")
    if modality != "NM":
        raise InputError(
            f"{source}: {_tag('Modality')} is {modality!r}, not 'NM'; read_nm_projections reads "
            "NM TOMO projections (read CT series with recon.io.ct.read_ct_mu_map)"
        )
    sop = _value(ds, "SOPClassUID")
    file_meta = getattr(ds, "file_meta", None)
    if sop is None and file_meta is not None:
        sop = _value(file_meta, "MediaStorageSOPClassUID")
    if sop is None:
        raise InputError(f"{source}: {_tag('SOPClassUID')} is missing; expected NM Image Storage")
    if str(sop) != NM_IMAGE_STORAGE:
        raise InputError(
            f"{source}: {_tag('SOPClassUID')} is {sop} ({UID(str(sop)).name}), not NM Image "
            f"Storage ({NM_IMAGE_STORAGE}); reconstructed volumes and other objects are not "
            "projection data"
        )
    image_type = _value(ds, "ImageType")
    if image_type is not None:
        values = [str(v).strip().upper() for v in _as_list(image_type)]
        if len(values) >= 3 and values[2] != "TOMO":
            raise InputError(
                f"{source}: {_tag('ImageType')} value 3 is {values[2]!r}; only TOMO acquisitions "
                "(SPECT projections) are read, not STATIC, DYNAMIC, WHOLE BODY, GATED TOMO or "
                "reconstructed (RECON) images"
            )


def _patient_position(ds: Dataset, override: str | None) -> tuple[str | None, str]:
    value = _value(ds, "PatientPosition")
    recorded = str(value).strip().upper() if value is not None else None
    if override is not None:
        used = str(override).strip().upper()
        if used != "HFS":
            raise InputError(
                f"patient_position_override={override!r}: only 'HFS' is supported (DESIGN.md §3a "
                "pins the mapping down for head-first supine only)"
            )
        if recorded != "HFS":
            log.warning(
                "%s is %r; reading the projections with the head-first supine mapping as "
                "patient_position_override asks: check the orientation of the result",
                _tag("PatientPosition"),
                recorded,
            )
        return recorded, used
    if recorded == "HFS":
        return recorded, "HFS"
    raise GeometryError(
        f"{_tag('PatientPosition')} is {recorded!r}; only head-first supine ('HFS') has a mapping "
        "to recon's geometry that the standard and other readers agree on. If the data may be "
        "read as HFS, pass patient_position_override='HFS' (the result may be mirrored otherwise)"
    )


# ---------------------------------------------------------------------------------- layout
class _Layout:
    """Where each frame belongs: 0-based energy window, detector, rotation and view per frame."""

    def __init__(self, ds: Dataset) -> None:
        n_frames = _number(ds, "NumberOfFrames", "", InputError)
        if n_frames is None or n_frames != int(n_frames) or n_frames < 1:
            raise InputError(
                f"{_tag('NumberOfFrames')} is {n_frames!r}; an NM TOMO acquisition is a "
                "multi-frame image with one frame per view, detector and energy window"
            )
        self.n_frames = int(n_frames)
        self.n_windows = _count(ds, "NumberOfEnergyWindows", "EnergyWindowInformationSequence")
        self.n_detectors = _count(ds, "NumberOfDetectors", "DetectorInformationSequence")
        self.n_rotations = _count(ds, "NumberOfRotations", "RotationInformationSequence")

        pointers_value = _value(ds, "FrameIncrementPointer")
        if pointers_value is None:
            raise InputError(
                f"{_tag('FrameIncrementPointer')} is missing; it names the vectors that say which "
                "view, detector and energy window each frame holds"
            )
        pointers = [int(p) for p in _as_list(pointers_value)]
        unknown = [p for p in pointers if p not in _VECTORS]
        if unknown:
            names = ", ".join(f"({p >> 16:04X},{p & 0xFFFF:04X})" for p in unknown)
            raise InputError(
                f"{_tag('FrameIncrementPointer')} points at {names}; only the TOMO vectors "
                "(Energy Window, Detector, Rotation, Angular View) are supported: gated or "
                "dynamic TOMO is not"
            )
        if 0x00540090 not in pointers:
            raise InputError(
                f"{_tag('FrameIncrementPointer')} does not include {_tag('AngularViewVector')}; "
                "this is not a TOMO acquisition"
            )
        limits = {
            "EnergyWindowVector": (self.n_windows, "NumberOfEnergyWindows"),
            "DetectorVector": (self.n_detectors, "NumberOfDetectors"),
            "RotationVector": (self.n_rotations, "NumberOfRotations"),
        }
        vectors: dict[str, np.ndarray] = {}
        for tag, keyword in _VECTORS.items():
            if tag in pointers:
                value = _value(ds, keyword)
                if value is None:
                    raise InputError(
                        f"{_tag('FrameIncrementPointer')} names {_tag(keyword)} but the element "
                        "is missing"
                    )
                arr = np.asarray([int(v) for v in _as_list(value)], dtype=np.int64)
                if arr.size != self.n_frames:
                    raise InputError(
                        f"{_tag(keyword)} has {arr.size} values but {_tag('NumberOfFrames')} is "
                        f"{self.n_frames}; each frame needs one value"
                    )
            else:
                limit = limits.get(keyword, (1, ""))[0]
                if limit > 1:
                    raise InputError(
                        f"{limit} items in {_tag(limits[keyword][1])} but "
                        f"{_tag('FrameIncrementPointer')} does not include {_tag(keyword)}; the "
                        "frames cannot be assigned"
                    )
                arr = np.ones(self.n_frames, dtype=np.int64)
            if keyword in limits:
                limit, count_keyword = limits[keyword]
                if arr.min() < 1 or arr.max() > limit:
                    raise InputError(
                        f"{_tag(keyword)} values must lie in 1..{limit} ({_tag(count_keyword)}), "
                        f"got {arr.min()}..{arr.max()}"
                    )
            vectors[keyword] = arr - 1
        self.window = vectors["EnergyWindowVector"]
        self.detector = vectors["DetectorVector"]
        self.rotation = vectors["RotationVector"]
        self.view = vectors["AngularViewVector"]

    def check(self, frames_per_rotation: list[int]) -> None:
        """Number of Frames and the vectors agree with the rotations' frame counts."""
        total = self.n_windows * self.n_detectors * sum(frames_per_rotation)
        if total != self.n_frames:
            raise InputError(
                f"{_tag('NumberOfFrames')} is {self.n_frames} but {self.n_windows} energy "
                f"window(s) × {self.n_detectors} detector(s) × {_tag('NumberOfFramesInRotation')} "
                f"{'+'.join(str(n) for n in frames_per_rotation)} = {total}; the file "
                "contradicts itself"
            )
        for e in range(self.n_windows):
            for d in range(self.n_detectors):
                for r, n_views in enumerate(frames_per_rotation):
                    mask = (self.window == e) & (self.detector == d) & (self.rotation == r)
                    views = self.view[mask]  # in frame order
                    expected = np.arange(n_views)
                    where = f"energy window {e + 1}, detector {d + 1}, rotation {r + 1}"
                    if views.size == n_views and np.array_equal(np.sort(views), expected):
                        if not np.array_equal(views, expected):
                            raise GeometryError(
                                f"{_tag('AngularViewVector')} is not monotonic for {where}: "
                                f"{(views + 1).tolist()}; the views of a rotation must follow "
                                "each other in frame order (angles moving one way)"
                            )
                    else:
                        raise InputError(
                            f"{_tag('AngularViewVector')} for {where} holds "
                            f"{(views + 1).tolist()}; expected each of 1..{n_views} once "
                            f"({_tag('NumberOfFramesInRotation')} = {n_views})"
                        )

    def sorted_frames(self, window: int) -> np.ndarray:
        """Frame indices of one energy window ordered by detector, rotation, view."""
        idx = np.flatnonzero(self.window == window)
        order = np.lexsort((self.view[idx], self.rotation[idx], self.detector[idx]))
        return idx[order]


# ---------------------------------------------------------------------------------- rotations
class _Rotation:
    def __init__(self, item: Dataset, index: int) -> None:
        where = _item(_tag("RotationInformationSequence"), index)
        # Optional here: vendors may give each detector its own instead (checked by the caller).
        self.start_deg = _number(item, "StartAngle", where)
        self.step_deg = _required(item, "AngularStep", where)
        n = _required(item, "NumberOfFramesInRotation", where, InputError)
        if n != int(n) or n < 1:
            raise InputError(f"{_tag('NumberOfFramesInRotation')}{where} must be ≥ 1, got {n}")
        self.n_views = int(n)
        duration_ms = _required(item, "ActualFrameDuration", where)
        if duration_ms <= 0:
            raise GeometryError(
                f"{_tag('ActualFrameDuration')}{where} must be a positive number of ms, "
                f"got {duration_ms}"
            )
        self.duration_s = duration_ms / 1000.0
        direction = _value(item, "RotationDirection")
        direction = str(direction).strip().upper() if direction is not None else None
        if direction == "CCW":
            log.warning(
                "%s%s is 'CCW' (Interfile's spelling); DICOM says 'CC': reading it as CC",
                _tag("RotationDirection"),
                where,
            )
            direction = "CC"
        if direction not in ("CW", "CC"):
            raise GeometryError(
                f"{_tag('RotationDirection')}{where} is {direction!r}; it must be 'CW' or 'CC'"
            )
        self.sign = 1.0 if direction == "CC" else -1.0
        self.direction = direction
        if not self.step_deg > 0:
            raise GeometryError(
                f"{_tag('AngularStep')}{where} is {self.step_deg}; it must be positive (the "
                f"direction is given by {_tag('RotationDirection')})"
            )
        if self.step_deg * (self.n_views - 1) >= 360.0:
            raise GeometryError(
                f"{_tag('AngularStep')} {self.step_deg}° × ({self.n_views} views − 1) reaches "
                f"360°{where}: the angles wrap around and are not monotonic"
            )
        self.radial = _numbers(item, "RadialPosition", where)


# ---------------------------------------------------------------------------------- windows
def _energy_windows(ds: Dataset, n_windows: int) -> list[tuple[str, EnergyWindow | None]]:
    items = _value(ds, "EnergyWindowInformationSequence") or []
    where_seq = _tag("EnergyWindowInformationSequence")
    if not items:
        if n_windows > 1:
            raise InputError(f"{where_seq} is missing but there are {n_windows} energy windows")
        return [("window 1", None)]
    out: list[tuple[str, EnergyWindow | None]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = _item(where_seq, i)
        name = _value(item, "EnergyWindowName")
        name = str(name).strip() if name is not None else f"window {i + 1}"
        if name in seen:
            name = f"{name} ({i + 1})"
        seen.add(name)
        ranges = _value(item, "EnergyWindowRangeSequence") or []
        limits = []
        for j, rng in enumerate(ranges):
            lower = _number(rng, "EnergyWindowLowerLimit", where, InputError)
            upper = _number(rng, "EnergyWindowUpperLimit", where, InputError)
            if lower is None or upper is None:
                raise InputError(
                    f"{_tag('EnergyWindowRangeSequence')} item {j + 1}{where} lacks "
                    f"{_tag('EnergyWindowLowerLimit')} or {_tag('EnergyWindowUpperLimit')}"
                )
            limits.append((lower, upper))
        window = None
        if limits:
            if len(limits) > 1:
                log.warning(
                    "energy window %r has %d ranges; using their hull %.1f-%.1f keV",
                    name,
                    len(limits),
                    min(lo for lo, _ in limits),
                    max(hi for _, hi in limits),
                )
            try:
                window = EnergyWindow(
                    name, min(lo for lo, _ in limits), max(hi for _, hi in limits)
                )
            except PhysicsError as exc:
                raise InputError(
                    f"{_tag('EnergyWindowLowerLimit')}/{_tag('EnergyWindowUpperLimit')}{where}: "
                    f"{exc}"
                ) from exc
        out.append((name, window))
    return out


def _photopeak_index(
    windows: list[tuple[str, EnergyWindow | None]],
    isotope: Isotope | None,
    choice: str | int | None,
) -> int:
    names = [name for name, _ in windows]
    if choice is not None:
        if isinstance(choice, (int, np.integer)) and not isinstance(choice, bool):
            if not 0 <= int(choice) < len(windows):
                raise InputError(
                    f"photopeak_window={choice} is out of range: the file has {len(windows)} "
                    f"energy windows {names}"
                )
            return int(choice)
        if choice in names:
            return names.index(choice)
        raise InputError(f"photopeak_window={choice!r} is not one of the energy windows {names}")
    if len(windows) == 1:
        return 0
    if isotope is None:
        raise InputError(
            f"the file has {len(windows)} energy windows {names} and no isotope recon knows, so "
            "the photopeak cannot be chosen; pass photopeak_window=<name or index>"
        )
    energy = isotope.main_photon.energy_kev
    candidates = [
        (abs(w.center_kev - energy), i)
        for i, (_, w) in enumerate(windows)
        if w is not None and w.contains(energy)
    ]
    if not candidates:
        described = ", ".join(
            f"{n} [{w.lower_kev:g}-{w.upper_kev:g}]" if w else f"{n} [no range]" for n, w in windows
        )
        raise InputError(
            f"no energy window contains {isotope.name}'s main photon line ({energy:g} keV): "
            f"{described}; pass photopeak_window=<name or index>"
        )
    return min(candidates)[1]


def select_scatter_windows(
    windows: dict[str, Any], photopeak: str
) -> tuple[str | None, str | None]:
    """Names of the scatter windows adjoining the photopeak window: ``(lower, upper)``.

    A lower neighbour ends at most 10 % of the photopeak width inside it and at most half its
    width below it; the nearest one is taken. The upper neighbour likewise. Either is None when
    there is none.

    Parameters
    ----------
    windows : dict
        ``{name: EnergyWindow}`` or ``{name: (EnergyWindow, counts)}`` as in the metadata of
        :func:`read_nm_projections`.
    photopeak : str
        Name of the photopeak window.
    """
    limits = {n: (w[0] if isinstance(w, tuple) else w) for n, w in windows.items()}
    if photopeak not in limits:
        raise InputError(f"photopeak window {photopeak!r} is not one of {list(limits)}")
    peak = limits[photopeak]
    if peak is None:
        raise PhysicsError(
            f"photopeak window {photopeak!r} has no energy range "
            f"({_tag('EnergyWindowRangeSequence')}), so its neighbours cannot be found"
        )
    overlap = _ADJACENT_OVERLAP * peak.width_kev
    gap = _ADJACENT_GAP * peak.width_kev
    lower: tuple[float, str] | None = None
    upper: tuple[float, str] | None = None
    for name, w in limits.items():
        if name == photopeak or w is None:
            continue
        if peak.lower_kev - gap <= w.upper_kev <= peak.lower_kev + overlap:
            distance = abs(peak.lower_kev - w.upper_kev)
            if lower is None or distance < lower[0]:
                lower = (distance, name)
        elif peak.upper_kev - overlap <= w.lower_kev <= peak.upper_kev + gap:
            distance = abs(w.lower_kev - peak.upper_kev)
            if upper is None or distance < upper[0]:
                upper = (distance, name)
    return (lower[1] if lower else None), (upper[1] if upper else None)


def scatter_estimate(
    metadata: dict[str, Any],
    method: str = "tew",
    k: float = 0.5,
    smooth_sigma_px: float | None = None,
) -> np.ndarray:
    """Window-based scatter estimate for the photopeak counts of :func:`read_nm_projections`.

    The scatter windows are picked automatically with :func:`select_scatter_windows`: TEW (Ogawa
    et al. 1991, :func:`recon.physics.tew_scatter`) uses the windows adjoining the photopeak below
    and above (the upper one may be absent); DEW (Jaszczak et al. 1984,
    :func:`recon.physics.dew_scatter`) uses the lower one with multiplier ``k``.

    Parameters
    ----------
    metadata : dict
        The metadata returned by :func:`read_nm_projections` (``"windows"`` and
        ``"photopeak_window"`` are used).
    method : {"tew", "dew"}
        Estimator.
    k : float
        DEW multiplier (ignored by TEW).
    smooth_sigma_px : float, optional
        Gaussian smoothing of each view of the estimate, in projection pixels.

    Returns
    -------
    ndarray of float32, shape (view, v, u)
        Expected scatter counts in the photopeak window, in the views' order of the counts.

    Raises
    ------
    PhysicsError
        No scatter window adjoins the photopeak below it.
    InputError
        Unknown method or metadata not from :func:`read_nm_projections`.
    """
    try:
        windows = metadata["windows"]
        photopeak = metadata["photopeak_window"]
    except (KeyError, TypeError) as exc:
        raise InputError(
            "metadata must be the dict returned by read_nm_projections (with 'windows' and "
            "'photopeak_window')"
        ) from exc
    method = str(method).lower()
    if method not in ("tew", "dew"):
        raise InputError(f"method must be 'tew' or 'dew', got {method!r}")
    lower, upper = select_scatter_windows(windows, photopeak)
    if lower is None:
        described = ", ".join(
            f"{n} [{w.lower_kev:g}-{w.upper_kev:g} keV]" if w else n
            for n, (w, _) in windows.items()
        )
        raise PhysicsError(
            f"no energy window adjoins the photopeak {photopeak!r} from below ({described}); "
            f"{method.upper()} needs a lower scatter window"
        )
    peak_window, _ = windows[photopeak]
    lower_window, lower_counts = windows[lower]
    if method == "dew":
        return dew_scatter(lower_counts, k=k, smooth_sigma_px=smooth_sigma_px)
    upper_window, upper_counts = windows[upper] if upper is not None else (None, None)
    return tew_scatter(
        lower_counts,
        upper_counts,
        lower_window,
        upper_window,
        peak_window,
        smooth_sigma_px=smooth_sigma_px,
    )


def assign_nm_windows(
    metadata: dict[str, Any], isotopes: Sequence[str | Isotope] | None = None
) -> WindowAssignment:
    """The energy windows of a file read by :func:`read_nm_projections`, assigned to the
    photopeaks and scatter windows of each isotope (:func:`recon.physics.windows.assign_windows`).

    Parameters
    ----------
    metadata : dict
        The metadata of :func:`read_nm_projections` (``"windows"``, ``"isotope"``).
    isotopes : sequence of str or Isotope, optional
        The isotopes of the study (a simultaneous dual-isotope acquisition names both; a file
        records one radiopharmaceutical at most). Default: the file's isotope.

    Returns
    -------
    WindowAssignment

    Raises
    ------
    InputError
        No isotope given and none in the file, metadata not from :func:`read_nm_projections`,
        or an isotope with no photopeak window (see :func:`assign_windows`).
    """
    windows = metadata.get("windows") if isinstance(metadata, dict) else None
    if not windows:
        raise InputError("metadata must be the dict returned by read_nm_projections")
    if isotopes is None:
        if metadata.get("isotope") is None:
            raise InputError(
                "the file names no isotope recon knows: give the study's isotopes to assign "
                f"its energy windows ({', '.join(windows)})"
            )
        isotopes = [metadata["isotope"]]
    return assign_windows(windows, isotopes)


# ---------------------------------------------------------------------------------- isotope, times
def _acquisition_datetime(ds: Dataset) -> tuple[_dt.datetime | None, str | None]:
    for source, value in (
        ("AcquisitionDate/AcquisitionTime", _combine(
            _value(ds, "AcquisitionDate"), _value(ds, "AcquisitionTime"))),
        ("AcquisitionDateTime", _parse_date_time(_value(ds, "AcquisitionDateTime"), "DT")),
        ("SeriesDate/SeriesTime", _combine(_value(ds, "SeriesDate"), _value(ds, "SeriesTime"))),
        ("StudyDate/StudyTime", _combine(_value(ds, "StudyDate"), _value(ds, "StudyTime"))),
    ):  # fmt: skip
        if value is not None:
            return value, source
    return None, None


def _as_recorded(when: _dt.datetime | None) -> _dt.datetime | None:
    """The local time a DICOM value recorded, without its UTC offset."""
    return None if when is None else when.replace(tzinfo=None)


def _isotope_info(ds: Dataset, acquisition: _dt.datetime | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "isotope": None,
        "radionuclide": None,
        "radiopharmaceutical": None,
        "injected_activity_bq": None,
        "injection_datetime": None,
    }
    items = _value(ds, "RadiopharmaceuticalInformationSequence") or []
    item = items[0] if items else Dataset()
    if len(items) > 1:
        log.warning(
            "%s has %d items; using the first", _tag("RadiopharmaceuticalInformationSequence"),
            len(items),
        )  # fmt: skip
    names: list[str] = []
    codes = _value(item, "RadionuclideCodeSequence") or []
    for code in codes[:1]:
        names += _code_names(code)
    for holder in (item, ds):
        nuclide = _value(holder, "Radionuclide")
        if nuclide is not None:
            names.append(str(nuclide))
    info["radionuclide"] = names[0] if names else None
    pharmaceutical = _value(item, "Radiopharmaceutical")
    if pharmaceutical is not None:
        # "Tc99m MDP": the nuclide is often one word of the pharmaceutical's name.
        info["radiopharmaceutical"] = str(pharmaceutical)
        names.append(str(pharmaceutical))
        names.extend(str(pharmaceutical).split())
    for name in names:
        try:
            info["isotope"] = get_isotope(name)
            break
        except PhysicsError:
            continue
    if names and info["isotope"] is None:
        log.warning("radionuclide %r is not in recon's isotope table", names[0])
    dose = _number(item, "RadionuclideTotalDose", "", InputError)
    if dose is not None:
        if dose >= _MBQ_PLAUSIBLE_MAX:
            log.warning(
                "%s is %g; the NM Isotope Module gives MBq but no activity is that large, so "
                "it is read as Bq",
                _tag("RadionuclideTotalDose"),
                dose,
            )
            info["injected_activity_bq"] = dose
        else:
            info["injected_activity_bq"] = dose * 1e6
    injection = _parse_date_time(_value(item, "RadiopharmaceuticalStartDateTime"), "DT")
    if injection is None:
        start = _parse_date_time(_value(item, "RadiopharmaceuticalStartTime"), "TM")
        if start is not None:
            local = _as_recorded(acquisition)
            day = local.date() if local is not None else None
            day = day or _parse_date_time(_value(ds, "StudyDate"), "DA")
            if day is not None:
                injection = _dt.datetime.combine(day, start)
                # An injection "later" than the scan on the same day was on the day before.
                if local is not None and injection > local:
                    injection -= _dt.timedelta(days=1)
    info["injection_datetime"] = injection
    return info


# ---------------------------------------------------------------------------------- pixels
def _pixel_frames(ds: Dataset, n_frames: int, rows: int, cols: int, source: str) -> np.ndarray:
    """The frames as an array (frame, row, column), validated before anything is allocated."""
    if "PixelData" not in ds:
        raise InputError(f"{source}: {_tag('PixelData')} is missing")
    samples = _number(ds, "SamplesPerPixel", "", InputError)
    if samples not in (None, 1):
        raise InputError(f"{_tag('SamplesPerPixel')} is {samples}; NM frames are greyscale (1)")
    bits = _number(ds, "BitsAllocated", "", InputError)
    if bits not in (8, 16, 32):
        raise InputError(f"{_tag('BitsAllocated')} is {bits}; expected 8, 16 or 32")
    bits = int(bits)
    signed = _number(ds, "PixelRepresentation", "", InputError) == 1
    file_meta = getattr(ds, "file_meta", None)
    syntax = _value(file_meta, "TransferSyntaxUID") if file_meta is not None else None
    syntax = UID(str(syntax)) if syntax is not None else None
    if syntax is not None and syntax.is_compressed:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(syntax)
        except NotImplementedError as exc:
            raise InputError(
                f"{source}: pixel data use {syntax.name} ({syntax}), which pydicom cannot decode"
            ) from exc
        if not decoder.is_available:
            raise InputError(
                f"{source}: pixel data are compressed with {syntax.name} ({syntax}) and no "
                "decoder is installed; install one: `pip install pylibjpeg pylibjpeg-libjpeg "
                "pylibjpeg-openjpeg` (JPEG, JPEG-LS, JPEG 2000) or `pip install python-gdcm` "
                f"(pydicom lists: {'; '.join(decoder.missing_dependencies)})"
            )
        try:
            arr = np.asarray(ds.pixel_array)
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            raise InputError(f"{source}: could not decode {syntax.name} pixel data: {exc}") from exc
        arr = arr.reshape((-1, rows, cols)) if arr.size == n_frames * rows * cols else arr
        if arr.shape != (n_frames, rows, cols):
            raise InputError(
                f"{source}: decoded pixel data have shape {arr.shape}, expected "
                f"({n_frames}, {rows}, {cols}) from {_tag('NumberOfFrames')}, {_tag('Rows')}, "
                f"{_tag('Columns')}"
            )
    else:
        data = ds.PixelData
        n_bytes = bits // 8
        expected = n_frames * rows * cols * n_bytes
        if len(data) < expected:
            raise InputError(
                f"{source}: {_tag('PixelData')} holds {len(data)} bytes but {n_frames} frames × "
                f"{rows} rows × {cols} columns × {n_bytes} bytes = {expected}; the file is "
                "truncated"
            )
        little = syntax is None or (syntax != ExplicitVRBigEndian)
        dtype = np.dtype(f"{'<' if little else '>'}{'i' if signed else 'u'}{n_bytes}")
        arr = np.frombuffer(data, dtype=dtype, count=n_frames * rows * cols)
        arr = arr.reshape(n_frames, rows, cols)
        stored = _number(ds, "BitsStored", "", InputError)
        if stored is not None and 0 < stored < bits:
            unused = bits - int(stored)
            if signed:
                arr = (arr << unused) >> unused
            else:
                arr = arr & ((1 << int(stored)) - 1)
    frames = arr.astype(np.float32)
    slope = _number(ds, "RescaleSlope", "", InputError)
    intercept = _number(ds, "RescaleIntercept", "", InputError)
    if (slope is not None and slope != 1.0) or (intercept is not None and intercept != 0.0):
        frames = frames * np.float32(slope if slope is not None else 1.0)
        frames += np.float32(intercept or 0.0)
    if frames.size and float(frames.min()) < 0:
        raise InputError(f"{source}: pixel data hold negative counts (minimum {frames.min():g})")
    return frames


def _start_angles(
    det_items: list[Dataset], det_where: list[str], rotations: list[_Rotation], source: str
) -> list[list[float]]:
    """Start angle α0 of each detector in each rotation (DESIGN.md §3a)."""
    n_det = len(det_items)
    # Each detector's own item, else the rotation's.
    det_starts = [
        _number(item, "StartAngle", w) for item, w in zip(det_items, det_where, strict=True)
    ]
    rot_starts = [rot.start_deg for rot in rotations]
    if len(rotations) > 1 or not all(s is not None for s in det_starts):
        for r, start in enumerate(rot_starts):
            if start is None:
                raise GeometryError(
                    f"{source}: {_tag('StartAngle')} is missing in "
                    f"{_tag('RotationInformationSequence')} item {r + 1}"
                    + ("" if n_det == 1 else " and in some Detector Information Sequence items")
                    + "; it is required to place the views"
                )
    # Past the check, every rotation's start is known wherever it is used below.
    det_known = [float(s) for s in det_starts if s is not None]
    rot_known = [float(s) for s in rot_starts if s is not None]
    if len(det_known) == n_det:
        # Later rotations keep each detector's offset from the first rotation's start.
        starts = [
            [s + (rot_known[r] - rot_known[0] if r else 0.0) for r in range(len(rotations))]
            for s in det_known
        ]
    elif n_det == 1:
        starts = [rot_known]
    else:
        raise GeometryError(
            f"{source}: {n_det} detectors but {_tag('StartAngle')} is not given in every "
            f"{_tag('DetectorInformationSequence')} item; each detector starts at its own angle "
            "and the rotation's Start Angle cannot tell where the others are. Add Start Angle to "
            "each detector item"
        )
    return starts


def _radii(
    det_items: list[Dataset], det_where: list[str], rotations: list[_Rotation], source: str
) -> list[list[np.ndarray]]:
    """Radial Position of each view, per detector and rotation (mm)."""
    # The detector's item (one value or one per view), else the rotation's.
    n_per_det = sum(rot.n_views for rot in rotations)
    radii_dr: list[list[np.ndarray]] = []
    for d in range(len(det_items)):
        values = _numbers(det_items[d], "RadialPosition", det_where[d])
        per_rot = []
        offset = 0
        for r, rot in enumerate(rotations):
            if values:
                if len(values) == 1:
                    radius = np.full(rot.n_views, values[0])
                elif len(values) == n_per_det:
                    radius = np.asarray(values[offset : offset + rot.n_views])
                else:
                    raise GeometryError(
                        f"{_tag('RadialPosition')}{det_where[d]} has {len(values)} values; "
                        f"expected 1 or one per view ({n_per_det})"
                    )
            elif rot.radial:
                if len(rot.radial) not in (1, rot.n_views):
                    raise GeometryError(
                        f"{_tag('RadialPosition')} in {_tag('RotationInformationSequence')} item "
                        f"{r + 1} has {len(rot.radial)} values; expected 1 or {rot.n_views}"
                    )
                radius = np.broadcast_to(np.asarray(rot.radial), (rot.n_views,))
            else:
                raise GeometryError(
                    f"{source}: {_tag('RadialPosition')} is missing for detector {d + 1}: give it "
                    f"in {_tag('DetectorInformationSequence')} or "
                    f"{_tag('RotationInformationSequence')} (distance from the axis to the "
                    "collimator face, mm)"
                )
            if np.any(radius <= 0):
                raise GeometryError(
                    f"{_tag('RadialPosition')} for detector {d + 1} must be positive (mm)"
                )
            per_rot.append(np.asarray(radius, dtype=np.float64))
            offset += rot.n_views
        radii_dr.append(per_rot)
    return radii_dr


# ---------------------------------------------------------------------------------- reader
@malformed_input_is_input_error("DICOM NM acquisition")
def read_nm_projections(
    path_or_dataset: str | os.PathLike | Dataset,
    patient_position_override: str | None = None,
    photopeak_window: str | int | None = None,
) -> tuple[np.ndarray, SpectGeometry, dict[str, Any]]:
    """Read a DICOM NM TOMO acquisition (projections of one or more detectors and windows).

    Parameters
    ----------
    path_or_dataset : path or pydicom.Dataset
        An NM Image Storage file (SOP Class 1.2.840.10008.5.1.4.1.1.20) with Image Type TOMO.
    patient_position_override : {"HFS"}, optional
        Read a file whose Patient Position (0018,5100) is not HFS (or is missing) with the
        head-first supine mapping anyway; a warning is logged. Without it such files raise.
    photopeak_window : str or int, optional
        Name or 0-based index of the photopeak window. Default: the window containing the
        isotope's main photon energy (the only window when there is one).

    Returns
    -------
    counts : ndarray of float32, shape (view, v, u)
        Photopeak counts, views ordered by detector, rotation and angular view (as in the file);
        rows flipped so that ``v`` runs along +z.
    geometry : SpectGeometry
        View angles ``θ = (180° − α) mod 360°``, per-view radii (Radial Position), frame start
        times and durations (Actual Frame Duration; detectors acquire simultaneously), pixel size
        ``(PixelSpacing[0], PixelSpacing[1])`` = (axial, transaxial), COR offset
        (``−Center of Rotation Offset``), and the axial offset: the z of the centre of the rows
        from Image Position (Patient) in the first Detector Information Sequence item when given
        (the first row is at that z), else 0.
    metadata : dict
        ``windows`` ({name: (EnergyWindow or None, counts)}, every window in the file, counts in
        the same layout as ``counts``); ``photopeak_window`` (name); ``window_assignment``
        (:class:`recon.physics.windows.WindowAssignment` of the file's isotope: its photopeak
        and scatter windows; None for one window or no known isotope; other isotopes:
        :func:`assign_nm_windows`); ``isotope`` (Isotope or None); ``radionuclide``,
        ``radiopharmaceutical`` (as recorded); ``injected_activity_bq``;
        ``injection_datetime``, ``acquisition_datetime`` (naive, as recorded);
        ``injection_to_acquisition_s``; ``patient_position`` (recorded) and
        ``patient_position_used``; per view: ``detector``, ``rotation``, ``dicom_angles_deg``;
        per detector: ``start_angles_deg``, ``cor_offsets_dicom_mm``; ``rotation_directions``;
        ``frame_of_reference_uid``, ``series_instance_uid``, ``study_instance_uid``,
        ``manufacturer``, ``source``.

    Raises
    ------
    InputError
        Not an NM TOMO object; missing or contradictory tags (Number of Frames, the frame
        vectors, Number of Frames in Rotation); truncated pixel data; compressed pixel data
        without a decoder (the message says which plugin to install).
    GeometryError
        Missing or impossible geometry tags; angles that are not monotonic; a Patient Position
        other than HFS without ``patient_position_override``.

    Notes
    -----
    When the detectors have different Center of Rotation Offsets, each detector's frames are
    shifted (linear interpolation along ``u``) to the mean offset, since SpectGeometry holds one.
    """
    ds, source = _load(path_or_dataset)
    _check_sop(ds, source)
    recorded_position, used_position = _patient_position(ds, patient_position_override)

    layout = _Layout(ds)
    rot_items = _value(ds, "RotationInformationSequence")
    if rot_items is None:
        raise GeometryError(
            f"{source}: {_tag('RotationInformationSequence')} is missing; it holds the start "
            "angle, angular step, direction and frame duration of the rotation"
        )
    rotations = [_Rotation(item, i) for i, item in enumerate(rot_items)]
    layout.check([rot.n_views for rot in rotations])

    n_det = layout.n_detectors
    det_items = list(_value(ds, "DetectorInformationSequence") or [])
    if not det_items:
        det_items = [Dataset() for _ in range(n_det)]
    det_where = [_item(_tag("DetectorInformationSequence"), d) for d in range(n_det)]

    starts = _start_angles(det_items, det_where, rotations, source)
    radii_dr = _radii(det_items, det_where, rotations, source)

    cor_dicom = [
        _number(det_items[d], "CenterOfRotationOffset", det_where[d]) or 0.0 for d in range(n_det)
    ]

    spacing = _numbers(ds, "PixelSpacing", "")
    if len(spacing) != 2 or min(spacing) <= 0:
        raise GeometryError(
            f"{source}: {_tag('PixelSpacing')} must hold two positive values (row spacing = "
            f"axial, column spacing = transaxial, mm), got {spacing or 'nothing'}"
        )
    rows = _number(ds, "Rows", "", InputError)
    cols = _number(ds, "Columns", "", InputError)
    if not rows or not cols or rows < 1 or cols < 1:
        raise InputError(f"{source}: {_tag('Rows')} and {_tag('Columns')} must be positive")
    rows, cols = int(rows), int(cols)

    axial_offset = 0.0
    ipp = _numbers(det_items[0], "ImagePositionPatient", det_where[0])
    if ipp:
        if len(ipp) != 3:
            raise GeometryError(f"{_tag('ImagePositionPatient')}{det_where[0]} needs 3 values")
        iop = _numbers(det_items[0], "ImageOrientationPatient", det_where[0])
        if len(iop) == 6 and iop[5] > 0.5:
            raise GeometryError(
                f"{_tag('ImageOrientationPatient')}{det_where[0]} says the rows run towards the "
                "head (column direction +z); frames with the feet end first are not supported"
            )
        axial_offset = ipp[2] - (rows - 1) / 2.0 * spacing[0]

    windows = _energy_windows(ds, layout.n_windows)
    acquisition, acquisition_source = _acquisition_datetime(ds)
    iso = _isotope_info(ds, acquisition)
    peak_index = _photopeak_index(windows, iso["isotope"], photopeak_window)

    # All header checks are done: now the pixel data.
    frames = _pixel_frames(ds, layout.n_frames, rows, cols, source)

    order0 = layout.sorted_frames(0)
    det_of_view = layout.detector[order0]
    rot_of_view = layout.rotation[order0]
    k_of_view = layout.view[order0]
    alpha = np.empty(order0.size)
    radii = np.empty(order0.size)
    start_times = np.empty(order0.size)
    durations = np.empty(order0.size)
    rotation_start_s = np.concatenate(
        [[0.0], np.cumsum([rot.n_views * rot.duration_s for rot in rotations])]
    )
    for i, (d, r, k) in enumerate(zip(det_of_view, rot_of_view, k_of_view, strict=True)):
        rot = rotations[r]
        alpha[i] = starts[d][r] + rot.sign * k * rot.step_deg
        radii[i] = radii_dr[d][r][k]
        start_times[i] = rotation_start_s[r] + k * rot.duration_s
        durations[i] = rot.duration_s
    theta = np.mod(180.0 - alpha, 360.0)

    pixel_u = spacing[1]
    cor_geometry = [-c for c in cor_dicom]
    cor = float(np.mean(cor_geometry))
    shifts = [(cor - c) / pixel_u for c in cor_geometry]
    if any(abs(s) > 1e-6 for s in shifts):
        log.warning(
            "detectors have different %s %s mm; their frames are shifted to the mean offset",
            _tag("CenterOfRotationOffset"),
            cor_dicom,
        )

    window_counts: dict[str, tuple[EnergyWindow | None, np.ndarray]] = {}
    for e, (name, window) in enumerate(windows):
        idx = layout.sorted_frames(e)
        # Rows flipped: the first DICOM row is the head end, v runs along +z.
        counts_e = np.ascontiguousarray(frames[idx, ::-1, :], dtype=np.float32)
        for d, s in enumerate(shifts):
            if abs(s) > 1e-6:
                sel = det_of_view == d
                # output[i] = input[i + s]: bin i moves from the detector's to the mean offset.
                counts_e[sel] = _shift(
                    counts_e[sel], (0.0, 0.0, -s), order=1, mode="constant", cval=0.0,
                    prefilter=False,
                )  # fmt: skip
        window_counts[name] = (window, counts_e)
    del frames

    geometry = SpectGeometry(
        angles_deg=theta,
        radii_mm=radii,
        n_u=cols,
        n_v=rows,
        pixel_size_mm=(spacing[0], spacing[1]),
        start_times_s=start_times,
        durations_s=durations,
        cor_offset_mm=cor,
        axial_offset_mm=axial_offset,
    )
    peak_name = windows[peak_index][0]
    injection = iso["injection_datetime"]
    assignment = None
    if iso["isotope"] is not None and len(window_counts) > 1:
        try:
            assignment = assign_windows(window_counts, [iso["isotope"]])
        except ReconError as exc:
            log.warning("the energy windows could not be assigned to %s: %s", iso["isotope"], exc)
    metadata: dict[str, Any] = {
        "source": source,
        "windows": window_counts,
        "photopeak_window": peak_name,
        "window_assignment": assignment,
        "isotope": iso["isotope"],
        "radionuclide": iso["radionuclide"],
        "radiopharmaceutical": iso["radiopharmaceutical"],
        "injected_activity_bq": iso["injected_activity_bq"],
        # As recorded (naive); the interval honours UTC offsets that both values carry.
        "injection_datetime": _as_recorded(injection),
        "acquisition_datetime": _as_recorded(acquisition),
        "acquisition_datetime_source": acquisition_source,
        "injection_to_acquisition_s": _seconds_between(acquisition, injection),
        "patient_position": recorded_position,
        "patient_position_used": used_position,
        "n_detectors": n_det,
        "detector": det_of_view.astype(np.int32),
        "rotation": rot_of_view.astype(np.int32),
        "dicom_angles_deg": alpha,
        "start_angles_deg": [starts[d][0] for d in range(n_det)],
        "rotation_directions": [rot.direction for rot in rotations],
        "cor_offsets_dicom_mm": cor_dicom,
        "frame_of_reference_uid": _str(ds, "FrameOfReferenceUID"),
        "series_instance_uid": _str(ds, "SeriesInstanceUID"),
        "study_instance_uid": _str(ds, "StudyInstanceUID"),
        "manufacturer": _str(ds, "Manufacturer"),
    }
    return window_counts[peak_name][1], geometry, metadata


def _str(ds: Dataset, keyword: str) -> str | None:
    value = _value(ds, keyword)
    return str(value) if value is not None else None
