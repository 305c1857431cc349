"""Tests of recon.quant.ratios: uptake ratios, blood samples, heterogeneity and stratification."""

from __future__ import annotations

import math

import numpy as np
import pytest

import recon
from recon.errors import InputError
from recon.quant import (
    BloodSample,
    Voi,
    between_lesion_spread,
    between_patient_spread,
    blood_concentration_at,
    lesion_to_background,
    lesion_to_blood,
    lesion_to_liver,
    lesion_to_spleen,
    lowest_uptake_lesion,
    spread,
    stratify,
    uptake_ratio,
    voi_stats,
)

HOUR = 3600.0
LAM_CU64 = math.log(2.0) / (12.701 * HOUR)  # NuDat 3

# A small cohort: per-patient lowest values are P1 2.0, P2 3.5, P3 1.0, P4 8.0 (median 2.75).
COHORT = [
    {"patient": "P1", "lesion": "liver_1", "suv": 2.0},
    {"patient": "P1", "lesion": "node_1", "suv": 5.0},
    {"patient": "P2", "lesion": "lung_1", "suv": 4.0},
    {"patient": "P2", "lesion": "lung_2", "suv": 6.0},
    {"patient": "P2", "lesion": "bone_1", "suv": 3.5},
    {"patient": "P3", "lesion": "breast", "suv": 1.0},
    {"patient": "P4", "lesion": "liver_1", "suv": 8.0},
    {"patient": "P4", "lesion": "liver_2", "suv": 9.0},
]


def _stats(value: float, name: str):
    grid = recon.ImageGrid((10, 10, 10), 4.0)
    img = recon.Image(np.full(grid.shape, value, np.float32), grid, units="Bq/mL")
    return voi_stats(img, Voi.sphere(grid, (0, 0, 0), 16.0, name=name))


def test_ratios_of_values_and_voi_stats():
    lesion, liver, spleen, bkg = (
        _stats(6000.0, "lesion"),
        _stats(3000.0, "liver"),
        _stats(4000.0, "spleen"),
        _stats(1500.0, "muscle"),
    )
    assert lesion_to_background(lesion, bkg) == pytest.approx(4.0)
    assert lesion_to_liver(lesion, liver) == pytest.approx(2.0)
    assert lesion_to_spleen(lesion, spleen) == pytest.approx(1.5)
    assert lesion_to_blood(lesion, 2000.0) == pytest.approx(3.0)
    assert uptake_ratio(lesion, bkg, statistic="peak") == pytest.approx(4.0)
    assert uptake_ratio(12.0, 4.0) == 3.0
    with pytest.raises(InputError, match="positive"):
        uptake_ratio(1.0, 0.0)
    suv_grid = recon.ImageGrid((10, 10, 10), 4.0)
    suv_img = recon.Image(np.ones(suv_grid.shape, np.float32), suv_grid, units="g/mL")
    suv = voi_stats(suv_img, Voi.sphere(suv_grid, (0, 0, 0), 16.0))
    with pytest.raises(InputError, match="different units"):
        uptake_ratio(lesion, suv)
    with pytest.raises(InputError, match="statistic"):
        uptake_ratio(lesion, bkg, statistic="median")


def _samples():
    # Decay-corrected blood concentration falls linearly: C_dc(t) = 1000 − 5 t_h (Bq/mL), so linear
    # interpolation is exact. Samples are counted 2 h after they are drawn.
    out = []
    for t_h in (0.5, 4.0, 24.0, 48.0):
        t = t_h * HOUR
        at_draw = (1000.0 - 5.0 * t_h) * math.exp(-LAM_CU64 * t)
        counted = t + 2 * HOUR
        out.append(BloodSample(t, at_draw * math.exp(-LAM_CU64 * 2 * HOUR), counted))
    return out


def test_blood_concentration_from_samples_in_both_modes():
    samples = _samples()
    t = 30.0 * HOUR
    dc = blood_concentration_at(samples, t, "Cu-64", mode="decay_corrected_to_injection")
    assert dc == pytest.approx(1000.0 - 5.0 * 30.0, rel=1e-12)
    scan = blood_concentration_at(samples, t, "Cu-64", mode="activity_at_scan_time")
    assert scan == pytest.approx(850.0 * math.exp(-LAM_CU64 * t), rel=1e-12)
    assert samples[0].at_draw_bq_ml("Cu-64") == pytest.approx(
        997.5 * math.exp(-LAM_CU64 * 0.5 * HOUR), rel=1e-12
    )
    # The tumour-to-blood ratio is the same whichever convention is used consistently.
    lesion_scan = 2550.0 * math.exp(-LAM_CU64 * t)
    r1 = lesion_to_blood(
        lesion_scan,
        samples,
        time_after_injection_s=t,
        isotope="Cu-64",
        mode="activity_at_scan_time",
    )
    r2 = lesion_to_blood(
        2550.0,
        samples,
        time_after_injection_s=t,
        isotope="Cu-64",
        mode="decay_corrected_to_injection",
    )
    assert r1 == pytest.approx(3.0, rel=1e-12) and r2 == pytest.approx(3.0, rel=1e-12)


def test_blood_sample_errors():
    samples = _samples()
    with pytest.raises(InputError, match="outside the blood samples"):
        blood_concentration_at(samples, 72 * HOUR, "Cu-64", mode="activity_at_scan_time")
    with pytest.raises(InputError, match="mode"):
        lesion_to_blood(1.0, samples, time_after_injection_s=HOUR, isotope="Cu-64")
    with pytest.raises(InputError, match="before the injection"):
        BloodSample(-10.0, 100.0)
    with pytest.raises(InputError, match="counted before"):
        BloodSample(100.0, 100.0, counted_after_injection_s=50.0)
    with pytest.raises(InputError, match="same draw time"):
        blood_concentration_at(
            [BloodSample(1.0, 1.0), BloodSample(1.0, 2.0)],
            1.0,
            "Cu-64",
            mode="activity_at_scan_time",
        )


def test_spread_closed_form():
    s = spread([1.0, 2.0, 4.0, 8.0])
    sd = math.sqrt(((1 - 3.75) ** 2 + (2 - 3.75) ** 2 + (4 - 3.75) ** 2 + (8 - 3.75) ** 2) / 3)
    assert (s.n, s.mean, s.median, s.min, s.max) == (4, 3.75, 3.0, 1.0, 8.0)
    assert s.sd == pytest.approx(sd)
    assert s.cv == pytest.approx(sd / 3.75)
    assert s.fold == 8.0
    assert spread([0.0, 2.0]).fold == math.inf
    assert math.isnan(spread([-1.0, 2.0]).fold)
    assert spread([5.0]).sd == 0.0
    with pytest.raises(InputError, match="no values"):
        spread([])


def test_between_lesion_and_between_patient_spread():
    per_patient = between_lesion_spread(COHORT, "suv")
    assert list(per_patient) == ["P1", "P2", "P3", "P4"]
    assert per_patient["P1"].fold == 2.5
    assert per_patient["P2"].mean == pytest.approx(13.5 / 3)
    assert per_patient["P3"].n == 1
    lowest = between_patient_spread(COHORT, "suv", by="lowest")
    assert (lowest.min, lowest.max, lowest.fold) == (1.0, 8.0, 8.0)
    means = between_patient_spread(COHORT, "suv")
    assert means.mean == pytest.approx((3.5 + 4.5 + 1.0 + 8.5) / 4)


def test_lowest_uptake_lesion_per_patient():
    low = lowest_uptake_lesion(COHORT, "suv")
    assert {p: row["lesion"] for p, row in low.items()} == {
        "P1": "liver_1",
        "P2": "bone_1",
        "P3": "breast",
        "P4": "liver_1",
    }


def test_stratify_by_lowest_lesion_at_the_median():
    strata = stratify(COHORT, "suv", "median")
    assert [s.patient for s in strata] == ["P1", "P2", "P3", "P4"]
    assert {s.patient: s.group for s in strata} == {
        "P1": "low",
        "P2": "high",
        "P3": "low",
        "P4": "high",
    }
    assert all(s.threshold == 2.75 for s in strata)
    p2 = strata[1]
    assert (p2.value, p2.lesion, p2.n_lesions, p2.by) == (3.5, "bone_1", 3, "lowest")
    assert stratify(COHORT, "suv") == strata  # None means the median
    fixed = stratify(COHORT, "suv", 4.0, by="mean", labels=("poor", "good"))
    assert {s.patient: s.group for s in fixed} == {
        "P1": "poor",
        "P2": "good",
        "P3": "poor",
        "P4": "good",
    }
    assert fixed[0].lesion is None and fixed[0].as_dict()["metric"] == "suv"


def test_cohort_table_errors():
    with pytest.raises(InputError, match="'suv'"):
        stratify([{"patient": "P1", "lesion": "a"}], "suv")
    with pytest.raises(InputError, match="empty"):
        stratify([], "suv")
    with pytest.raises(InputError, match="threshold"):
        stratify(COHORT, "suv", "mean")
    with pytest.raises(InputError, match="by"):
        stratify(COHORT, "suv", by="max")
    with pytest.raises(InputError, match="finite"):
        stratify([{"patient": "P1", "suv": float("nan")}], "suv")
