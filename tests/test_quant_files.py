"""`recon quant` takes times, units and identities from the image files, refuses a study file that
disagrees with them or an uncalibrated image, computes SUVlbm, and reads one VOI mask per scan.

The DICOM PET series are built here tag by tag (PS3.3 C.8.9: PET Series, PET Isotope and PET
Image modules), not by recon's writer."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import recon
from recon.cli import main
from recon.io import write_nifti
from recon.quant import read_csv
from tests.dicom_factory import ds_value, save
from tests.test_dicom_seg import GRID as SEG_GRID
from tests.test_dicom_seg import _expected_box, make_seg

PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"  # PS3.4 B.5
GRID = recon.ImageGrid((4, 12, 12), 5.0)
T_HALF_H = 78.41  # Zr-89, NuDat 3 (NNDC)
LAM_H = math.log(2) / T_HALF_H
INJECTION = datetime(2026, 3, 1, 9, 0, 0)
DOSE_BQ = 185e6
CONCENTRATION_DC = 5000.0  # Bq/mL at injection, uniform, no biological clearance


def _dicom_time(when: datetime) -> tuple[str, str]:
    return when.strftime("%Y%m%d"), when.strftime("%H%M%S")


def pet_series(
    folder, hours: float, *, units: str = "BQML", decay: str = "START", value: float | None = None
) -> None:
    """A Zr-89 PET series of a uniform image, acquired ``hours`` after INJECTION."""
    folder.mkdir()
    acquired = INJECTION + timedelta(hours=hours)
    if value is None:  # decay-corrected to the scan start, or to the administration
        value = CONCENTRATION_DC * (1.0 if decay == "ADMIN" else math.exp(-LAM_H * hours))
    drug = Dataset()
    code = Dataset()
    # PS3.16 CID 4020: ^89^Zirconium, SNOMED CT 63360001.
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = (
        "63360001", "SCT", "^89^Zirconium",
    )  # fmt: skip
    drug.RadionuclideCodeSequence = Sequence([code])
    drug.RadiopharmaceuticalStartDateTime = INJECTION.strftime("%Y%m%d%H%M%S")
    drug.RadionuclideTotalDose = ds_value(DOSE_BQ)
    drug.RadionuclideHalfLife = ds_value(T_HALF_H * 3600)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    nz, ny, nx = GRID.shape
    dz, dy, dx = GRID.voxel_size_mm
    z0, y0, x0 = GRID.origin
    slope = value / 20000.0
    for k in range(nz):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = PET_IMAGE_STORAGE
        ds.SOPClassUID = PET_IMAGE_STORAGE
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Modality = "PT"
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = series, study, frame
        ds.SeriesDate, ds.SeriesTime = _dicom_time(acquired)
        ds.AcquisitionDate, ds.AcquisitionTime = _dicom_time(acquired)
        ds.Units, ds.DecayCorrection = units, decay
        ds.CorrectedImage = ["DECY", "ATTN"]
        ds.SeriesType = ["STATIC", "IMAGE"]
        ds.NumberOfSlices, ds.ImageIndex = nz, k + 1
        ds.PatientWeight, ds.PatientSize = "70", "1.72"
        ds.RadiopharmaceuticalInformationSequence = Sequence([drug])
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = [ds_value(x0), ds_value(y0), ds_value(z0 + k * dz)]
        ds.PixelSpacing = [ds_value(dy), ds_value(dx)]
        ds.SliceThickness = ds_value(dz)
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = ds_value(slope), "0"
        ds.PixelData = np.full((ny, nx), round(value / float(ds.RescaleSlope)), "<u2").tobytes()
        save(ds, folder / f"IM{k:03d}.dcm")


VOIS = """
[[vois]]
name = "lesion"
sphere = { centre_mm = [0, 0, 0], diameter_mm = 15 }
"""


@pytest.fixture
def dicom_study(tmp_path):
    """Two Zr-89 scans, decay-corrected to the scan start and to the administration; a study
    file that gives nothing the files carry."""
    pet_series(tmp_path / "day1", 24.0)
    pet_series(tmp_path / "day3", 72.0, decay="ADMIN")
    text = '[[timepoints]]\nimage = "day1"\n\n[[timepoints]]\nimage = "day3"\n' + VOIS
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["quant", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_times_units_isotope_and_decay_mode_come_from_dicom(dicom_study, tmp_path, capsys):
    code, _, err = run(capsys, dicom_study, "-o", tmp_path / "r", "--no-plots")
    assert code == 0, err
    stats = {r["timepoint"]: r for r in read_csv(tmp_path / "r" / "voi_stats.csv")}
    assert set(stats) == {"24h", "72h"}
    for label, hours in (("24h", 24.0), ("72h", 72.0)):
        row = stats[label]
        assert row["time_h"] == pytest.approx(hours, abs=1e-9)
        # Activity at scan time from both decay references (16-bit storage: 1e-4).
        assert row["mean"] == pytest.approx(CONCENTRATION_DC * math.exp(-LAM_H * hours), 1e-4)
        assert row["mean_dc"] == pytest.approx(CONCENTRATION_DC, rel=1e-4)
        # SUVbw with the DICOM dose and weight: C / (A decayed to the scan / 70 kg).
        decayed = DOSE_BQ * math.exp(-LAM_H * hours)
        assert row["suv_bw_mean"] == pytest.approx(row["mean"] * 70e3 / decayed, rel=1e-9)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["isotope"] == "Zr-89"
    assert summary["injected_activity_bq"] == pytest.approx(DOSE_BQ)
    assert summary["sources"]["injection_time"].startswith("DICOM administration time")
    assert summary["sources"]["isotope"].startswith("image file")
    assert summary["sources"]["weight_kg"].startswith("DICOM Patient Weight")
    day3 = summary["timepoints"][1]
    assert day3["mode"] == "decay_corrected_to_injection"
    assert day3["sources"] == {
        "time": "DICOM acquisition time",
        "mode": "DICOM Decay Correction ADMIN",
        "units": "Bq/mL (file; DICOM BQML)",
    }


DISAGREEMENTS = {
    "injection time 6 h off": (
        "[study]\ninjection_time = 2026-03-01T15:00:00\n",
        ("2026-03-01 15:00:00", "2026-03-01 09:00:00", "6 h apart"),
    ),
    "hours after injection": (
        "[study]\n", ("hours_after_injection = 26", "24 h after the injection"), "day1"
    ),
    "scan time": ("[study]\n", ("2026-03-02 10:30:00", "2026-03-02 09:00:00"), "day1"),
    "injected activity": (
        "[study]\ninjected_activity_bq = 200e6\n", ("2e+08 Bq", "1.85e+08 Bq")
    ),
    "isotope": ('[study]\nisotope = "In-111"\n', ("In-111", "Zr-89")),
    "weight": ("[study]\nweight_kg = 80\n", ("weight_kg = 80", "70 kg")),
    "mode": ("[study]\n", ('mode = "activity_at_scan_time"', "Decay Correction ADMIN"), "day3"),
}  # fmt: skip
_TIMEPOINT_EDITS = {
    "hours after injection": 'image = "day1"\nhours_after_injection = 26',
    "scan time": 'image = "day1"\ntime = 2026-03-02T10:30:00',
    "mode": 'image = "day3"\nmode = "activity_at_scan_time"',
}


@pytest.mark.parametrize("case", list(DISAGREEMENTS), ids=list(DISAGREEMENTS))
def test_disagreements_with_the_files_are_refused_naming_both_values(
    dicom_study, tmp_path, capsys, case
):
    head, expected, *where = DISAGREEMENTS[case]
    text = head + dicom_study.read_text()
    if case in _TIMEPOINT_EDITS:
        edit = _TIMEPOINT_EDITS[case]
        text = text.replace(edit.split("\n")[0], edit, 1)
    dicom_study.write_text(text, encoding="utf-8")
    out = tmp_path / "never"
    code, _, err = run(capsys, dicom_study, "-o", out)
    assert code == 2, err
    assert err.startswith("recon: error: ") and err.count("\n") == 1, err
    for value in expected:
        assert value in err, (value, err)
    for name in where:
        assert name in err
    assert not out.exists()


def test_uncalibrated_images_need_a_calibration_factor(tmp_path, capsys):
    pet_series(tmp_path / "raw", 24.0, units="PROPCPS", value=250.0)
    text = '[[timepoints]]\nimage = "raw"\n' + VOIS
    (tmp_path / "study.toml").write_text(text, encoding="utf-8")
    code, _, err = run(capsys, tmp_path / "study.toml", "-o", tmp_path / "never")
    assert code == 2 and err.count("\n") == 1
    assert "counts/s (uncalibrated)" in err and "PROPCPS" in err and "calibration_factor" in err
    assert not (tmp_path / "never").exists()
    (tmp_path / "study.toml").write_text(
        text.replace('image = "raw"', 'image = "raw"\ncalibration_factor = 12.5'), encoding="utf-8"
    )
    code, _, err = run(capsys, tmp_path / "study.toml", "-o", tmp_path / "r", "--no-plots")
    assert code == 0, err
    row = read_csv(tmp_path / "r" / "voi_stats.csv")[0]
    assert row["mean"] == pytest.approx(250.0 * 12.5, rel=1e-4)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert "PROPCPS × calibration_factor 12.5" in summary["timepoints"][0]["sources"]["units"]


def test_suv_lbm_from_height_and_sex(dicom_study, tmp_path, capsys):
    dicom_study.write_text(
        '[study]\nheight_cm = 172\nsex = "F"\n' + dicom_study.read_text(), encoding="utf-8"
    )
    code, _, err = run(capsys, dicom_study, "-o", tmp_path / "r", "--no-plots")
    assert code == 0, err
    # Janmahasatian et al., Clin Pharmacokinet 2005;44:1051, female: 9270 W / (8780 + 244 BMI).
    bmi = 70.0 / 1.72**2
    lbm_g = 1000.0 * 9270.0 * 70.0 / (8780.0 + 244.0 * bmi)
    for row in read_csv(tmp_path / "r" / "voi_stats.csv"):
        decayed = DOSE_BQ * math.exp(-LAM_H * row["time_h"])
        assert row["suv_lbm_mean"] == pytest.approx(row["mean"] * lbm_g / decayed, rel=1e-9)
    bad = dicom_study.read_text().replace('sex = "F"', 'sex = "female"')
    dicom_study.write_text(bad, encoding="utf-8")
    code, _, err = run(capsys, dicom_study, "-o", tmp_path / "never")
    assert code == 2 and '[study] sex must be "M" or "F"' in err
    assert not (tmp_path / "never").exists()


def test_one_mask_per_scan_from_npy_nifti_and_dicom_seg(tmp_path, capsys):
    z, y, x = SEG_GRID.meshgrid_mm()
    image = (1000.0 + x).astype(np.float32)  # the mean tells which voxels were taken
    box = _expected_box()
    shrinking = (x - 4.0) ** 2 + (y + 2.0) ** 2 + z**2 <= 14.0**2
    np.save(tmp_path / "m1.npy", box.astype(np.uint8))
    write_nifti(recon.Image(shrinking.astype(np.float32), SEG_GRID), tmp_path / "m24.nii.gz")
    save(make_seg(), tmp_path / "seg.dcm")
    text = '[study]\nisotope = "In-111"\n'
    for hours in (1, 24, 72):
        np.save(tmp_path / f"tp{hours}.npy", image)
        text += (
            f'[[timepoints]]\nimage = "tp{hours}.npy"\nvoxel_mm = 4\n'
            f"hours_after_injection = {hours}\n"
        )
    text += (
        '[[vois]]\nname = "tumour"\nmasks = ["m1.npy", "m24.nii.gz", "seg.dcm"]\n'
        'segment = "box"\n'
        '[[vois]]\nname = "fixed"\nmask = "m24.nii.gz"\n'
    )
    (tmp_path / "study.toml").write_text(text, encoding="utf-8")
    code, _, err = run(capsys, tmp_path / "study.toml", "-o", tmp_path / "r", "--no-plots")
    assert code == 0, err
    stats = read_csv(tmp_path / "r" / "voi_stats.csv")
    expected = {"1h": box, "24h": shrinking, "72h": box}
    for row in stats:
        mask = expected[row["timepoint"]] if row["voi"] == "tumour" else shrinking
        assert row["n_voxels"] == np.count_nonzero(mask), row
        assert row["mean"] == pytest.approx(1000.0 + x[mask].mean(), rel=1e-6), row
    # A table by label works too; a missing label is named.
    by_label = text.replace(
        'masks = ["m1.npy", "m24.nii.gz", "seg.dcm"]',
        'masks = { "1h" = "m1.npy", "24h" = "m24.nii.gz" }',
    )
    (tmp_path / "study.toml").write_text(by_label, encoding="utf-8")
    code, _, err = run(capsys, tmp_path / "study.toml", "-o", tmp_path / "never")
    assert code == 2 and "missing ['72h']" in err
    assert not (tmp_path / "never").exists()
