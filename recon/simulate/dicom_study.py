"""Simulated acquisitions written as real files: DICOM NM TOMO projections and CT series.

The builders here describe arrays with the tags a scanner would write, so that a simulated study
goes through exactly the readers a clinical one does (DESIGN.md §5, level 5: the command line on
simulated acquisitions written as real files):

- :func:`nm_tomo_dataset`: an NM Image Storage TOMO dataset from frames already in the DICOM
  convention (head end in the first row; one frame per energy window, detector and view);
- :func:`ct_series`: CT Image Storage slices of a HU volume; :func:`mu_to_hu` makes the HU volume
  from an attenuation map (the inverse of :func:`recon.io.ct.hu_to_mu`);
- :func:`save` and :func:`write_series`: Part 10 files, written atomically;
- :func:`write_simulated_spect_study`: all of it at once. It projects an activity map with
  :class:`recon.SpectModel` (attenuation, collimator response, decay), adds scatter and Poisson
  noise in a photopeak and two triple-energy-window (TEW) scatter windows, and writes the NM file
  with a CT series in the same Frame of Reference.

Angles follow DESIGN.md §3a: the camera starts at DICOM angle 0° (the patient's back) and turns
clockwise (``CW``), so view ``k`` of detector ``h`` is at ``α = α0_h − k·Δ`` and at recon's
``θ = (180° − α) mod 360°``; rows are flipped so that the head end comes first.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

from recon._files import write_atomically
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.physics.attenuation import mu_to_hu
from recon.physics.radionuclide_codes import DICOM_RADIONUCLIDE_CODES

__all__ = [
    "CT_IMAGE_STORAGE",
    "NM_IMAGE_STORAGE",
    "ct_series",
    "nm_tomo_dataset",
    "save",
    "write_series",
    "write_simulated_spect_study",
]

#: SOP Class UID of NM Image Storage (PS3.4 B.5).
NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
#: SOP Class UID of CT Image Storage (PS3.4 B.5).
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

# Most counts a 16-bit NM frame can hold: NM Image Pixel Module allows Bits Allocated 8 or 16
# (PS3.3 C.8.4.7).
_UINT16_MAX = 65535
# Photopeak of 20 % around the main line, the usual clinical setting; TEW side windows of a tenth
# of its width each (2.8 keV at 140.5 keV, close to the 3 keV windows of Ogawa et al., IEEE Trans.
# Med. Imaging 10 (1991) 408-412).
_PEAK_WIDTH = 0.20
_SIDE_WIDTH = 0.1 * _PEAK_WIDTH
# Largest stored CT number: Rescale Intercept −1024 with signed 16-bit pixels.
_HU_MAX = 32767 - 1024


def _ds(value: float) -> DSfloat:
    """A DS value that fits the 16-character limit."""
    return DSfloat(float(value), auto_format=True)


def _ds_list(values: Iterable[float]) -> list[DSfloat]:
    return [_ds(v) for v in values]


def _file_meta(sop_class: str, sop_instance: str, syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(syntax)
    return meta


def save(ds: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` as a DICOM Part 10 file, atomically, and return the path.

    The file is written to a temporary name in the destination folder and renamed, so a reader
    never sees half a file. The folder must exist.
    """
    return write_atomically(Path(path), lambda handle: ds.save_as(handle, enforce_file_format=True))


#: Tc-99m's code, written by default with its legacy SNOMED-RT id as many scanners still do.
_TC99M = DICOM_RADIONUCLIDE_CODES["Tc-99m"]


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
    radionuclide_code_meaning: str | None = _TC99M.meaning,
    radionuclide_code_value: str = _TC99M.srt,
    radionuclide_coding_scheme: str = "SRT",
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
    study_instance_uid: str | None = None,
    patient_name: str = "Phantom^Point",
    patient_id: str = "PHANTOM",
    manufacturer: str = "recon test factory",
    series_description: str | None = None,
    dtype: str = "<u2",
) -> Dataset:
    """An NM Image Storage TOMO dataset holding ``frames``.

    Parameters
    ----------
    frames : ndarray of shape (window, detector, view, row, column)
        Counts as stored in DICOM: row 0 is the head end. Frames are written with the views
        varying fastest, then detectors, then windows (Frame Increment Pointer order).
    angular_step_deg : float
        Angular Step (positive), degrees.
    start_angles_deg : sequence of float
        Start Angle of each detector, degrees (DICOM: 0 at the patient's back, counter-clockwise
        seen from the feet).
    direction : str
        Rotation Direction, ``"CW"`` or ``"CC"``.
    pixel_spacing : (float, float)
        Pixel Spacing: (row spacing = axial, column spacing = transaxial), mm.
    frame_duration_ms : float
        Actual Frame Duration of every view, ms.
    radial_positions : float or sequence
        Radial Position in mm: one value for all, or per detector: one value or one per view.
    radial_in : {"detector", "rotation"}
        Where Radial Position goes (Detector or Rotation Information Sequence).
    start_angle_in : {"detector", "rotation"}
        ``"detector"``: each Detector Information item has its Start Angle (vendor practice) and
        the Rotation Information item has detector 1's; ``"rotation"``: only the rotation's.
    cor_offsets_mm : sequence of float, optional
        Center of Rotation Offset of each detector (DICOM sign convention), mm.
    windows : sequence of (name, lower keV, upper keV)
        Energy windows in file order; ``frames[i]`` belongs to ``windows[i]``.
    radionuclide_code_meaning, radionuclide_code_value, radionuclide_coding_scheme : str
        The Radionuclide Code Sequence item (CID 18); no item when the meaning is ``None``.
    radiopharmaceutical : str, optional
        Radiopharmaceutical name.
    total_dose : float, optional
        Radionuclide Total Dose in MBq (NM Isotope Module).
    injection_time, injection_datetime : str, optional
        Radiopharmaceutical Start Time (``HHMMSS``) and Start DateTime.
    acquisition_date, acquisition_time : str, optional
        ``YYYYMMDD`` and ``HHMMSS``.
    patient_position : str, optional
        Patient Position, e.g. ``"HFS"``.
    detector_image_position, detector_image_orientation : sequence of float, optional
        Image Position / Orientation (Patient) of every Detector Information item.
    frame_of_reference_uid, study_instance_uid : str, optional
        UIDs shared with other series (e.g. the CT); new ones by default.
    patient_name, patient_id, manufacturer, series_description : str
        Descriptive attributes.
    dtype : str
        Stored pixel type, ``"<u2"`` (default) or ``"<u1"``.

    Returns
    -------
    pydicom.Dataset
        With file meta information, ready for :func:`save`.

    Raises
    ------
    ValueError
        ``frames`` is not 5-D, does not match ``windows``/``start_angles_deg``, or holds negative
        or non-integer counts.
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
    ds.StudyInstanceUID = study_instance_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = frame_of_reference_uid or generate_uid()
    ds.Modality = "NM"
    ds.Manufacturer = manufacturer
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyDate = acquisition_date or "20240305"
    ds.StudyTime = "080000"
    if series_description is not None:
        ds.SeriesDescription = series_description
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
        rng.EnergyWindowLowerLimit = _ds(lower)
        rng.EnergyWindowUpperLimit = _ds(upper)
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
            item.StartAngle = _ds(start_angles_deg[det])
        if cor_offsets_mm is not None:
            item.CenterOfRotationOffset = _ds(cor_offsets_mm[det])
        if radial_in == "detector":
            item.RadialPosition = _ds_list(radial[det])
        if detector_image_position is not None:
            item.ImagePositionPatient = _ds_list(detector_image_position)
        if detector_image_orientation is not None:
            item.ImageOrientationPatient = _ds_list(detector_image_orientation)
        det_items.append(item)
    ds.DetectorInformationSequence = DicomSequence(det_items)

    rot = Dataset()
    rot.StartAngle = _ds(start_angles_deg[0])
    rot.AngularStep = _ds(angular_step_deg)
    rot.RotationDirection = direction
    rot.ScanArc = _ds(angular_step_deg * n_views)
    rot.ActualFrameDuration = int(round(frame_duration_ms))
    rot.NumberOfFramesInRotation = n_views
    if radial_in == "rotation":
        rot.RadialPosition = _ds_list(radial[0])
    ds.RotationInformationSequence = DicomSequence([rot])

    # Isotope.
    pharm = Dataset()
    if radionuclide_code_meaning is not None:
        code = Dataset()
        code.CodeValue = radionuclide_code_value
        code.CodingSchemeDesignator = radionuclide_coding_scheme
        code.CodeMeaning = radionuclide_code_meaning
        pharm.RadionuclideCodeSequence = DicomSequence([code])
    if radiopharmaceutical is not None:
        pharm.Radiopharmaceutical = radiopharmaceutical
    if total_dose is not None:
        pharm.RadionuclideTotalDose = _ds(total_dose)
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
    study_instance_uid: str | None = None,
    rescale: tuple[float, float] = (1.0, -1024.0),
    patient_name: str | None = None,
    patient_id: str | None = None,
    patient_position: str | None = None,
) -> list[Dataset]:
    """CT Image Storage slices of a HU volume.

    Parameters
    ----------
    hu : ndarray of shape (slice, row, column)
        CT numbers (Hounsfield units).
    pixel_spacing : (float, float)
        Row spacing (along the column direction) and column spacing, mm.
    first_position : (x, y, z)
        Image Position (Patient) of slice 0, mm.
    slice_spacing : float
        Signed distance between slices along ``row × column`` direction cosines (negative for
        slices stored against the normal), mm.
    orientation : 6 floats
        Image Orientation (Patient): row direction, then column direction.
    kvp : float, optional
        KVP (tube voltage); ``None`` leaves it out.
    frame_of_reference_uid, series_instance_uid, study_instance_uid : str, optional
        UIDs; new ones by default. Share the Frame of Reference with the emission data.
    rescale : (slope, intercept)
        Rescale Slope and Intercept; stored values are ``(hu − intercept) / slope`` (int16).
    patient_name, patient_id, patient_position : str, optional
        Written when given.

    Returns
    -------
    list of pydicom.Dataset
        One per slice, in ``hu`` order, with Instance Numbers 1, 2, ...
    """
    hu = np.asarray(hu, dtype=np.float64)
    row_dir = np.asarray(orientation[:3], dtype=float)
    col_dir = np.asarray(orientation[3:], dtype=float)
    normal = np.cross(row_dir, col_dir)
    frame_uid = frame_of_reference_uid or generate_uid()
    series_uid = series_instance_uid or generate_uid()
    study_uid = study_instance_uid or generate_uid()
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
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        if patient_name is not None:
            ds.PatientName = patient_name
        if patient_id is not None:
            ds.PatientID = patient_id
        if patient_position is not None:
            ds.PatientPosition = patient_position
        ds.InstanceNumber = k + 1
        if kvp is not None:
            ds.KVP = _ds(kvp)
        position = np.asarray(first_position, dtype=float) + k * slice_spacing * normal
        ds.ImagePositionPatient = _ds_list(position)
        ds.ImageOrientationPatient = _ds_list(orientation)
        ds.PixelSpacing = _ds_list(pixel_spacing)
        ds.SliceThickness = _ds(abs(slice_spacing))
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
        stored = np.round((hu[k] - intercept) / slope).astype("<i2")
        ds.PixelData = stored.tobytes()
        out.append(ds)
    return out


def write_series(
    datasets: Sequence[Dataset],
    directory: str | os.PathLike[str],
    *,
    prefix: str = "ct",
    reverse_names: bool = False,
) -> list[Path]:
    """Write each dataset to ``directory`` as ``{prefix}_0001.dcm``, ... and return the paths.

    Parameters
    ----------
    datasets : sequence of pydicom.Dataset
        E.g. from :func:`ct_series`.
    directory : path
        Created when missing. Each file is written atomically.
    prefix : str
        File name prefix.
    reverse_names : bool
        Number the files backwards (the first dataset gets the highest number), so that listing
        order is not slice order; tests of series sorting use it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n = len(datasets)
    paths = []
    for k, ds in enumerate(datasets):
        number = n - k if reverse_names else k + 1
        paths.append(save(ds, directory / f"{prefix}_{number:04d}.dcm"))
    return paths


def _windows(energy_kev: float) -> list[tuple[str, float, float]]:
    lo = energy_kev * (1.0 - _PEAK_WIDTH / 2)
    hi = energy_kev * (1.0 + _PEAK_WIDTH / 2)
    side = energy_kev * _SIDE_WIDTH
    return [("PEAK", lo, hi), ("SC_LOW", lo - side, lo), ("SC_UP", hi, hi + side)]


def _check_target(folder: Path, nm_path: Path, ct_dir: Path, overwrite: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if overwrite:
        if ct_dir.is_dir():
            for old in ct_dir.glob("*.dcm"):
                old.unlink()
        return
    if nm_path.exists() or (ct_dir.exists() and any(ct_dir.iterdir())):
        raise InputError(
            f"{folder} already holds a study ({nm_path.name} or {ct_dir.name}/); "
            "pass overwrite=True or choose an empty folder"
        )


def write_simulated_spect_study(
    folder: str | os.PathLike[str],
    activity: Any,
    mu: Any,
    grid: ImageGrid,
    *,
    isotope: str = "Tc-99m",
    n_views: int = 60,
    n_heads: int = 1,
    time_per_view_s: float = 20.0,
    radius_mm: float = 250.0,
    collimator: Any = "auto",
    sensitivity_cps_per_mbq: float = 90.0,
    scatter_fraction: float = 0.3,
    scatter_blur_mm: float = 30.0,
    mu_water_per_mm: float | None = None,
    kvp: float = 120.0,
    acquisition_datetime: _dt.datetime = _dt.datetime(2024, 3, 5, 11, 0, 0),
    injection_before_s: float | None = 3600.0,
    seed: int | None = 0,
    noise: bool = True,
    device: str | None = None,
    overwrite: bool = False,
    nm_name: str = "nm.dcm",
    ct_name: str = "ct",
) -> tuple[Path, Path]:
    """Simulate a SPECT/CT acquisition of ``activity`` and write it as DICOM NM and CT files.

    Simulation: :class:`recon.SpectModel` projects ``activity`` (Bq/mL at the acquisition start)
    with attenuation by ``mu``, the collimator-detector response and decay during the views; the
    planar sensitivity turns it into expected primary counts. Photopeak scatter is a broad blur
    (Gaussian, ``scatter_blur_mm`` sigma) of the primary with ``scatter_fraction`` of its counts.
    Its spectrum is taken to fall linearly to zero at the top of the photopeak, so the lower TEW
    window holds ``2·S·w_low/w_peak`` and the upper one nothing: the TEW estimate is then unbiased.
    All three windows get Poisson noise (unless ``noise=False``).

    Files: ``folder/nm_name``, one NM TOMO file with the three windows (``PEAK``, a 20 % window at
    the isotope's main photon line, and ``SC_LOW``/``SC_UP``, 2 % of that energy each), camera
    start at DICOM angle 0° (the patient's back), clockwise, head end in the first row, Patient
    Position HFS; ``folder/ct_name/``, a CT series on ``grid`` (one slice per image plane, HU from
    ``mu`` by :func:`mu_to_hu`: water 0, lung −700, air −1000) in the same Study and Frame of
    Reference. Each file is written atomically.

    Parameters
    ----------
    folder : path
        Created when missing.
    activity : ndarray of shape grid.shape
        Activity concentration in Bq/mL at the start of the acquisition.
    mu : ndarray of shape grid.shape
        Linear attenuation coefficients in 1/mm at the isotope's main photon energy.
    grid : ImageGrid
        The grid of ``activity`` and ``mu``; square transverse voxels. The projections sample it:
        ``n_v = nz`` rows of ``dz`` mm and ``n_u = nx`` columns of ``dx`` mm, centred on the
        rotation axis (world x = y = 0) and on the grid axially. Reconstructing the NM file with
        ``recon spect`` then uses this very grid when it is centred transversally.
    isotope : str
        Radionuclide (sets the photopeak, the decay and the DICOM radionuclide code).
    n_views, n_heads : int
        Views over 360° in all, acquired by ``n_heads`` detectors spaced evenly (``n_views`` must
        be a multiple of ``n_heads``).
    time_per_view_s : float
        Duration of each view, s.
    radius_mm : float
        Distance of the collimator face from the axis, mm.
    collimator : str, Collimator or None
        Preset name, a :class:`recon.Collimator`, ``None`` (no response) or ``"auto"``: LEHR below
        200 keV, ME below 300 keV, HE above (as ``recon spect`` chooses).
    sensitivity_cps_per_mbq : float
        Planar sensitivity; reconstruct with the same value (``recon spect --sensitivity``) to get
        images in Bq/mL.
    scatter_fraction : float
        Scatter-to-primary ratio in the photopeak.
    scatter_blur_mm : float
        Sigma of the scatter blur, mm.
    mu_water_per_mm : float, optional
        μ of water in ``mu``, so that water is written as 0 HU (see :func:`mu_to_hu`).
    kvp : float
        CT tube voltage written to the series and used by :func:`mu_to_hu`.
    acquisition_datetime : datetime
        Start of the acquisition (naive, local time).
    injection_before_s : float, optional
        Injection this long before the acquisition; the injected activity written is the total
        activity of the phantom decayed back to then. ``None``: no injection information.
    seed : int, optional
        Seed of the Poisson noise.
    noise : bool
        ``False``: write the expected counts rounded to integers instead of Poisson samples.
    device : {"auto", "cpu", "gpu"}, optional
        Where to project.
    overwrite : bool
        Replace a study already in ``folder`` (its CT slices are removed first). Without it an
        existing study raises.
    nm_name, ct_name : str
        File name of the NM file and folder name of the CT series.

    Returns
    -------
    nm_path : Path
        The NM file.
    ct_dir : Path
        The folder of the CT series.

    Raises
    ------
    InputError
        Arrays not of the grid's shape, negative activity, counts that do not fit 16-bit frames
        (lower the activity, ``time_per_view_s`` or the sensitivity), or a study already in
        ``folder``.
    GeometryError
        Non-square transverse voxels or ``n_views`` not a multiple of ``n_heads``.
    """
    from scipy import ndimage

    from recon.physics.isotopes import get_isotope
    from recon.spect import Collimator, SpectGeometry, SpectModel

    if not isinstance(grid, ImageGrid):
        raise GeometryError("grid must be an ImageGrid")
    activity = np.asarray(activity, dtype=np.float32)
    mu = np.asarray(mu, dtype=np.float32)
    for name, array in (("activity", activity), ("mu", mu)):
        if array.shape != grid.shape:
            raise InputError(f"{name} has shape {array.shape}, the grid {grid.shape}")
        if not np.all(np.isfinite(array)) or np.any(array < 0):
            raise InputError(f"{name} must be finite and non-negative")
    n_views, n_heads = int(n_views), int(n_heads)
    if n_heads < 1 or n_views < 1 or n_views % n_heads:
        raise GeometryError(f"n_views ({n_views}) must be a multiple of n_heads ({n_heads})")
    if not scatter_fraction >= 0:
        raise InputError(f"scatter_fraction must be >= 0, got {scatter_fraction!r}")
    iso = get_isotope(isotope)
    energy = iso.main_photon.energy_kev
    if collimator == "auto":
        collimator = "LEHR" if energy < 200 else ("ME" if energy < 300 else "HE")
    if isinstance(collimator, str):
        collimator = Collimator.preset(collimator)

    folder = Path(folder)
    nm_path, ct_dir = folder / nm_name, folder / ct_name
    _check_target(folder, nm_path, ct_dir, overwrite)

    # Views head by head, as the reader orders them: α = α0_h − k·Δ (CW), θ = (180° − α) mod 360°.
    per_head = n_views // n_heads
    step = 360.0 / n_views
    head_starts = [float(np.mod(-h * 360.0 / n_heads, 360.0)) for h in range(n_heads)]
    k = np.arange(per_head)
    alpha = np.concatenate([start - k * step for start in head_starts])
    dz, _, dx = grid.voxel_size_mm
    nz, _, nx = grid.shape
    axial_offset = grid.origin[0] + (nz - 1) / 2.0 * dz
    geometry = SpectGeometry(
        angles_deg=np.mod(180.0 - alpha, 360.0), radii_mm=float(radius_mm), n_u=nx, n_v=nz,
        pixel_size_mm=(dz, dx), start_times_s=np.tile(k * float(time_per_view_s), n_heads),
        durations_s=np.full(n_views, float(time_per_view_s)), axial_offset_mm=axial_offset,
    )  # fmt: skip
    model = SpectModel(
        geometry, grid, mu_map=mu, collimator=collimator, isotope=iso.name,
        sensitivity_cps_per_mbq=sensitivity_cps_per_mbq, device=device,
    )  # fmt: skip
    primary = np.asarray(model.backend.to_host(model.forward(activity)), np.float64)
    sigma = (0.0, scatter_blur_mm / dz, scatter_blur_mm / dx)
    blurred = ndimage.gaussian_filter(primary, sigma=sigma, mode="constant")
    scatter = scatter_fraction * blurred * primary.sum() / max(float(blurred.sum()), 1e-30)
    windows = _windows(energy)
    widths = [upper - lower for _, lower, upper in windows]
    expected = np.stack([primary + scatter, 2.0 * scatter * widths[1] / widths[0]])
    rng = np.random.default_rng(seed)
    counts = rng.poisson(expected) if noise else np.rint(expected).astype(np.int64)
    if counts.max() > _UINT16_MAX:
        raise InputError(
            f"the simulated frames reach {counts.max()} counts in a pixel, more than 16-bit NM "
            f"frames hold ({_UINT16_MAX}); lower the activity, time_per_view_s or "
            "sensitivity_cps_per_mbq"
        )
    counts = np.concatenate([counts, np.zeros_like(counts[:1])])  # upper window: no scatter
    # (window, view, v, u) -> (window, detector, view, row, column), head end in the first row.
    frames = counts.reshape(3, n_heads, per_head, nz, nx)[:, :, :, ::-1, :].astype(np.uint16)

    study_uid = generate_uid()
    frame_uid = generate_uid()
    code = DICOM_RADIONUCLIDE_CODES.get(iso.name)
    injection: dict[str, Any] = {"total_dose": None, "injection_time": None}
    if injection_before_s is not None:
        injected_at = acquisition_datetime - _dt.timedelta(seconds=float(injection_before_s))
        total_bq = float(activity.sum(dtype=np.float64)) * float(np.prod(grid.voxel_size_mm))
        total_bq *= 1e-3  # Bq/mL × mm³: 1 mL = 1000 mm³
        total_bq *= math.exp(math.log(2.0) * float(injection_before_s) / iso.half_life_s)
        injection = {
            "total_dose": total_bq / 1e6,  # MBq in the NM Isotope Module
            "injection_time": injected_at.strftime("%H%M%S"),
            "injection_datetime": injected_at.strftime("%Y%m%d%H%M%S"),
        }
    # Image Position / Orientation of the first view's detector: rows along −z (head end first),
    # columns along t(θ0); the first pixel on the collimator face.
    theta0 = math.radians(float(geometry.angles_deg[0]))
    t0 = np.array([math.cos(theta0), math.sin(theta0), 0.0])
    d0 = np.array([math.sin(theta0), -math.cos(theta0), 0.0])
    first = -(nx - 1) / 2.0 * dx * t0 + float(radius_mm) * d0
    first[2] = axial_offset + (nz - 1) / 2.0 * dz
    nm = nm_tomo_dataset(
        frames, angular_step_deg=step, start_angles_deg=head_starts, direction="CW",
        pixel_spacing=(dz, dx), frame_duration_ms=1000.0 * float(time_per_view_s),
        radial_positions=float(radius_mm), windows=windows,
        radionuclide_code_meaning=None if code is None else code.meaning,
        radionuclide_code_value="" if code is None else code.sct,
        radionuclide_coding_scheme="" if code is None else "SCT",
        radiopharmaceutical=f"{iso.name} (simulated)",
        acquisition_date=acquisition_datetime.strftime("%Y%m%d"),
        acquisition_time=acquisition_datetime.strftime("%H%M%S"),
        patient_position="HFS", detector_image_position=[float(v) for v in first],
        detector_image_orientation=[*t0.tolist(), 0.0, 0.0, -1.0],
        frame_of_reference_uid=frame_uid, study_instance_uid=study_uid,
        patient_name="Phantom^Simulated", patient_id="SIMULATED", manufacturer="recon (simulated)",
        series_description=f"simulated {iso.name} SPECT", **injection,
    )  # fmt: skip
    save(nm, nm_path)

    hu = mu_to_hu(mu, energy, kvp, mu_water_per_mm)
    z0, y0, x0 = grid.origin
    slices = ct_series(
        hu, pixel_spacing=(grid.voxel_size_mm[1], dx), first_position=(x0, y0, z0),
        slice_spacing=dz, kvp=kvp, frame_of_reference_uid=frame_uid, study_instance_uid=study_uid,
        patient_name="Phantom^Simulated", patient_id="SIMULATED", patient_position="HFS",
    )  # fmt: skip
    write_series(slices, ct_dir)
    return nm_path, ct_dir
