"""Synthetic DICOM objects for the I/O tests: NM TOMO multi-frame acquisitions and CT series.

Everything is built in memory with pydicom; :func:`save` writes a dataset as a Part 10 file.
The NM builder takes frames already in the DICOM convention (head end in the first row, one frame
per energy window, detector and view) and describes them with the tags a scanner would write.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def ds_value(value: float) -> DSfloat:
    """A DS value that fits the 16-character limit."""
    return DSfloat(float(value), auto_format=True)


def _ds_list(values: Sequence[float]) -> list[DSfloat]:
    return [ds_value(v) for v in values]


def _file_meta(sop_class: str, sop_instance: str, syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = syntax
    return meta


def save(ds: Dataset, path: str | Path) -> Path:
    """Write ``ds`` as a DICOM Part 10 file and return the path."""
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def nm_tomo_dataset(
    frames: np.ndarray,
    *,
    angular_step_deg: float,
    start_angles_deg: Sequence[float] = (0.0,),
    direction: str = "CW",
    pixel_spacing: tuple[float, float] = (4.0, 4.0),
    frame_duration_ms: float = 20000.0,
    radial_positions: Any = 250.0,
    radial_in: str = "detector",
    start_angle_in: str = "detector",
    cor_offsets_mm: Sequence[float] | None = None,
    windows: Sequence[tuple[str, float, float]] = (("EM", 126.0, 154.0),),
    radionuclide_code_meaning: str | None = "^99m^Technetium",
    radiopharmaceutical: str | None = "Tc99m MDP",
    total_dose: float | None = 740.0,
    injection_time: str | None = "083000",
    injection_datetime: str | None = None,
    acquisition_date: str | None = "20240305",
    acquisition_time: str | None = "110000",
    patient_position: str | None = "HFS",
    detector_image_position: Sequence[float] | None = None,
    detector_image_orientation: Sequence[float] | None = None,
    frame_of_reference_uid: str | None = None,
    dtype: str = "<u2",
) -> Dataset:
    """An NM Image Storage TOMO dataset holding ``frames``.

    Parameters
    ----------
    frames : ndarray of shape (window, detector, view, row, column)
        Counts as stored in DICOM: row 0 is the head end. Frames are written with the views
        varying fastest, then detectors, then windows (Frame Increment Pointer order).
    angular_step_deg : float
        Angular Step (positive).
    start_angles_deg : sequence of float
        Start Angle of each detector.
    direction : str
        Rotation Direction, ``"CW"`` or ``"CC"``.
    radial_positions : float or sequence
        One value for all, or per detector: one value or one per view.
    radial_in : {"detector", "rotation"}
        Where Radial Position goes (Detector or Rotation Information Sequence).
    start_angle_in : {"detector", "rotation"}
        ``"detector"``: each Detector Information item has its Start Angle (vendor practice) and
        the Rotation Information item has detector 1's; ``"rotation"``: only the rotation's.
    cor_offsets_mm : sequence of float, optional
        Center of Rotation Offset of each detector (DICOM sign convention).
    windows : sequence of (name, lower keV, upper keV)
        Energy windows in file order; ``frames[i]`` belongs to ``windows[i]``.
    """
    frames = np.asarray(frames)
    if frames.ndim != 5:
        raise ValueError("frames must be (window, detector, view, row, column)")
    n_win, n_det, n_views, rows, cols = frames.shape
    if len(windows) != n_win or len(start_angles_deg) != n_det:
        raise ValueError("one window per frames[i] and one start angle per detector")

    sop_instance = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(NM_IMAGE_STORAGE, sop_instance, ExplicitVRLittleEndian)
    ds.SOPClassUID = NM_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = frame_of_reference_uid or generate_uid()
    ds.Modality = "NM"
    ds.Manufacturer = "recon test factory"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
    ds.PatientName = "Phantom^Point"
    ds.PatientID = "PHANTOM"
    ds.StudyDate = acquisition_date or "20240305"
    ds.StudyTime = "080000"
    if patient_position is not None:
        ds.PatientPosition = patient_position
    if acquisition_date is not None:
        ds.AcquisitionDate = acquisition_date
    if acquisition_time is not None:
        ds.AcquisitionTime = acquisition_time

    # Image pixel module.
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    pixel_dtype = np.dtype(dtype)
    ds.BitsAllocated = pixel_dtype.itemsize * 8
    ds.BitsStored = pixel_dtype.itemsize * 8
    ds.HighBit = pixel_dtype.itemsize * 8 - 1
    ds.PixelRepresentation = 1 if pixel_dtype.kind == "i" else 0
    ds.PixelSpacing = _ds_list(pixel_spacing)

    # NM multi-frame module: energy window, detector, rotation, angular view (last fastest).
    ds.NumberOfFrames = n_win * n_det * n_views
    ds.FrameIncrementPointer = [Tag(0x00540010), Tag(0x00540020), Tag(0x00540050), Tag(0x00540090)]
    w, d, v = np.meshgrid(np.arange(n_win), np.arange(n_det), np.arange(n_views), indexing="ij")
    ds.EnergyWindowVector = [int(x) + 1 for x in w.ravel()]
    ds.NumberOfEnergyWindows = n_win
    ds.DetectorVector = [int(x) + 1 for x in d.ravel()]
    ds.NumberOfDetectors = n_det
    ds.RotationVector = [1] * (n_win * n_det * n_views)
    ds.NumberOfRotations = 1
    ds.AngularViewVector = [int(x) + 1 for x in v.ravel()]

    # Energy windows.
    ew_items = []
    for name, lower, upper in windows:
        item = Dataset()
        rng = Dataset()
        rng.EnergyWindowLowerLimit = ds_value(lower)
        rng.EnergyWindowUpperLimit = ds_value(upper)
        item.EnergyWindowRangeSequence = DicomSequence([rng])
        item.EnergyWindowName = name
        ew_items.append(item)
    ds.EnergyWindowInformationSequence = DicomSequence(ew_items)

    # Radial positions per detector.
    if np.ndim(radial_positions) == 0:
        radial = [[float(radial_positions)] for _ in range(n_det)]
    else:
        radial = [np.atleast_1d(np.asarray(r, dtype=float)).tolist() for r in radial_positions]

    det_items = []
    for det in range(n_det):
        item = Dataset()
        if start_angle_in == "detector":
            item.StartAngle = ds_value(start_angles_deg[det])
        if cor_offsets_mm is not None:
            item.CenterOfRotationOffset = ds_value(cor_offsets_mm[det])
        if radial_in == "detector":
            item.RadialPosition = _ds_list(radial[det])
        if detector_image_position is not None:
            item.ImagePositionPatient = _ds_list(detector_image_position)
        if detector_image_orientation is not None:
            item.ImageOrientationPatient = _ds_list(detector_image_orientation)
        det_items.append(item)
    ds.DetectorInformationSequence = DicomSequence(det_items)

    rot = Dataset()
    rot.StartAngle = ds_value(start_angles_deg[0])
    rot.AngularStep = ds_value(angular_step_deg)
    rot.RotationDirection = direction
    rot.ScanArc = ds_value(angular_step_deg * n_views)
    rot.ActualFrameDuration = int(round(frame_duration_ms))
    rot.NumberOfFramesInRotation = n_views
    if radial_in == "rotation":
        rot.RadialPosition = _ds_list(radial[0])
    ds.RotationInformationSequence = DicomSequence([rot])

    # Isotope.
    pharm = Dataset()
    if radionuclide_code_meaning is not None:
        code = Dataset()
        code.CodeValue = "C-163A8"
        code.CodingSchemeDesignator = "SRT"
        code.CodeMeaning = radionuclide_code_meaning
        pharm.RadionuclideCodeSequence = DicomSequence([code])
    if radiopharmaceutical is not None:
        pharm.Radiopharmaceutical = radiopharmaceutical
    if total_dose is not None:
        pharm.RadionuclideTotalDose = ds_value(total_dose)
    if injection_time is not None:
        pharm.RadiopharmaceuticalStartTime = injection_time
    if injection_datetime is not None:
        pharm.RadiopharmaceuticalStartDateTime = injection_datetime
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([pharm])

    data = np.ascontiguousarray(frames.reshape(n_win * n_det * n_views, rows, cols))
    if np.any(data < 0) or np.any(data != np.round(data)):
        raise ValueError("NM frames hold non-negative integer counts")
    ds.PixelData = data.astype(pixel_dtype).tobytes()
    return ds


def ct_series(
    hu: np.ndarray,
    *,
    pixel_spacing: tuple[float, float],
    first_position: Sequence[float],
    slice_spacing: float,
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    kvp: float | None = 120.0,
    frame_of_reference_uid: str | None = None,
    series_instance_uid: str | None = None,
    rescale: tuple[float, float] = (1.0, -1024.0),
) -> list[Dataset]:
    """CT Image Storage slices of a HU volume.

    Parameters
    ----------
    hu : ndarray of shape (slice, row, column)
        CT numbers.
    pixel_spacing : (float, float)
        Row spacing (along the column direction) and column spacing, mm.
    first_position : (x, y, z)
        Image Position (Patient) of slice 0, mm.
    slice_spacing : float
        Signed distance between slices along ``row × column`` direction cosines (negative for
        slices stored against the normal).
    orientation : 6 floats
        Image Orientation (Patient): row direction, then column direction.
    rescale : (slope, intercept)
        Rescale Slope and Intercept; stored values are ``(hu − intercept) / slope`` (int16).
    """
    hu = np.asarray(hu, dtype=np.float64)
    row_dir = np.asarray(orientation[:3], dtype=float)
    col_dir = np.asarray(orientation[3:], dtype=float)
    normal = np.cross(row_dir, col_dir)
    frame_uid = frame_of_reference_uid or generate_uid()
    series_uid = series_instance_uid or generate_uid()
    study_uid = generate_uid()
    slope, intercept = rescale
    out = []
    for k in range(hu.shape[0]):
        uid = generate_uid()
        ds = Dataset()
        ds.file_meta = _file_meta(CT_IMAGE_STORAGE, uid, ExplicitVRLittleEndian)
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.InstanceNumber = k + 1
        if kvp is not None:
            ds.KVP = ds_value(kvp)
        position = np.asarray(first_position, dtype=float) + k * slice_spacing * normal
        ds.ImagePositionPatient = _ds_list(position)
        ds.ImageOrientationPatient = _ds_list(orientation)
        ds.PixelSpacing = _ds_list(pixel_spacing)
        ds.SliceThickness = ds_value(abs(slice_spacing))
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = ds_value(slope)
        ds.RescaleIntercept = ds_value(intercept)
        stored = np.round((hu[k] - intercept) / slope).astype("<i2")
        ds.PixelData = stored.tobytes()
        out.append(ds)
    return out


def write_series(datasets: Sequence[Dataset], directory: str | Path) -> list[Path]:
    """Write each dataset to ``directory`` (named in reverse order, so listing order is not slice
    order) and return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n = len(datasets)
    return [save(ds, directory / f"ct_{n - k:04d}.dcm") for k, ds in enumerate(datasets)]
