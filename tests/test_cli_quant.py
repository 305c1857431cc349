"""`recon quant` on a small synthetic serial study: values against closed forms, bad input."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import numpy as np
import pytest

import recon
from recon.cli import main
from recon.io import write_interfile, write_nifti
from recon.physics.isotopes import get_isotope
from recon.quant import read_csv

GRID = recon.ImageGrid((16, 24, 24), 5.0)  # x, y from -57.5 to 57.5 mm, z from -37.5 to 37.5
LESION_CENTRE, LESION_D, VOI_D = (20.0, 0.0, 0.0), 30.0, 15.0
BACKGROUND_CENTRE = (-30.0, 0.0, 0.0)
C0, B0 = 10_000.0, 1_000.0  # Bq/mL at injection (lesion, background)
T_EFF_H = 30.0  # lesion: mono-exponential at scan time
A0 = 185e6
INJECTION = datetime(2026, 3, 1, 9, 0, 0)
T_PHYS_H = get_isotope("In-111").half_life_s / 3600.0
LAM_H = math.log(2) / T_PHYS_H


def lesion_at(t_h: float) -> float:
    """Lesion concentration at scan time (Bq/mL)."""
    return C0 * math.exp(-math.log(2) * t_h / T_EFF_H)


def background_at(t_h: float) -> float:
    """Background: no biological clearance, physical decay only."""
    return B0 * math.exp(-LAM_H * t_h)


def phantom(t_h: float, shift_x_mm: float = 0.0) -> np.ndarray:
    z, y, x = GRID.meshgrid_mm()
    cx, cy, cz = LESION_CENTRE
    inside = (x - cx - shift_x_mm) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= (LESION_D / 2) ** 2
    return np.where(inside, lesion_at(t_h), background_at(t_h)).astype(np.float32)


def image(values: np.ndarray) -> recon.Image:
    return recon.Image(values, GRID, units="Bq/mL", isotope="In-111")


@pytest.fixture
def study(tmp_path):
    """Four scans in four formats and both decay modes; sphere, iso-contour and NIfTI VOIs."""
    write_interfile(tmp_path / "tp1h.hv", image(phantom(1.0)), modality="nucmed")
    np.save(tmp_path / "tp24h.npy", phantom(24.0))
    # Decay-corrected to injection, patient moved 10 mm to the left (two voxels).
    shifted = phantom(48.0, shift_x_mm=10.0) * np.float32(math.exp(LAM_H * 48.0))
    write_interfile(tmp_path / "tp48h.hv", image(shifted), modality="nucmed")
    write_nifti(image(phantom(72.0)), tmp_path / "tp72h.nii.gz")
    mask = np.zeros(GRID.shape, np.float32)
    z, y, x = GRID.meshgrid_mm()
    mask[(x - BACKGROUND_CENTRE[0]) ** 2 + y**2 + z**2 <= 10.0**2] = 1.0
    write_nifti(recon.Image(mask, GRID), tmp_path / "background.nii.gz")
    when = (INJECTION + timedelta(hours=1)).isoformat()
    text = f"""
[study]
isotope = "In-111"
injection_time = {INJECTION.isoformat()}
injected_activity_bq = {A0:g}
weight_kg = 70

[[timepoints]]
image = "tp1h.hv"
time = "{when}"

[[timepoints]]
image = "tp24h.npy"
voxel_mm = 5
hours_after_injection = 24

[[timepoints]]
image = "tp48h.hv"
hours_after_injection = 48
mode = "decay_corrected_to_injection"
transform = [[1, 0, 0, 10], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]

[[timepoints]]
image = "tp72h.nii.gz"
hours_after_injection = 72
label = "3d"

[[vois]]
name = "lesion"
sphere = {{ centre_mm = [20, 0, 0], diameter_mm = {VOI_D} }}

[[vois]]
name = "hot"
iso_contour = {{ seed_mm = [20, 0, 0], percent = 50, search_radius_mm = 10 }}

[[vois]]
name = "background"
mask = "background.nii.gz"
"""
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["quant", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def by(rows, **keys):
    found = [r for r in rows if all(r[k] == v for k, v in keys.items())]
    assert len(found) == 1, (keys, found)
    return found[0]


def test_tables_match_closed_forms(study, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, err = run(capsys, study, "-o", out)
    assert code == 0, err
    assert "lesion" in stdout and "wrote" in stdout
    voxels = GRID.voxel_volume_ml
    stats = read_csv(out / "voi_stats.csv")
    labels = {"1h": 1.0, "24h": 24.0, "48h": 48.0, "3d": 72.0}
    for label, hours in labels.items():
        lesion = by(stats, voi="lesion", timepoint=label)
        # Activity at scan time, whatever the decay mode or format of the image.
        assert lesion["mean"] == pytest.approx(lesion_at(hours), rel=1e-5)
        assert lesion["sd"] == pytest.approx(0.0, abs=1e-3 * lesion_at(hours))
        assert lesion["mean_dc"] == pytest.approx(lesion_at(hours) * math.exp(LAM_H * hours), 1e-5)
        assert lesion["total_bq"] == pytest.approx(lesion_at(hours) * lesion["n_voxels"] * voxels)
        assert lesion["suv_bw_mean"] == pytest.approx(
            lesion_at(hours) * 70e3 / (A0 * math.exp(-LAM_H * hours)), rel=1e-5
        )
        hot = by(stats, voi="hot", timepoint=label)
        # The iso-contour is the whole hot sphere, as voxelised in the phantom.
        assert hot["n_voxels"] == np.count_nonzero(phantom(1.0) > 5_000)
        assert hot["mean"] == pytest.approx(lesion_at(hours), rel=1e-5)
        background = by(stats, voi="background", timepoint=label)
        assert background["mean"] == pytest.approx(background_at(hours), rel=1e-5)

    tacs = read_csv(out / "tacs.csv")
    dc = by(tacs, voi="lesion", time_h=72.0, mode="decay_corrected_to_injection")
    assert dc["value"] == pytest.approx(lesion_at(72.0) * math.exp(LAM_H * 72.0), rel=1e-5)
    total = by(tacs, voi="lesion", time_h=24.0, quantity="total")
    assert total["units"] == "Bq"

    kinetics = {row["voi"]: row for row in read_csv(out / "kinetics.csv")}
    lesion = kinetics["lesion"]
    assert lesion["t_eff_h"] == pytest.approx(T_EFF_H, rel=1e-6)
    assert lesion["t_biol_h"] == pytest.approx(1.0 / (1.0 / T_EFF_H - 1.0 / T_PHYS_H), rel=1e-6)
    k = math.log(2) / T_EFF_H
    # Fitted from the first point, so the TIA is the fitted curve's integral from injection.
    assert lesion["tia_bq_h_per_ml"] == pytest.approx(C0 / k, rel=1e-6)
    volume = by(stats, voi="lesion", timepoint="1h")["volume_ml"]
    assert lesion["tia_bq_h"] == pytest.approx(C0 / k * volume, rel=1e-6)
    assert lesion["residence_time_h"] == pytest.approx(C0 / k * volume / A0, rel=1e-6)
    assert lesion["tail_fraction"] == pytest.approx(math.exp(-k * 72.0), rel=1e-6)
    # No biological clearance: T_eff is the physical half-life, T_biol is infinite (empty).
    assert kinetics["background"]["t_eff_h"] == pytest.approx(T_PHYS_H, rel=1e-6)
    assert kinetics["background"]["t_biol_h"] is None

    pid = read_csv(out / "percent_id.csv")
    for label, hours in labels.items():
        row = by(pid, voi="lesion", timepoint=label)
        decayed = A0 * math.exp(-LAM_H * hours)
        assert row["percent_id"] == pytest.approx(100 * lesion_at(hours) * volume / decayed, 1e-5)
        assert row["percent_id_per_ml_mean"] == pytest.approx(
            100 * lesion_at(hours) / decayed, 1e-5
        )

    ratios = read_csv(out / "ratios.csv")
    for label, hours in labels.items():
        row = by(ratios, lesion="lesion", timepoint=label)
        assert row["to_background"] == pytest.approx(lesion_at(hours) / background_at(hours), 1e-5)
    # Both lesion VOIs are lesions, so their spread is reported.
    assert read_csv(out / "heterogeneity.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["isotope"] == "In-111" and summary["reference_timepoint"] == "1h"
    assert [tp["label"] for tp in summary["timepoints"]] == list(labels)
    for name in ("tacs.png", "mip.png", "uptake.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("kinetics", "voi_stats", "ratios", "percent_id", "tacs"):
        assert json.loads((out / f"{name}.json").read_text())


def test_python_api_gives_the_same_numbers(study):
    from recon.quant import analyse_study, load_study

    result = analyse_study(load_study(study))
    assert [tp.label for tp in result.study.timepoints] == ["1h", "24h", "48h", "3d"]
    assert result.value("lesion", "48h") == pytest.approx(lesion_at(48.0), rel=1e-5)
    assert result.kinetics["lesion"].t_eff_h == pytest.approx(T_EFF_H, rel=1e-6)
    assert [v.role for v in result.study.vois] == ["lesion", "lesion", "background"]


def test_two_term_fit_and_fixed_fit_start(study, tmp_path, capsys):
    text = study.read_text().replace(
        "[[timepoints]]", "[analysis]\nfit_from = 24\n\n[[timepoints]]", 1
    )
    study.write_text(text)
    code, _, err = run(capsys, study, "-o", tmp_path / "r", "--no-plots")
    assert code == 0, err
    lesion = by(read_csv(tmp_path / "r" / "kinetics.csv"), voi="lesion")
    assert lesion["fit_from_h"] == 24.0 and lesion["n_fit_points"] == 3
    assert lesion["t_eff_h"] == pytest.approx(T_EFF_H, rel=1e-6)
    assert not list((tmp_path / "r").glob("*.png"))


def test_fit_settings_study_wide_per_role_and_per_voi(study, tmp_path, capsys):
    text = study.read_text().replace(
        "[[timepoints]]",
        '[analysis]\nfit_terms = 2\nfit_from = "first"\n\n[analysis.background]\n'
        'tail = "physical"\n\n[[timepoints]]',
        1,
    )
    text = text.replace('name = "hot"\n', 'name = "hot"\nfit_model = "mono"\nfit_from = 24\n')
    study.write_text(text)
    code, _, err = run(capsys, study, "-o", tmp_path / "r", "--no-plots")
    assert code == 0, err
    kinetics = {row["voi"]: row for row in read_csv(tmp_path / "r" / "kinetics.csv")}
    # Two terms asked study-wide, four points: the mono-exponential, with the reason.
    lesion = kinetics["lesion"]
    assert lesion["model_requested"] == "bi" and lesion["model"] == "mono"
    assert lesion["model_rule"] == "fallback" and "4 point(s) for 4 parameters" in lesion["note"]
    assert lesion["t_eff_h"] == pytest.approx(T_EFF_H, rel=1e-6)
    assert "model=bi ([analysis])" in lesion["settings"]
    # The VOI's own keys win.
    hot = kinetics["hot"]
    assert hot["model"] == "mono" and hot["model_rule"] == "fixed"
    assert hot["fit_from_h"] == 24.0 and hot["n_fit_points"] == 3
    assert "fit_from=24.0 (VOI)" in hot["settings"]
    # The role's table: physical decay after the last scan, on the trapezoid.
    background = kinetics["background"]
    assert background["tail_method"] == "physical"
    assert "tail=physical ([analysis.background])" in background["settings"]
    hours = [1.0, 24.0, 48.0, 72.0]
    points = [(0.0, 0.0)] + [(h, background_at(h)) for h in hours]
    trapezoid = sum(
        0.5 * (a[1] + b[1]) * (b[0] - a[0]) for a, b in zip(points[:-1], points[1:], strict=True)
    )
    expected = trapezoid + background_at(72.0) / LAM_H
    assert background["tia_bq_h_per_ml"] == pytest.approx(expected, rel=1e-5)


def test_plots_share_the_house_style(study, tmp_path, capsys):
    import struct

    from recon.figures import HOUSE_STYLE

    code, _, err = run(capsys, study, "-o", tmp_path / "r")
    assert code == 0, err
    for name in ("tacs.png", "mip.png", "uptake.png"):
        data = (tmp_path / "r" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])  # IHDR
        assert width >= HOUSE_STYLE.min_width_px and height > 300, (name, width, height)


def _edit(study, old: str, new: str) -> None:
    text = study.read_text()
    assert old in text, old
    study.write_text(text.replace(old, new, 1))


BAD = {
    "time before injection": (
        'time = "2026-03-01T10:00:00"', 'time = "2026-03-01T08:30:00"', "before the injection"
    ),
    "negative hours": (
        "hours_after_injection = 24", "hours_after_injection = -2", "before the injection"
    ),
    "%ID without activity": (
        "injected_activity_bq = 1.85e+08\nweight_kg = 70",
        "[analysis]\npercent_id = true", "injected_activity_bq",
    ),
    "SUV without activity": ("injected_activity_bq = 1.85e+08", "", "injected_activity_bq"),
    "VOI outside the image": ("centre_mm = [20, 0, 0], diameter_mm", "centre_mm = [200, 0, 0], "
                              "diameter_mm", "outside the image"),
    "VOI cut by the edge": ("centre_mm = [20, 0, 0], diameter_mm", "centre_mm = [55, 0, 0], "
                            "diameter_mm", "outside the image"),
    "grid that misses the VOIs": ("voxel_mm = 5\n", "voxel_mm = 5\norigin_mm = [-37.5, -57.5, "
                                  "100]\n", "outside"),
    "missing image": ('image = "tp24h.npy"', 'image = "tp25h.npy"', "does not exist"),
    "npy without voxel size": ("voxel_mm = 5\n", "", "voxel_mm"),
    "typo in a key": ("hours_after_injection = 72", "hours_after_injectoin = 72", "unknown key"),
    "unknown mode": ('mode = "decay_corrected_to_injection"', 'mode = "decay corrected"', "mode"),
    "isotope disagrees with the images": ('isotope = "In-111"', 'isotope = "Lu-177"', "In-111"),
    "two VOI shapes": ('name = "hot"\n', 'name = "hot"\nsphere = { centre_mm = [20, 0, 0], '
                       'diameter_mm = 10 }\n', "exactly one of"),
    "unknown key in a VOI shape": ("percent = 50,", "percent = 50, radius_mm = 3,", "radius_mm"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_one_line_and_exit_2(study, tmp_path, capsys, case):
    old, new, expected = BAD[case]
    _edit(study, old, new)
    code, _, err = run(capsys, study, "-o", tmp_path / "r")
    assert code == 2, err
    assert err.startswith("recon: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert "study.toml" in err


def test_npy_mask_on_another_grid_is_an_error(study, tmp_path, capsys):
    np.save(tmp_path / "small.npy", np.ones((4, 4, 4), dtype=np.uint8))
    _edit(study, 'mask = "background.nii.gz"', 'mask = "small.npy"')
    code, _, err = run(capsys, study, "-o", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1
    assert "(4, 4, 4)" in err and "(16, 24, 24)" in err


@pytest.mark.parametrize("bad", ["pickle", "truncated"])
def test_npy_files_are_read_defensively(study, tmp_path, capsys, bad):
    # A pickled (object) array is never unpickled; a header that declares more data than the
    # file holds is refused before anything is allocated (recon._npy.load_npy).
    target = tmp_path / ("tp24h.npy" if bad == "pickle" else "small.npy")
    if bad == "pickle":
        np.save(target, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        np.save(target, np.ones((16, 24, 24), dtype=np.uint8))
        target.write_bytes(target.read_bytes()[:200])
        _edit(study, 'mask = "background.nii.gz"', 'mask = "small.npy"')
    code, _, err = run(capsys, study, "-o", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1, err
    assert target.name in err
    assert ("pickle" if bad == "pickle" else "truncated") in err


def test_missing_study_file(tmp_path, capsys):
    code, _, err = run(capsys, tmp_path / "nothing.toml", "-o", tmp_path / "r")
    assert code == 2 and "not found" in err and err.count("\n") == 1


def test_output_folder_may_not_be_an_input(study, capsys):
    code, _, err = run(capsys, study, "-o", study.parent / "tp24h.npy")
    assert code == 2 and "input" in err


def test_syringe_readings_cylinders_label_maps_and_reference_by_label(study, tmp_path, capsys):
    labels = np.zeros(GRID.shape, np.int16)
    z, y, x = GRID.meshgrid_mm()
    labels[(x + 30.0) ** 2 + y**2 + z**2 <= 10.0**2] = 3
    labels[(x - 20.0) ** 2 + y**2 + z**2 <= 7.5**2] = 5
    np.save(tmp_path / "labels.npy", labels)
    text = study.read_text()
    text = text.replace(
        f"injected_activity_bq = {A0:g}",
        f"injected_activity_bq = {2 * A0:g}\nactivity_measured_at = 2026-03-01T08:00:00\n"
        f"residual_activity_bq = {A0 / 2:g}\nresidual_measured_at = 2026-03-01T10:00:00\n"
        'reference_timepoint = "24h"',
    )
    text = text.replace('mask = "background.nii.gz"', 'mask = "labels.npy"\nlabel = 3')
    text += (
        '\n[[vois]]\nname = "rod"\nrole = "organ"\n'
        'cylinder = { centre_mm = [20, 0, 0], radius_mm = 5, length_mm = 10, axis = "x" }\n'
    )
    study.write_text(text)
    code, _, err = run(capsys, study, "-o", tmp_path / "r", "--no-plots")
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    lam = LAM_H
    # Net activity at injection: syringe decayed 1 h forward, residual 1 h back.
    net = 2 * A0 * math.exp(-lam * 1.0) - A0 / 2 * math.exp(lam * 1.0)
    assert summary["injected_activity_bq"] == pytest.approx(net, rel=1e-9)
    assert summary["reference_timepoint"] == "24h"
    stats = read_csv(tmp_path / "r" / "voi_stats.csv")
    assert by(stats, voi="background", timepoint="3d")["mean"] == pytest.approx(
        background_at(72.0), rel=1e-5
    )
    assert by(stats, voi="rod", timepoint="24h")["mean"] == pytest.approx(lesion_at(24.0), 1e-5)
    ratios = read_csv(tmp_path / "r" / "ratios.csv")
    assert by(ratios, lesion="lesion", timepoint="1h")["to_rod"] == pytest.approx(1.0, rel=1e-5)


def test_rising_curve_has_no_effective_half_life_and_a_physical_tail():
    from recon.quant import TimeActivityCurve, clearance_kinetics

    hours = np.array([1.0, 24.0, 48.0])
    values = np.array([100.0, 200.0, 300.0])  # still rising at scan time
    tac = TimeActivityCurve(
        "tumour", hours * 3600.0, values, "activity_at_scan_time", "mean", "Bq/mL", "In-111"
    )
    kin = clearance_kinetics(tac, fit_from="first")
    assert kin.t_eff_h is None and kin.t_biol_h is None
    assert kin.tail_method == "physical" and "slower than physical decay" in kin.note
    trapezoid = 0.5 * 100.0 * 1.0 + 0.5 * (100 + 200) * 23.0 + 0.5 * (200 + 300) * 24.0
    assert kin.tia_bq_h_per_ml == pytest.approx(trapezoid + 300.0 / LAM_H, rel=1e-9)
    assert kin.tail_fraction == pytest.approx(300.0 / LAM_H / kin.tia_bq_h_per_ml, rel=1e-9)
    assert kin.tia_bq_h is None and kin.residence_time_h is None


def test_dicom_time_points_and_their_decay_reference(tmp_path, capsys):
    """Time points read from DICOM NM series (as recon spect writes them): values at scan time
    (Decay Correction START) and corrected to the administration (ADMIN), and a mode that
    contradicts the file's Decay Correction is refused."""
    from recon.io import write_dicom

    injection = {"datetime": INJECTION, "activity_bq": A0}
    for hours, decay in ((24.0, "START"), (48.0, "ADMIN")):
        acquired = INJECTION + timedelta(hours=hours)
        at_scan = image(phantom(hours)).with_data(phantom(hours), reference_time_s=0.0)
        write_dicom(
            at_scan, tmp_path / f"tp{hours:.0f}h", "NM",
            acquisition_datetime=acquired, injection=injection, decay_correction=decay,
        )  # fmt: skip
    body = f"""
[study]
isotope = "In-111"
injection_time = {INJECTION.isoformat()}

[[timepoints]]
image = "tp24h"
hours_after_injection = 24

[[timepoints]]
image = "tp48h"
hours_after_injection = 48
mode = "decay_corrected_to_injection"

[[vois]]
name = "lesion"
sphere = {{ centre_mm = [20, 0, 0], diameter_mm = {VOI_D} }}
"""
    (tmp_path / "study.toml").write_text(body, encoding="utf-8")
    code, _, err = run(capsys, tmp_path / "study.toml", "-o", tmp_path / "report")
    assert code == 0, err
    stats = read_csv(tmp_path / "report" / "voi_stats.csv")
    for label, hours in (("24h", 24.0), ("48h", 48.0)):
        lesion = by(stats, voi="lesion", timepoint=label)
        assert lesion["mean"] == pytest.approx(lesion_at(hours), rel=1e-3)  # 16-bit storage
    # Without mode, each time point's mode is the file's own Decay Correction.
    (tmp_path / "auto.toml").write_text(
        body.replace('mode = "decay_corrected_to_injection"\n', ""), encoding="utf-8"
    )
    code, _, err = run(capsys, tmp_path / "auto.toml", "-o", tmp_path / "auto")
    assert code == 0, err
    again = read_csv(tmp_path / "auto" / "voi_stats.csv")
    assert by(again, voi="lesion", timepoint="48h")["mean"] == pytest.approx(
        by(stats, voi="lesion", timepoint="48h")["mean"], rel=1e-9
    )
    # A mode that contradicts the file is refused, naming both.
    wrong = body.replace('mode = "decay_corrected_to_injection"', 'mode = "activity_at_scan_time"')
    (tmp_path / "wrong.toml").write_text(wrong, encoding="utf-8")
    code, _, err = run(capsys, tmp_path / "wrong.toml", "-o", tmp_path / "report2")
    assert code == 2 and err.count("\n") == 1
    assert 'Decay Correction ADMIN); set mode = "decay_corrected_to_injection"' in err
    assert 'the study file says mode = "activity_at_scan_time"' in err
    assert not (tmp_path / "report2").exists()
