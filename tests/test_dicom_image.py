"""Reading reconstructed PET/NM DICOM images: round trips through write_dicom, vendor-like series,
and refusals of inputs that are not one axial volume."""

from __future__ import annotations

import copy
import math
import shutil
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from recon.errors import GeometryError, InputError, ReconError
from recon.grid import ImageGrid
from recon.image import Image
from recon.io.dicom_image import read_dicom_image
from recon.io.dicom_write import PET_IMAGE_STORAGE, write_dicom
from recon.physics.decay import activity_at, decay_correction_factor
from recon.physics.isotopes import get_isotope
from tests.dicom_factory import (
    asymmetric_grid,
    ct_series,
    ds_value,
    nm_tomo_dataset,
    reconstruction,
    save,
    write_series,
)

ACQ = datetime(2024, 5, 6, 10, 30, 0)
F18 = get_isotope("F-18")
BRIGHT = (3, 1, 5)  # (z, y, x): off-centre on every axis, so any flipped axis moves it


@pytest.fixture
def grid() -> ImageGrid:
    return asymmetric_grid()


def _image(
    grid: ImageGrid,
    *,
    units: str = "Bq/mL",
    isotope: str | None = "F-18",
    reference_time_s: float | None = 0.0,
    scale: float = 1000.0,
    seed: int = 0,
) -> Image:
    image = reconstruction(
        grid, BRIGHT, units=units, isotope=isotope, reference_time_s=reference_time_s,
        scale=scale, floor=0.1, bright_factor=50.0, seed=seed,
    )  # fmt: skip
    image.data[0, 0, 0] = 20.0 * scale  # a distinct corner
    return image


def _assert_values(read: Image, expected: np.ndarray) -> None:
    """Equal within the 16-bit quantisation: half a slope (slope = slice maximum / 65535)."""
    got = np.asarray(read)
    assert got.dtype == np.float32 and got.shape == expected.shape
    half_slope = 0.5 * expected.reshape(expected.shape[0], -1).max(axis=1) / 65535.0
    error = np.abs(got - expected).reshape(expected.shape[0], -1).max(axis=1)
    assert np.all(error <= half_slope * 1.001 + 1e-6 * expected.max()), (error, half_slope)
    assert np.unravel_index(np.argmax(got), got.shape) == BRIGHT


# ---- round trips through write_dicom ------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "image_reference", "read_reference"),
    [("START", 0.0, 0.0), ("START", 90.0, 0.0), ("ADMIN", 0.0, -2700.0), ("NONE", None, None)],
)
def test_pet_static_round_trip(tmp_path, grid, mode, image_reference, read_reference):
    image = _image(grid, reference_time_s=image_reference)
    injection = {"datetime": ACQ - timedelta(minutes=45), "activity_bq": 3.7e8}
    write_dicom(
        image, tmp_path / "pet", "PT", acquisition_datetime=ACQ, decay_correction=mode,
        injection=injection, frames=[(30.0, 600.0)], patient={"weight_kg": 70.0},
    )  # fmt: skip
    read = read_dicom_image(tmp_path / "pet")

    assert isinstance(read, Image)
    assert read.grid.same_as(grid, tol_mm=1e-4)
    assert (read.units, read.isotope, read.reference_time_s) == (
        "Bq/mL", "F-18", pytest.approx(read_reference, abs=1e-3) if mode != "NONE" else None,
    )  # fmt: skip
    expected = np.asarray(image, dtype=np.float64)
    if read_reference is not None:
        # The same activity distribution at another reference time.
        expected = activity_at(expected, F18, read_reference - image_reference)
    _assert_values(read, expected)
    info = read.info
    assert info["decay_correction"] == mode and info["modality"] == "PT"
    assert info["frame_start_s"] == pytest.approx(30.0, abs=1e-3)
    assert info["frame_duration_s"] == 600.0
    assert info["injection_time_s"] == pytest.approx(-2700.0, abs=1e-3)
    assert info["injected_activity_bq"] == pytest.approx(3.7e8)
    assert info["half_life_s"] == pytest.approx(F18.half_life_s)
    assert info["patient_weight_kg"] == 70.0
    assert info["acquisition_datetime"] == ACQ and info["n_files"] == grid.shape[0]


def test_pet_none_keeps_the_timing_needed_to_decay_correct(tmp_path, grid):
    image = _image(grid, reference_time_s=0.0)
    write_dicom(
        image, tmp_path / "pet", "PT", acquisition_datetime=ACQ, decay_correction="NONE",
        frames=[(120.0, 600.0)],
    )  # fmt: skip
    read = read_dicom_image(tmp_path / "pet")
    assert read.reference_time_s is None
    info = read.info
    factor = decay_correction_factor(
        info["half_life_s"], info["frame_start_s"], info["frame_duration_s"], 0.0
    )
    corrected = np.asarray(read, dtype=np.float64) * factor
    np.testing.assert_allclose(corrected, np.asarray(image), rtol=0, atol=1e-4 * 50_000 * factor)


def test_pet_dynamic_round_trip_and_rewrite(tmp_path, grid):
    timing = [(0.0, 60.0), (60.0, 120.0), (180.0, 300.0)]
    frames = [_image(grid, scale=1000.0 * (n + 1), seed=n) for n in range(3)]
    write_dicom(frames, tmp_path / "dyn", "PT", acquisition_datetime=ACQ, frames=timing)
    read = read_dicom_image(tmp_path / "dyn")

    assert isinstance(read, list) and len(read) == 3
    for t, (image, (start, duration)) in enumerate(zip(frames, timing, strict=True)):
        assert read[t].grid.same_as(grid, tol_mm=1e-4)
        assert read[t].reference_time_s == 0.0
        assert read[t].info["frame_index"] == t and read[t].info["n_frames"] == 3
        assert read[t].info["frame_start_s"] == pytest.approx(start, abs=1e-3)
        assert read[t].info["frame_duration_s"] == duration
        _assert_values(read[t], np.asarray(image, dtype=np.float64))
    one = read_dicom_image(tmp_path / "dyn", frame=1)
    assert isinstance(one, Image)
    np.testing.assert_array_equal(np.asarray(one), np.asarray(read[1]))
    with pytest.raises(InputError, match="3 time frame"):
        read_dicom_image(tmp_path / "dyn", frame=3)

    # What the reader returns is what the writer takes: units, isotope, timing in info.
    write_dicom(read, tmp_path / "again", "PT", acquisition_datetime=ACQ)
    again = read_dicom_image(tmp_path / "again")
    for a, b in zip(again, read, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4)
        assert a.info["frame_start_s"] == pytest.approx(b.info["frame_start_s"], abs=1e-3)


@pytest.mark.parametrize(("mode", "read_reference"), [("START", 0.0), ("ADMIN", -3600.0)])
def test_nm_round_trip(tmp_path, grid, mode, read_reference):
    image = _image(grid, isotope="Tc-99m", reference_time_s=0.0)
    injection = {"datetime": ACQ - timedelta(hours=1), "activity_bq": 7.4e8}
    files = write_dicom(
        image, tmp_path / "nm", "NM", acquisition_datetime=ACQ, decay_correction=mode,
        injection=injection,
    )  # fmt: skip
    read = read_dicom_image(files[0])
    assert isinstance(read, Image)
    assert read.grid.same_as(grid, tol_mm=1e-4)
    assert (read.units, read.isotope) == ("Bq/mL", "Tc-99m")
    assert read.reference_time_s == pytest.approx(read_reference, abs=1e-3)
    expected = activity_at(np.asarray(image, dtype=np.float64), "Tc-99m", read_reference)
    _assert_values_volume(read, expected)
    assert read.info["injected_activity_bq"] == pytest.approx(7.4e8)
    assert read.info["decay_correction"] == mode
    assert read_dicom_image(tmp_path / "nm").grid == read.grid  # the folder reads the same


def test_nm_with_a_normal_along_minus_z(tmp_path, grid):
    # Rows along −x and columns along +y make the normal (row × column) run along −z: the frames
    # are stored from the top slice down and each row from the largest x.
    image = _image(grid, isotope="Tc-99m")
    files = write_dicom(image, tmp_path / "nm", "NM", acquisition_datetime=ACQ)
    expected = read_dicom_image(files[0])
    ds = pydicom.dcmread(files[0])
    stored = ds.pixel_array.reshape(grid.shape)
    ds.PixelData = np.ascontiguousarray(stored[::-1, :, ::-1]).tobytes()
    (dz, _, dx), (z0, y0, x0) = grid.voxel_size_mm, grid.origin
    top = (x0 + (grid.shape[2] - 1) * dx, y0, z0 + (grid.shape[0] - 1) * dz)
    detector = ds.DetectorInformationSequence[0]
    detector.ImagePositionPatient = [ds_value(v) for v in top]
    detector.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0]
    read = read_dicom_image(ds)
    assert read.grid.same_as(grid, tol_mm=1e-4)
    np.testing.assert_array_equal(np.asarray(read), np.asarray(expected))


def test_nm_frames_follow_the_slice_vector(tmp_path, grid):
    files = write_dicom(
        _image(grid, isotope="Tc-99m"), tmp_path / "nm", "NM", acquisition_datetime=ACQ
    )
    expected = read_dicom_image(files[0])
    ds = pydicom.dcmread(files[0])
    order = np.random.default_rng(3).permutation(grid.shape[0])  # frame f holds slice order[f]
    ds.PixelData = np.ascontiguousarray(ds.pixel_array.reshape(grid.shape)[order]).tobytes()
    ds.SliceVector = [int(k) + 1 for k in order]
    np.testing.assert_array_equal(np.asarray(read_dicom_image(ds)), np.asarray(expected))
    ds.SliceVector = [1] * grid.shape[0]
    with pytest.raises(InputError, match="Slice Vector"):
        read_dicom_image(ds)


def _assert_values_volume(read: Image, expected: np.ndarray) -> None:
    """NM has one slope for the volume: half of it is the bound."""
    got = np.asarray(read)
    assert np.max(np.abs(got - expected)) <= 0.5 * expected.max() / 65535 * 1.001
    assert np.unravel_index(np.argmax(got), got.shape) == BRIGHT


def test_uncalibrated_images_keep_units_and_no_reference(tmp_path, grid):
    image = _image(grid, units="counts/s (uncalibrated)", isotope=None, reference_time_s=None)
    for modality in ("PT", "NM"):
        write_dicom(image, tmp_path / modality, modality, acquisition_datetime=ACQ)
        read = read_dicom_image(tmp_path / modality)
        assert (read.units, read.isotope, read.reference_time_s) == (image.units, None, None)
        assert read.info["decay_correction"] == "NONE"
        _assert_values_volume(read, np.asarray(image, dtype=np.float64))


def test_time_zones_are_honoured(tmp_path, grid):
    # Acquisition local time at +02:00, injection recorded in UTC one hour earlier.
    acq = ACQ.replace(tzinfo=timezone(timedelta(hours=2)))
    injection = {"datetime": (ACQ - timedelta(hours=3)).replace(tzinfo=timezone.utc)}
    write_dicom(
        _image(grid), tmp_path / "pet", "PT", acquisition_datetime=acq, decay_correction="ADMIN",
        injection=injection, frames=[(0.0, 300.0)],
    )  # fmt: skip
    read = read_dicom_image(tmp_path / "pet")
    assert read.reference_time_s == pytest.approx(-3600.0, abs=1e-3)


# ---- a vendor-like series made without our writer -----------------------------------------------


def _vendor_slice(values: np.ndarray, position, common: dict, slope: float) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = PET_IMAGE_STORAGE
    ds.SOPClassUID = PET_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in common.items():
        setattr(ds, keyword, copy.deepcopy(value))
    ds.ImagePositionPatient = [ds_value(v) for v in position]
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1  # signed, as FBP images may dip below zero
    ds.RescaleSlope = ds_value(slope)
    ds.RescaleIntercept = "0"
    ds.PixelData = np.rint(values / float(ds.RescaleSlope)).astype("<i2").tobytes()
    return ds


def test_vendor_like_feet_first_series_in_shuffled_files(tmp_path, grid):
    rng = np.random.default_rng(7)
    truth = _image(grid).numpy().astype(np.float64)
    truth[0, -1, -1] = -300.0  # a negative voxel: signed pixels
    nz, ny, nx = grid.shape
    (dz, dy, dx), (z0, y0, x0) = grid.voxel_size_mm, grid.origin
    drug = Dataset()
    drug.RadionuclideCodeSequence = Sequence([Dataset()])
    code = drug.RadionuclideCodeSequence[0]
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-111A1", "SRT", "^18^Fluorine"
    drug.RadiopharmaceuticalStartTime = "093000"  # time only: the date is the scan's
    drug.RadionuclideTotalDose = "370000000"
    drug.RadionuclideHalfLife = "6586.2"
    common = dict(
        Modality="PT", SeriesInstanceUID=generate_uid(), StudyInstanceUID=generate_uid(),
        FrameOfReferenceUID=generate_uid(), SeriesDate="20240506", SeriesTime="103000",
        AcquisitionDate="20240506", AcquisitionTime="103000.000015", Units="BQML",
        DecayCorrection="START", CorrectedImage=["DECY", "ATTN"], SeriesType=["STATIC", "IMAGE"],
        NumberOfSlices=nz, ActualFrameDuration=300000, FrameReferenceTime="150000",
        DecayFactor="1.0", PatientPosition="FFS", PixelSpacing=[ds_value(dy), ds_value(dx)],
        SliceThickness=ds_value(dz), ImageOrientationPatient=["-1", "0", "0", "0", "-1", "0"],
        RadiopharmaceuticalInformationSequence=Sequence([drug]),
    )  # fmt: skip
    # Rows run along −y and columns along −x: the first stored pixel is the far corner.
    datasets = [
        _vendor_slice(
            truth[k, ::-1, ::-1], (x0 + (nx - 1) * dx, y0 + (ny - 1) * dy, z0 + k * dz), common,
            slope=np.abs(truth[k]).max() / 30000 * rng.uniform(1.0, 1.5),
        )
        for k in range(nz)
    ]  # fmt: skip
    # Files named in reverse z order, then shuffled: listing order says nothing about slices.
    names = rng.permutation(nz)
    for k, ds in enumerate(datasets[::-1]):
        save(ds, tmp_path / f"IM{names[k]:04d}")
    (tmp_path / "README.txt").write_text("not DICOM")

    read = read_dicom_image(tmp_path)
    assert read.grid.same_as(grid, tol_mm=1e-4)
    slopes = np.array([float(ds.RescaleSlope) for ds in datasets])
    error = np.abs(np.asarray(read) - truth).reshape(nz, -1).max(axis=1)
    assert np.all(error <= 0.5 * slopes * 1.001)
    assert np.asarray(read)[0, -1, -1] < 0
    hot = np.unravel_index(np.argmax(np.asarray(read)), grid.shape)
    assert hot == BRIGHT
    assert (read.units, read.isotope, read.reference_time_s) == ("Bq/mL", "F-18", 0.0)
    assert read.info["injection_time_s"] == pytest.approx(-3600.0)
    assert read.info["injected_activity_bq"] == pytest.approx(3.7e8)
    assert read.info["frame_reference_time_s"] == 150.0 and read.info["decay_factor"] == 1.0
    assert read.info["patient_position"] == "FFS"


# ---- refusals -----------------------------------------------------------------------------------


def _pet(tmp_path: Path, grid: ImageGrid, name: str = "pet") -> list[Path]:
    return write_dicom(
        _image(grid), tmp_path / name, "PT", acquisition_datetime=ACQ, frames=[(0.0, 300.0)]
    )


def _edit(path: Path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def test_two_series_in_one_folder_need_a_choice(tmp_path, grid):
    _pet(tmp_path, grid, "a")
    _pet(tmp_path, grid, "b")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for folder in ("a", "b"):
        for file in (tmp_path / folder).iterdir():
            shutil.copy(file, mixed / f"{folder}_{file.name}")
    uid = pydicom.dcmread(next((tmp_path / "b").iterdir())).SeriesInstanceUID
    with pytest.raises(InputError, match=r"2 series .*series_uid") as excinfo:
        read_dicom_image(mixed)
    assert uid in str(excinfo.value)
    assert read_dicom_image(mixed, series_uid=uid).info["series_instance_uid"] == uid


def test_missing_image_position_is_a_geometry_error(tmp_path, grid):
    files = _pet(tmp_path, grid)
    _edit(files[2], lambda ds: delattr(ds, "ImagePositionPatient"))
    with pytest.raises(GeometryError, match=r"Image Position \(Patient\) \(0020,0032\) is missing"):
        read_dicom_image(tmp_path / "pet")


def test_oblique_orientation_is_refused(tmp_path, grid):
    files = _pet(tmp_path, grid)
    c, s = math.cos(0.2), math.sin(0.2)
    for file in files:
        _edit(file, lambda ds: setattr(ds, "ImageOrientationPatient", [c, s, 0, -s, c, 0]))
    with pytest.raises(GeometryError, match=r"Image Orientation \(Patient\).*0\.98"):
        read_dicom_image(tmp_path / "pet")


def test_non_uniform_spacing_is_refused(tmp_path, grid):
    files = _pet(tmp_path, grid)

    def move(ds):
        ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 1.0

    _edit(files[3], move)
    with pytest.raises(GeometryError, match="not uniform"):
        read_dicom_image(tmp_path / "pet")


def test_projections_are_pointed_to_their_reader(tmp_path):
    frames = np.ones((1, 1, 4, 3, 5), dtype=np.uint16)
    save(nm_tomo_dataset(frames, angular_step_deg=90.0), tmp_path / "nm.dcm")
    with pytest.raises(InputError, match="read_nm_projections"):
        read_dicom_image(tmp_path / "nm.dcm")


def test_other_sop_classes_are_refused(tmp_path, grid):
    ct = ct_series(np.zeros((3, 4, 4)), pixel_spacing=(2.0, 2.0), first_position=(0, 0, 0),
                   slice_spacing=2.0)  # fmt: skip
    files = write_series(ct, tmp_path / "ct")
    with pytest.raises(InputError, match="no PET Image Storage or NM.*CT Image Storage"):
        read_dicom_image(tmp_path / "ct")
    with pytest.raises(InputError, match="CT Image Storage"):
        read_dicom_image(files)
    enhanced = pydicom.dcmread(_pet(tmp_path, grid)[0])
    enhanced.SOPClassUID = "1.2.840.10008.5.1.4.1.1.130"
    with pytest.raises(InputError, match="Enhanced PET Image Storage"):
        read_dicom_image(enhanced)
    with pytest.raises(InputError, match="no PET Image Storage"):
        read_dicom_image(tmp_path / "ct" / "..")  # a folder of folders holds no images


def test_truncated_pixel_data_and_missing_files(tmp_path, grid):
    files = _pet(tmp_path, grid)
    data = files[1].read_bytes()
    files[1].write_bytes(data[:-20])
    with pytest.raises(InputError, match="truncated"):
        read_dicom_image(tmp_path / "pet")
    files[1].unlink()
    with pytest.raises(InputError, match="files are missing"):
        read_dicom_image(tmp_path / "pet")


def test_dynamic_series_need_image_index(tmp_path, grid):
    frames = [_image(grid, seed=n) for n in range(2)]
    files = write_dicom(
        frames, tmp_path / "dyn", "PT", acquisition_datetime=ACQ, frames=[(0, 60), (60, 60)]
    )
    _edit(files[7], lambda ds: delattr(ds, "ImageIndex"))
    with pytest.raises(InputError, match=r"Image Index \(0054,1330\) is None"):
        read_dicom_image(tmp_path / "dyn")


def test_compressed_pixels_without_a_decoder_name_the_plugin(tmp_path, grid):
    datasets = [pydicom.dcmread(p) for p in _pet(tmp_path, grid)]
    datasets[2].file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder
    with pytest.raises(InputError, match="no decoder is installed; install one: `pip install"):
        read_dicom_image(datasets)


def test_admin_needs_the_administration_time(tmp_path, grid):
    datasets = [pydicom.dcmread(p) for p in _pet(tmp_path, grid)]
    for ds in datasets:
        ds.DecayCorrection = "ADMIN"
    with pytest.raises(InputError, match="administration time"):
        read_dicom_image(datasets)
    with pytest.raises(InputError, match="frame must be"):
        read_dicom_image(tmp_path / "pet", frame=-1)


def _elements(ds: Dataset) -> list[tuple[Dataset, int]]:
    out = []
    for elem in ds:
        if elem.tag != 0x7FE00010:
            out.append((ds, elem.tag))
        if elem.VR == "SQ":
            for item in elem.value:
                out.extend(_elements(item))
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_corrupt_tags_only_raise_recon_errors(tmp_path):
    # Each element deleted or set to garbage, one at a time: a result or a ReconError, nothing else.
    small = ImageGrid((2, 3, 4), (2.0, 2.0, 2.0))
    image = Image(np.ones(small.shape, np.float32), small, isotope="F-18", reference_time_s=0.0)
    nm = pydicom.dcmread(write_dicom(image, tmp_path / "nm", "NM", acquisition_datetime=ACQ)[0])
    pet = [
        pydicom.dcmread(p)
        for p in write_dicom(
            image, tmp_path / "pt", "PT", acquisition_datetime=ACQ, frames=[(0.0, 60.0)]
        )
    ]
    for target in (nm, pet):
        first = target if isinstance(target, Dataset) else target[0]
        for index in range(len(_elements(first))):
            for garbage in (None, "abc", "1e308"):
                mutated = copy.deepcopy(target)
                owner, tag = _elements(mutated if isinstance(mutated, Dataset) else mutated[0])[
                    index
                ]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        if garbage is None:
                            del owner[tag]
                        else:
                            owner[tag].value = garbage
                    except (ValueError, TypeError, OverflowError, AttributeError):
                        continue
                    try:
                        read_dicom_image(mutated)
                    except ReconError:
                        pass


def test_info_describes_a_dicom_image_series(tmp_path, capsys):
    from recon.cli import main

    grid = ImageGrid((5, 8, 8), 4.0)
    frames = [
        Image(np.full(grid.shape, 100.0 * (n + 1), np.float32), grid, units="Bq/mL",
                    isotope="F-18", reference_time_s=0.0,
                    info={"frame_start_s": 60.0 * n, "frame_duration_s": 60.0})
        for n in range(2)
    ]  # fmt: skip
    write_dicom(frames, tmp_path / "pt", "PT", acquisition_datetime=datetime(2026, 1, 1, 10))
    assert main(["info", str(tmp_path / "pt")]) == 0
    out = capsys.readouterr().out
    assert "PT image series, 2 frames" in out and "Bq/mL" in out and "0, 60" in out
