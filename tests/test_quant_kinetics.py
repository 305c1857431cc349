"""Kinetic fits against closed forms, model selection, degenerate fits, and the coverage of the
reported standard errors (recon.quant.kinetics and recon.quant.clearance)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from recon.errors import InputError
from recon.quant import TimeActivityCurve, clearance_kinetics, fit_model, select_model
from recon.quant.kinetics import integrate_with_uncertainty

HOUR, DAY = 3600.0, 86400.0
LN2 = math.log(2.0)
# Half-lives from NuDat 3 (NNDC), written out independently of recon's isotope table.
HALF_LIFE_S = {
    "In-111": 2.8047 * DAY,
    "Zr-89": 78.41 * HOUR,
    "Cu-64": 12.701 * HOUR,
    "Lu-177": 6.6443 * DAY,
}
# Realistic scan times: 1 h to 7 days; Cu-64 (12.7 h) is imaged up to 2 days.
SCANS_H = {
    "In-111": (1, 4, 24, 48, 72, 96, 168),
    "Zr-89": (1, 4, 24, 48, 72, 120, 168),
    "Cu-64": (1, 3, 6, 12, 24, 36, 48),
    "Lu-177": (1, 4, 24, 48, 72, 96, 168),
}
# Biological half-lives (h): a slow and a fast phase, uptake and washout, on the scale of each
# isotope's imaging window.
T_BIO_H = {
    "In-111": {"slow": 60.0, "fast": 5.0, "in": 10.0, "out": 90.0},
    "Zr-89": {"slow": 80.0, "fast": 6.0, "in": 12.0, "out": 120.0},
    "Cu-64": {"slow": 30.0, "fast": 2.0, "in": 3.0, "out": 40.0},
    "Lu-177": {"slow": 70.0, "fast": 5.0, "in": 8.0, "out": 150.0},
}
ISOTOPES = list(HALF_LIFE_S)


def lam(isotope: str) -> float:
    return LN2 / HALF_LIFE_S[isotope]


def rate(isotope: str, t_bio_h: float) -> float:
    """Effective rate (1/s) of a phase with this biological half-life."""
    return lam(isotope) + LN2 / (t_bio_h * HOUR)


def tac(isotope: str, values: np.ndarray, times_s: np.ndarray) -> TimeActivityCurve:
    return TimeActivityCurve(
        "voi", times_s, values, "activity_at_scan_time", "mean", "Bq/mL", isotope
    )


def curve(isotope: str, shape: str) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Times, values and the closed-form T_eff, T_biol (h) and TIA (Bq·h/mL) of a curve."""
    t = np.array(SCANS_H[isotope], dtype=float) * HOUR
    b = T_BIO_H[isotope]
    if shape == "mono":
        a, k = 2.0e4, rate(isotope, b["slow"])
        values = a * np.exp(-k * t)
        return t, values, {"t_eff": LN2 / k / HOUR, "t_biol": b["slow"], "tia": a / k / HOUR}
    if shape == "bi":
        a1, k1 = 6.0e4, rate(isotope, b["fast"])
        a2, k2 = 2.0e4, rate(isotope, b["slow"])
        values = a1 * np.exp(-k1 * t) + a2 * np.exp(-k2 * t)
        return t, values, {
            "t_eff": LN2 / k2 / HOUR, "t_biol": b["slow"], "tia": (a1 / k1 + a2 / k2) / HOUR,
            "t_eff_fast": LN2 / k1 / HOUR,
        }  # fmt: skip
    a, k_in, k_out = 3.0e4, rate(isotope, b["in"]), rate(isotope, b["out"])
    values = a * (np.exp(-k_out * t) - np.exp(-k_in * t))
    return t, values, {
        "t_eff": LN2 / k_out / HOUR, "t_biol": b["out"], "tia": a * (1 / k_out - 1 / k_in) / HOUR,
        "t_uptake": LN2 / k_in / HOUR,
    }  # fmt: skip


EXPECTED_MODEL = {"mono": "mono", "bi": "bi", "uptake": "uptake_washout"}


@pytest.mark.parametrize("shape", ["mono", "bi", "uptake"])
@pytest.mark.parametrize("isotope", ISOTOPES)
def test_closed_forms_and_the_chosen_model(isotope, shape):
    t, values, truth = curve(isotope, shape)
    kin = clearance_kinetics(tac(isotope, values, t), fit_from="first")
    assert kin.model == EXPECTED_MODEL[shape], kin.note
    assert kin.model_rule == "AICc"
    assert kin.t_eff_h == pytest.approx(truth["t_eff"], rel=0.01)
    assert kin.t_biol_h == pytest.approx(truth["t_biol"], rel=0.01)
    assert kin.tia_bq_h_per_ml == pytest.approx(truth["tia"], rel=0.01)
    if shape == "bi":
        assert kin.t_eff_fast_h == pytest.approx(truth["t_eff_fast"], rel=0.01)
    if shape == "uptake":
        assert kin.t_uptake_h == pytest.approx(truth["t_uptake"], rel=0.01)
    # Noiseless data: the standard errors vanish with the residuals.
    assert kin.t_eff_se_h < 1e-3 * kin.t_eff_h
    assert kin.tia_se_bq_h_per_ml < 1e-3 * kin.tia_bq_h_per_ml
    assert kin.tail_method == "fit" and 0 < kin.tail_fraction < 1


@pytest.mark.parametrize("isotope", ISOTOPES)
def test_two_terms_asked_one_present_gives_the_mono_exponential_with_a_note(isotope):
    t, values, truth = curve(isotope, "mono")
    kin = clearance_kinetics(tac(isotope, values, t), fit_from="first", model="bi")
    assert kin.model == "mono" and kin.model_rule == "fallback"
    assert "bi fit degenerate" in kin.note and "mono-exponential used" in kin.note
    assert kin.t_eff_h == pytest.approx(truth["t_eff"], rel=0.01)
    assert kin.t_biol_h == pytest.approx(truth["t_biol"], rel=0.01)
    assert kin.tia_bq_h_per_ml == pytest.approx(truth["tia"], rel=0.01)


def test_terminal_half_life_is_the_component_that_governs_the_tail():
    # A fast component of half the amplitude, but its share of the integral after 7 days is
    # nil: the terminal phase is the slow one whatever their order in the fit.
    t, values, truth = curve("In-111", "bi")
    fit = select_model(t, values, "In-111", model="bi").fit
    assert fit is not None and fit.model == "bi"
    k, _ = fit.terminal_rate()
    assert LN2 / k / HOUR == pytest.approx(truth["t_eff"], rel=1e-3)
    parts = fit.component_integrals(t[-1])
    assert parts[fit.terminal_component()] > 100 * parts[1 - fit.terminal_component()]


def test_no_biological_clearance_sits_at_the_physical_bound():
    t = np.array(SCANS_H["Zr-89"], dtype=float) * HOUR
    kin = clearance_kinetics(tac("Zr-89", 500.0 * np.exp(-lam("Zr-89") * t), t), fit_from="first")
    assert kin.model == "mono"
    assert kin.t_eff_h == pytest.approx(HALF_LIFE_S["Zr-89"] / HOUR, rel=1e-6)
    assert kin.t_biol_h is None and "no biological clearance" in kin.note


def test_rates_never_fall_below_physical_decay():
    # A curve still rising at scan time: no effective half-life, a physical-decay tail.
    t = np.array([1.0, 12.0, 24.0, 48.0, 72.0, 96.0]) * HOUR
    values = np.array([100.0, 150.0, 200.0, 300.0, 330.0, 340.0])
    kin = clearance_kinetics(tac("In-111", values, t), fit_from="first", model="mono")
    assert kin.t_eff_h is None and kin.tail_method == "physical"
    assert "slower than physical decay" in kin.note
    fit = fit_model(t, values, "bi", "In-111")
    assert np.all(fit.rates_per_s >= lam("In-111") * (1 - 1e-9))


def test_degenerate_fits_fall_back_with_the_reason():
    t, values, _ = curve("In-111", "mono")
    # Fewer points than parameters + 1.
    few = select_model(t[:4], values[:4], "In-111", model="bi")
    assert few.model == "mono" and "4 point(s) for 4 parameters" in few.notes[0]
    # A spike at the first scan only: the extra component would be over before the next scan.
    spiked = values.copy()
    spiked[0] *= 1.5
    fit = fit_model(t, spiked, "bi", "In-111")
    assert "too fast to be measured" in fit.problem
    # Uptake-washout asked for a curve without a rising phase.
    washout = select_model(t, values, "In-111", model="uptake_washout")
    assert washout.model == "mono" and "uptake_washout fit degenerate" in washout.notes[0]
    # One point: nothing can be fitted; the TIA falls back to physical decay.
    kin = clearance_kinetics(tac("In-111", values, t), fit_from=150.0)
    assert kin.fit is None and kin.tail_method == "physical" and kin.tia_se_bq_h_per_ml is None
    assert "at least 3" in kin.note


def test_auto_with_few_points_uses_the_mono_exponential_and_says_so():
    t, values, truth = curve("Lu-177", "mono")
    kin = clearance_kinetics(tac("Lu-177", values[-4:], t[-4:]), fit_from="first")
    assert kin.model == "mono" and kin.model_rule == "only candidate"
    assert "only the mono-exponential" in kin.note
    assert kin.t_eff_h == pytest.approx(truth["t_eff"], rel=1e-3)


def test_bad_requests_are_input_errors():
    t, values, _ = curve("In-111", "mono")
    with pytest.raises(InputError, match="model must be one of"):
        select_model(t, values, "In-111", model="tri")
    with pytest.raises(InputError, match="increase"):
        fit_model(t[::-1], values, "mono", "In-111")
    with pytest.raises(InputError, match="weighting"):
        fit_model(t, values, "mono", "In-111", weighting="poisson")


def _coverage(isotope: str, n_seeds: int, cv: float) -> dict[str, np.ndarray]:
    """|estimate − truth| / SE of the terminal rate, the TIA and its tail over many noisy
    mono-exponential curves (relative Gaussian noise, the fit's error model)."""
    t = np.array([1, 4, 24, 48, 72, 168], dtype=float) * HOUR
    a, k = 1.0e4, rate(isotope, 40.0)
    truth = a * np.exp(-k * t)
    tia, tail = a / k, a / k * math.exp(-k * t[-1])
    rng = np.random.default_rng(20260301)
    z: dict[str, list[float]] = {"rate": [], "tia": [], "tail": []}
    for _ in range(n_seeds):
        values = truth * (1.0 + cv * rng.standard_normal(t.size))
        fit = fit_model(t, values, "mono", isotope)
        assert fit.usable and fit.dof == 4
        k_hat, k_se = fit.terminal_rate()
        integral = integrate_with_uncertainty(t, values, 0, fit, isotope)
        z["rate"].append(abs(k_hat - k) / k_se)
        z["tia"].append(abs(integral.total - tia) / integral.total_se)
        z["tail"].append(abs(integral.tail - tail) / integral.tail_se)
    return {key: np.array(v) for key, v in z.items()}


def test_standard_errors_cover_the_truth_at_the_expected_rate():
    n = 400
    z = _coverage("In-111", n, cv=0.05)
    # With n − p = 4 degrees of freedom, ± 1 SE covers with P(|t_4| < 1) and ± t_0.975 SE with
    # 95 %; the observed fractions are binomial about them (four standard deviations allowed).
    for width, expected in ((1.0, 2 * stats.t.cdf(1.0, 4) - 1), (stats.t.ppf(0.975, 4), 0.95)):
        tolerance = 4 * math.sqrt(expected * (1 - expected) / n)
        for key, values in z.items():
            observed = float(np.mean(values <= width))
            assert abs(observed - expected) <= tolerance, (key, width, observed, expected)
