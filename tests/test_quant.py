"""Tests of recon.quant.calibration: sensitivity, Bq/mL images, injected activity, SUV, %ID.

Every expected value is a closed form written out here (or a hand-computed number), not a call
into the code under test.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import recon
from recon.errors import InputError, PhysicsError
from recon.quant import (
    Injection,
    injected_activity_at,
    lean_body_mass_kg,
    percent_id,
    percent_id_per_ml,
    sensitivity_from_calibration,
    suv_bw,
    suv_lbm,
    to_bq_per_ml,
)

HOUR, DAY = 3600.0, 86400.0
# Half-lives written out independently of the isotope table (NuDat 3).
HALF_LIFE_S = {"In-111": 2.8047 * DAY, "Zr-89": 78.41 * HOUR, "Cu-64": 12.701 * HOUR}
TC99M_HALF_LIFE_S = 6.0067 * HOUR


def lam(isotope: str) -> float:
    return math.log(2.0) / (HALF_LIFE_S.get(isotope) or TC99M_HALF_LIFE_S)


# ------------------------------------------------------------------------------ sensitivity


def _expected_counts(s_cps_per_mbq, a_bq, delay_s, duration_s, half_life_s):
    # N = S · ∫_{delay}^{delay+Δ} A e^{−λt} dt / 10⁶
    k = math.log(2.0) / half_life_s
    integral = a_bq * math.exp(-k * delay_s) * (1 - math.exp(-k * duration_s)) / k
    return s_cps_per_mbq * integral / 1e6


def test_sensitivity_from_counts_decays_source_to_and_over_acquisition():
    s_true, a_cal, delay, duration = 92.5, 150e6, 5400.0, 900.0
    counts = _expected_counts(s_true, a_cal, delay, duration, TC99M_HALF_LIFE_S)
    s = sensitivity_from_calibration(counts, duration, a_cal, 0.0, delay, "Tc-99m")
    assert s == pytest.approx(s_true, rel=1e-12)


def test_sensitivity_accepts_datetimes_and_subtracts_background():
    s_true, a_cal, duration = 12.0, 40e6, 1200.0
    t_cal = datetime(2024, 3, 1, 9, 0, 0)
    t_acq = t_cal + timedelta(days=2, minutes=30)
    delay = (t_acq - t_cal).total_seconds()
    counts = _expected_counts(s_true, a_cal, delay, duration, HALF_LIFE_S["In-111"])
    s = sensitivity_from_calibration(
        counts + 5000.0, duration, a_cal, t_cal, t_acq, "In-111", background_counts=5000.0
    )
    assert s == pytest.approx(s_true, rel=1e-12)


def test_sensitivity_from_a_reconstructed_image_total():
    grid = recon.ImageGrid((4, 5, 6), 4.0)
    a_cal, delay, duration = 80e6, 3600.0, 600.0
    factor = 7.5  # image units × mL per MBq
    # Decay-corrected to acquisition start + 0: the image shows A(t_acq).
    a_ref = a_cal * math.exp(-lam("Tc-99m") * delay)
    total = factor * a_ref / 1e6
    data = np.full(grid.shape, total / (grid.n_voxels * grid.voxel_volume_ml), np.float64)
    img = recon.Image(data, grid, isotope="Tc-99m", reference_time_s=0.0)
    s = sensitivity_from_calibration(img, duration, a_cal, 0.0, delay, "Tc-99m")
    assert s == pytest.approx(factor, rel=1e-6)
    # Calibrating the same image with that factor gives back the source activity.
    cal = to_bq_per_ml(img, s)
    assert cal.units == "Bq/mL"
    total_bq = float(np.asarray(cal, dtype=np.float64).sum()) * grid.voxel_volume_ml
    assert total_bq == pytest.approx(a_ref, rel=1e-6)


def test_sensitivity_errors():
    with pytest.raises(InputError, match="acquisition_duration_s"):
        sensitivity_from_calibration(1e5, 0.0, 1e6, 0.0, 10.0, "Tc-99m")
    with pytest.raises(InputError, match="both be datetime"):
        sensitivity_from_calibration(1e5, 10.0, 1e6, datetime(2024, 1, 1), 10.0, "Tc-99m")
    with pytest.raises(InputError, match="positive"):
        sensitivity_from_calibration(100.0, 10.0, 1e6, 0.0, 1.0, "Tc-99m", background_counts=200)
    with pytest.raises(PhysicsError):
        sensitivity_from_calibration(1e5, 10.0, 1e6, 0.0, 1.0, "Xx-999")


def test_to_bq_per_ml_matches_the_spect_model_calibration():
    # A SpectModel given a planar sensitivity reconstructs Bq/mL; an uncalibrated model converted
    # with to_bq_per_ml(…, projection_pixel_area_mm2) must predict the same counts.
    grid = recon.ImageGrid((8, 16, 16), 4.0)
    geom = recon.SpectGeometry.circular(
        n_views=8, arc_deg=360, radius_mm=100, n_u=16, n_v=8, pixel_size_mm=4.0
    )
    plain = recon.SpectModel(geom, grid, device="cpu")
    calibrated = recon.SpectModel(geom, grid, device="cpu", sensitivity_cps_per_mbq=80.0)
    x = np.random.default_rng(0).random(grid.shape).astype(np.float32)
    x_bq = to_bq_per_ml(recon.Image(x, grid), 80.0, projection_pixel_area_mm2=16.0)
    y_plain = np.asarray(plain.forward(x))
    y_cal = np.asarray(calibrated.forward(np.asarray(x_bq)))
    np.testing.assert_allclose(y_cal, y_plain, rtol=1e-5, atol=1e-6 * y_plain.max())


def test_to_bq_per_ml_scale_and_errors():
    grid = recon.ImageGrid((2, 2, 2), 2.0)
    img = recon.Image(np.full(grid.shape, 3.0, np.float32), grid, isotope="Zr-89")
    out = to_bq_per_ml(img, 15.0)
    np.testing.assert_allclose(np.asarray(out), 3.0 / 15e-6, rtol=1e-6)
    assert out.isotope == "Zr-89" and out.info["calibration"]["sensitivity_cps_per_mbq"] == 15.0
    with pytest.raises(InputError, match="already calibrated"):
        to_bq_per_ml(out, 15.0)
    with pytest.raises(InputError, match="sensitivity"):
        to_bq_per_ml(img, -1.0)


# ------------------------------------------------------------------------------ injection


def test_injection_net_activity_with_residual_measured_later():
    k = lam("Zr-89")
    inj = Injection(
        activity_bq=74e6,
        measured_at=-600.0,
        injected_at=0.0,
        isotope="Zr-89",
        residual_bq=2e6,
        residual_measured_at=900.0,
    )
    expected = 74e6 * math.exp(-k * 600.0) - 2e6 * math.exp(k * 900.0)
    assert inj.activity_at_injection_bq == pytest.approx(expected, rel=1e-14)
    assert inj.activity_at(3 * DAY) == pytest.approx(expected * math.exp(-k * 3 * DAY), rel=1e-12)


@pytest.mark.parametrize("isotope", ["In-111", "Zr-89", "Cu-64"])
def test_activity_three_days_after_injection_decay_corrected_back_equals_injected(isotope):
    k = lam(isotope)
    t0 = datetime(2024, 5, 6, 10, 15, 0, tzinfo=timezone.utc)
    inj = Injection(185e6, t0 - timedelta(minutes=20), t0, isotope)
    a_inj = 185e6 * math.exp(-k * 1200.0)
    assert inj.activity_at_injection_bq == pytest.approx(a_inj, rel=1e-12)
    scan = t0 + timedelta(days=3)
    a_scan = inj.activity_at(scan)
    assert a_scan == pytest.approx(a_inj * math.exp(-k * 3 * DAY), rel=1e-12)
    # Decay-corrected back to injection: the injected activity, to 1e-9.
    assert a_scan * math.exp(k * 3 * DAY) == pytest.approx(a_inj, rel=1e-9)
    # All of the activity at scan time is 100 %ID, whichever convention is used consistently.
    t = inj.time_after_injection_s(scan)
    assert t == 3 * DAY
    assert percent_id(a_scan, inj, time_after_injection_s=t) == pytest.approx(100.0, rel=1e-9)
    assert percent_id(a_scan * math.exp(k * t), inj) == pytest.approx(100.0, rel=1e-9)
    assert injected_activity_at(a_inj, t, isotope=isotope) == pytest.approx(a_scan, rel=1e-12)


def test_injection_errors():
    with pytest.raises(InputError, match="residual_measured_at"):
        Injection(1e8, 0.0, 10.0, "Cu-64", residual_bq=1e6)
    with pytest.raises(InputError, match="not smaller"):
        Injection(1e6, 0.0, 0.0, "Cu-64", residual_bq=2e6, residual_measured_at=0.0)
    with pytest.raises(InputError, match="activity_bq"):
        Injection(-1e6, 0.0, 0.0, "Cu-64")
    with pytest.raises(InputError, match="both be datetime"):
        Injection(1e6, datetime(2024, 1, 1), 0.0, "Cu-64")
    with pytest.raises(InputError, match="naive"):
        Injection(1e6, datetime(2024, 1, 1), datetime(2024, 1, 1, tzinfo=timezone.utc), "Cu-64")
    inj = Injection(1e8, 0.0, 100.0, "Cu-64")
    with pytest.raises(InputError, match="before the injection"):
        inj.activity_at(50.0)


def test_injected_activity_at_errors():
    with pytest.raises(InputError, match="injected activity is needed"):
        injected_activity_at(None)
    with pytest.raises(InputError, match="must not be negative"):
        injected_activity_at(1e8, -5.0, isotope="In-111")
    with pytest.raises(InputError, match="isotope"):
        injected_activity_at(1e8, 3600.0)
    with pytest.raises(InputError, match="disagrees"):
        injected_activity_at(Injection(1e8, 0.0, 0.0, "Cu-64"), 10.0, isotope="Zr-89")


# ------------------------------------------------------------------------------ SUV, LBM, %ID


def test_suv_bw_closed_form():
    # 5 kBq/mL, 370 MBq, 70 kg: 5000 · 70 000 / 370e6
    assert suv_bw(5000.0, 370e6, 70.0) == pytest.approx(5000.0 * 70000.0 / 370e6, rel=1e-14)


def test_suv_bw_time_conventions_agree():
    k = lam("Zr-89")
    t = 4 * DAY
    c_scan = 1234.0
    at_scan = suv_bw(c_scan, 37e6, 82.0, time_after_injection_s=t, isotope="Zr-89")
    decay_corrected = suv_bw(c_scan * math.exp(k * t), 37e6, 82.0)
    assert at_scan == pytest.approx(decay_corrected, rel=1e-12)
    assert at_scan == pytest.approx(c_scan * 82000.0 / (37e6 * math.exp(-k * t)), rel=1e-12)


def test_suv_on_arrays_and_images():
    grid = recon.ImageGrid((2, 3, 4), 3.0)
    data = np.arange(24, dtype=np.float32).reshape(grid.shape)
    img = recon.Image(data, grid, units="Bq/mL", isotope="Cu-64")
    out = suv_bw(img, 100e6, 50.0)
    assert isinstance(out, recon.Image) and out.units == "g/mL"
    np.testing.assert_allclose(np.asarray(out), data * 50000.0 / 100e6, rtol=1e-6)
    expected = data.astype(np.float64) * 50000.0 / 100e6
    np.testing.assert_allclose(suv_bw(data, 100e6, 50.0), expected, rtol=1e-12)
    with pytest.raises(InputError, match="Bq/mL"):
        suv_bw(recon.Image(data, grid), 100e6, 50.0)


@pytest.mark.parametrize(
    ("sex", "formula", "lbm"),
    [
        # W = 80 kg, H = 180 cm, computed by hand:
        # James: 1.10·80 − 128·(80/180)² = 62.71605; 1.07·80 − 148·(80/180)² = 56.36543
        ("M", "james", 62.716049),
        ("F", "james", 56.365432),
        # Janmahasatian, BMI = 24.6914: 9270·80/(6680 + 216·BMI) = 61.73141;
        # 9270·80/(8780 + 244·BMI) = 50.09223
        ("male", "janmahasatian", 61.731410),
        ("Female", "janmahasatian", 50.092230),
    ],
)
def test_lean_body_mass(sex, formula, lbm):
    assert lean_body_mass_kg(80.0, 180.0, sex, formula) == pytest.approx(lbm, rel=1e-6)


def test_suv_lbm_default_is_janmahasatian():
    c, a = 8000.0, 300e6
    expected = c * 61.731410 * 1000.0 / a
    assert suv_lbm(c, a, 80.0, 180.0, "M") == pytest.approx(expected, rel=1e-6)
    james = suv_lbm(c, a, 80.0, 180.0, "M", formula="james")
    assert james == pytest.approx(c * 62.716049 * 1000.0 / a, rel=1e-6)


def test_lbm_errors():
    with pytest.raises(InputError, match="weight_kg"):
        lean_body_mass_kg(-70.0, 170.0, "M")
    with pytest.raises(InputError, match="height_cm"):
        lean_body_mass_kg(70.0, 0.0, "M")
    with pytest.raises(InputError, match="sex"):
        lean_body_mass_kg(70.0, 170.0, "x")
    with pytest.raises(InputError, match="formula"):
        lean_body_mass_kg(70.0, 170.0, "M", "boer")
    # James at BMI 111 gives a negative mass: refused with advice.
    with pytest.raises(InputError, match="janmahasatian"):
        lean_body_mass_kg(250.0, 150.0, "M", "james")
    with pytest.raises(InputError, match="weight_kg"):
        suv_bw(1000.0, 1e8, -3.0)


def test_percent_id_and_per_ml():
    assert percent_id(2.5e6, 50e6) == pytest.approx(5.0, rel=1e-14)
    assert percent_id_per_ml(1.0e4, 50e6) == pytest.approx(0.02, rel=1e-14)
    k = lam("In-111")
    t = 2 * DAY
    scan = percent_id(2.5e6, 50e6, time_after_injection_s=t, isotope="In-111")
    assert scan == pytest.approx(100 * 2.5e6 / (50e6 * math.exp(-k * t)), rel=1e-12)
    grid = recon.ImageGrid((1, 2, 2), 4.0)
    img = recon.Image(np.full(grid.shape, 500.0, np.float32), grid, units="Bq/mL")
    out = percent_id_per_ml(img, 1e6)
    assert out.units == "%ID/mL"
    np.testing.assert_allclose(np.asarray(out), 0.05, rtol=1e-6)


def test_percent_id_needs_injected_activity():
    with pytest.raises(InputError, match="injected activity is needed"):
        percent_id(1e6, None)
    with pytest.raises(InputError, match="injected activity"):
        percent_id(1e6, 0.0)
