"""Tests of recon.physics: isotope table, decay factors, window-based scatter estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from recon.errors import InputError, PhysicsError
from recon.physics import (
    ANNIHILATION_KEV,
    ISOTOPES,
    EnergyWindow,
    Isotope,
    Photon,
    activity_at,
    decay_constant,
    decay_correction_factor,
    dew_scatter,
    get_isotope,
    mean_activity_fraction,
    tew_scatter,
)

MIN, HOUR, DAY = 60.0, 3600.0, 86400.0

SPECT_ISOTOPES = ["Tc-99m", "In-111", "I-123", "I-131", "Lu-177", "Ga-67", "Tl-201"]
PET_ISOTOPES = [
    "F-18", "C-11", "N-13", "O-15", "Ga-68", "Cu-64", "Zr-89", "I-124", "Rb-82", "Mn-52",
]  # fmt: skip

# The values the table is meant to hold (NuDat 3 / ENSDF, DDEP for Tc-99m), written out here
# independently of the table so that a typo in either shows up.
HALF_LIVES_S = {
    "Tc-99m": 6.0067 * HOUR,
    "In-111": 2.8047 * DAY,
    "I-123": 13.2235 * HOUR,
    "I-131": 8.0252 * DAY,
    "Lu-177": 6.6443 * DAY,
    "Ga-67": 3.2617 * DAY,
    "Tl-201": 3.0421 * DAY,
    "F-18": 109.77 * MIN,
    "C-11": 20.364 * MIN,
    "N-13": 9.965 * MIN,
    "O-15": 122.24,
    "Ga-68": 67.71 * MIN,
    "Cu-64": 12.701 * HOUR,
    "Zr-89": 78.41 * HOUR,
    "I-124": 4.1760 * DAY,
    "Rb-82": 1.2575 * MIN,
    "Mn-52": 5.591 * DAY,
}
POSITRON_FRACTIONS = {
    "F-18": 0.9673,
    "C-11": 0.9976,
    "N-13": 0.9980,
    "O-15": 0.9990,
    "Ga-68": 0.8891,
    "Cu-64": 0.1752,
    "Zr-89": 0.2274,
    "I-124": 0.2256,
    "Rb-82": 0.9545,
    "Mn-52": 0.2942,
}


# --------------------------------------------------------------------------------------------
# Isotopes
# --------------------------------------------------------------------------------------------


def test_table_holds_every_required_isotope():
    assert set(SPECT_ISOTOPES + PET_ISOTOPES) <= set(ISOTOPES)
    for name, isotope in ISOTOPES.items():
        assert isotope.name == name
        assert isinstance(isotope, Isotope)


@pytest.mark.parametrize("name", SPECT_ISOTOPES + PET_ISOTOPES)
def test_lookup_of_every_isotope_in_several_spellings(name):
    symbol, rest = name.split("-")
    mass, meta = rest.rstrip("m"), "m" if rest.endswith("m") else ""
    spellings = [
        name,
        name.lower(),
        name.upper(),
        f"{symbol}{mass}{meta}",
        f"{mass}{meta}{symbol}",
        f"{mass}{meta}{symbol}".lower(),
        f"{symbol.lower()}{mass}{meta}",
        f" {name} ",
        f"{symbol}_{mass}{meta}",
    ]
    for spelling in spellings:
        assert get_isotope(spelling) is ISOTOPES[name], spelling


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("Tc-99m", "Tc-99m"),
        ("tc99m", "Tc-99m"),
        ("99mTc", "Tc-99m"),
        ("Tc99m", "Tc-99m"),
        ("99mtc", "Tc-99m"),
        ("99Tcm", "Tc-99m"),
        ("Technetium-99m", "Tc-99m"),
        ("F-18", "F-18"),
        ("18F", "F-18"),
        ("f18", "F-18"),
        ("Fluorine-18", "F-18"),
        ("52Mn", "Mn-52"),  # not to be read as a metastable "N-52m"
        ("mn52", "Mn-52"),
        ("131I", "I-131"),
        ("In111", "In-111"),
        ("^99m^Technetium", "Tc-99m"),
    ],
)
def test_alternative_spellings(spelling, expected):
    assert get_isotope(spelling).name == expected


def test_isotope_instance_passes_through():
    iso = get_isotope("Lu-177")
    assert get_isotope(iso) is iso


@pytest.mark.parametrize("bad", ["Tc-99", "99Tc", "Xx-12", "F-19", "", "technetium"])
def test_unknown_isotope_lists_known_names(bad):
    with pytest.raises(PhysicsError) as info:
        get_isotope(bad)
    message = str(info.value)
    assert repr(bad) in message
    for name in ("Tc-99m", "F-18", "Mn-52"):
        assert name in message


def test_non_string_name_is_an_input_error():
    with pytest.raises(InputError):
        get_isotope(99)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(HALF_LIVES_S))
def test_half_lives(name):
    iso = get_isotope(name)
    assert iso.half_life_s == pytest.approx(HALF_LIVES_S[name], rel=1e-12)
    assert iso.half_life_h == pytest.approx(HALF_LIVES_S[name] / HOUR, rel=1e-12)
    assert iso.decay_constant_per_s == pytest.approx(math.log(2) / HALF_LIVES_S[name], rel=1e-12)


def test_half_life_spot_checks_in_natural_units():
    assert get_isotope("Tc-99m").half_life_h == pytest.approx(6.0067)
    assert get_isotope("F-18").half_life_s / MIN == pytest.approx(109.77)
    assert get_isotope("In-111").half_life_s / DAY == pytest.approx(2.8047)
    assert get_isotope("Zr-89").half_life_h == pytest.approx(78.41)
    assert get_isotope("O-15").half_life_s == pytest.approx(122.24)


@pytest.mark.parametrize("name", PET_ISOTOPES)
def test_positron_emitters(name):
    iso = get_isotope(name)
    assert 0.0 < iso.positron_fraction <= 1.0
    assert iso.positron_fraction == pytest.approx(POSITRON_FRACTIONS[name], abs=1e-12)
    assert iso.is_positron_emitter
    annihilation = [p for p in iso.photons if p.energy_kev == ANNIHILATION_KEV]
    assert len(annihilation) == 1
    assert annihilation[0].yield_per_decay == pytest.approx(2.0 * iso.positron_fraction)


@pytest.mark.parametrize("name", SPECT_ISOTOPES)
def test_single_photon_emitters_have_no_positrons(name):
    iso = get_isotope(name)
    assert iso.positron_fraction == 0.0
    assert not iso.is_positron_emitter
    assert all(p.energy_kev != ANNIHILATION_KEV for p in iso.photons)


def test_every_isotope_has_plausible_photons():
    for iso in ISOTOPES.values():
        assert 0.0 <= iso.positron_fraction <= 1.0
        assert iso.photons
        for photon in iso.photons:
            assert 20.0 < photon.energy_kev < 2000.0
            assert 0.0 < photon.yield_per_decay <= 2.0


@pytest.mark.parametrize(
    ("name", "energy", "yield_"),
    [
        ("Tc-99m", 140.511, 0.885),
        ("In-111", 245.35, 0.9409),
        ("I-131", 364.49, 0.815),
        ("I-123", 158.97, 0.836),
        ("Lu-177", 208.37, 0.1041),
        ("F-18", ANNIHILATION_KEV, 2 * 0.9673),
        ("Zr-89", 909.15, 0.9904),  # the 909 keV gamma outnumbers the annihilation photons
    ],
)
def test_main_photon(name, energy, yield_):
    photon = get_isotope(name).main_photon
    assert photon.energy_kev == pytest.approx(energy, abs=0.01)
    assert photon.yield_per_decay == pytest.approx(yield_)


def test_in111_and_lu177_secondary_lines():
    in111 = {round(p.energy_kev, 2): p.yield_per_decay for p in get_isotope("In-111").photons}
    assert in111[171.28] == pytest.approx(0.9066)
    lu177 = {round(p.energy_kev, 2): p.yield_per_decay for p in get_isotope("Lu-177").photons}
    assert lu177[112.95] == pytest.approx(0.0623)


def test_isotope_and_photon_validation():
    with pytest.raises(PhysicsError):
        Isotope("X-1", -1.0, (Photon(100.0, 0.5),), 0.0)
    with pytest.raises(PhysicsError):
        Isotope("X-1", 10.0, (Photon(100.0, 0.5),), 1.5)
    with pytest.raises(PhysicsError):
        Isotope("X-1", 10.0, (), 0.0)
    with pytest.raises(PhysicsError):
        Photon(-5.0, 0.5)
    with pytest.raises(PhysicsError):
        Photon(100.0, 2.5)


# --------------------------------------------------------------------------------------------
# Decay
# --------------------------------------------------------------------------------------------


def _mean_fraction_by_quadrature(half_life, start, duration, reference):
    lam = math.log(2) / half_life
    integral, _ = quad(
        lambda t: math.exp(-lam * (t - reference)), start, start + duration, epsabs=0, epsrel=1e-13
    )
    return integral / duration


def test_decay_constant_accepts_isotope_name_and_half_life():
    lam = math.log(2) / (6.0067 * HOUR)
    assert decay_constant("Tc-99m") == pytest.approx(lam, rel=1e-14)
    assert decay_constant(get_isotope("99mTc")) == pytest.approx(lam, rel=1e-14)
    assert decay_constant(6.0067 * HOUR) == pytest.approx(lam, rel=1e-14)
    for bad in (0.0, -3.0, math.inf, math.nan, "not-an-isotope-value"):
        with pytest.raises((InputError, PhysicsError)):
            decay_constant(bad)
    with pytest.raises(InputError):
        decay_constant(None)  # type: ignore[arg-type]


def test_one_half_life_later_doubles():
    t_half = get_isotope("F-18").half_life_s
    assert decay_correction_factor(t_half, t_half, 0.0, 0.0) == pytest.approx(2.0, rel=1e-15)
    assert mean_activity_fraction(t_half, t_half, 0.0, 0.0) == pytest.approx(0.5, rel=1e-15)
    # A zero-length frame two half-lives before the reference saw four times the activity.
    assert decay_correction_factor(t_half, -t_half, 0.0, t_half) == pytest.approx(0.25, rel=1e-15)


def test_zero_duration_is_the_exponential_limit():
    t_half = 3600.0
    starts = np.linspace(-5000.0, 20000.0, 11)
    expected = np.exp(math.log(2) / t_half * starts)
    np.testing.assert_allclose(decay_correction_factor(t_half, starts, 0.0), expected, rtol=1e-15)
    np.testing.assert_allclose(
        mean_activity_fraction(t_half, starts, 0.0), 1 / expected, rtol=1e-15
    )


@pytest.mark.parametrize(
    ("name", "start", "duration", "reference"),
    [
        ("F-18", 3600.0, 600.0, 0.0),
        ("F-18", 0.0, 7200.0, 0.0),
        ("Tc-99m", 1800.0, 30.0, 0.0),
        ("Tc-99m", 0.0, 1800.0, -2 * HOUR),  # reference at injection, two hours before scan
        ("O-15", 10.0, 600.0, 0.0),  # five half-lives in one frame
        ("Rb-82", 0.0, 420.0, 0.0),
        ("In-111", 24 * HOUR, 2 * DAY, 0.0),
        ("Zr-89", 0.0, 7 * DAY, 0.0),
        ("Cu-64", 48 * HOUR, 30 * HOUR, 4 * HOUR),
        ("Lu-177", 4 * DAY, 1 * HOUR, 0.0),
        ("Ga-68", 0.0, 1e-3, 0.0),
    ],
)
def test_mean_fraction_matches_numerical_integral(name, start, duration, reference):
    t_half = get_isotope(name).half_life_s
    expected = _mean_fraction_by_quadrature(t_half, start, duration, reference)
    fraction = mean_activity_fraction(t_half, start, duration, reference)
    factor = decay_correction_factor(t_half, start, duration, reference)
    assert fraction == pytest.approx(expected, rel=1e-10)
    assert factor == pytest.approx(1.0 / expected, rel=1e-10)
    assert factor * fraction == pytest.approx(1.0, rel=1e-14)


def test_days_long_closed_forms():
    # Counts over [t0, t0 + Δ] ∝ ∫ 2^(−t/T) dt = T/ln2 · 2^(−t0/T) · (1 − 2^(−Δ/T)); written with
    # powers of two, independently of the exp/expm1 form in the implementation.
    for name, t0, delta in (("In-111", 1 * DAY, 3 * DAY), ("Zr-89", 2 * DAY, 6 * DAY),
                            ("Cu-64", 0.0, 2 * DAY)):  # fmt: skip
        t_half = get_isotope(name).half_life_s
        mean = t_half / math.log(2) * 2 ** (-t0 / t_half) * (1 - 2 ** (-delta / t_half)) / delta
        assert mean_activity_fraction(name, t0, delta) == pytest.approx(mean, rel=1e-12)
        assert decay_correction_factor(name, t0, delta) == pytest.approx(1 / mean, rel=1e-12)
    # Zr-89 over exactly two half-lives from the reference: mean = (1 − 1/4) / (2 ln 2).
    t_half = get_isotope("Zr-89").half_life_s
    assert mean_activity_fraction(t_half, 0.0, 2 * t_half) == pytest.approx(
        0.75 / (2 * math.log(2)), rel=1e-14
    )


@pytest.mark.parametrize("duration", [1e-3, 1e-6, 1e-9, 1e-12, 1e-200, 1e-320])
def test_tiny_lambda_delta_is_stable(duration):
    t_half = get_isotope("Zr-89").half_life_s
    x = math.log(2) / t_half * duration
    # Series of x / (1 − e^−x) = 1 + x/2 + x²/12 − x⁴/720 …; the naive formula loses all digits.
    series = 1 + x / 2 + x * x / 12
    assert decay_correction_factor(t_half, 0.0, duration) == pytest.approx(series, rel=1e-15)
    assert mean_activity_fraction(t_half, 0.0, duration) == pytest.approx(1 / series, rel=1e-15)


def test_factor_is_continuous_at_zero_duration():
    t_half, start = 6.0067 * HOUR, 1234.0
    at_zero = decay_correction_factor(t_half, start, 0.0)
    near_zero = decay_correction_factor(t_half, start, 1e-6)
    assert near_zero == pytest.approx(at_zero, rel=1e-9)
    assert near_zero > at_zero  # decay during the frame always adds to the correction


def test_arrays_broadcast_per_view():
    t_half = get_isotope("Tc-99m").half_life_s
    starts = np.arange(120) * 15.0
    factors = decay_correction_factor(t_half, starts, np.full(120, 15.0))
    assert isinstance(factors, np.ndarray)
    assert factors.shape == (120,)
    assert factors.dtype == np.float64
    assert np.all(np.diff(factors) > 0)  # later views need more correction
    for k in (0, 57, 119):
        assert factors[k] == pytest.approx(decay_correction_factor(t_half, starts[k], 15.0))
    # Scalars give a plain float.
    assert isinstance(decay_correction_factor(t_half, 0.0, 15.0), float)


def test_isotope_names_are_accepted_as_half_lives():
    iso = get_isotope("I-131")
    assert decay_correction_factor("I-131", DAY, HOUR) == decay_correction_factor(
        iso.half_life_s, DAY, HOUR
    )


@pytest.mark.parametrize("func", [decay_correction_factor, mean_activity_fraction])
def test_decay_validation(func):
    with pytest.raises(InputError, match="non-negative"):
        func(3600.0, 0.0, -1.0)
    with pytest.raises(InputError, match="non-negative"):
        func(3600.0, np.zeros(3), np.array([1.0, -1.0, 2.0]))
    with pytest.raises(InputError, match="NaN"):
        func(3600.0, math.nan, 1.0)
    with pytest.raises(InputError, match="NaN"):
        func(3600.0, 0.0, math.inf)
    with pytest.raises(InputError, match="NaN"):
        func(3600.0, 0.0, 1.0, math.nan)
    with pytest.raises(InputError, match="positive"):
        func(0.0, 0.0, 1.0)
    with pytest.raises(InputError):
        func(math.inf, 0.0, 1.0)
    # A clock time in ms passed as s: exp over- or underflows in one direction or the other.
    with pytest.raises(InputError, match="seconds"):
        func("O-15", 1e9, 1.0)
    with pytest.raises(InputError, match="seconds"):
        func("O-15", -1e9, 1.0)


def test_activity_at():
    t_half = get_isotope("Lu-177").half_life_s
    assert activity_at(1000.0, t_half, t_half) == pytest.approx(500.0, rel=1e-15)
    assert activity_at(1000.0, t_half, -2 * t_half) == pytest.approx(4000.0, rel=1e-15)
    assert activity_at(1000.0, "Lu-177", 0.0) == 1000.0
    image = np.full((2, 3, 4), 8.0, dtype=np.float32)
    decayed = activity_at(image, t_half, 3 * t_half)
    assert decayed.dtype == np.float32
    np.testing.assert_allclose(decayed, 1.0, rtol=1e-6)
    times = np.array([0.0, t_half, 2 * t_half])
    np.testing.assert_allclose(activity_at(4, t_half, times), [4.0, 2.0, 1.0], rtol=1e-14)
    with pytest.raises(InputError):
        activity_at(np.array([1.0, np.nan]), t_half, 0.0)
    with pytest.raises(InputError):
        activity_at(1.0, -t_half, 0.0)
    with pytest.raises(InputError):
        activity_at(1.0, t_half, math.inf)


# --------------------------------------------------------------------------------------------
# Energy windows and scatter
# --------------------------------------------------------------------------------------------


def test_energy_window():
    peak = EnergyWindow("photopeak", 126.0, 154.0)
    assert peak.width_kev == pytest.approx(28.0)
    assert peak.center_kev == pytest.approx(140.0)
    assert peak.contains(140.5) and not peak.contains(160.0)
    centred = EnergyWindow.centered("photopeak", 140.0, 20.0)
    assert (centred.lower_kev, centred.upper_kev) == pytest.approx((126.0, 154.0))
    for lower, upper in ((154.0, 126.0), (100.0, 100.0), (0.0, 10.0), (-5.0, 10.0),
                         (math.nan, 10.0), (1.0, math.inf)):  # fmt: skip
        with pytest.raises(PhysicsError):
            EnergyWindow("bad", lower, upper)


def _linear_spectrum_counts(a, b, lo, hi):
    """Counts of a scatter spectrum s(E) = a + b·E (per keV) in the window [lo, hi]."""
    return a * (hi - lo) + b * (hi * hi - lo * lo) / 2


def test_tew_recovers_a_linear_scatter_spectrum_exactly():
    # Per pixel, the scatter spectrum under a 126-154 keV photopeak is linear in energy, so the true
    # scatter in the peak is a trapezoid. Narrow windows centred on the peak edges measure the
    # spectrum's heights at those edges exactly, so TEW must return the truth.
    rng = np.random.default_rng(7)
    shape = (6, 5, 4)
    e_lo, e_hi, half = 126.0, 154.0, 3.0
    h_lo = rng.uniform(10.0, 100.0, shape)  # counts/keV at 126 keV
    h_hi = rng.uniform(0.0, 20.0, shape)  # counts/keV at 154 keV
    b = (h_hi - h_lo) / (e_hi - e_lo)
    a = h_lo - b * e_lo
    truth = _linear_spectrum_counts(a, b, e_lo, e_hi)
    lower = _linear_spectrum_counts(a, b, e_lo - half, e_lo + half)
    upper = _linear_spectrum_counts(a, b, e_hi - half, e_hi + half)
    estimate = tew_scatter(lower, upper, 2 * half, 2 * half, e_hi - e_lo)
    assert estimate.dtype == np.float32
    assert estimate.shape == shape
    np.testing.assert_allclose(estimate, truth, rtol=1e-6)
    # Windows may be given as EnergyWindow objects.
    windows = (
        EnergyWindow("lower", e_lo - half, e_lo + half),
        EnergyWindow("upper", e_hi - half, e_hi + half),
        EnergyWindow("peak", e_lo, e_hi),
    )
    np.testing.assert_array_equal(tew_scatter(lower, upper, *windows), estimate)


def test_tew_without_upper_window():
    # A spectrum falling linearly to zero at the upper peak edge: the lower window alone is exact.
    e_lo, e_hi, width = 126.0, 154.0, 4.0
    slope = np.array([[[0.5, 1.0], [2.0, 3.0]]])  # counts/keV² per pixel, one view
    a, b = slope * e_hi, -slope
    truth = _linear_spectrum_counts(a, b, e_lo, e_hi)
    lower = _linear_spectrum_counts(a, b, e_lo - width / 2, e_lo + width / 2)
    estimate = tew_scatter(lower, None, width, None, e_hi - e_lo)
    np.testing.assert_allclose(estimate, truth, rtol=1e-6)
    assert estimate[0, 1, 1] == pytest.approx(3.0 * 28.0 * 28.0 / 2, rel=1e-6)


def test_tew_formula_on_integer_counts():
    lower = np.array([[[12, 0], [6, 30]]], dtype=np.uint16)
    upper = np.array([[[4, 2], [0, 10]]], dtype=np.int64)
    estimate = tew_scatter(lower, upper, 6.0, 4.0, 28.0)
    expected = (lower / 6.0 + upper / 4.0) * 28.0 / 2
    np.testing.assert_allclose(estimate, expected, rtol=1e-6)


def test_dew():
    counts = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    np.testing.assert_allclose(dew_scatter(counts), 0.5 * counts, rtol=1e-7)
    estimate = dew_scatter(counts.astype(np.float64), k=0.35)
    assert estimate.dtype == np.float32
    np.testing.assert_allclose(estimate, 0.35 * counts, rtol=1e-6)
    for bad_k in (0.0, -0.5, math.nan):
        with pytest.raises(InputError, match="k must"):
            dew_scatter(counts, k=bad_k)


def test_smoothing_stays_within_each_view():
    counts = np.zeros((3, 16, 16))
    counts[1, 8, 8] = 1000.0
    counts[2] = 5.0
    smoothed = dew_scatter(counts, k=1.0, smooth_sigma_px=1.5)
    assert np.all(smoothed[0] == 0)  # nothing leaks from the neighbouring view
    np.testing.assert_allclose(smoothed[2], 5.0, rtol=1e-6)  # flat stays flat
    assert smoothed[1].sum() == pytest.approx(1000.0, rel=1e-5)  # counts are kept
    assert smoothed[1, 8, 8] < 1000.0 / 10  # and spread out
    assert smoothed[1, 8, 9] == pytest.approx(smoothed[1, 9, 8], rel=1e-6)  # isotropic
    unsmoothed = tew_scatter(counts, counts, 2.0, 2.0, 20.0, smooth_sigma_px=0.0)
    np.testing.assert_allclose(unsmoothed, counts * 10.0, rtol=1e-6)
    with pytest.raises(InputError, match="smooth_sigma_px"):
        dew_scatter(counts, smooth_sigma_px=-1.0)


def test_scatter_input_errors():
    good = np.ones((2, 3, 4))
    with pytest.raises(InputError, match="shape"):
        tew_scatter(good, np.ones((2, 3, 5)), 3.0, 3.0, 28.0)
    with pytest.raises(InputError, match=r"\(view, v, u\)"):
        tew_scatter(np.ones((3, 4)), None, 3.0, None, 28.0)
    with pytest.raises(InputError, match=r"\(view, v, u\)"):
        dew_scatter(np.ones(5))
    negative = good.copy()
    negative[1, 2, 3] = -1.0
    with pytest.raises(InputError, match="negative"):
        tew_scatter(good, negative, 3.0, 3.0, 28.0)
    with pytest.raises(InputError, match="negative"):
        dew_scatter(negative)
    nan = good.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        tew_scatter(nan, good, 3.0, 3.0, 28.0)
    inf = good.copy()
    inf[0, 1, 1] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        dew_scatter(inf)
    with pytest.raises(InputError, match="dtype"):
        dew_scatter(np.ones((2, 3, 4), dtype=bool))
    with pytest.raises(InputError, match="dtype"):
        dew_scatter(np.ones((2, 3, 4), dtype=complex))
    for bad_width in (0.0, -3.0, math.nan):
        with pytest.raises(PhysicsError, match="width"):
            tew_scatter(good, good, bad_width, 3.0, 28.0)
        with pytest.raises(PhysicsError, match="width"):
            tew_scatter(good, good, 3.0, 3.0, bad_width)
    with pytest.raises(PhysicsError, match="upper_width_kev"):
        tew_scatter(good, good, 3.0, None, 28.0)
