"""Tests of recon.quant.timeseries: time points, registration, TACs, fits, TIA, residence time."""

from __future__ import annotations

import math

import numpy as np
import pytest

import recon
from recon.errors import GeometryError, InputError
from recon.quant import (
    ExponentialFit,
    TimePoint,
    Voi,
    biological_half_life,
    effective_half_life,
    fit_exponential,
    resample_image,
    resample_voi,
    residence_time_s,
    time_activity_curve,
    time_integrated_activity,
)
from recon.simulate.phantoms import sphere_mask

HOUR, DAY = 3600.0, 86400.0
LN2 = math.log(2.0)
T_IN111 = 2.8047 * DAY  # NuDat 3, written out independently of the isotope table
LAM_IN111 = LN2 / T_IN111


@pytest.fixture
def grid() -> recon.ImageGrid:
    return recon.ImageGrid((24, 24, 24), 4.0)


def sphere_image(grid, centre, value, *, units="Bq/mL", isotope="In-111"):
    data = np.where(sphere_mask(grid, centre, 24.0), value, 0.0).astype(np.float32)
    return recon.Image(data, grid, units=units, isotope=isotope)


def rot_z(deg: float, shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    a = math.radians(deg)
    m = np.eye(4)
    m[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    m[:3, 3] = shift
    return m


# ------------------------------------------------------------------------------ TACs


def test_tac_in_both_decay_modes(grid):
    t_bio = 30 * HOUR
    lam_eff = LAM_IN111 + LN2 / t_bio
    times = np.array([1.0, 24.0, 72.0, 144.0]) * HOUR
    conc = 5e4 * np.exp(-lam_eff * times)  # activity at scan time
    centre = (8.0, -4.0, 0.0)
    points = [TimePoint(sphere_image(grid, centre, c), t) for c, t in zip(conc, times, strict=True)]
    voi = Voi.sphere(grid, centre, 24.0, name="tumour")
    scan = time_activity_curve(points[::-1], voi, mode="activity_at_scan_time")
    np.testing.assert_allclose(scan.times_s, times)  # sorted by time
    np.testing.assert_allclose(scan.values, conc, rtol=1e-6)
    assert scan.units == "Bq/mL" and scan.voi == "tumour" and scan.isotope == "In-111"
    dc = time_activity_curve(points, voi, mode="decay_corrected_to_injection")
    np.testing.assert_allclose(dc.values, 5e4 * np.exp(-LN2 / t_bio * times), rtol=1e-6)
    np.testing.assert_allclose(scan.in_mode("decay_corrected_to_injection").values, dc.values)
    np.testing.assert_allclose(dc.in_mode("activity_at_scan_time").values, scan.values)
    total = time_activity_curve(points, voi, mode="activity_at_scan_time", quantity="total")
    assert total.units == "Bq"
    np.testing.assert_allclose(total.values, conc * voi.volume_ml, rtol=1e-6)


def test_tac_from_images_already_decay_corrected(grid):
    times = np.array([2.0, 48.0]) * HOUR
    points = [
        TimePoint(sphere_image(grid, (0, 0, 0), 1000.0), t, decay_corrected_to_injection=True)
        for t in times
    ]
    voi = Voi.sphere(grid, (0, 0, 0), 24.0)
    scan = time_activity_curve(points, voi, mode="activity_at_scan_time")
    np.testing.assert_allclose(scan.values, 1000.0 * np.exp(-LAM_IN111 * times), rtol=1e-6)
    dc = time_activity_curve(points, voi, mode="decay_corrected_to_injection")
    np.testing.assert_allclose(dc.values, 1000.0, rtol=1e-6)


def test_tac_with_rigid_transforms(grid):
    # Reference VOI at (20, 0, 0); at the second scan the patient lies rotated by 90° about z
    # (x → y) and at the third shifted by 8 mm in x: the VOI must follow.
    ref_centre = np.array([20.0, 0.0, 0.0])
    voi = Voi.sphere(grid, ref_centre, 24.0)
    t_rot, t_shift = rot_z(90.0), rot_z(0.0, (8.0, 0.0, 0.0))
    points = [
        TimePoint(sphere_image(grid, ref_centre, 900.0), 3600.0),
        TimePoint(sphere_image(grid, (0.0, 20.0, 0.0), 800.0), 2 * 3600.0, transform=t_rot),
        TimePoint(sphere_image(grid, (28.0, 0.0, 0.0), 700.0), 3 * 3600.0, transform=t_shift),
    ]
    tac = time_activity_curve(points, voi, mode="activity_at_scan_time")
    np.testing.assert_allclose(tac.values, [900.0, 800.0, 700.0], rtol=1e-6)
    np.testing.assert_allclose(tac.volumes_ml, voi.volume_ml)
    # Without the transform the VOI misses the moved sphere.
    unregistered = [TimePoint(p.image, p.time_after_injection_s) for p in points]
    bad = time_activity_curve(unregistered, voi, mode="activity_at_scan_time")
    assert bad.values[1] < 100.0


def test_resample_voi_onto_a_finer_grid_in_the_same_frame(grid):
    voi = Voi.sphere(grid, (4.0, 4.0, 4.0), 30.0)
    fine = recon.ImageGrid((48, 48, 48), 2.0)
    moved = resample_voi(voi, fine)
    assert moved.grid is fine
    assert moved.volume_ml == pytest.approx(voi.volume_ml, rel=0.05)
    np.testing.assert_allclose(moved.centroid_mm, voi.centroid_mm, atol=0.5)
    assert resample_voi(voi, grid) is voi


def test_resample_image_with_a_translation(grid):
    img = sphere_image(grid, (8.0, 0.0, 0.0), 100.0)
    # Reference → image is +8 mm in x, so in the reference frame the sphere sits at the origin.
    moved = resample_image(img, grid, rot_z(0.0, (8.0, 0.0, 0.0)), order=0)
    np.testing.assert_array_equal(
        np.asarray(moved), np.asarray(sphere_image(grid, (0.0, 0.0, 0.0), 100.0))
    )
    assert moved.units == "Bq/mL" and moved.isotope == "In-111"


def test_registration_errors(grid):
    voi = Voi.sphere(grid, (0, 0, 0), 20.0)
    scale = np.diag([2.0, 1.0, 1.0, 1.0])
    with pytest.raises(GeometryError, match="not rigid"):
        resample_voi(voi, grid, scale)
    mirror = np.diag([-1.0, 1.0, 1.0, 1.0])
    with pytest.raises(GeometryError, match="not rigid"):
        TimePoint(sphere_image(grid, (0, 0, 0), 1.0), 0.0, transform=mirror)
    with pytest.raises(GeometryError, match="4×4"):
        resample_voi(voi, grid, np.eye(3))
    with pytest.raises(GeometryError, match="outside"):
        resample_voi(voi, grid, rot_z(0.0, (500.0, 0.0, 0.0)))


def test_tac_errors(grid):
    img = sphere_image(grid, (0, 0, 0), 1.0)
    voi = Voi.sphere(grid, (0, 0, 0), 20.0)
    with pytest.raises(InputError, match="before the injection"):
        TimePoint(img, -60.0)
    with pytest.raises(InputError, match="mode"):
        time_activity_curve([TimePoint(img, 0.0)], voi, mode="corrected")
    with pytest.raises(InputError, match="same time"):
        time_activity_curve(
            [TimePoint(img, 5.0), TimePoint(img, 5.0)], voi, mode="activity_at_scan_time"
        )
    with pytest.raises(InputError, match="quantity"):
        time_activity_curve([TimePoint(img, 0.0)], voi, mode="activity_at_scan_time", quantity="x")
    no_iso = sphere_image(grid, (0, 0, 0), 1.0, isotope=None)
    with pytest.raises(InputError, match="isotope"):
        time_activity_curve([TimePoint(no_iso, 60.0)], voi, mode="decay_corrected_to_injection")
    with pytest.raises(InputError, match="disagrees"):
        time_activity_curve(
            [TimePoint(img, 0.0)], voi, mode="activity_at_scan_time", isotope="Cu-64"
        )
    other_grid = recon.ImageGrid((24, 24, 24), 3.0)
    voi_other = Voi.sphere(other_grid, (0, 0, 0), 20.0)
    # A VOI on another grid of the same frame is resampled, not refused.
    tac = time_activity_curve([TimePoint(img, 0.0)], voi_other, mode="activity_at_scan_time")
    assert tac.values[0] > 0.5


# ------------------------------------------------------------------------------ fits


def test_mono_exponential_fit_recovers_parameters():
    t = np.array([0.5, 4.0, 24.0, 48.0, 96.0, 168.0]) * HOUR
    a, k = 2.5e6, LN2 / (40.0 * HOUR)
    fit = fit_exponential(t, a * np.exp(-k * t), 1)
    assert fit.n_terms == 1
    assert fit.amplitudes[0] == pytest.approx(a, rel=1e-6)
    assert fit.rates_per_s[0] == pytest.approx(k, rel=1e-6)
    assert fit.half_lives_s[0] == pytest.approx(40.0 * HOUR, rel=1e-6)
    assert fit.covariance.shape == (2, 2)
    assert fit.residual_rms == pytest.approx(0.0, abs=1e-6 * a)
    assert fit(48.0 * HOUR) == pytest.approx(a * math.exp(-k * 48 * HOUR), rel=1e-6)


def test_bi_exponential_fit_recovers_parameters():
    t = np.array([0.25, 1.0, 3.0, 6.0, 24.0, 48.0, 72.0, 120.0, 168.0]) * HOUR
    a1, k1, a2, k2 = 3e5, LN2 / (4.0 * HOUR), 1e5, LN2 / (55.0 * HOUR)
    values = a1 * np.exp(-k1 * t) + a2 * np.exp(-k2 * t)
    fit = fit_exponential(t, values, n_terms=2)
    np.testing.assert_allclose(fit.amplitudes, [a1, a2], rtol=1e-6)  # fastest first
    np.testing.assert_allclose(fit.rates_per_s, [k1, k2], rtol=1e-6)
    np.testing.assert_allclose(fit.half_lives_s, [4.0 * HOUR, 55.0 * HOUR], rtol=1e-6)
    assert fit.covariance.shape == (4, 4)
    assert fit.standard_errors.shape == (4,)


def test_fit_with_as_many_points_as_parameters_reports_infinite_covariance():
    t = np.array([1.0, 10.0]) * HOUR
    fit = fit_exponential(t, 100.0 * np.exp(-1e-5 * t), 1)
    assert fit.rates_per_s[0] == pytest.approx(1e-5, rel=1e-6)
    assert not np.all(np.isfinite(fit.covariance))


def test_effective_and_biological_half_lives():
    t_bio = 20.0 * HOUR
    t_eff = 1.0 / (1.0 / T_IN111 + 1.0 / t_bio)
    assert effective_half_life("In-111", t_bio) == pytest.approx(t_eff, rel=1e-12)
    assert biological_half_life(t_eff, "In-111") == pytest.approx(t_bio, rel=1e-9)
    assert biological_half_life(t_eff, T_IN111) == pytest.approx(t_bio, rel=1e-9)
    assert biological_half_life(T_IN111, "In-111") == math.inf
    assert effective_half_life("In-111", math.inf) == pytest.approx(T_IN111)
    with pytest.raises(InputError, match="decay-corrected"):
        biological_half_life(1.5 * T_IN111, "In-111")
    # From a fit to activity at scan time: the biology comes back out.
    t = np.array([2.0, 24.0, 48.0, 96.0]) * HOUR
    fit = fit_exponential(t, 1e3 * np.exp(-LN2 * t / t_eff), 1)
    assert biological_half_life(fit.half_lives_s[0], "In-111") == pytest.approx(t_bio, rel=1e-6)


def test_fit_errors():
    with pytest.raises(InputError, match="at least 4"):
        fit_exponential([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], n_terms=2)
    with pytest.raises(InputError, match="n_terms"):
        fit_exponential([1.0, 2.0], [3.0, 2.0], n_terms=3)
    with pytest.raises(InputError, match="negative"):
        fit_exponential([-1.0, 2.0], [3.0, 2.0])
    with pytest.raises(InputError, match="NaN"):
        fit_exponential([1.0, 2.0], [3.0, np.nan])


# ------------------------------------------------------------------------------ integrals


def test_trapezoid_is_exact_for_piecewise_linear_curves():
    # v = 10 + 2 t (t in s), with the given value at injection: ∫0^T = 10 T + T².
    t = np.array([5.0, 20.0, 50.0])
    tia = time_integrated_activity(t, 10 + 2 * t, tail="none", value_at_injection=10.0)
    assert tia.trapezoid == pytest.approx(10 * 50.0 + 50.0**2, rel=1e-14)
    assert tia.tail == 0.0 and tia.total == tia.trapezoid
    # Default: a linear rise from 0 at injection, a triangle to the first point.
    tia0 = time_integrated_activity([4.0, 6.0], [8.0, 8.0], tail="none")
    assert tia0.total == pytest.approx(0.5 * 4 * 8 + 2 * 8)
    # A point at t = 0 is used as is.
    assert time_integrated_activity([0.0, 2.0], [4.0, 0.0], tail="none").total == 4.0


def test_tail_integral_closed_form():
    a, k = 7e6, LN2 / (50.0 * HOUR) + LAM_IN111
    t = np.array([1.0, 24.0, 72.0, 144.0]) * HOUR
    values = a * np.exp(-k * t)
    fit = fit_exponential(t, values, 1)
    tia = time_integrated_activity(t, values, fit, isotope="In-111")
    assert tia.tail_method == "fit"
    assert tia.tail == pytest.approx(a / k * math.exp(-k * t[-1]), rel=1e-9)
    assert fit.integral(0.0) == pytest.approx(a / k, rel=1e-9)
    assert fit.integral(t[0], t[-1]) == pytest.approx(
        a / k * (math.exp(-k * t[0]) - math.exp(-k * t[-1])), rel=1e-9
    )
    physical = time_integrated_activity(t, values, isotope="In-111")
    assert physical.tail_method == "physical"
    assert physical.tail == pytest.approx(values[-1] / LAM_IN111, rel=1e-12)


def test_dense_sampling_converges_to_the_analytic_integral_and_residence_time():
    a0, k = 1e8, LAM_IN111 + LN2 / (10 * DAY)
    t = np.linspace(0.0, 20 * DAY, 4001)
    values = a0 * np.exp(-k * t)
    fit = fit_exponential(t[::400], values[::400], 1)
    tia = time_integrated_activity(t, values, fit)
    assert tia.total == pytest.approx(a0 / k, rel=1e-5)
    assert tia.total_h == pytest.approx(tia.total / 3600.0)
    assert residence_time_s(tia, a0) == pytest.approx(1.0 / k, rel=1e-5)
    assert residence_time_s(a0 / k, a0) == pytest.approx(1.0 / k, rel=1e-12)


def test_tia_from_a_tac_requires_activity_at_scan_time(grid):
    times = np.array([1.0, 24.0, 72.0]) * HOUR
    points = [
        TimePoint(sphere_image(grid, (0, 0, 0), 1e3 * math.exp(-LAM_IN111 * t)), t) for t in times
    ]
    voi = Voi.sphere(grid, (0, 0, 0), 24.0)
    dc = time_activity_curve(points, voi, mode="decay_corrected_to_injection", quantity="total")
    with pytest.raises(InputError, match="in_mode"):
        time_integrated_activity(dc)
    scan = dc.in_mode("activity_at_scan_time")
    tia = time_integrated_activity(scan)  # isotope from the curve: physical tail
    assert tia.tail_method == "physical"
    assert tia.tail == pytest.approx(scan.values[-1] / LAM_IN111, rel=1e-9)
    # A fit of decay-corrected values (slower than physical decay) cannot give the tail.
    slow = fit_exponential(dc.times_s, dc.values * np.exp(-1e-7 * dc.times_s), 1)
    with pytest.raises(InputError, match="decay-corrected"):
        time_integrated_activity(scan, fit=slow)


def test_tia_errors():
    with pytest.raises(InputError, match="extrapolate"):
        time_integrated_activity([1.0, 2.0], [1.0, 1.0])
    with pytest.raises(InputError, match="negative"):
        time_integrated_activity([-1.0, 2.0], [1.0, 1.0], tail="none")
    with pytest.raises(InputError, match="same time"):
        time_integrated_activity([1.0, 1.0], [1.0, 1.0], tail="none")
    with pytest.raises(InputError, match="fit="):
        time_integrated_activity([1.0, 2.0], [1.0, 1.0], tail="fit")
    with pytest.raises(InputError, match="tail"):
        time_integrated_activity([1.0, 2.0], [1.0, 1.0], tail="linear")
    with pytest.raises(InputError, match="injected_bq"):
        residence_time_s(10.0, 0.0)
    flat = ExponentialFit(np.array([1.0]), np.array([0.0]), np.zeros((2, 2)), 0.0)
    with pytest.raises(InputError, match="non-decaying"):
        time_integrated_activity([1.0, 2.0], [1.0, 1.0], flat)
