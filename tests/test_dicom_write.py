"""DICOM export: NM RECON TOMO and PET Image Storage tags, geometry, values, decay, validation."""

from __future__ import annotations

import math
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from recon.errors import InputError, PhysicsError
from recon.grid import ImageGrid
from recon.image import Image
from recon.io import dicom_write
from recon.io.dicom_write import (
    NM_IMAGE_STORAGE,
    PET_IMAGE_STORAGE,
    RADIONUCLIDE_CODES,
    write_dicom,
)
from recon.physics.decay import decay_correction_factor, mean_activity_fraction
from recon.physics.isotopes import get_isotope
from tests.dicom_factory import asymmetric_grid, reconstruction

BRIGHT = (3, 1, 5)  # (z, y, x) index of the hot voxel: off-centre on every axis
ACQ = datetime(2024, 5, 6, 10, 30, 0)
F18 = get_isotope("F-18")
LAMBDA = math.log(2.0) / F18.half_life_s


@pytest.fixture
def grid() -> ImageGrid:
    return asymmetric_grid()


def _image(
    grid: ImageGrid,
    *,
    units: str = "Bq/mL",
    isotope: str | None = "F-18",
    reference_time_s: float | None = 0.0,
    start_s: float | None = 0.0,
    duration_s: float | None = 600.0,
    scale: float = 1000.0,
    seed: int = 0,
) -> Image:
    info: dict = {"algorithm": "OSEM", "iterations": 4, "subsets": 8}
    if start_s is not None:
        info.update(frame_start_s=start_s, frame_duration_s=duration_s)
    return reconstruction(
        grid, BRIGHT, units=units, isotope=isotope, reference_time_s=reference_time_s,
        info=info, scale=scale, seed=seed,
    )  # fmt: skip


def _world(ipp, iop, spacing_rc, slice_step, index_zyx) -> np.ndarray:
    """World (x, y, z) of voxel (slice, row, column) from DICOM geometry."""
    row_dir = np.asarray(iop[:3], dtype=float)  # direction of increasing column index
    col_dir = np.asarray(iop[3:], dtype=float)  # direction of increasing row index
    normal = np.cross(row_dir, col_dir)
    k, j, i = index_zyx
    return (
        np.asarray(ipp, dtype=float)
        + i * float(spacing_rc[1]) * row_dir
        + j * float(spacing_rc[0]) * col_dir
        + k * slice_step * normal
    )


def _read_nm(path: Path) -> tuple[pydicom.Dataset, np.ndarray]:
    ds = pydicom.dcmread(path)
    return ds, ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope)


def _read_pet(folder: Path) -> tuple[list[pydicom.Dataset], np.ndarray]:
    datasets = sorted(
        (pydicom.dcmread(p) for p in folder.iterdir()), key=lambda d: int(d.ImageIndex)
    )
    volume = np.stack([d.pixel_array * float(d.RescaleSlope) for d in datasets])
    return datasets, volume


# ---- NM -----------------------------------------------------------------------------------------


def test_nm_recon_tomo_tags_geometry_and_values(tmp_path, grid):
    image = _image(grid)
    files = write_dicom(image, tmp_path / "nm", "NM", acquisition_datetime=ACQ)
    assert len(files) == 1 and files[0].parent == tmp_path / "nm"
    ds, volume = _read_nm(files[0])

    assert ds.SOPClassUID == NM_IMAGE_STORAGE
    assert ds.file_meta.MediaStorageSOPClassUID == NM_IMAGE_STORAGE
    assert ds.Modality == "NM"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    assert int(ds.NumberOfFrames) == int(ds.NumberOfSlices) == grid.shape[0]
    assert list(ds.SliceVector) == list(range(1, grid.shape[0] + 1))
    assert ds.FrameIncrementPointer == pydicom.tag.Tag(0x0054, 0x0080)
    assert (ds.Rows, ds.Columns) == grid.shape[1:]
    assert [float(v) for v in ds.PixelSpacing] == [2.5, 2.0]  # [row spacing y, column spacing x]
    assert float(ds.SpacingBetweenSlices) == float(ds.SliceThickness) == 3.0
    detector = ds.DetectorInformationSequence[0]
    assert [float(v) for v in detector.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    np.testing.assert_allclose(
        [float(v) for v in detector.ImagePositionPatient], grid.index_to_world(np.zeros(3))
    )
    mapping = ds.RealWorldValueMappingSequence[0]
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "Bq/ml"
    assert mapping.RealWorldValueSlope == pytest.approx(float(ds.RescaleSlope))
    assert ds.CorrectedImage == "DECY"
    code = ds.RadiopharmaceuticalInformationSequence[0].RadionuclideCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        "77004003", "SCT", "^18^Fluorine",
    )  # fmt: skip

    # Values within the uint16 quantisation, and the hot voxel where the grid puts it.
    expected = np.asarray(image, dtype=np.float64)
    assert volume.shape == grid.shape
    np.testing.assert_allclose(volume, expected, rtol=0, atol=1e-4 * expected.max())
    hot = np.unravel_index(np.argmax(volume), volume.shape)
    assert hot == BRIGHT
    world = _world(
        detector.ImagePositionPatient, detector.ImageOrientationPatient, ds.PixelSpacing,
        float(ds.SpacingBetweenSlices), hot,
    )  # fmt: skip
    np.testing.assert_allclose(world, grid.index_to_world(np.array(BRIGHT)), atol=1e-6)


# ---- PET ----------------------------------------------------------------------------------------


def test_pet_tags_geometry_and_values(tmp_path, grid):
    image = _image(grid, start_s=0.0, duration_s=600.0)
    for_uid = str(generate_uid())
    injection = {
        "activity_bq": 3.7e8,
        "datetime": ACQ - timedelta(minutes=60),
        "radiopharmaceutical": "Fluorodeoxyglucose",
    }
    files = write_dicom(
        image, tmp_path / "pet", "PT", acquisition_datetime=ACQ, frame_of_reference_uid=for_uid,
        injection=injection, patient={"name": "Test^Patient", "id": "P1", "weight_kg": 70},
    )  # fmt: skip
    assert len(files) == grid.shape[0]
    datasets, volume = _read_pet(tmp_path / "pet")

    for k, ds in enumerate(datasets):
        assert ds.SOPClassUID == PET_IMAGE_STORAGE
        assert ds.Modality == "PT"
        assert ds.Units == "BQML"
        assert ds.DecayCorrection == "START"
        assert list(ds.SeriesType) == ["STATIC", "IMAGE"]
        assert int(ds.NumberOfSlices) == grid.shape[0]
        assert int(ds.ImageIndex) == int(ds.InstanceNumber) == k + 1
        assert ds.FrameOfReferenceUID == for_uid
        assert ds.SeriesDate == "20240506" and ds.SeriesTime.startswith("103000")
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (
            16, 16, 15, 0,
        )  # fmt: skip
        assert float(ds.RescaleIntercept) == 0.0
        # The slope is per slice: each slice uses the full uint16 range.
        assert int(ds.pixel_array.max()) == 65535
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert [float(v) for v in ds.PixelSpacing] == [2.5, 2.0]
        assert float(ds.SliceThickness) == 3.0
        np.testing.assert_allclose(
            [float(v) for v in ds.ImagePositionPatient], grid.index_to_world(np.array([k, 0, 0]))
        )
        assert int(ds.ActualFrameDuration) == 600_000
        # Decay Factor for START: activity at the acquisition start from the frame's counts.
        assert float(ds.DecayFactor) == pytest.approx(
            decay_correction_factor(F18.half_life_s, 0.0, 600.0, 0.0), rel=1e-9
        )
        assert str(ds.PatientName) == "Test^Patient" and float(ds.PatientWeight) == 70.0
    drug = datasets[0].RadiopharmaceuticalInformationSequence[0]
    assert drug.RadionuclideCodeSequence[0].CodeValue == "77004003"
    assert float(drug.RadionuclideTotalDose) == pytest.approx(3.7e8)
    assert float(drug.RadionuclideHalfLife) == pytest.approx(F18.half_life_s)
    assert drug.RadiopharmaceuticalStartDateTime.startswith("20240506093000")
    assert drug.Radiopharmaceutical == "Fluorodeoxyglucose"

    expected = np.asarray(image, dtype=np.float64)
    np.testing.assert_allclose(volume, expected, rtol=0, atol=1e-4 * expected.max())
    hot = np.unravel_index(np.argmax(volume), volume.shape)
    assert hot == BRIGHT
    ds = datasets[hot[0]]
    world = _world(ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing, 0.0, hot)
    np.testing.assert_allclose(world, grid.index_to_world(np.array(BRIGHT)), atol=1e-6)


def test_uids_are_new_and_unique_and_frame_of_reference_is_new_by_default(tmp_path, grid):
    write_dicom(_image(grid), tmp_path / "a", "PT", acquisition_datetime=ACQ)
    write_dicom(_image(grid), tmp_path / "b", "PT", acquisition_datetime=ACQ)
    a, _ = _read_pet(tmp_path / "a")
    b, _ = _read_pet(tmp_path / "b")
    sop = [d.SOPInstanceUID for d in a + b]
    assert len(set(sop)) == len(sop)
    assert len({d.SeriesInstanceUID for d in a}) == 1
    assert a[0].SeriesInstanceUID != b[0].SeriesInstanceUID
    assert a[0].FrameOfReferenceUID != b[0].FrameOfReferenceUID
    for d in a:
        assert pydicom.uid.UID(d.SOPInstanceUID).is_valid
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID


def test_patient_study_and_frame_of_reference_come_from_a_source_dataset(tmp_path, grid):
    source = pydicom.Dataset()
    source.PatientName = "Doe^Jane"
    source.PatientID = "ID42"
    source.PatientSex = "F"
    source.PatientWeight = "61.5"
    source.StudyInstanceUID = str(generate_uid())
    source.SeriesInstanceUID = str(generate_uid())
    source.SOPInstanceUID = str(generate_uid())
    source.SOPClassUID = NM_IMAGE_STORAGE
    source.FrameOfReferenceUID = str(generate_uid())
    source.AcquisitionDate = "20240102"
    source.AcquisitionTime = "081500"
    source.Modality = "NM"
    source_path = tmp_path / "projections.dcm"
    with open(source_path, "wb") as handle:
        dicom_write._save(source, handle)  # a Part 10 file with either pydicom 2 or 3
    source = pydicom.dcmread(source_path)

    files = write_dicom(_image(grid), tmp_path / "recon", "NM", patient=source)
    ds = pydicom.dcmread(files[0])
    assert str(ds.PatientName) == "Doe^Jane" and ds.PatientID == "ID42"
    assert float(ds.PatientWeight) == 61.5
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.SOPInstanceUID != source.SOPInstanceUID
    assert (ds.AcquisitionDate, ds.AcquisitionTime[:6]) == ("20240102", "081500")

    # The source file itself is never a target.
    before = source_path.read_bytes()
    with pytest.raises(InputError, match="input"):
        write_dicom(_image(grid), source_path, "NM", patient=source)
    assert source_path.read_bytes() == before


# ---- decay --------------------------------------------------------------------------------------


def test_start_rescales_to_acquisition_start_and_frame_reference_time_is_consistent(tmp_path, grid):
    # The image holds activities at 90 s after the start; START files hold them at the start.
    image = _image(grid, reference_time_s=90.0, start_s=30.0, duration_s=300.0)
    write_dicom(image, tmp_path / "pet", "PT", acquisition_datetime=ACQ, decay_correction="START")
    datasets, volume = _read_pet(tmp_path / "pet")
    expected = np.asarray(image, dtype=np.float64) * math.exp(LAMBDA * 90.0)
    np.testing.assert_allclose(volume, expected, rtol=0, atol=1e-4 * expected.max())
    ds = datasets[0]
    assert ds.AcquisitionTime.startswith("103030")  # frame start = series time + 30 s
    # PS3.3 C.8.9.1.1.5: the reference time follows from Decay Factor and Frame Reference Time.
    ref_s = float(ds.FrameReferenceTime) / 1000.0 - math.log(float(ds.DecayFactor)) / LAMBDA
    assert ref_s == pytest.approx(0.0, abs=1e-3)
    # Frame Reference Time: when the frame's mean activity occurs (C.8.9.4.1.5, example 2).
    t_ave = math.log(LAMBDA * 300.0 / -math.expm1(-LAMBDA * 300.0)) / LAMBDA
    assert float(ds.FrameReferenceTime) == pytest.approx(1000.0 * (30.0 + t_ave), abs=1e-3)


def test_admin_rescales_to_injection_time(tmp_path, grid):
    injected = ACQ - timedelta(minutes=45)
    image = _image(grid, reference_time_s=0.0, start_s=0.0, duration_s=600.0)
    write_dicom(
        image, tmp_path / "pet", "PT", acquisition_datetime=ACQ, decay_correction="ADMIN",
        injection={"datetime": injected, "activity_bq": 2e8},
    )  # fmt: skip
    datasets, volume = _read_pet(tmp_path / "pet")
    assert datasets[0].DecayCorrection == "ADMIN"
    expected = np.asarray(image, dtype=np.float64) * math.exp(LAMBDA * 45 * 60)
    np.testing.assert_allclose(volume, expected, rtol=0, atol=1e-4 * expected.max())
    ds = datasets[0]
    ref_s = float(ds.FrameReferenceTime) / 1000.0 - math.log(float(ds.DecayFactor)) / LAMBDA
    assert ref_s == pytest.approx(-45 * 60, abs=1e-2)


def test_none_gives_the_mean_activity_during_the_frame(tmp_path, grid):
    image = _image(grid, reference_time_s=0.0, start_s=120.0, duration_s=600.0)
    write_dicom(image, tmp_path / "pet", "PT", acquisition_datetime=ACQ, decay_correction="NONE")
    datasets, volume = _read_pet(tmp_path / "pet")
    assert datasets[0].DecayCorrection == "NONE"
    assert "DecayFactor" not in datasets[0]
    fraction = mean_activity_fraction(F18.half_life_s, 120.0, 600.0, 0.0)
    expected = np.asarray(image, dtype=np.float64) * fraction
    np.testing.assert_allclose(volume, expected, rtol=0, atol=1e-4 * expected.max())


def test_uncalibrated_image_without_decay_correction(tmp_path, grid):
    image = _image(
        grid, units="counts/s (uncalibrated)", isotope=None, reference_time_s=None,
        start_s=None, duration_s=None,
    )  # fmt: skip
    write_dicom(image, tmp_path / "pet", "PT", acquisition_datetime=ACQ)
    datasets, volume = _read_pet(tmp_path / "pet")
    assert datasets[0].Units == "PROPCPS"
    assert datasets[0].DecayCorrection == "NONE"
    assert len(datasets[0].RadiopharmaceuticalInformationSequence) == 0
    expected = np.asarray(image, dtype=np.float64)
    np.testing.assert_allclose(volume, expected, rtol=0, atol=1e-4 * expected.max())

    files = write_dicom(image, tmp_path / "nm", "NM", acquisition_datetime=ACQ)
    ds = pydicom.dcmread(files[0])
    unit = ds.RealWorldValueMappingSequence[0].MeasurementUnitsCodeSequence[0]
    assert unit.CodeValue == "{propcounts}/s" and "CorrectedImage" not in ds


# ---- dynamic PET --------------------------------------------------------------------------------


def test_dynamic_pet_frames(tmp_path, grid):
    timing = [(0.0, 60.0), (60.0, 120.0), (180.0, 300.0)]
    frames = [
        _image(grid, start_s=None, scale=1000.0 * (n + 1), seed=n) for n in range(len(timing))
    ]
    files = write_dicom(frames, tmp_path / "dyn", "PT", acquisition_datetime=ACQ, frames=timing)
    nz = grid.shape[0]
    assert len(files) == nz * len(timing)
    datasets, volume = _read_pet(tmp_path / "dyn")
    assert [int(d.ImageIndex) for d in datasets] == list(range(1, nz * len(timing) + 1))
    for d in datasets:
        assert list(d.SeriesType) == ["DYNAMIC", "IMAGE"]
        assert int(d.NumberOfTimeSlices) == len(timing)
    reference_times = []
    for t, (start, duration) in enumerate(timing):
        block = datasets[t * nz : (t + 1) * nz]
        # PS3.3 C.8.9.4.1.9: Image Index = (time slice − 1) · slices + slice, slices along +z.
        z = [float(d.ImagePositionPatient[2]) for d in block]
        np.testing.assert_allclose(z, grid.axis_mm(0))
        assert {int(d.ActualFrameDuration) for d in block} == {int(duration * 1000)}
        assert {d.AcquisitionTime[:6] for d in block} == {
            (ACQ + timedelta(seconds=start)).strftime("%H%M%S")
        }
        assert float(block[0].DecayFactor) == pytest.approx(
            decay_correction_factor(F18.half_life_s, start, duration, 0.0), rel=1e-9
        )
        reference_times.append(float(block[0].FrameReferenceTime))
        expected = np.asarray(frames[t], dtype=np.float64)
        got = volume[t * nz : (t + 1) * nz]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * expected.max())
    assert reference_times == sorted(reference_times)


def test_time_zone_aware_datetimes_keep_their_offset(tmp_path, grid):
    zone = timezone(timedelta(hours=2))
    acq = ACQ.replace(tzinfo=zone)
    injection = {"datetime": (ACQ - timedelta(hours=1)).replace(tzinfo=timezone.utc)}
    files = write_dicom(
        _image(grid), tmp_path / "nm", "NM", acquisition_datetime=acq, injection=injection
    )
    ds = pydicom.dcmread(files[0])
    assert ds.TimezoneOffsetFromUTC == "+0200"
    drug = ds.RadiopharmaceuticalInformationSequence[0]
    assert drug.RadiopharmaceuticalStartDateTime == "20240506093000.000000+0000"
    # A naive acquisition time cannot be compared with an aware injection time.
    with pytest.raises(InputError, match="time zone"):
        write_dicom(
            _image(grid), tmp_path / "pt", "PT", acquisition_datetime=ACQ, injection=injection
        )


def test_frame_timing_defaults_to_image_info(tmp_path, grid):
    frames = [_image(grid, start_s=s, duration_s=60.0, seed=n) for n, s in enumerate((0, 60))]
    write_dicom(frames, tmp_path / "dyn", "PT", acquisition_datetime=ACQ)
    datasets, _ = _read_pet(tmp_path / "dyn")
    assert datasets[-1].AcquisitionTime.startswith("103100")


# ---- codes --------------------------------------------------------------------------------------


def test_radionuclide_codes_match_pydicoms_code_dictionary():
    concepts = pytest.importorskip("pydicom.sr._concepts_dict").concepts["SCT"]
    by_meaning = {m: c for entry in concepts.values() for c, (m, _cids) in entry.items()}
    for name, (code, meaning) in RADIONUCLIDE_CODES.items():
        get_isotope(name)  # every code belongs to an isotope recon knows
        assert by_meaning.get(meaning) == code, name


# ---- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (lambda d: d.__setitem__((0, 0, 0), np.nan), {}, "NaN"),
        (lambda d: d.__setitem__((0, 0, 0), -1.0), {}, "negative"),
        (None, {"modality": "CT"}, "modality"),
        (None, {"decay_correction": "LATER"}, "decay_correction"),
        (None, {"decay_correction": "ADMIN"}, "injection"),
        (None, {"modality": "NM", "decay_correction": "NONE"}, "SPECT"),
        (None, {"modality": "NM", "frames": [(0.0, 10.0)]}, "PET"),
        (None, {"frames": [(0.0, 10.0), (10.0, 10.0)]}, "pairs"),
        (None, {"frames": [(0.0, -10.0)]}, "duration"),
        (None, {"frame_of_reference_uid": "not-a-uid"}, "UID"),
        (None, {"patient": {"favourite_colour": "blue"}}, "unknown patient attribute"),
        (None, {"patient": {"weight_kg": -3}}, "PatientWeight"),
        (None, {"injection": {"dose": 1.0}}, "unknown injection keys"),
        (None, {"injection": {"radionuclide": "Tc-99m"}}, "differs"),
        (None, {"series_description": "x" * 65}, "64"),
    ],
)
def test_bad_input_is_refused(tmp_path, grid, change, kwargs, message):
    image = _image(grid)
    if change is not None:
        data = np.array(image.data)
        change(data)
        image = image.with_data(data)
    kwargs = {"modality": "PT", "acquisition_datetime": ACQ, **kwargs}
    with pytest.raises(InputError, match=message):
        write_dicom(image, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_decay_correction_needs_a_decay_corrected_image(tmp_path, grid):
    image = _image(grid, isotope=None, reference_time_s=None)
    with pytest.raises(InputError, match="not decay corrected"):
        write_dicom(image, tmp_path / "out", "PT", decay_correction="START")


def test_decay_corrected_pet_needs_frame_timing(tmp_path, grid):
    with pytest.raises(InputError, match="frame timing"):
        write_dicom(_image(grid, start_s=None), tmp_path / "out", "PT")


def test_frames_must_share_grid_and_be_in_time_order(tmp_path, grid):
    other = ImageGrid(grid.shape, grid.voxel_size_mm)
    frames = [_image(grid), _image(other)]
    with pytest.raises(InputError, match="grid"):
        write_dicom(frames, tmp_path / "out", "PT")
    frames = [_image(grid, start_s=60.0), _image(grid, start_s=0.0)]
    with pytest.raises(InputError, match="increasing"):
        write_dicom(frames, tmp_path / "out", "PT")
    with pytest.raises(InputError, match="one volume"):
        write_dicom([_image(grid), _image(grid)], tmp_path / "out", "NM")


def test_unknown_isotope_and_units_are_refused(tmp_path, grid):
    with pytest.raises(PhysicsError):
        write_dicom(_image(grid, isotope="Xx-1"), tmp_path / "out", "PT")
    with pytest.raises(InputError, match="units"):
        write_dicom(_image(grid, units="SUV"), tmp_path / "out", "PT")


def test_injection_needs_a_known_acquisition_time(tmp_path, grid):
    with pytest.raises(InputError, match="acquisition_datetime"):
        write_dicom(_image(grid), tmp_path / "out", "PT", injection={"activity_bq": 1e8})


def test_existing_outputs_and_inputs_are_never_overwritten(tmp_path, grid):
    image = _image(grid)
    existing = tmp_path / "file.dcm"
    existing.write_bytes(b"keep")
    with pytest.raises(InputError, match="input"):
        write_dicom(image, existing, "NM", input_paths=[existing])
    with pytest.raises(InputError, match="not a folder"):
        write_dicom(image, existing, "NM")
    assert existing.read_bytes() == b"keep"
    full = tmp_path / "full"
    full.mkdir()
    (full / "other.dcm").write_bytes(b"keep")
    with pytest.raises(InputError, match="not empty"):
        write_dicom(image, full, "PT")
    with pytest.raises(InputError, match="does not exist"):
        write_dicom(image, tmp_path / "missing" / "out", "PT")
    # An empty folder is used.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(write_dicom(image, empty, "PT", acquisition_datetime=ACQ)) == grid.shape[0]


def test_a_failed_write_leaves_nothing_behind(tmp_path, grid, monkeypatch):
    calls = []
    real_save = dicom_write._save

    def failing_save(ds, handle):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        real_save(ds, handle)

    monkeypatch.setattr(dicom_write, "_save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_dicom(_image(grid), tmp_path / "out", "PT", acquisition_datetime=ACQ)
    assert list(tmp_path.iterdir()) == []


# ---- external readers and validators -----------------------------------------------------------


@pytest.mark.parametrize("case", ["NM", "PT", "PT dynamic ADMIN", "PT uncalibrated"])
def test_dciodvfy_finds_no_errors(tmp_path, grid, case):
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("install dicom3tools (apt-get install dicom3tools)")
    image: Image | list[Image] = _image(grid)
    kwargs: dict = {"decay_correction": "START"}
    if case == "PT dynamic ADMIN":
        image = [_image(grid, start_s=s, duration_s=60.0, seed=n) for n, s in enumerate((0, 60))]
        kwargs = {"decay_correction": "ADMIN"}
    elif case == "PT uncalibrated":
        image = _image(grid, units="counts/s (uncalibrated)", isotope=None, reference_time_s=None)
        kwargs = {"decay_correction": "NONE"}
    files = write_dicom(
        image, tmp_path / "out", case[:2], acquisition_datetime=ACQ,
        patient={"name": "Test^Patient", "id": "P1", "sex": "O", "weight_kg": 70.0},
        injection={"activity_bq": 3.7e8, "datetime": ACQ - timedelta(hours=1)}, **kwargs,
    )  # fmt: skip
    for path in files:
        result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        report = result.stdout + result.stderr
        errors = [line for line in report.splitlines() if line.lstrip().startswith("Error")]
        assert not errors, report


@pytest.mark.parametrize("modality", ["NM", "PT"])
def test_simpleitk_reads_the_same_grid_and_values(tmp_path, grid, modality):
    sitk = pytest.importorskip("SimpleITK")
    image = _image(grid)
    files = write_dicom(image, tmp_path / "out", modality, acquisition_datetime=ACQ)
    if modality == "NM":
        volume = sitk.ReadImage(str(files[0]))
    else:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "out")))
        volume = reader.Execute()
    # SimpleITK uses LPS world coordinates and (x, y, z) order, like DICOM.
    np.testing.assert_allclose(volume.GetOrigin(), grid.index_to_world(np.zeros(3)), atol=1e-6)
    np.testing.assert_allclose(volume.GetSpacing(), grid.voxel_size_mm[::-1], atol=1e-6)
    np.testing.assert_allclose(volume.GetDirection(), np.eye(3).ravel(), atol=1e-9)
    values = sitk.GetArrayFromImage(volume)  # (z, y, x), rescale slope applied
    expected = np.asarray(image, dtype=np.float64)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-4 * expected.max())
    hot = volume.TransformIndexToPhysicalPoint([int(i) for i in BRIGHT[::-1]])
    np.testing.assert_allclose(hot, grid.index_to_world(np.array(BRIGHT)), atol=1e-6)


def test_nm_total_dose_is_in_megabecquerel(tmp_path, grid):
    """PS3.3 C.8.4.10.1.7: the NM Isotope Module's Radionuclide Total Dose is in MBq (the PET
    one is in Bq, checked above)."""
    injection = {"datetime": ACQ - timedelta(hours=2), "activity_bq": 7.4e8}
    files = write_dicom(
        _image(grid), tmp_path / "nm", "NM", acquisition_datetime=ACQ, injection=injection
    )
    drug = pydicom.dcmread(files[0]).RadiopharmaceuticalInformationSequence[0]
    assert float(drug.RadionuclideTotalDose) == pytest.approx(740.0)
