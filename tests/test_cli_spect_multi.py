"""`recon spect` and `recon info` on a synthetic In-111 DICOM NM file with two photopeak windows
and three scatter windows."""

from __future__ import annotations

import json

import numpy as np
import pytest

import recon
from recon.cli import main
from recon.physics.attenuation import mu_water_per_mm
from recon.physics.scatter import EnergyWindow
from recon.physics.windows import assign_windows
from recon.simulate.phantoms import sphere_mask, uniform_cylinder
from tests.dicom_factory import nm_tomo_dataset, save

PIXEL = 6.0
N_U, N_V, N_VIEWS, STEP = 32, 6, 32, 11.25
ACTIVITY_BQ_ML = 20_000.0
SENSITIVITY = 40.0  # cps/MBq in each photopeak window
WINDOWS = (
    ("SC1", 140.0, 154.0),
    ("PEAK171", 154.0, 188.0),
    ("SC2", 188.0, 205.0),
    ("PEAK245", 221.0, 270.0),
    ("SC3", 270.0, 290.0),
)
# Scatter: a flat spectrum of this many counts per keV per bin, in every window, so that TEW
# (trapezoid of the neighbours' densities) is unbiased.
SCATTER_PER_KEV = 0.02


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Frames from the joint two-window model (ME, μ of water converted per window), Poisson."""
    folder = tmp_path_factory.mktemp("in111")
    grid = recon.ImageGrid((N_V, N_U, N_U), PIXEL)
    activity = uniform_cylinder(grid, radius_mm=60, length_mm=60, value=ACTIVITY_BQ_ML)
    activity[sphere_mask(grid, (30.0, 0.0, 0.0), 24.0)] = 4 * ACTIVITY_BQ_ML
    mu171 = mu_water_per_mm(171.3) * (uniform_cylinder(grid, radius_mm=60, length_mm=72) > 0.5)
    alpha = 0.0 - np.arange(N_VIEWS) * STEP  # CW: decreasing DICOM angle
    geometry = recon.SpectGeometry(
        angles_deg=np.mod(180.0 - alpha, 360.0), radii_mm=250.0, n_u=N_U, n_v=N_V,
        pixel_size_mm=PIXEL, durations_s=np.full(N_VIEWS, 20.0),
    )  # fmt: skip
    limits = {n: EnergyWindow(n, lo, hi) for n, lo, hi in WINDOWS}
    peaks = assign_windows(limits, ["In-111"]).peaks
    model = recon.photopeak_model(
        geometry, grid, peaks, mu_map=mu171, mu_energy_kev=171.3, collimator="ME",
        isotope="In-111", sensitivity_cps_per_mbq=[SENSITIVITY, SENSITIVITY], device="cpu",
    )  # fmt: skip
    primary = np.asarray(model.forward(activity), np.float64)
    rng = np.random.default_rng(3)
    frames = []
    for name, lo, hi in WINDOWS:
        mean = np.full(primary.shape[1:], SCATTER_PER_KEV * (hi - lo))
        if name in model.names:
            mean = mean + primary[model.names.index(name)]
        frames.append(rng.poisson(mean))
    frames_arr = np.stack(frames)[:, None, :, ::-1, :].astype(np.uint16)  # head row first
    nm = nm_tomo_dataset(
        frames_arr, angular_step_deg=STEP, start_angles_deg=(0.0,), direction="CW",
        pixel_spacing=(PIXEL, PIXEL), frame_duration_ms=20000.0, radial_positions=250.0,
        windows=WINDOWS, radionuclide_code_meaning="^111^Indium",
        radionuclide_code_value="C-145A4", radiopharmaceutical="In111 liposomes",
    )  # fmt: skip
    path = save(nm, folder / "in111.dcm")
    np.save(folder / "mu171.npy", mu171.astype(np.float32))
    return folder, path, activity


def _run(tmp_path, study, name, *options):
    folder, path, _ = study
    out = tmp_path / name
    code = main([
        "spect", str(path), "--output", str(out), "--mu", str(folder / "mu171.npy"),
        "--mu-energy", "171.3", "--collimator", "ME", "--iterations", "3", "--subsets", "8",
        "--device", "cpu", *options,
    ])  # fmt: skip
    return code, out


def test_in111_uses_both_photopeaks_by_default(tmp_path, study, capsys):
    code, out = _run(tmp_path, study, "joint", "--sensitivity", str(2 * SENSITIVITY))
    assert code == 0
    err = capsys.readouterr().err
    assert "reconstructing jointly from every photopeak window" in err
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["photopeaks"]
    assert [r["window"] for r in rows] == ["PEAK171", "PEAK245"]
    # NNDC yields of In-111: 0.907 (171 keV), 0.941 (245 keV).
    assert rows[0]["yield_per_decay"] == pytest.approx(0.907, abs=0.005)
    assert rows[1]["yield_per_decay"] == pytest.approx(0.941, abs=0.005)
    assert (rows[0]["lower_scatter"], rows[0]["upper_scatter"]) == ("SC1", "SC2")
    assert (rows[1]["lower_scatter"], rows[1]["upper_scatter"]) == ("SC2", "SC3")
    assert rows[1]["penetration_fraction"] > 0.01  # 245 keV through ME
    assert summary["scatter"] == "tew"
    assert summary["sensitivity_mode"] == "per decay, shared by yield"
    assert summary["mu_energy_kev"] == pytest.approx(171.3)
    # 80 cps/MBq over both windows, shared by yield: 39.3 and 40.7 instead of 40 and 40, so the
    # image is ~0.2 % off the truth from the calibration alone; the body's activity within 5 %.
    _, _, activity = study
    image = np.load(out / "image.npy")
    body = uniform_cylinder(recon.ImageGrid((N_V, N_U, N_U), PIXEL), radius_mm=72,
                            length_mm=36) > 0.5  # fmt: skip
    assert image[body].sum() == pytest.approx(activity[body].sum(), rel=0.05)


def test_photopeaks_option_selects_windows(tmp_path, study):
    code, out = _run(
        tmp_path, study, "one", "--photopeaks", "PEAK245",
        "--window-sensitivities", str(SENSITIVITY),
    )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["window"] for r in summary["photopeaks"]] == ["PEAK245"]
    _, _, activity = study
    image = np.load(out / "image.npy")
    body = uniform_cylinder(recon.ImageGrid((N_V, N_U, N_U), PIXEL), radius_mm=72,
                            length_mm=36) > 0.5  # fmt: skip
    assert image[body].sum() == pytest.approx(activity[body].sum(), rel=0.05)


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--photopeaks", "PEAK999"], "'PEAK999' is not a photopeak window of In-111"),
     (["--photopeaks", "SC1"], "'SC1' is not a photopeak window"),
     (["--photopeaks", "PEAK171,PEAK171"], "named twice"),
     (["--window-sensitivities", "40,x"], "give numbers in cps/MBq"),
     (["--window-sensitivities", "40,40,40"], "3 sensitivities for 2 photopeak windows"),
     (["--mu-energy", "5"], "--mu-energy")],
)  # fmt: skip
def test_bad_multi_window_options_are_refused(tmp_path, study, capsys, options, message):
    code, _ = _run(tmp_path, study, "bad", *options)
    assert code == 2
    assert message in capsys.readouterr().err


def test_info_shows_the_window_assignment(study, capsys):
    _, path, _ = study
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "photopeak of In-111 171.28 keV" in out or "photopeak of In-111 171.3 keV" in out
    assert "scatter windows SC2/SC3" in out


DUAL_WINDOWS = (
    ("TC_SC", 120.0, 129.9),
    ("TC", 129.9, 151.1),
    ("TC_UP", 151.1, 158.5),
    ("IN171", 158.5, 184.1),
    ("IN171_SC", 184.1, 195.0),
    ("IN245_SC", 215.0, 227.0),
    ("IN245", 227.0, 263.8),
)


@pytest.fixture(scope="module")
def dual_study(tmp_path_factory):
    """Tc-99m sphere at patient left, In-111 sphere at patient right, both in one acquisition:
    primaries from the multi-isotope model, scatter (the In-111 down-scatter included) a flat
    spectrum up to 227 keV that falls linearly to 0 across the IN245 window (nothing scatters
    above the highest photopeak), so that each window's TEW estimate is unbiased: IN245 has no
    upper scatter window, and TEW then takes the density at the peak's upper edge as 0. (With
    the flat spectrum continued through IN245, half its scatter was left in the In-111 image:
    +16 % over the whole image against Tc-99m's +7 %.)"""
    folder = tmp_path_factory.mktemp("dual")
    grid = recon.ImageGrid((N_V, N_U, N_U), PIXEL)
    tc = np.zeros(grid.shape, np.float32)
    indium = np.zeros(grid.shape, np.float32)
    tc[sphere_mask(grid, (30.0, 0.0, 0.0), 30.0)] = 4 * ACTIVITY_BQ_ML
    indium[sphere_mask(grid, (-30.0, 0.0, 0.0), 30.0)] = 4 * ACTIVITY_BQ_ML
    alpha = 0.0 - np.arange(N_VIEWS) * STEP
    geometry = recon.SpectGeometry(
        angles_deg=np.mod(180.0 - alpha, 360.0), radii_mm=250.0, n_u=N_U, n_v=N_V,
        pixel_size_mm=PIXEL, durations_s=np.full(N_VIEWS, 20.0),
    )  # fmt: skip
    limits = {n: EnergyWindow(n, lo, hi) for n, lo, hi in DUAL_WINDOWS}
    assignment = assign_windows(limits, ["Tc-99m", "In-111"])
    model = recon.multi_isotope_model(
        geometry, grid, assignment, collimator="ME",
        sensitivity_cps_per_mbq={"Tc-99m": 60.0, "In-111": [SENSITIVITY, SENSITIVITY]},
    )  # fmt: skip
    primary = np.asarray(model.forward(np.concatenate([tc, indium])), np.float64)
    rng = np.random.default_rng(4)
    frames = []
    for name, lo, hi in DUAL_WINDOWS:
        falls = name == "IN245"  # the trapezoid's area: its lower edge's density × width / 2
        mean = np.full(primary.shape[1:], SCATTER_PER_KEV * (hi - lo) * (0.5 if falls else 1.0))
        if name in model.windows:
            mean = mean + primary[model.windows.index(name)]
        frames.append(rng.poisson(mean))
    frames_arr = np.stack(frames)[:, None, :, ::-1, :].astype(np.uint16)
    nm = nm_tomo_dataset(
        frames_arr, angular_step_deg=STEP, start_angles_deg=(0.0,), direction="CW",
        pixel_spacing=(PIXEL, PIXEL), frame_duration_ms=20000.0, radial_positions=250.0,
        windows=DUAL_WINDOWS,
    )  # fmt: skip
    return save(nm, folder / "dual.dcm"), {"Tc-99m": tc, "In-111": indium}


def _run_dual(path, out, *extra):
    return main([
        "spect", str(path), "--output", str(out), "--isotopes", "Tc-99m,In-111",
        "--collimator", "ME", "--subsets", "8", "--device", "cpu",
        "--window-sensitivities", f"60,{SENSITIVITY},{SENSITIVITY}", *extra,
    ])  # fmt: skip


def _assert_each_isotope_in_place(out, truth, tolerance):
    """Each isotope's image holds its sphere's activity (within ``tolerance``, summed over a
    40 mm region around it) and < 5 % of it sits where the other isotope's sphere is."""
    grid = recon.ImageGrid((N_V, N_U, N_U), PIXEL)
    z, y, x = grid.meshgrid_mm()
    near = {"Tc-99m": np.hypot(x - 30, y) < 40, "In-111": np.hypot(x + 30, y) < 40}
    other = {"Tc-99m": "In-111", "In-111": "Tc-99m"}
    for iso in ("Tc-99m", "In-111"):
        image = np.load(out / iso / "image.npy")
        assert (out / iso / "image.hv").is_file() and any((out / iso / "dicom").iterdir())
        own = image[near[iso]].sum() / truth[iso].sum()
        leak = image[near[other[iso]]].sum() / truth[other[iso]].sum()
        assert own == pytest.approx(1.0, abs=tolerance), (iso, own)
        assert leak < 0.05, (iso, leak)


def test_dual_isotope_cli_writes_one_image_per_isotope(tmp_path, dual_study, capsys):
    path, truth = dual_study
    out = tmp_path / "dual"
    assert _run_dual(path, out, "--iterations", "4") == 0
    err = capsys.readouterr().err
    assert "TEW scatter estimate" in err
    # IN245 has no scatter window above it: the assumption TEW then makes is said.
    assert "TEW for photopeak window(s) IN245: no scatter window above" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["isotopes"] == ["Tc-99m", "In-111"] and summary["units"] == "Bq/mL"
    assert [(r["isotope"], r["window"]) for r in summary["photopeaks"]] == [
        ("Tc-99m", "TC"),
        ("In-111", "IN171"),
        ("In-111", "IN245"),
    ]
    assert summary["photopeaks"][0]["lower_scatter"] == "TC_SC"
    _assert_each_isotope_in_place(out, truth, tolerance=0.10)


def test_dual_isotope_cli_runs_bsrem_with_a_prior_per_isotope(tmp_path, dual_study, capsys):
    """--algorithm bsrem with --isotopes: the prior keeps each isotope's image to itself (the
    model stacks them along z; tests/test_priors.py checks the seams voxel by voxel), and both
    images keep their activity where it is, within the same 10 % as OSEM's (both isotopes
    measure +8 % in their regions at these counts, OSEM +6 %)."""
    path, truth = dual_study
    out = tmp_path / "dual-bsrem"
    code = _run_dual(path, out, "--iterations", "8", "--algorithm", "bsrem", "--beta", "0.1")
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm"] == "BSREM" and summary["beta"] == 0.1
    assert len(summary["objective"]) == 8
    assert summary["objective"][-1] >= summary["objective"][2]
    _assert_each_isotope_in_place(out, truth, tolerance=0.10)


@pytest.mark.parametrize(
    ("value", "message"),
    [("Tc-99m", "name two or more isotopes"), ("Tc-99m,Tc99m", "Tc-99m is named twice"),
     ("Tc-99m,Unobtainium", "Unobtainium"), ("Tc-99m,Lu-177", "no energy window holds")],
)  # fmt: skip
def test_bad_isotopes_are_refused(tmp_path, dual_study, capsys, value, message):
    path, _ = dual_study
    code = main(["spect", str(path), "--output", str(tmp_path / "o"), "--isotopes", value])
    assert code == 2
    assert message in capsys.readouterr().err
